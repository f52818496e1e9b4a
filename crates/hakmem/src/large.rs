//! The facade's side of the large tier and of giving memory back: large
//! allocations (with decay on their path and the out-of-memory retry), and
//! [`collect`]. Below the entry points and the observers, which both
//! allocate large blocks.

use core::ptr;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use hakmem_large_cache::CacheLimits;
use hakmem_platform::{address_space_limit, set_errno, ErrnoGuard, Pal, PAGE_SIZE};

use crate::state::PLACEHOLDER;
use crate::state::{cache_limits, Os, LARGE, LARGE_STATS, PAGE_MAP, POLICY, POOL};
use crate::tls;

/// The user address space hakmem maps into (47 bits, see "Known limits"):
/// no request needing more can ever succeed.
const USER_SPACE: usize = 1 << 47;

/// The address space a request may get at most: [`USER_SPACE`], or the soft
/// `RLIMIT_AS` when one is set and lower, as last read.
static AS_LIMIT: AtomicUsize = AtomicUsize::new(USER_SPACE);
/// When [`AS_LIMIT`] was read ([`Pal::now_ms`], 0: never).
static AS_READ_MS: AtomicU64 = AtomicU64::new(0);
/// A request above the cached limit, or a failed mapping, re-reads it at
/// most this often: a raised or lowered `RLIMIT_AS` is seen within this
/// time.
const AS_REFRESH_MS: u64 = 100;

/// Re-reads `RLIMIT_AS` into [`AS_LIMIT`] (one `getrlimit`, no allocation).
fn read_as_limit(now: u64) {
    let limit = address_space_limit().map_or(USER_SPACE, |l| l.min(USER_SPACE));
    AS_LIMIT.store(limit, Ordering::Relaxed);
    AS_READ_MS.store(now.max(1), Ordering::Relaxed);
}

/// Whether a large request of `size` bytes aligned to `align` can never be
/// served: it needs more address space (at least `size` plus the header
/// page, or `align` for an aligned block) than the user address space or
/// the `RLIMIT_AS` in force. Never true for a request that could fit: the
/// bound is below what any mapping of it takes. No system call while the
/// request fits under the cached limit, and at most one `getrlimit` per
/// [`AS_REFRESH_MS`] otherwise.
pub(crate) fn beyond_any_mapping(size: usize, align: usize) -> bool {
    let Some(need) = size.checked_add(align.max(PAGE_SIZE)) else {
        return true;
    };
    if need > USER_SPACE {
        return true;
    }
    if need <= AS_LIMIT.load(Ordering::Relaxed) {
        return false;
    }
    refresh_as_limit();
    need > AS_LIMIT.load(Ordering::Relaxed)
}

/// Re-reads `RLIMIT_AS` unless that was done in the last [`AS_REFRESH_MS`].
fn refresh_as_limit() {
    let now = Os::now_ms();
    let read = AS_READ_MS.load(Ordering::Relaxed);
    if read == 0 || now.saturating_sub(read) >= AS_REFRESH_MS {
        read_as_limit(now);
    }
}

/// The out-of-memory reclaim of the large path runs the calling thread's
/// part ([`collect`]) at most once per this many milliseconds.
const OWN_RECLAIM_INTERVAL_MS: u64 = 100;
/// When the last such reclaim ran ([`Pal::now_ms`], 0: never).
static OWN_RECLAIM_MS: AtomicU64 = AtomicU64::new(0);

/// A mapping failed: give back memory so that a retry may succeed. First
/// what nobody is about to reuse, the pool and the large cache; only if
/// that released nothing, the calling thread's own cached memory (bins,
/// retained slabs, kept empty superslabs, which its next small `malloc`
/// would reuse), and that at most once per [`OWN_RECLAIM_INTERVAL_MS`]
/// process-wide: a program that keeps making requests that cannot be met
/// would otherwise unmap its own superslabs and map them again on every
/// call. Returns true if anything went back to the OS.
fn oom_reclaim() -> bool {
    let before = released_counter();
    crate::state::reclaim_shared();
    if released_counter() != before {
        return true;
    }
    let now = Os::now_ms();
    let last = OWN_RECLAIM_MS.load(Ordering::Relaxed);
    if last != 0 && now.saturating_sub(last) < OWN_RECLAIM_INTERVAL_MS {
        return false;
    }
    OWN_RECLAIM_MS.store(now.max(1), Ordering::Relaxed);
    collect()
}

/// Decay on the large paths: the shared caches, and the calling thread's
/// idle slots if it has a heap (small-block paths do this on refills).
pub(crate) fn decay_tick() {
    crate::state::decay_tick();
    let heap = tls::heap();
    if heap != PLACEHOLDER.get() {
        // SAFETY: the thread's own heap.
        unsafe { (*heap).maintain(false) };
    }
}

pub(crate) fn large_alloc(size: usize, align: usize, zero: bool) -> *mut u8 {
    large_alloc_with(size, align, zero, false)
}

