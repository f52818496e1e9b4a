//! Markdown tables and CSV files of the summarised matrix.
use std::fmt::Write as _;

use crate::summary::{Cell, Matrix, Run};

/// Context printed above the tables.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub title: String,
    pub lines: Vec<String>,
    pub notes: Vec<String>,
}

/// `v` with three significant digits and a k/M/G suffix.
pub fn si(v: f64) -> String {
    let (x, suffix) = match v.abs() {
        a if a >= 1e9 => (v / 1e9, "G"),
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e3 => (v / 1e3, "k"),
        _ => (v, ""),
    };
    format!("{}{suffix}", sig3(x))
}

fn sig3(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 || a == 0.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// A duration in nanoseconds as `3.5ns`, `513ns`, `12.2µs`, `1.79ms`.
pub fn ns(v: f64) -> String {
    if v >= 1e6 {
        format!("{}ms", sig3(v / 1e6))
    } else if v >= 1e3 {
        format!("{}µs", sig3(v / 1e3))
    } else if v >= 100.0 {
        format!("{v:.0}ns")
    } else {
        format!("{v:.1}ns")
    }
}

/// A ratio as `0.51×`.
pub fn ratio(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.0}×")
    } else {
        format!("{r:.2}×")
    }
}

fn failed(cell: &Cell) -> Option<String> {
    match cell {
        Cell::Failed {
            reason,
            failed,
            runs,
        } => Some(format!("**FAILED** ({reason}; {failed}/{runs} runs)")),
        Cell::Missing => Some("–".into()),
        Cell::Ok { .. } => None,
    }
}

fn mark(cell: &Cell) -> &'static str {
    match cell {
        Cell::Ok { note: Some(_), .. } => " †",
        _ => "",
    }
}

fn header(out: &mut String, first: &str, m: &Matrix) {
    let _ = writeln!(out, "| {first} | {} |", m.allocators.join(" | "));
    let _ = writeln!(out, "|---|{}", "--:|".repeat(m.allocators.len()));
}

/// A table with one row per workload and one formatted cell per allocator.
fn table(out: &mut String, m: &Matrix, fmt: &dyn Fn(usize, usize, &Cell) -> String) {
    header(out, "workload", m);
    for (w, name) in m.workloads.iter().enumerate() {
        let cells: Vec<String> = m.cells[w]
            .iter()
            .enumerate()
            .map(|(a, c)| failed(c).unwrap_or_else(|| format!("{}{}", fmt(w, a, c), mark(c))))
            .collect();
        let _ = writeln!(out, "| {name} | {} |", cells.join(" | "));
    }
}

/// Geometric mean of the per-workload ratios of allocator `a` (over the rows
/// where both it and the reference succeeded), and how many rows that is.
pub fn geomean_ratio(m: &Matrix, a: usize, key: &str) -> Option<(f64, usize)> {
    let logs: Vec<f64> = (0..m.workloads.len())
        .filter_map(|w| m.ratio(w, a, key))
        .filter(|r| *r > 0.0)
        .map(f64::ln)
        .collect();
    (!logs.is_empty()).then(|| {
        (
            (logs.iter().sum::<f64>() / logs.len() as f64).exp(),
            logs.len(),
        )
    })
}

/// Workload-specific fields shown in the last table.
const EXTRA_METRICS: &[(&str, &str)] = &[
    ("rss_over_live", "RSS growth / live bytes"),
    ("rss_growth_kb", "RSS growth (MiB)"),
    ("live_kb", "live (MiB)"),
    ("faults_per_iter", "minor faults per chain"),
    ("kept_kb", "RSS kept after idling (MiB)"),
];

