//! The stats view: counters of every heap merged, plus the shared tiers.

use hakmem_large_cache::CacheStats;
use hakmem_stats::Snapshot;
use hakmem_superslab::PoolStats;

use crate::classes::NCLASSES;
use crate::state::{LARGE, LARGE_STATS, ORPHANAGE, POOL, REGISTRY};

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
    REGISTRY.for_each(|h| classes.add_thread(&h.stats));
    let (heaps_created, heaps_live) = REGISTRY.counts();
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

/// Prints the counters as a table (`HAKMEM_STATS=1` at exit). Allocation
/// free: formatted into a small buffer written to `fd` in pieces.
pub(crate) fn print(fd: i32) {
    use core::fmt::Write as _;
    let s = stats();
    let mut w = hakmem_sites::FdWriter::new(fd);
    let rss = hakmem_platform::resident_bytes().unwrap_or(0);
    let _ = writeln!(
        w,
        "hakmem stats: {} heaps ({} live), RSS {:.1} MiB, learner {}",
        s.heaps_created,
        s.heaps_live,
        rss as f64 / 1048576.0,
        crate::learner::learner_phase()
    );
    let _ = writeln!(
        w,
        "(slow-path events only: the fast paths keep no counters; a refill moves a batch of blocks from slabs to a thread's bin, a spill moves half a full bin back)"
    );
    let _ = writeln!(
        w,
        "{:<5} {:>5} {:>9} {:>10} {:>12} {:>9} {:>12} {:>12} {:>10} {:>7} {:>7}",
        "tier",
        "class",
        "size",
        "refills",
        "refill blk",
        "spills",
        "spill blk",
        "remote free",
        "drained",
        "slabs+",
        "slabs-"
    );
    for (c, k) in s.classes.classes.iter().enumerate() {
        if k.is_zero() {
            continue;
        }
        let tier = if c < hakmem_tiny_sll::TINY_CLASSES {
            "tiny"
        } else {
            "mid"
        };
        let _ = writeln!(
            w,
            "{:<5} {:>5} {:>9} {:>10} {:>12} {:>9} {:>12} {:>12} {:>10} {:>7} {:>7}",
            tier,
            c,
            crate::classes::class_size(c),
            k.refills,
            k.refill_blocks,
            k.spills,
            k.spill_blocks,
            k.remote_frees,
            k.remote_drained,
            k.slabs_created,
            k.slabs_released
        );
    }
    let _ = writeln!(
        w,
        "large: {} allocs, {} frees, {:.1} MiB live, {} resized in place or moved; cache: {} dirty ({:.1} MiB), {} clean ({:.1} MiB), {} hits",
        s.large_allocs,
        s.large_frees,
        s.large_bytes_live as f64 / 1048576.0,
        s.large_resizes,
        s.large_cache.dirty.0,
        s.large_cache.dirty.1 as f64 / 1048576.0,
        s.large_cache.clean.0,
        s.large_cache.clean.1 as f64 / 1048576.0,
        s.large_cache.hits
    );
    let lc = &s.large_cache;
    if lc.reservations as u64 + lc.reserved_hits + lc.reserved_misses + lc.reservations_dropped > 0
    {
        let _ = writeln!(
            w,
            "site reservations: {} held, {} hits past the decay, {} unused holds, {} dropped",
            lc.reservations, lc.reserved_hits, lc.reserved_misses, lc.reservations_dropped
        );
    }
    let _ = writeln!(
        w,
        "superslabs: {} acquired, {} released, {} adopted, {} orphaned now; pool: {} dirty, {} clean, {} mapped, {} unmapped, {} reused, {} purged",
        s.classes.superslabs_acquired,
        s.classes.superslabs_released,
        s.classes.superslabs_adopted,
        s.orphaned_superslabs,
        s.pool.dirty,
        s.pool.clean,
        s.pool.mapped,
        s.pool.unmapped,
        s.pool.reused,
        s.pool.purged
    );
    if s.pool.small_first + s.pool.collapsed + s.pool.collapse_failed > 0 {
        let _ = writeln!(
            w,
            "huge pages: {} first superslabs small-paged, {} collapsed when dense ({} refused), {} fresh advised",
            s.pool.small_first, s.pool.collapsed, s.pool.collapse_failed, s.pool.huge_fresh
        );
    }
    let pl = crate::sites::placement_stats();
    if pl.promotions + pl.long_frees > 0 || pl.reference.is_some() {
        let _ = writeln!(
            w,
            "site placement ({}): {} sites promoted to the long lane, {} moved back, {} there now; long-lane frees {} ({} young); reference lifetime {} us",
            if pl.enabled { "on" } else { "off" },
            pl.promotions,
            pl.reverts,
            pl.long_sites,
            pl.long_frees,
            pl.long_young,
            pl.reference.unwrap_or(0) / 1000
        );
    }
    let _ = w.flush();
}
