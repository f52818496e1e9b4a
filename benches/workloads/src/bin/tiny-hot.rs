//! tiny-hot: the allocator's fast path. A ring of `--live` blocks of
//! `--size` bytes; each iteration frees the oldest block and allocates a new
//! one in its place (one malloc+free pair per iteration).
//!
//! `--raw` drops the harness (call counting, block tags and checks): the loop
//! calls `std::alloc::dealloc` and `std::alloc::alloc` directly and writes
//! one word into each new block, which is what `bench-matrix --callgrind`
//! measures. `--baseline` runs the same loop without the allocator calls, to
//! measure the loop's own cost.
use std::alloc::{alloc, dealloc, Layout};
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
    let raw = a.flag(
        "raw",
        "call std::alloc directly, without the harness's checks and counters",
    );
    let c = a.common(1);
    a.finish();

    if raw {
        raw_loop(size, live, iters, baseline);
        return;
    }
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

/// The bare loop: free the oldest block, allocate a new one, write a word.
fn raw_loop(size: usize, live: usize, iters: u64, baseline: bool) {
    let layout = Layout::from_size_align(size.max(8), 8).expect("layout");
    // SAFETY: the layout has a non-zero size.
    let mut ring: Vec<*mut u8> = (0..live).map(|_| unsafe { alloc(layout) }).collect();
    assert!(ring.iter().all(|p| !p.is_null()), "out of memory");
    let start = Instant::now();
    let mut k = 0;
    for i in 0..iters {
        let p = if baseline {
            std::hint::black_box(ring[k])
        } else {
            // SAFETY: ring[k] is a live block of `layout`, freed once and
            // replaced at once; the new block is checked for null.
            unsafe {
                dealloc(ring[k], layout);
                let p = alloc(layout);
                if p.is_null() {
                    std::process::abort();
                }
                p
            }
        };
        // SAFETY: p is a live block of at least 8 bytes, 8-aligned.
        unsafe { p.cast::<u64>().write_volatile(i) };
        ring[k] = p;
        k += 1;
        if k == live {
            k = 0;
        }
    }
    let elapsed = start.elapsed();
    for p in ring {
        // SAFETY: each block is live and freed once.
        unsafe { dealloc(p, layout) };
    }
    Report::new(
        "tiny-hot",
        1,
        if baseline { 0 } else { 2 * iters }.max(1),
        elapsed,
    )
    .extra("size", size)
    .extra("live", live)
    .extra("iters", iters)
    .extra("mode", if baseline { "raw-baseline" } else { "raw" })
    .print();
}
