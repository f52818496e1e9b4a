//! large-working-set: a working set of `--mib` MiB of blocks of
//! `--min..=--max` bytes, replaced at random positions: every step misses the
//! caches and the TLB, so the allocator's own metadata accesses count.
use std::time::Instant;

use bench_workloads::{Args, Block, Report, Sampler};

fn main() {
    let a = Args::from_env(
        "large-working-set",
        "random replacements in a working set much larger than the caches",
    );
    let mib = a.size("mib", 256, "working set in MiB (live bytes)");
    let ops = a.count("ops", 5_000_000, "replacements per thread");
    let min = a.size("min", 64, "smallest block size");
    let max = a.size("max", 1024, "largest block size");
    let c = a.common(1);
    a.finish();
    assert!(min > 0 && min <= max, "bad sizes");

    let per_thread = (mib << 20) / c.threads;
    let slots = (per_thread / ((min + max) / 2)).max(1);
    let start = Instant::now();
    let samplers = bench_workloads::run_threads(c.threads, move |t| {
        let mut rng = c.rng(t as u64);
        let mut warm = Sampler::disabled();
        let mut set: Vec<Block> = (0..slots)
            .map(|_| Block::alloc(rng.range(min, max), &mut warm))
            .collect();
        let mut s = c.sampler(2 * ops);
        let t0 = Instant::now();
        for _ in 0..ops {
            let v = rng.below(slots);
            set[v].free(&mut s);
            set[v] = Block::alloc(rng.range(min, max), &mut s);
        }
        let busy = t0.elapsed();
        for b in set {
            b.free(&mut warm);
        }
        (s, busy)
    });
    let total_elapsed = start.elapsed();
    // Timed region: the replacement phase (the slowest thread's).
    let elapsed = samplers
        .iter()
        .map(|(_, d)| *d)
        .max()
        .unwrap_or(total_elapsed);
    let samplers: Vec<Sampler> = samplers.into_iter().map(|(s, _)| s).collect();
    let total = samplers.iter().map(Sampler::calls).sum();
    bench_workloads::merge(
        Report::new("large-working-set", c.threads, total, elapsed),
        &samplers,
    )
    .extra("live_mib", mib)
    .extra("blocks", slots * c.threads)
    .print();
}
