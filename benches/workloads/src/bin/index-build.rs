//! index-build: an indexer. Each of `--chunks` chunks of input is read into
//! a buffer (`--chunk-min..=--chunk-max` bytes, log-uniform, so the sizes
//! vary widely from chunk to chunk), parsed front to back into one record
//! (`--rec-min..=--rec-max` bytes) per `--record-every` bytes of input,
//! which stay in the in-memory index, and its buffer is freed. The live index grows all run
//! long; freed chunk buffers rarely fit the next chunk.
use std::time::Instant;

use bench_workloads::services::IndexBuild;
use bench_workloads::{Args, Report};

fn main() {
    let a = Args::from_env(
        "index-build",
        "chunks of input in large buffers of varying sizes, parsed into a growing index of small records",
    );
    let chunks = a.count("chunks", 1500, "chunks of input");
    let chunk_min = a.size("chunk-min", 1 << 20, "smallest chunk buffer");
    let chunk_max = a.size("chunk-max", 32 << 20, "largest chunk buffer");
    let record_every = a.size("record-every", 16 << 10, "bytes of input per record");
    let rec_min = a.size("rec-min", 32, "smallest record");
    let rec_max = a.size("rec-max", 256, "largest record");
    let c = a.common(1);
    a.finish();
    assert!(
        chunk_min >= 128 && chunk_min <= chunk_max && rec_min > 0 && rec_min <= rec_max,
        "bad sizes"
    );

    let w = IndexBuild {
        chunk_min,
        chunk_max,
        record_every,
        rec_min,
        rec_max,
    };
    let mut rng = c.rng(0);
    let mut s = c.sampler(chunks * ((chunk_min + chunk_max) / 2 / record_every.max(64) + 2) as u64);
    let mut index = Vec::new();
    let start = Instant::now();
    for _ in 0..chunks {
        w.chunk(&mut rng, &mut s, &mut index);
    }
    let elapsed = start.elapsed();
    let live: usize = index.iter().map(|b| b.size()).sum();
    let line = Report::new("index-build", 1, s.calls(), elapsed)
        .samples(&s)
        .extra("chunks", chunks)
        .extra("live_kb", live / 1024)
        .line();
    for b in index {
        b.free(&mut s);
    }
    println!("{line}");
}
