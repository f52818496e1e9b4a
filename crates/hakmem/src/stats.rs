//! The stats view: counters of every heap merged, plus the shared tiers.

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
    /// Large allocations served from the cache.
    pub large_cache_hits: u64,
    /// Bytes of live large mappings.
    pub large_bytes_live: u64,
    /// Large mappings in the cache, and their bytes.
    pub large_cached: (usize, usize),
    /// Large reallocations done in place.
    pub large_realloc_in_place: u64,
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
        large_cache_hits: LARGE_STATS.cache_hits.get(),
        large_bytes_live: LARGE_STATS.bytes_live.get(),
        large_cached: LARGE.cached(),
        large_realloc_in_place: LARGE_STATS.realloc_in_place.get(),
    }
}
