//! `cargo xtask bench-matrix --ab`: hakmem's learning mode against its
//! default (`balanced`), with mimalloc for reference, on the workloads whose
//! best policy differs from the default (`workloads::SPECIAL`) and on every
//! other workload (the rest, where learning must not cost).
//!
//! Per workload and repetition, interleaved:
//!
//! * `balanced`: `HAKMEM_MODE=balanced` (also writes the default policy
//!   with `HAKMEM_POLICY_SAVE`, the base for the "learned" column);
//! * `learning`: `HAKMEM_MODE=research` (learning plus one stderr line per
//!   learner event, timed by the runner as it arrives: the convergence
//!   time is when `Phase(Converged)` was printed) with
//!   `HAKMEM_LEARN_WINDOW_MS=--window`, saving the accepted policy at exit
//!   with `HAKMEM_POLICY_SAVE`;
//! * `reloaded`: a fresh process on the policy the `learning` run of the
//!   same repetition saved (`HAKMEM_POLICY`, so it starts FROZEN): the
//!   learned result from its first window;
//! * `mimalloc`: the peer.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::allocators::Paths;
use crate::bench_matrix::Options;
use crate::learnlog::{self, Summary};
use crate::progress::{clock, Progress};
use crate::record::{self, Record};
use crate::report::{csv_record, ratio, si};
use crate::runner::{self, Job, Status};
use crate::summary::{self, Cell, Run, Stat};
use crate::workloads::Workload;
use crate::{matrix, policyfile};

/// The columns, in run order (the reloaded run needs the learning run's
/// policy of the same repetition).
pub const COLUMNS: [&str; 4] = ["balanced", "learning", "reloaded", "mimalloc"];

/// A learning gain that counts: 15% more throughput or 15% less peak RSS.
pub const GAIN: f64 = 0.15;
/// The most the rest may lose: 3%.
pub const LOSS: f64 = 0.03;
/// Peak RSS differences below this many KiB are not counted as losses: the
/// learner thread's own stack and buffers (a few hundred KiB) are 10% of a
/// 3 MiB program.
pub const RSS_SLACK_KB: f64 = 1024.0;
/// Convergence target (seconds to FROZEN).
pub const CONVERGE_SECS: f64 = 10.0;

/// One column's set-up for one run.
struct Setup {
    preload: PathBuf,
    env: Vec<(String, String)>,
}

/// What one run produced beyond the result line.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    /// The learner's events (learning and reloaded columns).
    pub learner: Option<Summary>,
    /// What the saved policy changed (learning column).
    pub learned: Option<Vec<String>>,
}

fn policy_path(dir: &Path, w: &str, rep: usize) -> PathBuf {
    dir.join(format!("{w}.{rep}.policy"))
}

fn setup(
    col: &str,
    w: &str,
    rep: usize,
    paths: &Paths,
    dir: &Path,
    window_ms: u64,
) -> Result<Setup, String> {
    let hakmem = paths.release.join("libhakmem.so");
    let kv = |k: &str, v: String| (k.to_string(), v);
    let window = kv("HAKMEM_LEARN_WINDOW_MS", window_ms.to_string());
    let policy = policy_path(dir, w, rep);
    Ok(match col {
        "balanced" => Setup {
            preload: hakmem,
            env: vec![
                kv("HAKMEM_MODE", "balanced".into()),
                kv(
                    "HAKMEM_POLICY_SAVE",
                    dir.join("default.policy").to_string_lossy().into_owned(),
                ),
            ],
        },
        "learning" => {
            let _ = fs::remove_file(&policy);
            Setup {
                preload: hakmem,
                env: vec![
                    kv("HAKMEM_MODE", "research".into()),
                    window,
                    kv("HAKMEM_POLICY_SAVE", policy.to_string_lossy().into_owned()),
                ],
            }
        }
        "reloaded" => {
            if !policy.exists() {
                return Err("no policy saved by the learning run".into());
            }
            Setup {
                preload: hakmem,
                env: vec![
                    kv("HAKMEM_MODE", "research".into()),
                    window,
                    kv("HAKMEM_POLICY", policy.to_string_lossy().into_owned()),
                ],
            }
        }
        "mimalloc" => Setup {
            preload: paths.release.join("libmimalloc_preload.so"),
            env: Vec::new(),
        },
        other => return Err(format!("unknown column {other}")),
    })
}

