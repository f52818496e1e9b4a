//! `cargo xtask bench-matrix`: runs the matrix and writes the reports.
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::allocators::{self, Allocator, Check, Paths};
use crate::bench_matrix::Options;
use crate::progress::{clock, Progress};
use crate::runner::{self, Job, Status};
use crate::summary::{self, Cell, Run};
use crate::workloads::{self, Workload};
use crate::{ab, callgrind, cargo_build, record, report, svg};

/// Runs the command.
pub fn main(opts: &Options) -> Result<(), String> {
    let paths = cargo_build::paths();
    // The A/B's columns are hakmem (three ways) and mimalloc.
    let ab_allocs = ["hakmem".to_string(), "mimalloc".to_string()];
    let (allocs, notes) = allocators::plan(
        if opts.ab {
            Some(&ab_allocs[..])
        } else {
            opts.allocators.as_deref()
        },
        &paths,
        &|var| std::env::var_os(var).map(PathBuf::from),
        &|p| p.exists(),
    );
    for n in &notes {
        eprintln!("bench-matrix: note: {n}");
    }
    if allocs.is_empty() {
        return Err("no allocator to run".into());
    }
    let (selected, ab_selected) = if opts.ab {
        (Vec::new(), workloads::select_ab(&opts.filter)?)
    } else {
        (workloads::select(&opts.filter)?, Vec::new())
    };
    if opts.list {
        if opts.ab {
            let w: Vec<Workload> = ab_selected.iter().map(|(w, _)| *w).collect();
            list(&w, &allocs, opts);
        } else {
            list(&selected, &allocs, opts);
        }
        return Ok(());
    }
    let broken = if opts.build {
        cargo_build::build(&allocs)?
    } else {
        Vec::new()
    };
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| cargo_build::target_dir().join("bench-matrix"));
    fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let failed = if opts.callgrind {
        callgrind::main(&allocs, &paths, &out, &broken, notes)?
    } else if opts.ab {
        ab::main(opts, &ab_selected, &paths, &out, &broken, notes)?
    } else {
        matrix(opts, &selected, &allocs, &paths, &out, &broken, notes)?
    };
    if failed > 0 {
        return Err(format!(
            "{failed} cell(s) failed (shown as FAILED in the tables)"
        ));
    }
    Ok(())
}

fn list(selected: &[Workload], allocs: &[Allocator], opts: &Options) {
    println!(
        "workloads ({}):",
        if opts.quick { "--quick" } else { "full" }
    );
    for w in selected {
        println!(
            "  {:<20} {} {}",
            w.name,
            w.bin,
            w.argv(opts.quick, opts.threads).join(" ")
        );
    }
    println!("allocators:");
    for a in allocs {
        println!("  {:<14} {}", a.name, how(a));
    }
}

fn how(a: &Allocator) -> String {
    let how = match (&a.preload, a.inproc) {
        (Some(p), _) => format!("LD_PRELOAD={}", p.display()),
        (None, true) => {
            "#[global_allocator] hakmem::HakMem (workloads built with --features global-hakmem)"
                .into()
        }
        (None, false) => "no preload (glibc malloc)".into(),
    };
    a.env
        .iter()
        .fold(how, |how, (k, v)| format!("{how} {k}={v}"))
}

/// Runs one workload under one allocator and judges the result.
fn run_one(
    w: &Workload,
    a: &Allocator,
    paths: &Paths,
    args: Vec<String>,
    timeout: std::time::Duration,
    tick: &mut dyn FnMut(),
) -> (Result<record::Record, String>, Option<String>, f64) {
    if let Some(p) = &a.preload {
        if !p.exists() {
            return (
                Err(format!(
                    "{} missing (build failed or --no-build)",
                    p.display()
                )),
                None,
                0.0,
            );
        }
    }
    let mut env: Vec<(String, String)> = a
        .env
        .iter()
        .chain(w.env())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Some(p) = &a.preload {
        env.push(("LD_PRELOAD".to_string(), p.to_string_lossy().into_owned()));
    }
    let job = Job {
        program: a.program(paths, w.bin),
        args,
        env,
        timeout,
    };
    let ended = runner::run(&job, tick);
    let wall = ended.wall.as_secs_f64();
    if ended.status != Status::Success {
        let detail = ended
            .stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| format!(": {}", l.trim().chars().take(120).collect::<String>()))
            .unwrap_or_default();
        let what = if ended.status == Status::Timeout {
            format!("timeout after {}s", timeout.as_secs())
        } else {
            ended.status.describe()
        };
        return (Err(format!("{what}{detail}")), None, wall);
    }
    let rec = match record::find(&ended.stdout) {
        Ok(r) => r,
        Err(e) => return (Err(e), None, wall),
    };
    if rec.text("workload") != Some(w.bin) {
        return (
            Err(format!(
                "result line of workload {:?}, expected {}",
                rec.text("workload"),
                w.bin
            )),
            None,
            wall,
        );
    }
    match a.check(&rec) {
        Check::Ok => (Ok(rec), None, wall),
        Check::Note(n) => (Ok(rec), Some(n), wall),
        Check::Fail(e) => (Err(e), None, wall),
    }
}

