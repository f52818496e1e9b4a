//! query-batches: an analytical query engine. Each query allocates one
//! buffer per column (`--rows` rows, ±`--jitter`‰ from query to query,
//! times the column's width in bytes, `--widths`), writes every cache line
//! of them (scan and results), and frees them at the end of the query.
//! A query's buffers total about `rows × sum(widths)` bytes (about 200 MiB
//! by default): the next query needs the same sizes again.
use std::time::Instant;

use bench_workloads::services::QueryBatches;
use bench_workloads::{Args, Report};

fn main() {
    let a = Args::from_env(
        "query-batches",
        "per query, allocate, scan and free one large buffer per column",
    );
    let queries = a.count("queries", 100, "queries");
    let rows = a.count("rows", 1_000_000, "rows per query (average)") as usize;
    let jitter = a
        .count("jitter", 100, "row count variation, per mille either way")
        .min(900) as usize;
    let widths: String = a.value(
        "widths",
        "8,8,8,4,4,4,4,16,32,2,2,1,1,8,16,64,16,8".to_string(),
        "bytes per row of each column, comma-separated",
    );
    let c = a.common(1);
    a.finish();
    let widths: Vec<usize> = widths
        .split(',')
        .map(|w| w.trim().parse::<usize>().expect("--widths: numbers"))
        .filter(|&w| w > 0)
        .collect();
    assert!(!widths.is_empty() && rows > 0, "bad columns");

    let w = QueryBatches {
        widths,
        rows,
        jitter,
    };
    let mut rng = c.rng(0);
    let mut s = c.sampler(2 * queries * w.widths.len() as u64);
    let mut cols = Vec::with_capacity(w.widths.len());
    let start = Instant::now();
    for _ in 0..queries {
        w.query(&mut rng, &mut s, &mut cols);
    }
    let elapsed = start.elapsed();
    Report::new("query-batches", 1, s.calls(), elapsed)
        .samples(&s)
        .extra("queries", queries)
        .extra("query_mib", w.bytes() >> 20)
        .print();
}