/// Runs one cell; returns the judged result, the extra and the wall time.
#[allow(clippy::too_many_arguments)]
fn run_one(
    w: &Workload,
    col: &str,
    rep: usize,
    opts: &Options,
    paths: &Paths,
    dir: &Path,
    logs: &Path,
    tick: &mut dyn FnMut(),
) -> (Result<Record, String>, Extra, f64) {
    let mut extra = Extra::default();
    let s = match setup(col, w.name, rep, paths, dir, opts.window_ms) {
        Ok(s) => s,
        Err(e) => return (Err(e), extra, 0.0),
    };
    if !s.preload.exists() {
        return (
            Err(format!("{} missing (build failed?)", s.preload.display())),
            extra,
            0.0,
        );
    }
    let mut env = s.env;
    env.push((
        "LD_PRELOAD".into(),
        s.preload.to_string_lossy().into_owned(),
    ));
    let ended = runner::run(
        &Job {
            program: paths.release.join(w.bin),
            args: w.argv(opts.quick, opts.threads),
            env,
            timeout: opts.timeout,
        },
        tick,
    );
    let wall = ended.wall.as_secs_f64();
    if col == "learning" || col == "reloaded" {
        let mut log = String::new();
        for (t, l) in &ended.stderr_lines {
            let _ = writeln!(log, "{t:8.3} {l}");
        }
        let _ = fs::write(logs.join(format!("{}.{rep}.{col}.log", w.name)), log);
        extra.learner = Some(learnlog::summarise(&learnlog::parse(&ended.stderr_lines)));
    }
    if ended.status != Status::Success {
        let last = ended
            .stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty() && !l.starts_with("hakmem: learner:"))
            .map(|l| format!(": {}", l.trim().chars().take(120).collect::<String>()))
            .unwrap_or_default();
        let what = if ended.status == Status::Timeout {
            format!("timeout after {}s", opts.timeout.as_secs())
        } else {
            ended.status.describe()
        };
        return (Err(format!("{what}{last}")), extra, wall);
    }
    let rec = match record::find(&ended.stdout) {
        Ok(r) => r,
        Err(e) => return (Err(e), extra, wall),
    };
    let lib = s
        .preload
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    if rec.text("workload") != Some(w.bin) {
        return (Err("result line of another workload".into()), extra, wall);
    }
    if rec.text("malloc_lib") != Some(lib.as_str()) {
        return (
            Err(format!(
                "LD_PRELOAD of {lib} did not take: malloc from {}",
                rec.text("malloc_lib").unwrap_or("?")
            )),
            extra,
            wall,
        );
    }
    if col == "learning" {
        let base = fs::read_to_string(dir.join("default.policy")).ok();
        let learned = fs::read_to_string(policy_path(dir, w.name, rep)).ok();
        if let (Some(b), Some(l)) = (base, learned) {
            extra.learned = Some(match (policyfile::parse(&b), policyfile::parse(&l)) {
                (Ok(b), Ok(l)) => policyfile::diff(&b, &l),
                (Err(e), _) | (_, Err(e)) => vec![format!("unreadable policy file: {e}")],
            });
        }
    }
    (Ok(rec), extra, wall)
}

/// One workload's A/B, from its runs.
#[derive(Debug, Clone)]
pub struct Row {
    pub workload: String,
    pub special: bool,
    /// Per column (in [`COLUMNS`] order).
    pub cells: Vec<Cell>,
    /// Per-repetition ratios to the balanced run of the same repetition
    /// (throughput, peak RSS), per column.
    pub paired: Vec<(Vec<f64>, Vec<f64>)>,
    /// Learning runs: convergence times, from the start of the phase each
    /// converged in (those that converged), and runs.
    pub converged: Vec<f64>,
    pub learning_runs: usize,
    /// Phase changes noticed and re-convergence times (learning runs).
    pub shifts: Vec<f64>,
    pub reconverged: Vec<f64>,
    /// Learned policies (their diffs, joined) and how often each came up.
    pub learned: Vec<(String, usize)>,
    /// Changes accepted / kept / rolled back, summed over learning runs.
    pub changes: (usize, usize, usize),
}

