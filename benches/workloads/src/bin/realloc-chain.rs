//! realloc-chain: grow one block from `--start` (16 B) to `--max` (64 MiB)
//! by `--factor` (1.5x) per realloc, writing every new page, then free it;
//! repeated `--iters` times. Reports the minor page faults per chain
//! (`faults_per_iter`) and the reallocs per chain.
use std::time::Instant;

use bench_workloads::{Args, Block, Report};

fn main() {
    let a = Args::from_env(
        "realloc-chain",
        "grow a block by realloc from 16 B to 64 MiB by 1.5x, repeatedly",
    );
    let iters = a.count("iters", 20, "chains");
    let first = a.size("start", 16, "first size");
    let max = a.size("max", 64 << 20, "final size");
    let factor = a.value("factor", 1.5f64, "growth factor per realloc");
    let c = a.common(1);
    a.finish();
    assert!(factor > 1.0 && first >= 8 && first <= max, "bad parameters");

    let steps = {
        let (mut n, mut size) = (0u64, first);
        while size < max {
            size = ((size as f64 * factor) as usize).clamp(size + 1, max);
            n += 1;
        }
        n
    };
    let mut s = c.sampler(iters * (steps + 2));
    let faults0 = bench_workloads::minflt();
    let start = Instant::now();
    for _ in 0..iters {
        let mut b = Block::alloc(first, &mut s);
        while b.size() < max {
            let next = ((b.size() as f64 * factor) as usize).clamp(b.size() + 1, max);
            b = b.realloc(next, &mut s);
        }
        b.free(&mut s);
    }
    let elapsed = start.elapsed();
    let faults = bench_workloads::minflt() - faults0;
    Report::new("realloc-chain", 1, s.calls(), elapsed)
        .samples(&s)
        .extra("reallocs_per_iter", steps)
        .extra(
            "faults_per_iter",
            format!("{:.1}", faults as f64 / iters.max(1) as f64),
        )
        .print();
}
