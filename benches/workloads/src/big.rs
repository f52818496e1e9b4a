//! The large-block workloads `json`, `mir`, `vm` and `mixed`: each iteration
//! allocates a batch of large blocks (64 KiB x1000, 256 KiB x100, 2 MiB x10,
//! or all three shuffled together), writes every page, then frees the batch
//! in allocation order.
use std::time::Instant;

use crate::{Args, Block, Report};

/// Runs the workload `name` whose batch is `groups` of (size, count).
pub fn main(name: &'static str, about: &'static str, groups: &[(usize, u64)], default_iters: u64) {
    let a = Args::from_env(name, about);
    let iters = a.count("iters", default_iters, "batches");
    let scale = a.value("scale", 1.0f64, "multiply the block counts");
    let c = a.common(1);
    a.finish();

    let mut sizes: Vec<usize> = Vec::new();
    for &(size, count) in groups {
        let n = ((count as f64 * scale).round() as usize).max(1);
        sizes.extend(std::iter::repeat_n(size, n));
    }
    let mut rng = c.rng(0);
    // Fisher-Yates: a fixed interleaving of the groups.
    for i in (1..sizes.len()).rev() {
        sizes.swap(i, rng.below(i + 1));
    }
    let mut s = c.sampler(2 * iters * sizes.len() as u64);
    let mut batch: Vec<Block> = Vec::with_capacity(sizes.len());
    let start = Instant::now();
    for _ in 0..iters {
        for &size in &sizes {
            batch.push(Block::alloc(size, &mut s));
        }
        for b in batch.drain(..) {
            b.free(&mut s);
        }
    }
    let elapsed = start.elapsed();
    let bytes: usize = sizes.iter().sum();
    Report::new(name, 1, s.calls(), elapsed)
        .samples(&s)
        .extra("batch_kb", bytes / 1024)
        .print();
}