impl Row {
    /// Median of `key` in column `c`.
    pub fn median(&self, c: usize, key: &str) -> Option<f64> {
        self.cells.get(c)?.median(key)
    }

    /// Ratio of the medians of `key`: column `c` over balanced.
    pub fn ratio(&self, c: usize, key: &str) -> Option<f64> {
        let b = self.median(0, key)?;
        let x = self.median(c, key)?;
        (b > 0.0).then(|| x / b)
    }
}

/// Builds a workload's row from its runs (`runs` of this workload only,
/// with the extras in the same order).
pub fn row(workload: &str, special: bool, runs: &[Run], extras: &[Extra]) -> Row {
    let cells: Vec<Cell> = COLUMNS
        .iter()
        .map(|c| {
            let mine: Vec<&Run> = runs.iter().filter(|r| r.allocator == *c).collect();
            summary::cell(&mine)
        })
        .collect();
    let value = |col: &str, rep: usize, key: &str| -> Option<f64> {
        runs.iter()
            .find(|r| r.allocator == col && r.rep == rep)?
            .result
            .as_ref()
            .ok()?
            .num(key)
    };
    let reps = runs.iter().map(|r| r.rep + 1).max().unwrap_or(0);
    let paired = COLUMNS
        .iter()
        .map(|c| {
            let pair = |key: &str| -> Vec<f64> {
                (0..reps)
                    .filter_map(|rep| {
                        let b = value("balanced", rep, key)?;
                        let x = value(c, rep, key)?;
                        (b > 0.0).then(|| x / b)
                    })
                    .collect()
            };
            (pair("ops_per_sec"), pair("peak_rss_kb"))
        })
        .collect();
    let mut r = Row {
        workload: workload.to_string(),
        special,
        cells,
        paired,
        converged: Vec::new(),
        learning_runs: 0,
        shifts: Vec::new(),
        reconverged: Vec::new(),
        learned: Vec::new(),
        changes: (0, 0, 0),
    };
    let mut learned: BTreeMap<String, usize> = BTreeMap::new();
    for (run, x) in runs.iter().zip(extras) {
        if run.allocator != "learning" {
            continue;
        }
        r.learning_runs += 1;
        if let Some(s) = &x.learner {
            r.converged.extend(s.converged_in);
            r.shifts.extend(s.shifts.first());
            r.reconverged.extend(s.reconverged_at);
            r.changes.0 += s.accepted;
            r.changes.1 += s.kept;
            r.changes.2 += s.rolled_back;
        }
        if let Some(d) = &x.learned {
            let text = if d.is_empty() {
                "(default)".to_string()
            } else {
                d.join("; ")
            };
            *learned.entry(text).or_default() += 1;
        }
    }
    let mut v: Vec<(String, usize)> = learned.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    r.learned = v;
    r
}

fn median(v: &[f64]) -> Option<f64> {
    Stat::of(v).map(|s| s.median)
}

fn range(v: &[f64]) -> String {
    match Stat::of(v) {
        Some(s) => format!("[{:.2}–{:.2}]", s.min, s.max),
        None => String::new(),
    }
}

fn failed(c: &Cell) -> Option<String> {
    match c {
        Cell::Failed {
            reason,
            failed,
            runs,
        } => Some(format!("**FAILED** ({reason}; {failed}/{runs})")),
        Cell::Missing => Some("–".into()),
        Cell::Ok { .. } => None,
    }
}

/// `1.23× [1.10–1.31]`: the ratio of the medians, and the range of the
/// per-repetition ratios.
fn ratio_cell(r: &Row, c: usize, key: &str) -> String {
    if let Some(f) = failed(&r.cells[c]).or_else(|| failed(&r.cells[0])) {
        return f;
    }
    let paired = if key == "ops_per_sec" {
        &r.paired[c].0
    } else {
        &r.paired[c].1
    };
    match r.ratio(c, key) {
        Some(x) => format!("{} {}", ratio(x), range(paired)),
        None => "n/a".into(),
    }
}