fn matrix(
    opts: &Options,
    selected: &[Workload],
    allocs: &[Allocator],
    paths: &Paths,
    out: &Path,
    broken: &[(&'static str, String)],
    notes: Vec<String>,
) -> Result<usize, String> {
    let runs_path = out.join("runs.csv");
    let mut runs_csv =
        fs::File::create(&runs_path).map_err(|e| format!("{}: {e}", runs_path.display()))?;
    let _ = runs_csv.write_all(report::RUNS_HEADER.as_bytes());

    let total = selected.len() * opts.reps * allocs.len();
    let mut progress = Progress::new(total);
    let mut runs: Vec<Run> = Vec::with_capacity(total);
    // Interleaved: for each workload and repetition, every allocator once.
    for w in selected {
        for rep in 0..opts.reps {
            for a in allocs {
                progress.start(w.name, rep, opts.reps, a.name);
                let args = w.argv(opts.quick, opts.threads);
                let (result, note, wall) = match broken.iter().find(|(n, _)| *n == a.name) {
                    Some((_, e)) => (Err(e.clone()), None, 0.0),
                    None => {
                        let p = &progress;
                        run_one(w, a, paths, args, opts.timeout, &mut || p.tick())
                    }
                };
                let (msg, failed) = match &result {
                    Ok(r) => (
                        format!("{} ops/s", report::si(r.num("ops_per_sec").unwrap_or(0.0))),
                        false,
                    ),
                    Err(e) => (format!("FAILED: {e}"), true),
                };
                progress.finish(&msg, failed);
                let run = Run {
                    workload: w.name.to_string(),
                    allocator: a.name.to_string(),
                    rep,
                    result,
                    note,
                    wall_secs: wall,
                };
                let _ = runs_csv.write_all(report::runs_csv_row(&run).as_bytes());
                runs.push(run);
            }
        }
    }
    progress.clear();
    let wall = progress.elapsed();

    let wnames: Vec<String> = selected.iter().map(|w| w.name.to_string()).collect();
    let anames: Vec<String> = allocs.iter().map(|a| a.name.to_string()).collect();
    let m = summary::summarise(&wnames, &anames, &runs);
    let mut ctx = context(opts, allocs, &runs);
    ctx.lines.push(format!("matrix wall time: {}", clock(wall)));
    ctx.notes = notes;

    let md = report::markdown(&m, &ctx);
    let md_with_charts =
        format!("{md}\n![throughput](throughput.svg)\n\n![peak RSS](peak-rss.svg)\n");
    let write = |name: &str, text: &str| -> Result<PathBuf, String> {
        let p = out.join(name);
        fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
        Ok(p)
    };
    write("results.md", &md_with_charts)?;
    write("results.csv", &report::results_csv(&m))?;
    let sub = |better: &str| {
        format!(
            "median of {} run(s) per cell; bars {better} the black line beat mimalloc; log scale; ✕ = failed; values in results.md",
            opts.reps
        )
    };
    write(
        "throughput.svg",
        &svg::ratio_chart(
            "Throughput relative to mimalloc (higher is better)",
            &sub("above"),
            &m,
            "ops_per_sec",
        ),
    )?;
    write(
        "peak-rss.svg",
        &svg::ratio_chart(
            "Peak RSS relative to mimalloc (lower is better)",
            &sub("below"),
            &m,
            "peak_rss_kb",
        ),
    )?;
    println!("{md}");
    eprintln!(
        "bench-matrix: {} runs in {}; wrote {}/{{results.md,results.csv,runs.csv,throughput.svg,peak-rss.svg}}",
        runs.len(),
        clock(wall),
        out.display()
    );
    Ok(m.cells
        .iter()
        .flatten()
        .filter(|c| matches!(c, Cell::Failed { .. }))
        .count())
}

fn first_line(path: &str) -> Option<String> {
    fs::read_to_string(path)
        .ok()?
        .lines()
        .next()
        .map(|s| s.trim().to_string())
}

fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn mem_total_gib() -> Option<f64> {
    let s = fs::read_to_string("/proc/meminfo").ok()?;
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with("MemTotal:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0 / 1024.0)
}

fn thp() -> String {
    first_line("/sys/kernel/mm/transparent_hugepage/enabled")
        .and_then(|s| {
            s.split('[')
                .nth(1)
                .and_then(|r| r.split(']').next())
                .map(String::from)
        })
        .unwrap_or_else(|| "unknown".into())
}

/// `YYYY-MM-DD HH:MM UTC` of a Unix time.
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// The machine in one line: CPU, cores, memory, kernel, THP.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "machine: {}, {cores} cores, {:.0} GiB, Linux {}, transparent huge pages: {}",
        cpu_model(),
        mem_total_gib().unwrap_or(0.0),
        first_line("/proc/sys/kernel/osrelease").unwrap_or_default(),
        thp()
    )
}

fn context(opts: &Options, allocs: &[Allocator], runs: &[Run]) -> report::Context {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut lines = vec![
        format!("command: `cargo xtask {}`", args.join(" ")),
        format!("date: {}", utc(now)),
        machine(),
        format!(
            "{} matrix, {} run(s) per cell, interleaved (every allocator once per repetition), {} threads for the multi-threaded workloads, {}s limit per run",
            if opts.quick { "quick" } else { "full" },
            opts.reps,
            opts.threads,
            opts.timeout.as_secs()
        ),
        "ops = allocator calls (malloc, free, realloc) in the timed region; a crash, a non-zero exit, a timeout or a preload that did not take fails the cell".into(),
    ];
    for a in allocs {
        let version = runs.iter().filter(|r| r.allocator == a.name).find_map(|r| {
            r.result
                .as_ref()
                .ok()
                .and_then(|rec| rec.text("alloc_version").map(String::from))
        });
        let how = a.launch();
        let version = version.map(|v| format!(" ({v})")).unwrap_or_default();
        lines.push(format!("{}: {how}{version}", a.name));
    }
    report::Context {
        title: "hakmem bench-matrix".into(),
        lines,
        notes: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13 UTC");
    }
}
