//! phase-shift: a service that changes behaviour halfway. First it loads
//! its data (the `index-build` loop: `--chunks` chunks of input in large
//! buffers of varying sizes, parsed into an index of small records), then
//! it serves `--requests` requests on top of the loaded index (the
//! `request-burst` loop: each request builds and frees a tree of
//! `--objects` small blocks). The index stays live while it serves. The
//! best policy differs between the phases (the large cache in the first,
//! the per-thread bins in the second), so an online learner has to notice
//! the change and learn again. Reports each phase's time
//! (`load_secs`, `serve_secs`) besides the usual fields.
use std::time::Instant;

use bench_workloads::services::{IndexBuild, RequestBurst};
use bench_workloads::{Args, Report};

fn main() {
    let a = Args::from_env(
        "phase-shift",
        "load phase (large input buffers parsed into an index), then serve phase (request trees of small blocks)",
    );
    let chunks = a.count("chunks", 800, "chunks of input in the load phase");
    let chunk_min = a.size("chunk-min", 1 << 20, "smallest chunk buffer");
    let chunk_max = a.size("chunk-max", 32 << 20, "largest chunk buffer");
    let record_every = a.size("record-every", 16 << 10, "bytes of input per record");
    let requests = a.count("requests", 6000, "requests in the serve phase");
    let objects = a.count("objects", 20_000, "blocks per request").max(1) as usize;
    let c = a.common(1);
    a.finish();
    assert!(chunk_min >= 128 && chunk_min <= chunk_max, "bad sizes");

    let load = IndexBuild {
        chunk_min,
        chunk_max,
        record_every,
        rec_min: 32,
        rec_max: 256,
    };
    let serve = RequestBurst {
        objects,
        min: 16,
        max: 256,
    };
    let mut rng = c.rng(0);
    let per_chunk = (chunk_min + chunk_max) / 2 / record_every.max(64) + 2;
    let mut s = c.sampler(chunks * per_chunk as u64 + 2 * requests * objects as u64);
    let mut index = Vec::new();
    let start = Instant::now();
    for _ in 0..chunks {
        load.chunk(&mut rng, &mut s, &mut index);
    }
    let load_secs = start.elapsed().as_secs_f64();
    let mut tree = Vec::with_capacity(objects);
    let mut sum = 0u64;
    for _ in 0..requests {
        sum = sum.wrapping_add(serve.request(&mut rng, &mut s, &mut tree));
    }
    let elapsed = start.elapsed();
    let live: usize = index.iter().map(|b| b.size()).sum();
    let line = Report::new("phase-shift", 1, s.calls(), elapsed)
        .samples(&s)
        .extra("load_secs", format!("{load_secs:.3}"))
        .extra(
            "serve_secs",
            format!("{:.3}", elapsed.as_secs_f64() - load_secs),
        )
        .extra("live_kb", live / 1024)
        .extra("checksum", sum % 1000)
        .line();
    for b in index {
        b.free(&mut s);
    }
    println!("{line}");
}
