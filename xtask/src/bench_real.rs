//! `cargo xtask bench-real`: hakmem's learning mode on real programs
//! against its default (`balanced`), with mimalloc for reference.
//!
//! The programs are the ones the preload tests already run (python3,
//! perl, ruby, sqlite3, gcc), on the same scripts
//! (`crates/preload/tests/programs`) plus `benches/real/workload.sql` and a
//! generated C file. Per program and repetition, interleaved, four columns:
//!
//! * `balanced`: `HAKMEM_MODE=balanced`;
//! * `learning`: `HAKMEM_MODE=learning`, a fresh learner every run;
//! * `policy-dir`: `HAKMEM_MODE=learning` with `HAKMEM_POLICY_DIR`, after
//!   one untimed run that filled the directory: each timed run starts
//!   FROZEN on what an earlier run of the same executable learned;
//! * `mimalloc`: the peer.
//!
//! Every run's standard output must equal the first `balanced` run's (a
//! program that computes something else under another allocator fails the
//! benchmark). Reports the median wall time with [min–max] and the ratio of
//! `balanced`'s median to the column's (higher is better), and whether
//! learning met issue 15's bar: never more than 3 % slower than balanced.
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use crate::cargo_build::{target_dir, workspace_root};
use crate::progress::Progress;
use crate::report::ratio;
use crate::runner::{self, Job, Status};
use crate::summary::Stat;

/// The columns, in run order.
pub const COLUMNS: [&str; 4] = ["balanced", "learning", "policy-dir", "mimalloc"];

/// The most learning may lose against balanced (issue 15).
pub const LOSS: f64 = 0.03;

/// The command line of `bench-real`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Repetitions per cell (interleaved).
    #[arg(long, value_name = "N", default_value = "5", value_parser = clap::value_parser!(u64).range(1..))]
    reps: u64,
    /// Only programs whose name contains A or B (python, perl, ruby,
    /// sqlite, gcc).
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    filter: Vec<String>,
    /// Limit per run in seconds.
    #[arg(long, value_name = "SECS", default_value = "300")]
    timeout: u64,
    /// Use the libraries already built.
    #[arg(long)]
    no_build: bool,
    /// Where real.md and real.csv go [default: target/bench-real].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// One real program and how to run it.
#[derive(Debug, Clone)]
pub struct Program {
    pub name: &'static str,
    pub exe: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// Finds `program` on PATH.
fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// python3 itself (a pyenv-style shim is a shell script, and the preload
/// should be measured on the interpreter).
fn python3() -> Option<PathBuf> {
    let shim = which("python3")?;
    let out = Command::new(&shim)
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()?;
    let exe = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Some(if out.status.success() && !exe.is_empty() {
        PathBuf::from(exe)
    } else {
        shim
    })
}

/// A deterministic C file of `n` functions for gcc -O2 to work through:
/// switch tables, string constants, loops the optimiser unrolls and
/// inlines (cc1's memory is mostly trees and RTL, freed per function).
pub fn generated_c_source(n: usize) -> String {
    let mut s =
        String::from("#include <string.h>\n\nstruct rec { int a, b; const char *name; };\n\n");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..n {
        let k = 4 + next() % 12;
        let _ = writeln!(s, "unsigned f{i}(unsigned v, struct rec *r) {{");
        let _ = writeln!(s, "    unsigned acc = {};", next() % 1000);
        let _ = writeln!(s, "    for (unsigned j = 0; j < {k}u; j++) {{");
        let _ = writeln!(s, "        switch ((v + j) % {k}u) {{");
        for c in 0..k {
            let _ = writeln!(
                s,
                "        case {c}: acc = acc * {} + r[j % 4].a; r[(j + 1) % 4].b ^= acc; break;",
                next() % 97 + 1
            );
        }
        let _ = writeln!(
            s,
            "        default: acc += (unsigned)strlen(r[j % 4].name);"
        );
        let _ = writeln!(s, "        }}\n    }}");
        if i > 0 {
            let _ = writeln!(
                s,
                "    if (acc % 7u == 0u) acc += f{}(acc >> 3, r);",
                next() % i as u64
            );
        }
        let _ = writeln!(s, "    return acc;\n}}\n");
    }
    s
}

/// The programs that are installed, with their inputs written to `work`.
pub fn programs(work: &Path) -> (Vec<Program>, Vec<String>) {
    let root = workspace_root();
    let scripts = root.join("crates/preload/tests/programs");
    let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
    let mut found = Vec::new();
    let mut missing = Vec::new();
    let mut add = |name: &'static str, exe: Option<PathBuf>, args: Vec<String>, env| match exe {
        Some(exe) => found.push(Program {
            name,
            exe,
            args,
            env,
        }),
        None => missing.push(format!("{name}: not installed, skipped")),
    };
    let arg = |p: PathBuf| p.to_string_lossy().into_owned();
    add(
        "python3",
        python3(),
        vec![arg(scripts.join("threaded_workload.py"))],
        vec![
            kv("PYTHONMALLOC", "malloc"),
            kv("PYTHONHASHSEED", "0"),
            kv("PYTHONDONTWRITEBYTECODE", "1"),
        ],
    );
    add(
        "perl",
        which("perl"),
        vec![arg(scripts.join("workload.pl"))],
        vec![
            kv("PERL_HASH_SEED", "0"),
            kv("PERL_PERTURB_KEYS", "0"),
            kv("LC_ALL", "C"),
        ],
    );
    add(
        "ruby",
        which("ruby"),
        vec![arg(scripts.join("workload.rb"))],
        vec![],
    );
    add(
        "sqlite3",
        which("sqlite3"),
        vec![
            ":memory:".into(),
            format!(".read {}", root.join("benches/real/workload.sql").display()),
        ],
        vec![],
    );
    let c = work.join("generated.c");
    let wrote = fs::write(&c, generated_c_source(120)).is_ok();
    add(
        "gcc",
        which("gcc").filter(|_| wrote),
        vec![
            "-O2".into(),
            "-c".into(),
            arg(c),
            "-o".into(),
            arg(work.join("generated.o")),
        ],
        vec![],
    );
    (found, missing)
}

