//! The facade's side of the large tier and of giving memory back: large
//! allocations (with decay on their path and the out-of-memory retry), and
//! [`collect`]. Below the entry points and the observers, which both
//! allocate large blocks.

use core::ptr;

use hakmem_large_cache::CacheLimits;
use hakmem_platform::{set_errno, ErrnoGuard};

use crate::state::PLACEHOLDER;
use crate::state::{cache_limits, LARGE, LARGE_STATS, PAGE_MAP, POLICY, POOL};
use crate::tls;

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
    if size > isize::MAX as usize {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    }
    decay_tick();
    check_large();
    let policy = POLICY.load();
    let try_alloc = || {
        LARGE.alloc(
            &PAGE_MAP,
            size,
            align,
            &cache_limits(policy),
            policy.thp_threshold,
        )
    };
    // The OS said no: give back what the caches hold (address space may be
    // what ran out) and retry once.
    let got = try_alloc().or_else(|| collect().then(try_alloc).flatten());
    check_large();
    match got {
        Some(a) => {
            LARGE_STATS.allocs.add(1);
            LARGE_STATS.bytes_live.add(a.map_len as u64);
            if zero && !a.zeroed {
                // SAFETY: the block has at least `size` bytes.
                unsafe { ptr::write_bytes(a.ptr.as_ptr(), 0, size) };
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
/// blocks, its empty superslabs, the pool and the large cache. (Without it,
/// cached memory is returned by decay as the allocator keeps being used.)
/// Returns true if anything was released.
pub fn collect() -> bool {
    let before = released_counter();
    let _errno = ErrnoGuard::new();
    let _ = crate::thread::with_own_heap(|h| h.collect());
    POOL.trim(&PAGE_MAP);
    LARGE.trim(&PAGE_MAP, &cache_limits(POLICY.load()));
    released_counter() != before
}

/// A counter that moves whenever memory goes back to the OS (purges and
/// unmaps of the pool and the large cache).
pub(crate) fn released_counter() -> u64 {
    let p = POOL.stats();
    let l = LARGE.stats();
    p.purged + p.unmapped + l.purged + l.unmapped
}
