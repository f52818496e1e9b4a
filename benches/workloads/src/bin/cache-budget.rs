//! cache-budget: a server with an in-memory cache and a memory budget.
//!
//! Purpose: the shape of a web or RPC server that caches rendered results
//! (pages, images, query results: variable sizes, 64 B to 1 MiB) in memory
//! and is deployed with a memory limit of `--budget-mb` MiB (a container
//! limit, a `HAKMEM_MEM_BUDGET_MB`). The cache is sized to `--fill`
//! percent of the budget, the rest is headroom for the requests' own
//! short-lived memory. Once full, every cache miss inserts a new entry and
//! evicts random old ones (of other sizes) until the cache is back under
//! its size: the live data always fits the budget, but the allocator's
//! free memory (emptied pages of one size class, freed large buffers,
//! caches of freed blocks) comes on top of it. Requests arrive in bursts
//! of `--burst` per worker separated by `--gap-us` of idleness; each
//! allocates a tree of small objects (a parsed request, `--objects`
//! blocks of 16-512 B) and a response buffer (4-256 KiB), and frees them
//! when it ends.
//!
//! The figure of merit is `peak_rss_kb` against `budget_kb` (the line's
//! `over_budget` is 1 when the peak exceeded the budget), at the
//! throughput of the run. Workers share the cache (under a mutex), so an
//! entry inserted by one is often freed by another.
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bench_workloads::{Args, Block, Report, Rng, Sampler};

/// The shared cache: entries and their total size.
struct Cache {
    entries: Vec<Block>,
    bytes: usize,
}

/// A cache entry's size: most entries small, most bytes in big ones
/// (64 B-4 KiB 70 %, 4-64 KiB 25 %, 64 KiB-1 MiB 5 % of entries).
fn entry_size(rng: &mut Rng) -> usize {
    let r = rng.below(100);
    if r < 70 {
        rng.range(64, 4 << 10)
    } else if r < 95 {
        rng.range(4 << 10, 64 << 10)
    } else {
        rng.range(64 << 10, 1 << 20)
    }
}

fn main() {
    let a = Args::from_env(
        "cache-budget",
        "a server whose cache fills to a share of a memory budget while request bursts come and go",
    );
    let budget_mb = a.count("budget-mb", 256, "the memory budget (MiB)");
    let fill = a.count("fill", 80, "cache size, percent of the budget");
    let requests = a.count("requests", 20_000, "requests per worker");
    let objects = a.count("objects", 200, "small blocks per request").max(1) as usize;
    let miss = a.count("miss", 30, "cache misses, percent of requests (once full)");
    let burst = a.count("burst", 200, "requests per burst");
    let gap_us = a.count("gap-us", 500, "idle time between bursts (µs)");
    let c = a.common(2);
    a.finish();
    let target = (budget_mb as usize) << 20;
    let target = target / 100 * fill.min(100) as usize;
    let cache = Arc::new(Mutex::new(Cache {
        entries: Vec::new(),
        bytes: 0,
    }));
    let start = Instant::now();
    let results = {
        let cache = cache.clone();
        bench_workloads::run_threads(c.threads, move |t| {
            let mut rng = c.rng(t as u64);
            let mut s = c.sampler(requests * (2 * objects as u64 + 4));
            let mut tree: Vec<Block> = Vec::with_capacity(objects);
            let mut evicted: Vec<Block> = Vec::new();
            let mut sum = 0u64;
            for r in 0..requests {
                if burst > 0 && r > 0 && r % burst == 0 && gap_us > 0 {
                    std::thread::sleep(Duration::from_micros(gap_us));
                }
                // the request: parse into a tree of small objects
                for _ in 0..objects {
                    let u = rng.below(1 << 16) as u64;
                    let size = 16 + ((496 * u * u) >> 32) as usize;
                    tree.push(Block::alloc(size, &mut s));
                }
                let response = Block::alloc(rng.range(4 << 10, 256 << 10), &mut s);
                // the cache: a miss (always while filling) inserts an entry
                let filling = cache.lock().map(|c| c.bytes < target).unwrap_or(false);
                if filling || rng.below(100) < miss as usize {
                    let e = Block::alloc(entry_size(&mut rng), &mut s);
                    if let Ok(mut c) = cache.lock() {
                        c.bytes += e.size();
                        c.entries.push(e);
                        while c.bytes > target && !c.entries.is_empty() {
                            let i = rng.below(c.entries.len());
                            let old = c.entries.swap_remove(i);
                            c.bytes -= old.size();
                            evicted.push(old);
                        }
                    }
                    // freed outside the lock, as a server would
                    for b in evicted.drain(..) {
                        b.free(&mut s);
                    }
                } else if let Ok(c) = cache.lock() {
                    // a hit: read the entry into the response
                    if !c.entries.is_empty() {
                        let e = c.entries[rng.below(c.entries.len())];
                        // SAFETY: a live entry of at least one byte (the
                        // cache's lock keeps it from being freed).
                        sum = sum.wrapping_add(u64::from(unsafe { e.as_ptr().read() }));
                    }
                }
                for b in tree.iter() {
                    // SAFETY: a live block of at least one byte.
                    sum = sum.wrapping_add(u64::from(unsafe { b.as_ptr().read() }));
                }
                for b in tree.drain(..) {
                    b.free(&mut s);
                }
                response.free(&mut s);
            }
            (s, sum)
        })
    };
    let elapsed = start.elapsed();
    let (entries, bytes) = cache
        .lock()
        .map(|c| (c.entries.len(), c.bytes))
        .unwrap_or((0, 0));
    if let Ok(mut c) = cache.lock() {
        let mut s = Sampler::disabled();
        for b in c.entries.drain(..) {
            b.free(&mut s);
        }
    }
    let sum = results.iter().fold(0u64, |a, (_, x)| a.wrapping_add(*x));
    let samplers: Vec<Sampler> = results.into_iter().map(|(s, _)| s).collect();
    let total = samplers.iter().map(Sampler::calls).sum();
    let (peak_kb, _) = bench_workloads::rusage();
    let budget_kb = budget_mb << 10;
    bench_workloads::merge(
        Report::new("cache-budget", c.threads, total, elapsed),
        &samplers,
    )
    .extra("budget_kb", budget_kb)
    .extra("over_budget", u8::from(peak_kb > budget_kb))
    .extra("cache_entries", entries)
    .extra("cache_kb", bytes >> 10)
    .extra("checksum", sum % 1000)
    .print();
}