/// The environment of one column's run.
fn column_env(col: &str, release: &Path, policy_dir: &Path) -> Vec<(String, String)> {
    let kv = |k: &str, v: String| (k.to_string(), v);
    let hakmem = release.join("libhakmem.so").to_string_lossy().into_owned();
    match col {
        "balanced" => vec![
            kv("LD_PRELOAD", hakmem),
            kv("HAKMEM_MODE", "balanced".into()),
        ],
        "learning" => vec![
            kv("LD_PRELOAD", hakmem),
            kv("HAKMEM_MODE", "learning".into()),
        ],
        "policy-dir" => vec![
            kv("LD_PRELOAD", hakmem),
            kv("HAKMEM_MODE", "learning".into()),
            kv(
                "HAKMEM_POLICY_DIR",
                policy_dir.to_string_lossy().into_owned(),
            ),
        ],
        _ => vec![kv(
            "LD_PRELOAD",
            release
                .join("libmimalloc_preload.so")
                .to_string_lossy()
                .into_owned(),
        )],
    }
}

/// Medians per program and column (seconds), in `COLUMNS` order.
#[derive(Debug, Clone)]
pub struct Row {
    pub program: String,
    pub cells: Vec<Result<Stat, String>>,
}

/// `balanced`'s median over the column's (higher is better).
pub fn speedup(row: &Row, col: usize) -> Option<f64> {
    match (&row.cells[0], &row.cells[col]) {
        (Ok(b), Ok(c)) if c.median > 0.0 => Some(b.median / c.median),
        _ => None,
    }
}

/// Whether learning (and the reused policy) stayed within `LOSS` of
/// balanced on every program that ran.
pub fn learning_holds(rows: &[Row]) -> bool {
    rows.iter()
        .all(|r| (1..3).all(|c| speedup(r, c).is_some_and(|s| s >= 1.0 - LOSS)))
}