/// [`large_alloc`] for a `realloc` that moves a smaller block up to `size`
/// (`Large::alloc_growing`: the mapping ends on a huge-page boundary, so the
/// growth likely to follow stays in place).
pub(crate) fn large_alloc_growing(size: usize, align: usize) -> *mut u8 {
    large_alloc_with(size, align, false, true)
}

fn large_alloc_with(user_size: usize, align: usize, zero: bool, growing: bool) -> *mut u8 {
    // (secure mode: room for the tail canary after the block)
    let size = crate::secure::large_request(user_size);
    // requests no mapping can hold fail before any system call
    if beyond_any_mapping(size, align) {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    }
    decay_tick();
    check_large();
    let policy = POLICY.load();
    let try_alloc = || {
        let limits = cache_limits(policy);
        if growing {
            LARGE.alloc_growing(&PAGE_MAP, size, align, &limits, policy.thp_threshold)
        } else {
            LARGE.alloc(&PAGE_MAP, size, align, &limits, policy.thp_threshold)
        }
    };
    // The OS said no: re-read RLIMIT_AS (the request may be beyond it now;
    // not more often than AS_REFRESH_MS), give back what the caches hold
    // (address space may be what ran out) and retry once.
    let got = try_alloc().or_else(|| {
        refresh_as_limit();
        if beyond_any_mapping(size, align) {
            return None;
        }
        oom_reclaim().then(try_alloc).flatten()
    });
    check_large();
    match got {
        Some(a) => {
            LARGE_STATS.allocs.add(1);
            LARGE_STATS.bytes_live.add(a.map_len as u64);
            if zero && !a.zeroed {
                // SAFETY: the block has at least `size` bytes.
                unsafe { ptr::write_bytes(a.ptr.as_ptr(), 0, user_size) };
            }
            if size != user_size {
                // SAFETY: a large block of at least `size` = `user_size` +
                // the canary's bytes, just allocated, not handed out yet.
                unsafe { set_large_canary(a.ptr.as_ptr(), user_size) };
            }
            a.ptr.as_ptr()
        }
        None => {
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

/// Validates the large tier when `HAKMEM_CHECK` is on (`check.rs`).
///
/// The cache's limits are not checked here: another thread's call may be
/// between its two halves (over a budget until its trim runs), and a policy
/// change may lower the limits after mappings were cached under the old
/// ones, so `Large::check` runs with unbounded limits: the bookkeeping and
/// the page-map registration of every cached mapping are checked.
#[inline]
pub(crate) fn check_large() {
    if crate::check::on() {
        check_large_cold();
    }
}

#[cold]
#[inline(never)]
fn check_large_cold() {
    let limits = CacheLimits {
        budget: usize::MAX,
        max_block: usize::MAX,
        clean_budget: usize::MAX,
        ..cache_limits(POLICY.load())
    };
    if let Err(what) = LARGE.check(&PAGE_MAP, &limits) {
        crate::check::invariant_broken("large: ", what);
    }
}

/// Returns what hakmem can to the OS now: the calling thread's cached
/// blocks and empty superslabs; in every other heap not busy at that moment
/// (idle threads', and heaps of exited threads) the empty slabs, the free
/// slots' pages and the empty superslabs (never another thread's bins);
/// the free slots of exited threads' superslabs; the pool and the large
/// cache. Safe from any thread (`malloc_trim(0)` calls it). (Without it,
/// cached memory is returned by decay on the background thread's clock.)
/// Returns true if anything was released.
pub fn collect() -> bool {
    let before = released_counter();
    let _errno = ErrnoGuard::new();
    let _ = crate::thread::with_own_heap(|h| h.collect());
    let now = <crate::state::Os as hakmem_platform::Pal>::now_ms();
    crate::background::visit_heaps(now, 0);
    let purged = crate::state::ORPHANAGE.purge_idle::<crate::state::Os>(now, 0);
    POOL.trim(&PAGE_MAP);
    LARGE.trim(&PAGE_MAP, &cache_limits(POLICY.load()));
    released_counter() != before || purged != 0
}

/// A counter that moves whenever memory goes back to the OS (purges and
/// unmaps of the pool and the large cache).
pub(crate) fn released_counter() -> u64 {
    let p = POOL.stats();
    let l = LARGE.stats();
    p.purged + p.unmapped + l.purged + l.unmapped
}

/// [`crate::secure::set_large_canary`] of the live large block `p`, whose
/// header it looks up.
///
/// # Safety
/// As for [`crate::secure::set_large_canary`].
pub(crate) unsafe fn set_large_canary(p: *mut u8, size: usize) {
    let e = PAGE_MAP.get(p as usize);
    if let Some(h) = hakmem_large_cache::Large::<Os>::lookup(e, p) {
        // SAFETY: forwarded contract; `h` is `p`'s header.
        unsafe { crate::secure::set_large_canary(h, p, size) };
    }
}