/// The whole Markdown report.
pub fn markdown(m: &Matrix, ctx: &Context) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# {}\n", ctx.title);
    for l in &ctx.lines {
        let _ = writeln!(o, "- {l}");
    }
    let reps = m
        .cells
        .iter()
        .flatten()
        .map(|c| match c {
            Cell::Ok { runs, .. } | Cell::Failed { runs, .. } => *runs,
            Cell::Missing => 0,
        })
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        o,
        "\n## Throughput: allocator calls per second\n\nMedian of {reps} run(s), [min–max], and the ratio of the median to mimalloc's (higher is better).\n"
    );
    table(&mut o, m, &|w, a, c| {
        let s = c.stat("ops_per_sec").expect("ok cells have ops_per_sec");
        let r = m
            .ratio(w, a, "ops_per_sec")
            .map(|r| format!(" {}", ratio(r)))
            .unwrap_or_default();
        format!("{} [{}–{}]{r}", si(s.median), si(s.min), si(s.max))
    });
    let geo: Vec<String> = (0..m.allocators.len())
        .map(|a| match geomean_ratio(m, a, "ops_per_sec") {
            Some((g, n)) if n == m.workloads.len() => format!("**{}**", ratio(g)),
            Some((g, n)) => format!("**{}** ({n} rows)", ratio(g)),
            None => "–".into(),
        })
        .collect();
    let _ = writeln!(
        o,
        "| *geometric mean of the ratios* | {} |",
        geo.join(" | ")
    );

    let _ = writeln!(o, "\n## Peak RSS\n\nMedian peak resident set in MiB, and the ratio to mimalloc's (lower is better).\n");
    table(&mut o, m, &|w, a, c| {
        let kb = c.median("peak_rss_kb").unwrap_or(0.0);
        let r = m
            .ratio(w, a, "peak_rss_kb")
            .map(|r| format!(" ({})", ratio(r)))
            .unwrap_or_default();
        format!("{:.1}{r}", kb / 1024.0)
    });

    let _ = writeln!(
        o,
        "\n## Latency per call\n\nP50 / P99 of sampled malloc, free and realloc calls (net of the clock's own cost), median over runs.\n"
    );
    table(
        &mut o,
        m,
        &|_, _, c| match (c.median("p50_ns"), c.median("p99_ns")) {
            (Some(p50), Some(p99)) => format!("{} / {}", ns(p50), ns(p99)),
            _ => "n/a".into(),
        },
    );

    let _ = writeln!(
        o,
        "\n## Minor page faults\n\nMedian per run (whole process).\n"
    );
    table(&mut o, m, &|_, _, c| {
        c.median("minflt").map(si).unwrap_or_else(|| "n/a".into())
    });

    let mut extra = String::new();
    for (w, name) in m.workloads.iter().enumerate() {
        for (key, label) in EXTRA_METRICS {
            if !m.cells[w].iter().any(|c| c.median(key).is_some()) {
                continue;
            }
            let cells: Vec<String> = m.cells[w]
                .iter()
                .map(|c| match c.median(key) {
                    Some(v) if key.ends_with("_kb") => format!("{:.1}", v / 1024.0),
                    Some(v) if *key == "rss_over_live" => format!("{v:.2}"),
                    Some(v) => si(v),
                    None => failed(c).unwrap_or_else(|| "n/a".into()),
                })
                .collect();
            let _ = writeln!(extra, "| {name} | {label} | {} |", cells.join(" | "));
        }
    }
    if !extra.is_empty() {
        let _ = writeln!(o, "\n## Workload metrics\n");
        let _ = writeln!(o, "| workload | metric | {} |", m.allocators.join(" | "));
        let _ = writeln!(o, "|---|---|{}", "--:|".repeat(m.allocators.len()));
        o.push_str(&extra);
    }

    let mut notes: Vec<String> = ctx.notes.clone();
    for (w, row) in m.cells.iter().enumerate() {
        for (a, c) in row.iter().enumerate() {
            match c {
                Cell::Ok { note: Some(n), .. } => {
                    let n = format!("† {}: {n}", m.allocators[a]);
                    if !notes.contains(&n) {
                        notes.push(n);
                    }
                }
                Cell::Failed {
                    reason,
                    failed,
                    runs,
                } => notes.push(format!(
                    "{} under {} failed {failed} of {runs} runs: {reason}",
                    m.workloads[w], m.allocators[a]
                )),
                _ => {}
            }
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(o, "\n## Notes\n");
        for n in notes {
            let _ = writeln!(o, "- {n}");
        }
    }
    o
}