/// The markdown table.
pub fn markdown(rows: &[Row], reps: u64, notes: &[String]) -> String {
    let mut s = String::from("# hakmem bench-real: learning on real programs\n\n");
    let _ = writeln!(
        s,
        "Median wall time of {reps} interleaved run(s) in seconds, [min–max], and balanced's median over the column's (higher is better).\n"
    );
    let _ = writeln!(s, "| program | {} |", COLUMNS.join(" | "));
    let _ = writeln!(s, "|---|{}", "--:|".repeat(COLUMNS.len()));
    for r in rows {
        let _ = write!(s, "| {} |", r.program);
        for (c, cell) in r.cells.iter().enumerate() {
            match cell {
                Ok(st) => {
                    let x = speedup(r, c).map(ratio).unwrap_or_default();
                    let _ = write!(s, " {:.2} [{:.2}–{:.2}] {x} |", st.median, st.min, st.max);
                }
                Err(e) => {
                    let _ = write!(s, " ✕ {e} |");
                }
            }
        }
        s.push('\n');
    }
    let verdict = if learning_holds(rows) {
        "met"
    } else {
        "NOT met"
    };
    let _ = writeln!(
        s,
        "\nLearning and policy-dir within {:.0} % of balanced on every program: **{verdict}**.",
        LOSS * 100.0
    );
    for n in notes {
        let _ = writeln!(s, "\n- {n}");
    }
    s
}

