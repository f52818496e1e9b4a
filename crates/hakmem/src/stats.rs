//! The stats view: counters of every heap merged, plus the shared tiers.

use hakmem_large_cache::CacheStats;
use hakmem_stats::Snapshot;
use hakmem_superslab::PoolStats;

use crate::classes::NCLASSES;
use crate::heaps;
use crate::state::{LARGE, LARGE_STATS, ORPHANAGE, POOL};

/// A merged view of hakmem's counters.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Per-class slow-path counters of all threads (tiny classes first,
    /// then mid classes; see [`crate::class_size`]).
    pub classes: Snapshot<NCLASSES>,
    /// Heaps ever created.
    pub heaps_created: u32,
    /// Heaps in use by live threads.
    pub heaps_live: u32,
    /// Superslabs waiting in the orphanage.
    pub orphaned_superslabs: usize,
    /// The superslab pool.
    pub pool: PoolStats,
    /// Large allocations and frees so far.
    pub large_allocs: u64,
    /// Large frees so far.
    pub large_frees: u64,
    /// Bytes of live large mappings.
    pub large_bytes_live: u64,
    /// The cache of freed large mappings.
    pub large_cache: CacheStats,
    /// Large reallocations done by resizing the mapping instead of copying.
    pub large_resizes: u64,
}

/// Reads and merges all counters. Allocation-free (it may be called from
/// inside the allocator, e.g. at exit).
pub fn stats() -> Stats {
    let mut classes = Snapshot::default();
    heaps::for_each(|h| classes.add_thread(&h.stats));
    let (heaps_created, heaps_live) = heaps::counts();
    Stats {
        classes,
        heaps_created,
        heaps_live,
        orphaned_superslabs: ORPHANAGE.len(),
        pool: POOL.stats(),
        large_allocs: LARGE_STATS.allocs.get(),
        large_frees: LARGE_STATS.frees.get(),
        large_bytes_live: LARGE_STATS.bytes_live.get(),
        large_cache: LARGE.stats(),
        large_resizes: LARGE_STATS.resizes.get(),
    }
}

/// A counter that moves whenever memory goes back to the OS (purges and
/// unmaps of the pool and the large cache).
pub(crate) fn released_counter() -> u64 {
    let p = POOL.stats();
    let l = LARGE.stats();
    p.purged + p.unmapped + l.purged + l.unmapped
}
