use super::*;
use crate::record::parse_line;

fn run(w: &str, col: &str, rep: usize, ops: f64, rss: f64) -> Run {
    Run {
        workload: w.into(),
        allocator: col.into(),
        rep,
        result: Ok(parse_line(&format!(
            "HAKMEM_BENCH workload={w} ops=10 secs=1 ops_per_sec={ops} peak_rss_kb={rss} minflt=1"
        ))
        .unwrap()),
        note: None,
        wall_secs: 1.0,
    }
}

fn learned(converged: Option<f64>, diff: &[&str]) -> Extra {
    Extra {
        learner: Some(Summary {
            converged_at: converged,
            converged_in: converged,
            accepted: 1,
            kept: 1,
            ..Summary::default()
        }),
        learned: Some(diff.iter().map(|s| s.to_string()).collect()),
    }
}

fn rows() -> Vec<Row> {
    let mut runs = Vec::new();
    let mut extras = Vec::new();
    // special: learning +30% throughput, -20% RSS
    for rep in 0..3 {
        let b = 100.0 + rep as f64;
        for (col, ops, rss, x) in [
            ("balanced", b, 1000.0, Extra::default()),
            (
                "learning",
                b * 1.3,
                800.0,
                learned(
                    if rep < 2 {
                        Some(4.0 + rep as f64)
                    } else {
                        None
                    },
                    &["large_cache_budget 64M→16M"],
                ),
            ),
            ("reloaded", b * 1.4, 790.0, Extra::default()),
            ("mimalloc", b * 2.0, 1200.0, Extra::default()),
        ] {
            runs.push(run("s", col, rep, ops, rss));
            extras.push(x);
        }
    }
    let special = row("s", true, &runs, &extras);
    // rest: learning loses 5% throughput; 10% more RSS, but 100 KiB
    let mut runs = Vec::new();
    let mut extras = Vec::new();
    for rep in 0..3 {
        for (col, ops) in [
            ("balanced", 100.0),
            ("learning", 95.0),
            ("reloaded", 100.0),
            ("mimalloc", 100.0),
        ] {
            let rss = if col == "learning" { 1100.0 } else { 1000.0 };
            runs.push(run("r", col, rep, ops, rss));
            extras.push(if col == "learning" {
                learned(Some(2.0), &[])
            } else {
                Extra::default()
            });
        }
    }
    let rest = row("r", false, &runs, &extras);
    vec![special, rest]
}

#[test]
fn rows_pair_repetitions_and_summarise_the_learner() {
    let r = &rows()[0];
    assert!((r.ratio(1, "ops_per_sec").unwrap() - 1.3).abs() < 1e-9);
    assert!((r.ratio(1, "peak_rss_kb").unwrap() - 0.8).abs() < 1e-9);
    assert_eq!(r.paired[1].0.len(), 3);
    assert!(r.paired[1].0.iter().all(|x| (x - 1.3).abs() < 1e-9));
    assert_eq!(r.paired[0].0, [1.0, 1.0, 1.0]);
    assert_eq!(r.converged, [4.0, 5.0]);
    assert_eq!(r.learning_runs, 3);
    assert_eq!(r.changes, (3, 3, 0));
    assert_eq!(r.learned, [("large_cache_budget 64M→16M".to_string(), 3)]);
    assert_eq!(rows()[1].learned, [("(default)".to_string(), 3)]);
}

#[test]
fn verdicts_follow_the_targets() {
    let rows = rows();
    assert_eq!(
        verdict(&rows[0]),
        Verdict {
            gain: true,
            converged: true,
            loss: false
        }
    );
    assert!(verdict(&rows[1]).loss);
    assert!(!verdict(&rows[1]).gain);
    // 10% more RSS alone is no loss when it is 100 KiB
    let mut r = rows[1].clone();
    for c in &mut r.cells {
        if let Cell::Ok { stats, .. } = c {
            stats.get_mut("ops_per_sec").unwrap().median = 100.0;
        }
    }
    assert!(!verdict(&r).loss);
}

#[test]
fn markdown_and_csv() {
    let rows = rows();
    let md = markdown(&rows, &["machine: test".into()], &["a note".into()]);
    assert!(
        md.contains("| s | special | 1.30× [1.30–1.30] | 0.80× [0.80–0.80] | 4.5 (2/3) | – |"),
        "{md}"
    );
    assert!(md.contains("large_cache_budget 64M→16M (3×)"));
    assert!(md.contains("on at least two special workloads: **not met** (1: s)"));
    assert!(md.contains("within 10 s of the start of its phase on the special workloads (median, in most runs): **met**"));
    assert!(md.contains("loses on 1: r (throughput 0.95×, peak RSS 1.10×)"));
    assert!(
        md.contains("over the rest, geometric mean [range] of the ratios of medians: throughput learning/balanced 0.95× [0.95×–0.95×]"),
        "{md}"
    );
    assert!(md.contains("- a note"));
    let c = csv(&rows);
    assert_eq!(c.lines().count(), 1 + 2 * COLUMNS.len());
    assert!(c.contains("s,special,learning,ok,3,"));
    assert!(c
        .lines()
        .any(|l| l.starts_with("s,special,learning") && l.ends_with(",4.5000,2,3")));
    let line = run_csv_row(
        &run("s", "learning", 0, 5.0, 7.0),
        &learned(Some(1.25), &["a", "b"]),
    );
    assert_eq!(line, "s,learning,0,ok,5,7,1,1.000,1.25,1,1,0,,a; b\n");
}

#[test]
fn a_failed_column_fails_its_cells() {
    let mut runs = vec![run("f", "balanced", 0, 1.0, 1.0)];
    runs.push(Run {
        result: Err("SIGSEGV".into()),
        ..run("f", "learning", 0, 1.0, 1.0)
    });
    let extras = vec![Extra::default(); 2];
    let r = row("f", true, &runs, &extras);
    assert!(ratio_cell(&r, 1, "ops_per_sec").starts_with("**FAILED** (SIGSEGV"));
    assert_eq!(ratio_cell(&r, 3, "ops_per_sec"), "–");
    assert!(!verdict(&r).gain && !verdict(&r).converged && !verdict(&r).loss);
}
