//! fragmentation: allocate `--blocks` blocks of many sizes (`--min..=--max`),
//! free a random 90% of them, then allocate larger blocks
//! (`--large-min..=--large-max`) until the live bytes are back where they
//! were. Reports the resident set growth against the live bytes at the end
//! (`rss_growth_kb`, `live_kb`, `rss_over_live`; 1.0 would be perfect reuse).
use std::time::Instant;

use bench_workloads::{Args, Block, Report};

fn main() {
    let a = Args::from_env(
        "fragmentation",
        "many sizes, free a random 90%, then larger blocks; RSS against live bytes",
    );
    let blocks = a.count("blocks", 400_000, "blocks of the first phase") as usize;
    let min = a.size("min", 16, "smallest first-phase size");
    let max = a.size("max", 1024, "largest first-phase size");
    let lmin = a.size("large-min", 2048, "smallest third-phase size");
    let lmax = a.size("large-max", 8192, "largest third-phase size");
    let free_pct = a
        .count("free-percent", 90, "percentage freed in the second phase")
        .min(100);
    let c = a.common(1);
    a.finish();
    assert!(
        min > 0 && min <= max && lmin > 0 && lmin <= lmax,
        "bad sizes"
    );

    let mut rng = c.rng(0);
    let mut s = c.sampler(3 * blocks as u64);
    let mut live: Vec<Option<Block>> = Vec::with_capacity(blocks * 2);
    // Touch the table before measuring the baseline so that it is included.
    live.resize(blocks * 2, None);
    live.truncate(0);
    let rss0 = bench_workloads::current_rss_kb();

    let start = Instant::now();
    let mut live_bytes = 0usize;
    for _ in 0..blocks {
        let b = Block::alloc(rng.range(min, max), &mut s);
        live_bytes += b.size();
        live.push(Some(b));
    }
    let target = live_bytes;
    for slot in live.iter_mut() {
        if rng.below(100) < free_pct as usize {
            if let Some(b) = slot.take() {
                live_bytes -= b.size();
                b.free(&mut s);
            }
        }
    }
    while live_bytes < target {
        let b = Block::alloc(rng.range(lmin, lmax), &mut s);
        live_bytes += b.size();
        live.push(Some(b));
    }
    let elapsed = start.elapsed();
    let rss = bench_workloads::current_rss_kb();
    let growth = rss.saturating_sub(rss0);
    let live_kb = (live_bytes / 1024) as u64;
    let line = Report::new("fragmentation", 1, s.calls(), elapsed)
        .samples(&s)
        .extra("rss_kb", rss)
        .extra("rss_growth_kb", growth)
        .extra("live_kb", live_kb)
        .extra(
            "rss_over_live",
            format!("{:.3}", growth as f64 / live_kb.max(1) as f64),
        )
        .line();
    for b in live.into_iter().flatten() {
        b.free(&mut s);
    }
    println!("{line}");
}
