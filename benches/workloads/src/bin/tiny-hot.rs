//! tiny-hot: the allocator's fast path. A ring of `--live` blocks of
//! `--size` bytes; each iteration frees the oldest block and allocates a new
//! one in its place (one malloc+free pair per iteration).
//!
//! `--baseline` runs the same loop (the same writes and checks) without the
//! allocator calls, to measure the loop's own cost (used by
//! `bench-matrix --callgrind`).
use std::time::Instant;

use bench_workloads::{Args, Block, Report, Sampler};

fn main() {
    let a = Args::from_env(
        "tiny-hot",
        "tight malloc/free loop of one small size with a ring of live blocks",
    );
    let size = a.size("size", 32, "block size");
    let live = a
        .count("live", 100, "blocks kept live (ring length)")
        .max(1) as usize;
    let iters = a.count("iters", 20_000_000, "malloc+free pairs");
    let baseline = a.flag("baseline", "skip the allocator calls (loop overhead only)");
    let c = a.common(1);
    a.finish();

    let mut warm = Sampler::disabled();
    let mut ring: Vec<Block> = (0..live).map(|_| Block::alloc(size, &mut warm)).collect();
    let mut s = c.sampler(2 * iters);
    let start = Instant::now();
    let mut k = 0;
    for _ in 0..iters {
        if baseline {
            let b = std::hint::black_box(ring[k]);
            b.check();
            b.touch(0);
        } else {
            ring[k].free(&mut s);
            ring[k] = Block::alloc(size, &mut s);
        }
        k += 1;
        if k == live {
            k = 0;
        }
    }
    let elapsed = start.elapsed();
    for b in ring {
        b.free(&mut warm);
    }
    let ops = if baseline { 2 * iters } else { s.calls() };
    Report::new("tiny-hot", 1, ops, elapsed)
        .samples(&s)
        .extra("size", size)
        .extra("live", live)
        .extra("iters", iters)
        .print();
}
