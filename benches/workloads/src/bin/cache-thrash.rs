//! cache-thrash (Hoard's active false sharing test): each thread repeatedly
//! allocates a small block, writes it `--writes` times and frees it. An
//! allocator that hands neighbouring blocks of one cache line to different
//! threads makes them fight over that line.
use std::time::Instant;

use bench_workloads::{Args, Block, Report, Sampler};

fn main() {
    let a = Args::from_env(
        "cache-thrash",
        "active false sharing: threads allocate, write and free small blocks",
    );
    let iters = a.count("iters", 2_000_000, "allocations per thread");
    let size = a.size("size", 8, "block size");
    let writes = a.count("writes", 50, "passes of byte writes over each block");
    let c = a.common(2);
    a.finish();

    let start = Instant::now();
    let samplers = bench_workloads::run_threads(c.threads, move |_| {
        let mut s = c.sampler(2 * iters);
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
        Report::new("cache-thrash", samplers.len(), total, elapsed),
        &samplers,
    )
    .print();
}