impl Args {
    pub fn run(self) -> ExitCode {
        match self.main() {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("bench-real: {e}");
                ExitCode::FAILURE
            }
        }
    }

    fn main(&self) -> Result<bool, String> {
        let out = self
            .out
            .clone()
            .unwrap_or_else(|| target_dir().join("bench-real"));
        let work = out.join("work");
        let policies = out.join("policies");
        let _ = fs::remove_dir_all(&policies);
        fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
        if !self.no_build {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let args = [
                "build",
                "--release",
                "-p",
                "hakmem-preload",
                "-p",
                "bench-peer-mimalloc",
            ];
            eprintln!("bench-real: cargo {}", args.join(" "));
            let ok = Command::new(cargo)
                .args(args)
                .current_dir(workspace_root())
                .status()
                .map_err(|e| format!("cannot run cargo: {e}"))?
                .success();
            if !ok {
                return Err("the build failed".into());
            }
        }
        let release = target_dir().join("release");
        let (mut progs, mut notes) = programs(&work);
        if !self.filter.is_empty() {
            progs.retain(|p| self.filter.iter().any(|f| p.name.contains(f.as_str())));
        }
        if progs.is_empty() {
            return Err("no program to run".into());
        }
        let timeout = Duration::from_secs(self.timeout);
        let job = |p: &Program, col: &str| {
            let dir = policies.join(p.name);
            let _ = fs::create_dir_all(&dir);
            let mut env = p.env.clone();
            env.extend(column_env(col, &release, &dir));
            Job {
                program: p.exe.clone(),
                args: p.args.clone(),
                env,
                timeout,
            }
        };
        // The policy directory's first run learns and saves; it is not timed.
        for p in &progs {
            eprintln!("bench-real: {}: filling the policy directory", p.name);
            let e = runner::run(&job(p, "policy-dir"), &mut || {});
            if e.status != Status::Success {
                notes.push(format!(
                    "{}: the untimed policy-dir run failed ({})",
                    p.name,
                    e.status.describe()
                ));
            }
        }
        let mut times: Vec<Vec<Result<Vec<f64>, String>>> =
            vec![vec![Ok(Vec::new()); COLUMNS.len()]; progs.len()];
        let mut reference: Vec<Option<String>> = vec![None; progs.len()];
        let mut progress = Progress::new(progs.len() * COLUMNS.len() * self.reps as usize);
        for rep in 0..self.reps as usize {
            for (i, p) in progs.iter().enumerate() {
                for (c, col) in COLUMNS.iter().enumerate() {
                    progress.start(p.name, rep, self.reps as usize, col);
                    let e = runner::run(&job(p, col), &mut || progress.tick());
                    let outcome = if e.status != Status::Success {
                        Err(format!(
                            "{} ({})",
                            e.status.describe(),
                            first_line(&e.stderr)
                        ))
                    } else {
                        match &reference[i] {
                            None => {
                                reference[i] = Some(e.stdout.clone());
                                Ok(e.wall.as_secs_f64())
                            }
                            Some(r) if *r == e.stdout => Ok(e.wall.as_secs_f64()),
                            Some(_) => Err("output differs from the first run's".into()),
                        }
                    };
                    progress.finish(
                        &match &outcome {
                            Ok(t) => format!("{t:.2} s"),
                            Err(e) => e.clone(),
                        },
                        outcome.is_err(),
                    );
                    let slot = &mut times[i][c];
                    match (outcome, slot.is_ok()) {
                        (Ok(t), true) => slot.as_mut().expect("checked").push(t),
                        (Err(e), true) => *slot = Err(e),
                        _ => {}
                    }
                }
            }
        }
        progress.clear();
        let rows: Vec<Row> = progs
            .iter()
            .zip(times)
            .map(|(p, cols)| Row {
                program: p.name.to_string(),
                cells: cols
                    .into_iter()
                    .map(|c| c.and_then(|v| Stat::of(&v).ok_or_else(|| "no run".to_string())))
                    .collect(),
            })
            .collect();
        let md = markdown(&rows, self.reps, &notes);
        print!("{md}");
        fs::write(out.join("real.md"), &md).map_err(|e| e.to_string())?;
        let mut w = csv::Writer::from_path(out.join("real.csv")).map_err(|e| e.to_string())?;
        w.write_record([
            "program",
            "column",
            "status",
            "median_s",
            "min_s",
            "max_s",
            "speedup_vs_balanced",
        ])
        .map_err(|e| e.to_string())?;
        for r in &rows {
            for (c, cell) in r.cells.iter().enumerate() {
                let sp = speedup(r, c).map(|x| format!("{x:.4}")).unwrap_or_default();
                let rec = match cell {
                    Ok(st) => vec![
                        r.program.clone(),
                        COLUMNS[c].into(),
                        "ok".into(),
                        format!("{:.4}", st.median),
                        format!("{:.4}", st.min),
                        format!("{:.4}", st.max),
                        sp,
                    ],
                    Err(e) => vec![
                        r.program.clone(),
                        COLUMNS[c].into(),
                        e.clone(),
                        String::new(),
                        String::new(),
                        String::new(),
                        sp,
                    ],
                };
                w.write_record(rec).map_err(|e| e.to_string())?;
            }
        }
        w.flush().map_err(|e| e.to_string())?;
        eprintln!("bench-real: wrote {}", out.join("real.md").display());
        Ok(rows.iter().all(|r| r.cells.iter().all(|c| c.is_ok())))
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .chars()
        .take(120)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(m: f64) -> Result<Stat, String> {
        Ok(Stat::of(&[m]).unwrap())
    }

    #[test]
    fn the_bar_is_three_percent_on_every_program() {
        let ok = Row {
            program: "a".into(),
            cells: vec![stat(1.0), stat(1.02), stat(0.9), stat(0.8)],
        };
        assert!(learning_holds(std::slice::from_ref(&ok)));
        assert!((speedup(&ok, 2).unwrap() - 1.0 / 0.9).abs() < 1e-9);
        let slow = Row {
            program: "b".into(),
            cells: vec![stat(1.0), stat(1.0), stat(1.04), stat(0.8)],
        };
        assert!(!learning_holds(&[ok.clone(), slow]));
        let failed = Row {
            program: "c".into(),
            cells: vec![stat(1.0), Err("SIGSEGV".into()), stat(1.0), stat(1.0)],
        };
        assert!(!learning_holds(&[ok, failed.clone()]));
        let md = markdown(&[failed], 5, &["ruby: not installed, skipped".into()]);
        assert!(md.contains("✕ SIGSEGV"), "{md}");
        assert!(md.contains("**NOT met**"), "{md}");
        assert!(md.contains("- ruby: not installed"), "{md}");
    }

    #[test]
    fn the_generated_c_file_is_deterministic_and_calls_only_earlier_functions() {
        let a = generated_c_source(50);
        assert_eq!(a, generated_c_source(50));
        assert_eq!(a.matches("unsigned f").count(), 50);
        for line in a.lines().filter(|l| l.contains("acc += f")) {
            let callee: usize = line
                .split("acc += f")
                .nth(1)
                .unwrap()
                .split('(')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!(callee < 50, "{line}");
        }
    }

    #[test]
    fn each_column_preloads_its_allocator() {
        let env = column_env("policy-dir", Path::new("/r"), Path::new("/p"));
        assert!(env.contains(&("LD_PRELOAD".into(), "/r/libhakmem.so".into())));
        assert!(env.contains(&("HAKMEM_POLICY_DIR".into(), "/p".into())));
        let env = column_env("mimalloc", Path::new("/r"), Path::new("/p"));
        assert_eq!(
            env,
            vec![(
                "LD_PRELOAD".to_string(),
                "/r/libmimalloc_preload.so".to_string()
            )]
        );
    }
}
