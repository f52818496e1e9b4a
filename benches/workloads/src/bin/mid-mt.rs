//! mid-mt: mid-size blocks (`--min..=--max`, 8-32 KiB) on several threads
//! with cross-thread frees. Each thread replaces random blocks of its window
//! of `--window` blocks; one replacement in four swaps the victim with a
//! random slot of a table shared by all threads instead of freeing it, so
//! blocks wander to other threads, which free them later.
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bench_workloads::{Args, Block, Report, Sampler};

fn main() {
    let a = Args::from_env(
        "mid-mt",
        "mid-size blocks, several threads, cross-thread frees through a shared table",
    );
    let ops = a.count("ops", 1_000_000, "replacements per thread");
    let window = a.count("window", 64, "blocks per thread").max(1) as usize;
    let shared_slots = a.count("shared", 256, "slots of the shared table").max(1) as usize;
    let min = a.size("min", 8 << 10, "smallest block size");
    let max = a.size("max", 32 << 10, "largest block size");
    let c = a.common(2);
    a.finish();
    assert!(min >= 8 && min <= max, "bad sizes (min >= 8)");

    let shared: Arc<Vec<AtomicPtr<u8>>> = Arc::new(
        (0..shared_slots)
            .map(|_| AtomicPtr::new(std::ptr::null_mut()))
            .collect(),
    );
    let table = shared.clone();
    let start = Instant::now();
    let samplers = bench_workloads::run_threads(c.threads, move |t| {
        let mut rng = c.rng(t as u64);
        let mut s = c.sampler(2 * ops);
        let mut w: Vec<Block> = (0..window)
            .map(|_| Block::alloc(rng.range(min, max), &mut s))
            .collect();
        for _ in 0..ops {
            let v = rng.below(window);
            if rng.below(4) == 0 {
                let slot = &table[rng.below(shared_slots)];
                let got = slot.swap(w[v].as_ptr(), Ordering::AcqRel);
                w[v] = if got.is_null() {
                    Block::alloc(rng.range(min, max), &mut s)
                } else {
                    // SAFETY: the table only holds live blocks from
                    // Block::alloc (>= 8 bytes), published with Release.
                    unsafe { Block::from_raw(got) }
                };
            } else {
                w[v].free(&mut s);
                w[v] = Block::alloc(rng.range(min, max), &mut s);
            }
        }
        for b in w {
            b.free(&mut s);
        }
        s
    });
    let elapsed = start.elapsed();
    let mut rest = Sampler::disabled();
    for slot in shared.iter() {
        let p = slot.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if !p.is_null() {
            // SAFETY: the table only holds live blocks from Block::alloc
            // (>= 8 bytes); all workers are joined, so this swap owns `p`.
            unsafe { Block::from_raw(p) }.free(&mut rest);
        }
    }
    let total = samplers.iter().map(Sampler::calls).sum();
    bench_workloads::merge(Report::new("mid-mt", c.threads, total, elapsed), &samplers).print();
}