/// One CSV record with its line end, fields quoted where needed (RFC 4180,
/// by the `csv` crate).
pub fn csv_record<I, T>(fields: I) -> String
where
    I: IntoIterator<Item = T>,
    T: AsRef<[u8]>,
{
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(fields)
        .expect("writing CSV to memory cannot fail");
    let bytes = w.into_inner().expect("flushing CSV to memory cannot fail");
    String::from_utf8(bytes).expect("the fields are UTF-8")
}

fn num(v: Option<f64>) -> String {
    v.map(|x| {
        if x.fract() == 0.0 && x.abs() < 1e15 {
            format!("{x:.0}")
        } else {
            format!("{x:.6}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string()
        }
    })
    .unwrap_or_default()
}

/// `results.csv`: one row per workload and allocator.
pub fn results_csv(m: &Matrix) -> String {
    let mut o = String::from(
        "workload,allocator,status,runs,failed_runs,reason,ops_per_sec_median,ops_per_sec_min,ops_per_sec_max,ratio_vs_mimalloc,peak_rss_kb_median,peak_rss_ratio_vs_mimalloc,minflt_median,p50_ns,p95_ns,p99_ns,extra,note\n",
    );
    for (w, name) in m.workloads.iter().enumerate() {
        for (a, c) in m.cells[w].iter().enumerate() {
            let alloc = &m.allocators[a];
            let row: Vec<String> = match c {
                Cell::Ok { stats, runs, note } => {
                    let s = c.stat("ops_per_sec");
                    let extra: Vec<String> = EXTRA_METRICS
                        .iter()
                        .filter_map(|(k, _)| {
                            stats
                                .get(*k)
                                .map(|v| format!("{k}={}", num(Some(v.median))))
                        })
                        .collect();
                    vec![
                        name.clone(),
                        alloc.clone(),
                        "ok".into(),
                        runs.to_string(),
                        "0".into(),
                        String::new(),
                        num(s.map(|s| s.median)),
                        num(s.map(|s| s.min)),
                        num(s.map(|s| s.max)),
                        num(m.ratio(w, a, "ops_per_sec")),
                        num(c.median("peak_rss_kb")),
                        num(m.ratio(w, a, "peak_rss_kb")),
                        num(c.median("minflt")),
                        num(c.median("p50_ns")),
                        num(c.median("p95_ns")),
                        num(c.median("p99_ns")),
                        extra.join(";"),
                        note.clone().unwrap_or_default(),
                    ]
                }
                Cell::Failed {
                    reason,
                    failed,
                    runs,
                } => {
                    let mut v = vec![
                        name.clone(),
                        alloc.clone(),
                        "failed".into(),
                        runs.to_string(),
                        failed.to_string(),
                        reason.clone(),
                    ];
                    v.resize(18, String::new());
                    v
                }
                Cell::Missing => {
                    let mut v = vec![name.clone(), alloc.clone(), "missing".into()];
                    v.resize(18, String::new());
                    v
                }
            };
            o.push_str(&csv_record(&row));
        }
    }
    o
}

/// Header of `runs.csv`.
pub const RUNS_HEADER: &str =
    "workload,allocator,rep,status,error,wall_secs,ops,secs,ops_per_sec,p50_ns,p95_ns,p99_ns,peak_rss_kb,minflt,malloc_lib,record\n";

/// One row of `runs.csv`.
pub fn runs_csv_row(r: &Run) -> String {
    let (status, error, rec) = match &r.result {
        Ok(rec) => ("ok", String::new(), Some(rec)),
        Err(e) => ("failed", e.clone(), None),
    };
    let f = |k: &str| rec.and_then(|x| x.text(k)).unwrap_or("").to_string();
    let record = rec
        .map(|x| {
            x.fields
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let row = [
        r.workload.clone(),
        r.allocator.clone(),
        r.rep.to_string(),
        status.into(),
        error,
        format!("{:.3}", r.wall_secs),
        f("ops"),
        f("secs"),
        f("ops_per_sec"),
        f("p50_ns"),
        f("p95_ns"),
        f("p99_ns"),
        f("peak_rss_kb"),
        f("minflt"),
        f("malloc_lib"),
        record,
    ];
    csv_record(&row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::summarise;
    use crate::summary::tests::run;

    fn matrix() -> Matrix {
        let mut runs = Vec::new();
        for (v_sys, v_mi) in [(10e6, 20e6), (12e6, 22e6), (11e6, 21e6)] {
            runs.push(run("larson", "system", Some(v_sys)));
            runs.push(run("larson", "mimalloc", Some(v_mi)));
            runs.push(run("tiny-hot", "system", Some(v_sys * 10.0)));
            runs.push(run("tiny-hot", "mimalloc", Some(v_mi * 10.0)));
        }
        runs.push(run("tiny-hot", "hakmem", None));
        let mut noted = run("larson", "hakmem", Some(5e6));
        noted.note = Some("not interposed".into());
        runs.push(noted);
        summarise(
            &["larson".into(), "tiny-hot".into()],
            &["system".into(), "hakmem".into(), "mimalloc".into()],
            &runs,
        )
    }

    #[test]
    fn number_formats() {
        assert_eq!(si(18_240_681.0), "18.2M");
        assert_eq!(si(154_187_394.0), "154M");
        assert_eq!(si(1442.0), "1.44k");
        assert_eq!(si(359.0), "359");
        assert_eq!(si(2.5e9), "2.50G");
        assert_eq!(ns(3.5), "3.5ns");
        assert_eq!(ns(513.0), "513ns");
        assert_eq!(ns(12_186.2), "12.2µs");
        assert_eq!(ns(1_786_684.6), "1.79ms");
        assert_eq!(ratio(0.5123), "0.51×");
        assert_eq!(ratio(12.3), "12×");
    }

    #[test]
    fn markdown_shows_medians_ranges_ratios_failures_and_notes() {
        let md = markdown(
            &matrix(),
            &Context {
                title: "t".into(),
                lines: vec!["reps: 3".into()],
                notes: vec!["tcmalloc skipped".into()],
            },
        );
        assert!(
            md.contains("| workload | system | hakmem | mimalloc |"),
            "{md}"
        );
        assert!(md.contains("| larson | 11.0M [10.0M–12.0M] 0.52× | 5.00M [5.00M–5.00M] 0.24× † | 21.0M [20.0M–22.0M] 1.00× |"), "{md}");
        assert!(
            md.contains("| tiny-hot | 110M [100M–120M] 0.52× | **FAILED** (SIGSEGV; 1/1 runs) |"),
            "{md}"
        );
        // Peak RSS is 2x ops_per_sec in KiB in the fixture.
        assert!(md.contains("| larson | 21484.4 (0.52×) |"), "{md}");
        assert!(
            md.contains(
                "| *geometric mean of the ratios* | **0.52×** | **0.24×** (1 rows) | **1.00×** |"
            ),
            "{md}"
        );
        assert!(md.contains("- † hakmem: not interposed"), "{md}");
        assert!(
            md.contains("- tiny-hot under hakmem failed 1 of 1 runs: SIGSEGV"),
            "{md}"
        );
        assert!(md.contains("- tcmalloc skipped"), "{md}");
        assert!(md.contains("n/a"), "latency NA is shown as n/a: {md}");
    }

    #[test]
    fn csv_has_one_row_per_cell_and_quotes() {
        let csv = results_csv(&matrix());
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 1 + 2 * 3);
        let cols = lines[0].split(',').count();
        assert!(lines.iter().all(|l| l.split(',').count() == cols), "{csv}");
        assert!(
            lines[1].starts_with("larson,system,ok,3,0,,11000000,10000000,12000000,0.52381,"),
            "{}",
            lines[1]
        );
        assert!(lines
            .iter()
            .any(|l| l.starts_with("tiny-hot,hakmem,failed,1,1,SIGSEGV,")));
        assert_eq!(
            csv_record(["a,b", "say \"x\"", "two\nlines", "plain", ""]),
            "\"a,b\",\"say \"\"x\"\"\",\"two\nlines\",plain,\n"
        );
        let row = runs_csv_row(&run("w", "a", None));
        assert!(row.starts_with("w,a,0,failed,SIGSEGV,0.100,"), "{row}");
        assert_eq!(
            row.trim_end().split(',').count(),
            RUNS_HEADER.trim_end().split(',').count()
        );
    }
}