fn secs(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "–".into())
}

/// How a row fares against the targets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// Special: learning gained ≥ 15% throughput or peak RSS.
    pub gain: bool,
    /// Special: median convergence within 10 s, in most runs.
    pub converged: bool,
    /// Rest: learning lost more than 3% throughput or peak RSS.
    pub loss: bool,
}

/// Judges a row (ratios of medians).
pub fn verdict(r: &Row) -> Verdict {
    let thr = r.ratio(1, "ops_per_sec");
    let rss = r.ratio(1, "peak_rss_kb");
    let gain = thr.is_some_and(|t| t >= 1.0 + GAIN) || rss.is_some_and(|m| m <= 1.0 - GAIN);
    let rss_more_kb = match (r.median(1, "peak_rss_kb"), r.median(0, "peak_rss_kb")) {
        (Some(l), Some(b)) => l - b,
        _ => 0.0,
    };
    let loss = thr.is_some_and(|t| t < 1.0 - LOSS)
        || rss.is_some_and(|m| m > 1.0 + LOSS) && rss_more_kb > RSS_SLACK_KB;
    let converged = r.learning_runs > 0
        && 2 * r.converged.len() > r.learning_runs
        && median(&r.converged).is_some_and(|t| t <= CONVERGE_SECS);
    Verdict {
        gain,
        converged,
        loss,
    }
}

