//! cache-scratch (Hoard's passive false sharing test): the main thread
//! allocates one small block per thread (neighbours in memory) and hands one
//! to each thread, which frees it; then each thread repeatedly allocates a
//! block of the same size, writes it `--writes` times and frees it. An
//! allocator that gives the freed neighbour blocks back to different threads
//! makes them write to one cache line.
use std::time::Instant;

use bench_workloads::{Args, Block, Report, Sampler};

fn main() {
    let a = Args::from_env(
        "cache-scratch",
        "passive false sharing: threads reuse small blocks the main thread allocated side by side",
    );
    let iters = a.count("iters", 2_000_000, "allocations per thread");
    let size = a.size("size", 8, "block size");
    let writes = a.count("writes", 50, "passes of byte writes over each block");
    let c = a.common(2);
    a.finish();

    let mut warm = Sampler::disabled();
    let handed: Vec<Block> = (0..c.threads)
        .map(|_| Block::alloc(size, &mut warm))
        .collect();
    let handed = std::sync::Mutex::new(handed);
    let handed = std::sync::Arc::new(handed);
    let start = Instant::now();
    let samplers = bench_workloads::run_threads(c.threads, move |t| {
        let mut s = c.sampler(2 * iters + 1);
        let first = handed.lock().unwrap_or_else(|e| e.into_inner())[t];
        first.free(&mut s);
        for _ in 0..iters {
            let b = Block::alloc(size, &mut s);
            b.hammer(writes);
            b.free(&mut s);
        }
        s
    });
    let elapsed = start.elapsed();
    let total = samplers.iter().map(Sampler::calls).sum();
    bench_workloads::merge(
        Report::new("cache-scratch", samplers.len(), total, elapsed),
        &samplers,
    )
    .print();
}
