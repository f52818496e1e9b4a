//! The process-wide structures every heap shares, and the heap box
//! assembled over them: [`Env`], the facade's [`HeapEnv`] (the Linux
//! platform, these statics, the decay and reclaim hooks that include the
//! large tier, secure mode), [`Heap`], the placeholder and the registry.
//! All are `const`-built statics: nothing to initialise before the first
//! `malloc`.

use hakmem_heap::{pool_limits, HeapEnv, Placeholder, Registry};
use hakmem_large_cache::{CacheLimits, Large};
use hakmem_pagemap::PageMap;
use hakmem_policy_rcu::{FrozenPolicy, PolicyCell, DEFAULT_POLICY};
use hakmem_stats::LargeCounters;
use hakmem_superslab::{Orphanage, SuperslabPool};

/// The platform hakmem runs on: Linux, its system calls timed while the
/// profiler is on (`os.rs`).
pub(crate) type Os = crate::os::ProfiledLinux;

/// The facade's heap environment.
#[derive(Debug)]
pub(crate) struct Env;

/// A thread's heap.
pub(crate) type Heap = hakmem_heap::Heap<Env>;

// The fast paths (`api.rs`, the C entry) add bin offsets to a heap pointer
// and read `key` and `mark` next to the bins.
const _: () = assert!(core::mem::offset_of!(Heap, bins) == 0);
const _: () =
    assert!(core::mem::offset_of!(Heap, key) == crate::classes::NBINS * crate::classes::BIN_BYTES);
const _: () = assert!(core::mem::align_of::<Heap>() == 64);

/// The heap of threads that have none yet (referenced from the TLS
/// initialisation image): every bin empty with no room, a key no entry
/// matches. Never written.
pub(crate) static PLACEHOLDER: Placeholder<Env> = Placeholder::new();

/// Every heap ever created, and the free ones.
pub(crate) static REGISTRY: Registry<Env> = Registry::new();

/// Registry of every slot hakmem owns.
pub(crate) static PAGE_MAP: PageMap = PageMap::new();

// The hand-written C `free` (`hakmem-preload`) reads the page map by the
// hidden symbol `hakmem_page_map`: an alias of PAGE_MAP, so that no Rust
// item hands safe code a way to write it.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
core::arch::global_asm!(
    ".globl hakmem_page_map",
    ".hidden hakmem_page_map",
    ".set hakmem_page_map, {map}",
    map = sym PAGE_MAP,
);
/// Empty superslabs, kept within the policy's limits.
pub(crate) static POOL: SuperslabPool<Os> = SuperslabPool::new();
/// Superslabs of exited threads.
pub(crate) static ORPHANAGE: Orphanage = Orphanage::new();
/// The large tier.
pub(crate) static LARGE: Large<Os> = Large::new();
/// Counters of the large tier.
pub(crate) static LARGE_STATS: LargeCounters = LargeCounters::new();
/// The current policy.
pub(crate) static POLICY: PolicyCell = PolicyCell::new(&DEFAULT_POLICY);

/// The large cache limits of a policy.
#[inline]
pub(crate) fn cache_limits(p: &FrozenPolicy) -> CacheLimits {
    CacheLimits {
        budget: p.large_cache_budget,
        max_block: p.large_cache_max_block,
        wmax_permille: p.large_wmax_permille,
        decay_ms: p.decay_ms,
        batch: p.madvise_batch as usize,
        clean_budget: p.large_clean_budget,
    }
}

/// Time of the last decay pass (ms of `Os::now_ms`).
static LAST_DECAY: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Lets cached memory decay: the pool and the large cache purge what sat
/// unused for the policy's decay time. Cheap when called often: it does the
/// work at most four times per decay period.
pub(crate) fn decay_tick() {
    use core::sync::atomic::Ordering;
    use hakmem_platform::Pal;
    let now = Os::now_ms();
    let p = POLICY.load();
    let last = LAST_DECAY.load(Ordering::Relaxed);
    if now.saturating_sub(last) * 4 < p.decay_ms {
        return;
    }
    if LAST_DECAY
        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    let _errno = hakmem_platform::ErrnoGuard::new();
    POOL.maintain(&PAGE_MAP, now, &pool_limits(p));
    LARGE.maintain(&PAGE_MAP, &cache_limits(p));
}

/// Out of memory: returns every cached superslab and large mapping to the
/// OS so that a retried mapping can succeed (the calling thread's own heap
/// is collected by its caller).
#[cold]
pub(crate) fn reclaim_shared() {
    let _e = hakmem_platform::ErrnoGuard::new();
    POOL.trim(&PAGE_MAP);
    LARGE.trim(&PAGE_MAP, &cache_limits(POLICY.load()));
}

impl HeapEnv for Env {
    type Pal = Os;

    #[inline(always)]
    fn page_map() -> &'static PageMap {
        &PAGE_MAP
    }

    #[inline(always)]
    fn pool() -> &'static SuperslabPool<Os> {
        &POOL
    }

    #[inline(always)]
    fn orphanage() -> &'static Orphanage {
        &ORPHANAGE
    }

    #[inline(always)]
    fn policy() -> &'static PolicyCell {
        &POLICY
    }

    #[inline]
    fn decay_tick() {
        decay_tick();
    }

    #[inline]
    fn reclaim_shared() {
        reclaim_shared();
    }

    #[inline(always)]
    fn secure() -> bool {
        // the checked fast paths serve: the bins' block tests stay off
        crate::secure::checked()
    }

    unsafe fn forget_fresh(data: *mut u8, block_size: usize, blocks: core::ops::Range<usize>) {
        // SAFETY: forwarded contract: fresh blocks of a slab the calling
        // heap owns, referenced by nobody.
        unsafe { crate::secure::forget_fresh(data, block_size, blocks) }
    }

    #[inline(always)]
    fn checking() -> bool {
        crate::check::on()
    }

    fn invariant_broken(what: &'static str) -> ! {
        crate::check::invariant_broken("", what)
    }
}

/// The process's free mark (see `Heap::mark`): set once by the set-up,
/// before any heap is handed out.
static FREE_MARK: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The free mark (valid after the set-up ran).
#[inline]
pub(crate) fn free_mark() -> u64 {
    FREE_MARK.load(core::sync::atomic::Ordering::Relaxed)
}

/// Sets the free mark (the set-up, once).
pub(crate) fn set_free_mark(mark: u64) {
    FREE_MARK.store(mark, core::sync::atomic::Ordering::Relaxed);
}