/// The geometric mean of a column's ratios to balanced over `rows`, and
/// their range.
fn geomean_ratio(rows: &[&Row], col: usize, key: &str) -> Option<(f64, f64, f64)> {
    let v: Vec<f64> = rows
        .iter()
        .filter_map(|r| r.ratio(col, key))
        .filter(|x| *x > 0.0)
        .collect();
    if v.is_empty() {
        return None;
    }
    let g = (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp();
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(0.0, f64::max);
    Some((g, lo, hi))
}

/// What the rest's ratios add up to, learning against reloaded: a
/// reloaded run of a workload whose learned policy is the default runs the
/// same policy as balanced, FROZEN, so its ratios are the measurement's own
/// noise.
fn noise_line(rest: &[&Row]) -> String {
    let cell = |col: usize, key: &str| match geomean_ratio(rest, col, key) {
        Some((g, lo, hi)) => format!("{} [{}–{}]", ratio(g), ratio(lo), ratio(hi)),
        None => "n/a".into(),
    };
    format!(
        "- over the rest, geometric mean [range] of the ratios of medians: throughput learning/balanced {}, reloaded/balanced {}; peak RSS learning/balanced {}, reloaded/balanced {} (a reloaded run of a workload that learned nothing runs balanced's policy, FROZEN: its spread is the measurement's noise)",
        cell(1, "ops_per_sec"),
        cell(2, "ops_per_sec"),
        cell(1, "peak_rss_kb"),
        cell(2, "peak_rss_kb"),
    )
}

/// The Markdown report.
pub fn markdown(rows: &[Row], context: &[String], notes: &[String]) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# hakmem bench-matrix --ab: learning vs balanced\n");
    for l in context {
        let _ = writeln!(o, "- {l}");
    }
    let _ = writeln!(
        o,
        "\n## A/B\n\nRatios are learning (or reloaded, or mimalloc) over balanced: the ratio of the medians, then [min–max] of the per-repetition ratios (each run against the balanced run of the same repetition). Throughput: higher is better; peak RSS: lower is better. FROZEN: seconds to the learner's first `Phase(Converged)` from the start of its phase: the process start, or the last phase change the learner noticed before it (median of the runs that converged; how many did). Phase changes: when the learner noticed a shift of the size distribution, and when it was FROZEN after it (seconds from the process start, medians).\n"
    );
    let _ = writeln!(o, "| workload | set | throughput learning/balanced | peak RSS learning/balanced | FROZEN after (s) | phase change → FROZEN again (s) | throughput reloaded/balanced | peak RSS reloaded/balanced | throughput mimalloc/balanced | peak RSS mimalloc/balanced |");
    let _ = writeln!(o, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|");
    for r in rows {
        let frozen = format!(
            "{} ({}/{})",
            secs(median(&r.converged)),
            r.converged.len(),
            r.learning_runs
        );
        let shift = if r.shifts.is_empty() {
            "–".to_string()
        } else {
            format!(
                "{} → {} ({}/{})",
                secs(median(&r.shifts)),
                secs(median(&r.reconverged)),
                r.shifts.len(),
                r.learning_runs
            )
        };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {frozen} | {shift} | {} | {} | {} | {} |",
            r.workload,
            if r.special { "special" } else { "rest" },
            ratio_cell(r, 1, "ops_per_sec"),
            ratio_cell(r, 1, "peak_rss_kb"),
            ratio_cell(r, 2, "ops_per_sec"),
            ratio_cell(r, 2, "peak_rss_kb"),
            ratio_cell(r, 3, "ops_per_sec"),
            ratio_cell(r, 3, "peak_rss_kb"),
        );
    }

    let _ = writeln!(
        o,
        "\n## Medians\n\nThroughput (allocator calls per second) [min–max] and peak RSS (MiB) per column.\n"
    );
    let _ = writeln!(o, "| workload | {} |", COLUMNS.join(" | "));
    let _ = writeln!(o, "|---|{}", "--:|".repeat(COLUMNS.len()));
    for r in rows {
        let cells: Vec<String> = r
            .cells
            .iter()
            .map(|c| {
                failed(c).unwrap_or_else(|| {
                    let s = c.stat("ops_per_sec");
                    let rss = c.median("peak_rss_kb").unwrap_or(0.0) / 1024.0;
                    match s {
                        Some(s) => format!(
                            "{} [{}–{}], {rss:.1} MiB",
                            si(s.median),
                            si(s.min),
                            si(s.max)
                        ),
                        None => "n/a".into(),
                    }
                })
            })
            .collect();
        let _ = writeln!(o, "| {} | {} |", r.workload, cells.join(" | "));
    }

    let _ = writeln!(
        o,
        "\n## What the learner did\n\nChanges accepted / kept / rolled back over all learning runs, and the learned policies against the default (from the `HAKMEM_POLICY_SAVE` files; how many runs saved each).\n"
    );
    let _ = writeln!(
        o,
        "| workload | accepted / kept / rolled back | learned policies |"
    );
    let _ = writeln!(o, "|---|--:|---|");
    for r in rows {
        let learned: Vec<String> = r
            .learned
            .iter()
            .map(|(d, n)| format!("{d} ({n}×)"))
            .collect();
        let _ = writeln!(
            o,
            "| {} | {} / {} / {} | {} |",
            r.workload,
            r.changes.0,
            r.changes.1,
            r.changes.2,
            learned.join("<br>")
        );
    }

    let specials: Vec<&Row> = rows.iter().filter(|r| r.special).collect();
    let rest: Vec<&Row> = rows.iter().filter(|r| !r.special).collect();
    let gains: Vec<&str> = specials
        .iter()
        .filter(|r| verdict(r).gain)
        .map(|r| r.workload.as_str())
        .collect();
    let slow: Vec<&str> = specials
        .iter()
        .filter(|r| !verdict(r).converged)
        .map(|r| r.workload.as_str())
        .collect();
    let losses: Vec<String> = rest
        .iter()
        .filter(|r| verdict(r).loss)
        .map(|r| {
            format!(
                "{} (throughput {}, peak RSS {})",
                r.workload,
                r.ratio(1, "ops_per_sec")
                    .map(ratio)
                    .unwrap_or_else(|| "n/a".into()),
                r.ratio(1, "peak_rss_kb")
                    .map(ratio)
                    .unwrap_or_else(|| "n/a".into())
            )
        })
        .collect();
    let yes = |b: bool| if b { "**met**" } else { "**not met**" };
    let _ = writeln!(o, "\n## Targets\n");
    let _ = writeln!(
        o,
        "- learning beats balanced by ≥ 15% in throughput or peak RSS on at least two special workloads: {} ({}: {})",
        yes(gains.len() >= 2),
        gains.len(),
        if gains.is_empty() { "none".to_string() } else { gains.join(", ") }
    );
    let _ = writeln!(
        o,
        "- converges (FROZEN) within 10 s of the start of its phase on the special workloads (median, in most runs): {}{}",
        yes(!specials.is_empty() && slow.is_empty()),
        if slow.is_empty() {
            String::new()
        } else {
            format!(" (not: {})", slow.join(", "))
        }
    );
    let _ = writeln!(
        o,
        "- never loses more than 3% (ratio of medians; peak RSS differences under 1 MiB not counted) on the rest: {}{}",
        yes(!rest.is_empty() && losses.is_empty()),
        if losses.is_empty() {
            String::new()
        } else {
            format!(" (loses on {}: {})", losses.len(), losses.join(", "))
        }
    );
    let _ = writeln!(o, "{}", noise_line(&rest));
    if !notes.is_empty() {
        let _ = writeln!(o, "\n## Notes\n");
        for n in notes {
            let _ = writeln!(o, "- {n}");
        }
    }
    o
}

