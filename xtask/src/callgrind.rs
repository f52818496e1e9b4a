//! `bench-matrix --callgrind`: instructions per malloc+free pair on the tiny
//! fast path, counted by callgrind (deterministic, unlike timings).
//!
//! `tiny-hot --raw --size 32 --live 100` runs at two iteration counts
//! N1 < N2 under `valgrind --tool=callgrind`; start-up, set-up and exit cost
//! the same in both, so `(Ir(N2) - Ir(N1)) / (N2 - N1)` is the cost of one
//! loop iteration: one `std::alloc::dealloc` and one `std::alloc::alloc` of
//! 32 bytes (through Rust's allocator shim into `free`/`malloc`, or straight
//! into `hakmem::HakMem` for the in-process build) plus the loop's own few
//! instructions, which `tiny-hot --raw --baseline` measures without the
//! allocator calls.
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::allocators::{Allocator, Paths};
use crate::report::csv_record;
use crate::runner::{self, Job, Status};

/// The two iteration counts.
pub const N1: u64 = 200_000;
pub const N2: u64 = 1_200_000;

/// Parses the `Collected : N` line callgrind prints at exit.
pub fn collected(stderr: &str) -> Option<u64> {
    stderr.lines().find_map(|l| {
        let (_, rest) = l.split_once("Collected :")?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The instruction total of one thread's callgrind profile (the
/// `summary:` line of an `--separate-threads=yes` output file).
pub fn thread_summary(profile: &str) -> Option<u64> {
    profile
        .lines()
        .find_map(|l| l.strip_prefix("summary:")?.trim().parse().ok())
}

/// Instructions per iteration from two measurements.
pub fn per_iteration(ir1: u64, ir2: u64, n1: u64, n2: u64) -> Option<f64> {
    (n2 > n1 && ir2 >= ir1).then(|| (ir2 - ir1) as f64 / (n2 - n1) as f64)
}

/// Instructions of one run: the whole process, and its main thread alone
/// (the allocation loop; a learner thread's work is the rest).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ir {
    pub total: u64,
    pub main: u64,
}

fn measure(
    program: &Path,
    preload: Option<&Path>,
    extra_env: &[(String, String)],
    iters: u64,
    baseline: bool,
    out: &Path,
) -> Result<Ir, String> {
    let mut args = vec![
        "--tool=callgrind".to_string(),
        "--separate-threads=yes".to_string(),
        format!("--callgrind-out-file={}", out.display()),
        program.to_string_lossy().into_owned(),
        "--size".into(),
        "32".into(),
        "--live".into(),
        "100".into(),
        "--raw".into(),
        "--iters".into(),
        iters.to_string(),
    ];
    if baseline {
        args.push("--baseline".into());
    }
    let mut env = preload
        .map(|p| vec![("LD_PRELOAD".to_string(), p.to_string_lossy().into_owned())])
        .unwrap_or_default();
    env.extend(extra_env.iter().cloned());
    let ended = runner::run(
        &Job {
            program: "valgrind".into(),
            args,
            env,
            timeout: Duration::from_secs(600),
        },
        &mut || {},
    );
    if ended.status != Status::Success {
        // The program's own last words, not valgrind's (`==pid==`) summary.
        let last = ended
            .stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty() && !l.starts_with("=="))
            .unwrap_or("")
            .trim()
            .to_string();
        return Err(format!("{}: {last}", ended.status.describe()));
    }
    let total = collected(&ended.stderr)
        .ok_or_else(|| "no `Collected :` line from callgrind".to_string())?;
    let main_file = format!("{}-01", out.display());
    let main = fs::read_to_string(&main_file)
        .ok()
        .and_then(|p| thread_summary(&p))
        .ok_or_else(|| format!("no summary in {main_file}"))?;
    Ok(Ir { total, main })
}

/// A policy file for the FROZEN row: what a learning run of tiny-hot saves
/// at exit (`HAKMEM_MODE=learning`, 10 ms windows, `HAKMEM_POLICY_SAVE`).
fn saved_policy(program: &Path, lib: &Path, dir: &Path) -> Result<std::path::PathBuf, String> {
    let path = dir.join("learned.policy");
    let _ = fs::remove_file(&path);
    let ended = runner::run(
        &Job {
            program: program.to_path_buf(),
            args: ["--size", "32", "--live", "100", "--iters", "30M"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            env: vec![
                ("LD_PRELOAD".into(), lib.to_string_lossy().into_owned()),
                ("HAKMEM_MODE".into(), "learning".into()),
                ("HAKMEM_LEARN_WINDOW_MS".into(), "10".into()),
                (
                    "HAKMEM_POLICY_SAVE".into(),
                    path.to_string_lossy().into_owned(),
                ),
            ],
            timeout: Duration::from_secs(120),
        },
        &mut || {},
    );
    if ended.status != Status::Success || !path.exists() {
        return Err(format!(
            "the learning run that saves the policy failed ({})",
            ended.status.describe()
        ));
    }
    Ok(path)
}

struct Row {
    name: String,
    how: String,
    result: Result<(Ir, Ir), String>,
}

/// Runs the measurement; returns the number of failed allocators.
pub fn main(
    allocs: &[Allocator],
    paths: &Paths,
    out: &Path,
    broken: &[(&'static str, String)],
    notes: Vec<String>,
) -> Result<usize, String> {
    let version = Command::new("valgrind")
        .arg("--version")
        .output()
        .map_err(|e| format!("valgrind not found ({e}); Debian: apt-get install valgrind"))?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    let dir = out.join("callgrind");
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;

    let mut rows = Vec::new();
    let system_prog = paths.release.join("tiny-hot");
    let pair = |name: &str,
                prog: &Path,
                preload: Option<&Path>,
                env: &[(String, String)],
                baseline: bool|
     -> Result<(Ir, Ir), String> {
        if let Some(p) = preload {
            if !p.exists() {
                return Err(format!("{} missing", p.display()));
            }
        }
        eprintln!("bench-matrix: callgrind {name} ...");
        let a = measure(
            prog,
            preload,
            env,
            N1,
            baseline,
            &dir.join(format!("{name}.{N1}.out")),
        )?;
        let b = measure(
            prog,
            preload,
            env,
            N2,
            baseline,
            &dir.join(format!("{name}.{N2}.out")),
        )?;
        Ok((a, b))
    };
    rows.push(Row {
        name: "loop only".into(),
        how: "tiny-hot --raw --baseline: the same loop without the allocator calls".into(),
        result: pair("loop", &system_prog, None, &[], true),
    });
    for a in allocs {
        let prog = a.program(paths, "tiny-hot");
        let how = a.launch();
        let failed_build = broken.iter().find(|(n, _)| *n == a.name);
        let result = match failed_build {
            Some((_, e)) => Err(e.clone()),
            None => {
                let env: Vec<(String, String)> = a
                    .env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                pair(a.name, &prog, a.preload.as_deref(), &env, false)
            }
        };
        rows.push(Row {
            name: a.name.to_string(),
            how: how.clone(),
            result,
        });
        if a.name != "hakmem" {
            continue;
        }
        // hakmem's modes: `fast` (bins and caches on the built-in policy,
        // no policy file, no learner) and a learner FROZEN on a saved
        // policy (`learning` + `HAKMEM_POLICY`).
        let lib = a.preload.clone().unwrap_or_default();
        let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
        let fast = [kv("HAKMEM_MODE", "fast")];
        rows.push(Row {
            name: "hakmem-fast".into(),
            how: format!("{how}, HAKMEM_MODE=fast"),
            result: match failed_build {
                Some((_, e)) => Err(e.clone()),
                None => pair("hakmem-fast", &prog, Some(&lib), &fast, false),
            },
        });
        let frozen = match failed_build {
            Some((_, e)) => Err(e.clone()),
            None => saved_policy(&prog, &lib, &dir).and_then(|p| {
                let env = [
                    kv("HAKMEM_MODE", "learning"),
                    kv("HAKMEM_POLICY", &p.to_string_lossy()),
                ];
                pair("hakmem-frozen", &prog, Some(&lib), &env, false)
            }),
        };
        rows.push(Row {
            name: "hakmem-frozen".into(),
            how: format!(
                "{how}, HAKMEM_MODE=learning HAKMEM_POLICY=callgrind/learned.policy (saved by a learning run of tiny-hot): starts FROZEN"
            ),
            result: frozen,
        });
    }

    let per = |r: &Row, main: bool| -> Option<f64> {
        let (a, b) = r.result.as_ref().ok()?;
        if main {
            per_iteration(a.main, b.main, N1, N2)
        } else {
            per_iteration(a.total, b.total, N1, N2)
        }
    };
    let loop_ir = per(&rows[0], false);
    let loop_main = per(&rows[0], true);
    let mut md = String::new();
    let _ = writeln!(md, "# hakmem bench-matrix --callgrind\n");
    let _ = writeln!(
        md,
        "Instructions (callgrind Ir) per iteration of `tiny-hot --raw --size 32 --live 100`: one free and one malloc of 32 bytes with 100 blocks live, \
         through `std::alloc` (Rust's shim, then the C `free`/`malloc`; straight into `hakmem::HakMem` for hakmem-inproc), \
         measured as (Ir(N2) - Ir(N1)) / (N2 - N1) with N1 = {N1} and N2 = {N2}; \"allocator only\" subtracts the loop's own instructions. \
         \"main thread\" counts the allocating thread alone (`--separate-threads=yes`): the fast path, without a learner thread's periodic work. {version}.\n"
    );
    let _ = writeln!(md, "| allocator | Ir per malloc+free pair (with loop) | allocator only | main thread, allocator only | Ir at N1 | Ir at N2 | how |");
    let _ = writeln!(md, "|---|--:|--:|--:|--:|--:|---|");
    let mut csv = String::from(
        "allocator,ir_per_pair,ir_per_pair_net_of_loop,main_thread_ir_per_pair_net_of_loop,ir_n1,ir_n2,n1,n2,status\n",
    );
    let mut failed = 0;
    let net = |r: &Row, main: bool| -> Option<f64> {
        let l = if main { loop_main } else { loop_ir };
        match (per(r, main), l) {
            (Some(p), Some(l)) if r.name != "loop only" => Some(p - l),
            _ => None,
        }
    };
    for r in &rows {
        match &r.result {
            Ok((a, b)) => {
                let f = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "–".into());
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    r.name,
                    f(per(r, false)),
                    f(net(r, false)),
                    f(net(r, true)),
                    a.total,
                    b.total,
                    r.how
                );
                let g = |v: Option<f64>| v.map(|x| format!("{x:.3}")).unwrap_or_default();
                csv.push_str(&csv_record([
                    r.name.clone(),
                    g(per(r, false)),
                    g(net(r, false)),
                    g(net(r, true)),
                    a.total.to_string(),
                    b.total.to_string(),
                    N1.to_string(),
                    N2.to_string(),
                    "ok".to_owned(),
                ]));
            }
            Err(e) => {
                failed += 1;
                let _ = writeln!(md, "| {} | **FAILED** ({e}) | | | | | {} |", r.name, r.how);
                let (n1, n2) = (N1.to_string(), N2.to_string());
                let status = format!("failed: {e}");
                csv.push_str(&csv_record([
                    r.name.as_str(),
                    "",
                    "",
                    "",
                    "",
                    "",
                    &n1,
                    &n2,
                    &status,
                ]));
            }
        }
    }
    let find = |n: &str| rows.iter().find(|r| r.name == n);
    if let (Some(fast), Some(frozen)) = (find("hakmem-fast"), find("hakmem-frozen")) {
        if let (Some(fm), Some(zm), Some(ft), Some(zt)) = (
            net(fast, true),
            net(frozen, true),
            net(fast, false),
            net(frozen, false),
        ) {
            let _ = writeln!(md, "\n## FROZEN against `fast`\n");
            let _ = writeln!(
                md,
                "- tiny fast path (main thread, allocator only): hakmem-frozen {zm:.2} vs hakmem-fast {fm:.2} Ir per pair: {:+.2}% (target: at most +1%)",
                (zm - fm) / fm * 100.0
            );
            let _ = writeln!(
                md,
                "- whole process (with the learner thread's work in FROZEN: a size-histogram read every window, not on the allocation path; under valgrind it depends on how long the run takes): {zt:.2} vs {ft:.2}: {:+.2}%",
                (zt - ft) / ft * 100.0
            );
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(md, "\n## Notes\n");
        for n in notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    fs::write(out.join("callgrind.md"), &md).map_err(|e| e.to_string())?;
    fs::write(out.join("callgrind.csv"), &csv).map_err(|e| e.to_string())?;
    println!("{md}");
    eprintln!("bench-matrix: wrote {0}/callgrind.md, {0}/callgrind.csv and the profiles in {0}/callgrind/", out.display());
    Ok(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_callgrind_summary() {
        let err = "==12== Events    : Ir\n==12== Collected : 123456789\n==12==\n==12== I   refs:      123,456,789\n";
        assert_eq!(collected(err), Some(123_456_789));
        assert_eq!(collected("nothing here"), None);
    }

    #[test]
    fn reads_a_thread_profile_summary() {
        let p = "version: 1\ncreator: callgrind-3.19.0\npart: 1\nthread: 1\nsummary: 14801087\n\nfn=main\ntotals: 14801087\n";
        assert_eq!(thread_summary(p), Some(14_801_087));
        assert_eq!(thread_summary("totals: 5\n"), None);
    }

    #[test]
    fn per_iteration_is_the_slope() {
        assert_eq!(per_iteration(1_000, 3_000, 100, 300), Some(10.0));
        assert_eq!(per_iteration(3_000, 1_000, 100, 300), None);
        assert_eq!(per_iteration(1, 2, 5, 5), None);
    }
}
