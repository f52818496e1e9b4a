//! random-mixed: random sizes in `--min..=--max` (16-1024), random frees.
//! Each thread has `--slots` slots; each step picks a random slot and frees
//! its block if it holds one, or allocates a new random-size block into it.
use std::time::Instant;

use bench_workloads::{Args, Block, Report, Sampler};

fn main() {
    let a = Args::from_env(
        "random-mixed",
        "random sizes, random frees over a table of slots",
    );
    let ops = a.count(
        "ops",
        10_000_000,
        "steps per thread (each one malloc or one free)",
    );
    let slots = a.count("slots", 8192, "slots per thread").max(1) as usize;
    let min = a.size("min", 16, "smallest block size");
    let max = a.size("max", 1024, "largest block size");
    let c = a.common(1);
    a.finish();
    assert!(min > 0 && min <= max, "bad sizes");

    let start = Instant::now();
    let samplers = bench_workloads::run_threads(c.threads, move |t| {
        let mut rng = c.rng(t as u64);
        let mut s = c.sampler(ops);
        let mut table: Vec<Option<Block>> = vec![None; slots];
        for _ in 0..ops {
            let i = rng.below(slots);
            match table[i].take() {
                Some(b) => b.free(&mut s),
                None => table[i] = Some(Block::alloc(rng.range(min, max), &mut s)),
            }
        }
        for b in table.into_iter().flatten() {
            b.free(&mut s);
        }
        s
    });
    let elapsed = start.elapsed();
    let total = samplers.iter().map(Sampler::calls).sum();
    bench_workloads::merge(
        Report::new("random-mixed", c.threads, total, elapsed),
        &samplers,
    )
    .print();
}