/// `ab.csv`: one row per workload and column.
pub fn csv(rows: &[Row]) -> String {
    let mut o = String::from("workload,set,column,status,runs,ops_per_sec_median,peak_rss_kb_median,throughput_vs_balanced,peak_rss_vs_balanced,frozen_secs_median,converged_runs,learning_runs\n");
    let num = |v: Option<f64>| v.map(|x| format!("{x:.4}")).unwrap_or_default();
    for r in rows {
        for (c, name) in COLUMNS.iter().enumerate() {
            let (status, runs) = match &r.cells[c] {
                Cell::Ok { runs, .. } => ("ok".to_string(), *runs),
                Cell::Failed { reason, runs, .. } => (format!("failed: {reason}"), *runs),
                Cell::Missing => ("missing".to_string(), 0),
            };
            let learning = c == 1;
            let only_learning = |v: String| if learning { v } else { String::new() };
            o.push_str(&csv_record([
                r.workload.clone(),
                if r.special { "special" } else { "rest" }.to_owned(),
                (*name).to_owned(),
                status,
                runs.to_string(),
                num(r.median(c, "ops_per_sec")),
                num(r.median(c, "peak_rss_kb")),
                num(r.ratio(c, "ops_per_sec")),
                num(r.ratio(c, "peak_rss_kb")),
                only_learning(num(median(&r.converged))),
                only_learning(r.converged.len().to_string()),
                only_learning(r.learning_runs.to_string()),
            ]));
        }
    }
    o
}

/// One line of `ab-runs.csv`.
pub fn run_csv_row(run: &Run, x: &Extra) -> String {
    let (status, ops, rss, secs) = match &run.result {
        Ok(r) => (
            "ok".to_string(),
            r.num("ops_per_sec"),
            r.num("peak_rss_kb"),
            r.num("secs"),
        ),
        Err(e) => (format!("failed: {e}"), None, None, None),
    };
    let n = |v: Option<f64>| v.map(|x| format!("{x}")).unwrap_or_default();
    let l = x.learner.clone().unwrap_or_default();
    csv_record([
        run.workload.clone(),
        run.allocator.clone(),
        run.rep.to_string(),
        status,
        n(ops),
        n(rss),
        n(secs),
        format!("{:.3}", run.wall_secs),
        n(l.converged_at),
        l.accepted.to_string(),
        l.kept.to_string(),
        l.rolled_back.to_string(),
        l.shifts
            .iter()
            .map(|t| format!("{t:.2}"))
            .collect::<Vec<_>>()
            .join(" "),
        x.learned.clone().unwrap_or_default().join("; "),
    ])
}

const RUNS_HEADER: &str = "workload,column,rep,status,ops_per_sec,peak_rss_kb,secs,wall_secs,frozen_at,accepted,kept,rolled_back,shifts,learned\n";

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| {
            let v: Vec<&str> = s.split_whitespace().take(3).collect();
            (v.len() == 3).then(|| v.join(" "))
        })
        .unwrap_or_else(|| "?".into())
}

