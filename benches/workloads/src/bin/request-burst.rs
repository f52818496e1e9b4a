//! request-burst: a request handler that builds a tree of `--objects` small
//! blocks (`--min..=--max` bytes, skewed small) per request, reads it and
//! frees it at the end of the request; `--requests` requests per thread.
//! Thousands of blocks of each size are freed and allocated again per
//! request, more than hakmem's default per-thread bins hold.
use std::time::Instant;

use bench_workloads::services::RequestBurst;
use bench_workloads::{Args, Report, Sampler};

fn main() {
    let a = Args::from_env(
        "request-burst",
        "per request, allocate a tree of many small blocks, then free it",
    );
    let objects = a.count("objects", 20_000, "blocks per request").max(1) as usize;
    let requests = a.count("requests", 2000, "requests per thread");
    let min = a.size("min", 16, "smallest block size");
    let max = a.size("max", 256, "largest block size");
    let c = a.common(1);
    a.finish();
    assert!(min > 0 && min <= max, "bad sizes");

    let w = RequestBurst { objects, min, max };
    let start = Instant::now();
    let results = bench_workloads::run_threads(c.threads, move |t| {
        let mut rng = c.rng(t as u64);
        let mut s = c.sampler(2 * objects as u64 * requests);
        let mut tree = Vec::with_capacity(objects);
        let mut sum = 0u64;
        for _ in 0..requests {
            sum = sum.wrapping_add(w.request(&mut rng, &mut s, &mut tree));
        }
        (s, sum)
    });
    let elapsed = start.elapsed();
    let sum = results.iter().fold(0u64, |a, (_, x)| a.wrapping_add(*x));
    let samplers: Vec<Sampler> = results.into_iter().map(|(s, _)| s).collect();
    let total = samplers.iter().map(Sampler::calls).sum();
    bench_workloads::merge(
        Report::new("request-burst", c.threads, total, elapsed),
        &samplers,
    )
    .extra("requests", requests * c.threads as u64)
    .extra("checksum", sum % 1000)
    .print();
}