/// Runs the A/B; returns the number of failed cells.
pub fn main(
    opts: &Options,
    selected: &[(Workload, bool)],
    paths: &Paths,
    out: &Path,
    broken: &[(&'static str, String)],
    notes: Vec<String>,
) -> Result<usize, String> {
    let dir = out.join("ab");
    let logs = dir.join("logs");
    fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    let runs_path = out.join("ab-runs.csv");
    let mut runs_csv =
        fs::File::create(&runs_path).map_err(|e| format!("{}: {e}", runs_path.display()))?;
    let _ = runs_csv.write_all(RUNS_HEADER.as_bytes());
    let load_before = loadavg();

    let total = selected.len() * opts.reps * COLUMNS.len();
    let mut progress = Progress::new(total);
    let mut rows = Vec::new();
    for (w, special) in selected {
        let mut runs = Vec::new();
        let mut extras = Vec::new();
        for rep in 0..opts.reps {
            for col in COLUMNS {
                progress.start(w.name, rep, opts.reps, col);
                let hakmem_broken = broken
                    .iter()
                    .find(|(n, _)| (*n == "hakmem" && col != "mimalloc") || *n == col);
                let (result, extra, wall) = match hakmem_broken {
                    Some((_, e)) => (Err(e.clone()), Extra::default(), 0.0),
                    None => {
                        let p = &progress;
                        run_one(w, col, rep, opts, paths, &dir, &logs, &mut || p.tick())
                    }
                };
                let msg = match &result {
                    Ok(r) => {
                        let frozen = extra
                            .learner
                            .as_ref()
                            .and_then(|l| l.converged_at)
                            .map(|t| format!(", FROZEN at {t:.1}s"))
                            .unwrap_or_default();
                        format!(
                            "{} ops/s, {:.0} MiB{frozen}",
                            si(r.num("ops_per_sec").unwrap_or(0.0)),
                            r.num("peak_rss_kb").unwrap_or(0.0) / 1024.0
                        )
                    }
                    Err(e) => format!("FAILED: {e}"),
                };
                progress.finish(&msg, result.is_err());
                let run = Run {
                    workload: w.name.to_string(),
                    allocator: col.to_string(),
                    rep,
                    result,
                    note: None,
                    wall_secs: wall,
                };
                let _ = runs_csv.write_all(run_csv_row(&run, &extra).as_bytes());
                runs.push(run);
                extras.push(extra);
            }
        }
        rows.push(row(w.name, *special, &runs, &extras));
    }
    progress.clear();
    let wall = progress.elapsed();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let context = vec![
        format!("command: `cargo xtask {}`", args.join(" ")),
        format!(
            "date: {}",
            matrix::utc(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            )
        ),
        matrix::machine(),
        format!(
            "load average (1/5/15 min) before: {load_before}, after: {} (other work on the machine shows in the [min–max] ranges)",
            loadavg()
        ),
        format!(
            "{} run(s) per cell, interleaved (balanced, learning, reloaded, mimalloc per repetition); {}s limit per run; {} args; learning windows of {} ms",
            opts.reps,
            opts.timeout.as_secs(),
            if opts.quick { "--quick" } else { "full" },
            opts.window_ms
        ),
        "balanced: HAKMEM_MODE=balanced; learning: HAKMEM_MODE=research (the learning mode plus its event log on stderr) with HAKMEM_POLICY_SAVE; reloaded: HAKMEM_MODE=research with HAKMEM_POLICY = the policy the learning run of the same repetition saved (starts FROZEN); mimalloc: LD_PRELOAD of the peer".into(),
        format!("A/B wall time: {}", clock(wall)),
    ];
    let md = markdown(&rows, &context, &notes);
    let write = |name: &str, text: &str| -> Result<(), String> {
        let p = out.join(name);
        fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))
    };
    write("ab.md", &md)?;
    write("ab.csv", &csv(&rows))?;
    println!("{md}");
    eprintln!(
        "bench-matrix: wrote {0}/ab.md, {0}/ab.csv, {0}/ab-runs.csv, the learner logs in {0}/ab/logs/ and the saved policies in {0}/ab/",
        out.display()
    );
    Ok(rows
        .iter()
        .flat_map(|r| &r.cells)
        .filter(|c| matches!(c, Cell::Failed { .. }))
        .count())
}

#[cfg(test)]
mod tests;
