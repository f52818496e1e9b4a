//! `cargo xtask soak --minutes N`: the long mixed run of issue 17.
//!
//! Builds `libhakmem.so` and the `soak` workload (`benches/workloads/src/
//! bin/soak.rs`: every tier, every C entry point, realloc chains,
//! cross-thread frees, thread churn and forks, with contents checks), runs
//! it under `LD_PRELOAD` in learning mode (the learner changes the policy
//! while it runs), and reads its RSS samples. It fails when the workload
//! reports an error or exits badly, when `malloc` was not hakmem's, or when
//! RSS grows past its bounds after warm-up (the first fifth of the run, at
//! least 5 s):
//!
//! * every sample after warm-up stays under `2 * live bound + 256 MiB`,
//!   where the live bound is what the workers may hold at most (the
//!   workload prints it);
//! * RSS does not keep growing: the largest sample of the last third of the
//!   run is at most `1.25 *` the largest of the first third after warm-up
//!   `+ 64 MiB`.
//!
//! Writes the samples to `target/soak/samples.csv` and prints a summary.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::cargo_build::{target_dir, workspace_root};

const USAGE: &str = "cargo xtask soak [--minutes N | --seconds N] [--threads N] [--seed N] [--mode MODE] [--out DIR]

  --minutes N   how long to run (fractions allowed; default 1)
  --seconds N   the same in seconds (for short CI runs)
  --threads N   worker threads at once (default 6; more are started as they finish)
  --seed N      random seed (default 20785)
  --mode MODE   HAKMEM_MODE for the run (default learning)
  --out DIR     where samples.csv goes (default target/soak)
";

#[derive(Debug)]
struct Opts {
    seconds: u64,
    threads: usize,
    seed: u64,
    mode: String,
    out: PathBuf,
}

fn parse(args: &[String]) -> Result<Option<Opts>, String> {
    let mut o = Opts {
        seconds: 60,
        threads: 6,
        seed: 20785,
        mode: "learning".into(),
        out: target_dir().join("soak"),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--help" || a == "-h" {
            return Ok(None);
        }
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (a.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{key} needs a value"))
        };
        let bad = |v: &str| format!("bad value `{v}` for {key}");
        match key {
            "--minutes" => {
                let v = value()?;
                let m: f64 = v.parse().map_err(|_| bad(&v))?;
                if !(m > 0.0 && m.is_finite()) {
                    return Err(bad(&v));
                }
                o.seconds = ((m * 60.0).round() as u64).max(1);
            }
            "--seconds" => {
                let v = value()?;
                o.seconds = v.parse().ok().filter(|&s| s > 0).ok_or_else(|| bad(&v))?;
            }
            "--threads" => {
                let v = value()?;
                o.threads = v.parse().ok().filter(|&t| t > 0).ok_or_else(|| bad(&v))?;
            }
            "--seed" => {
                let v = value()?;
                o.seed = v.parse().map_err(|_| bad(&v))?;
            }
            "--mode" => o.mode = value()?,
            "--out" => o.out = PathBuf::from(value()?),
            _ => return Err(format!("unknown option `{a}`")),
        }
    }
    Ok(Some(o))
}

/// One `SOAK_SAMPLE` line.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    t_ms: u64,
    ops: u64,
    rss_kb: u64,
    live_kb: u64,
}

/// `key=value` of a result line.
fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

fn sample(line: &str) -> Option<Sample> {
    let rest = line.strip_prefix("SOAK_SAMPLE ")?;
    Some(Sample {
        t_ms: field(rest, "t_ms")?,
        ops: field(rest, "ops")?,
        rss_kb: field(rest, "rss_kb")?,
        live_kb: field(rest, "live_kb")?,
    })
}

/// The RSS verdict: `Err` names the bound that was crossed.
fn judge(samples: &[Sample], total_ms: u64, live_bound_kb: u64) -> Result<(), String> {
    let warm = (total_ms / 5).max(5_000);
    let after: Vec<&Sample> = samples.iter().filter(|s| s.t_ms >= warm).collect();
    if after.len() < 3 {
        return Ok(()); // too short a run to judge growth
    }
    let bound = 2 * live_bound_kb + 256 * 1024;
    if let Some(s) = after.iter().find(|s| s.rss_kb > bound) {
        return Err(format!(
            "RSS {} KiB at {} ms exceeds the bound {bound} KiB (2 x live bound {live_bound_kb} KiB + 256 MiB)",
            s.rss_kb, s.t_ms
        ));
    }
    let third = after.len() / 3;
    let first = after[..third.max(1)]
        .iter()
        .map(|s| s.rss_kb)
        .max()
        .unwrap_or(0);
    let last = after[after.len() - third.max(1)..]
        .iter()
        .map(|s| s.rss_kb)
        .max()
        .unwrap_or(0);
    let limit = first + first / 4 + 64 * 1024;
    if last > limit {
        return Err(format!(
            "RSS keeps growing: largest sample of the last third {last} KiB > 1.25 x {first} KiB (first third after warm-up) + 64 MiB"
        ));
    }
    Ok(())
}

fn cargo(args: &[&str]) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("soak: cargo {}", args.join(" "));
    let st = Command::new(cargo)
        .args(args)
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    st.success()
        .then_some(())
        .ok_or_else(|| format!("`cargo {}` failed ({st})", args.join(" ")))
}

/// Entry point of `cargo xtask soak`; `args` follow the command name.
pub fn main(args: &[String]) -> Result<(), String> {
    let Some(o) = parse(args).map_err(|e| format!("{e}\n\n{USAGE}"))? else {
        print!("{USAGE}");
        return Ok(());
    };
    cargo(&["build", "--release", "-p", "hakmem-preload"])?;
    cargo(&[
        "build",
        "--release",
        "-p",
        "bench-workloads",
        "--bin",
        "soak",
    ])?;
    let release = target_dir().join("release");
    let lib = release.join("libhakmem.so");
    let bin = release.join("soak");
    std::fs::create_dir_all(&o.out).map_err(|e| format!("{}: {e}", o.out.display()))?;
    eprintln!(
        "soak: {} s, {} threads, HAKMEM_MODE={}, seed {}",
        o.seconds, o.threads, o.mode, o.seed
    );
    let mut child = Command::new(&bin)
        .args(["--seconds", &o.seconds.to_string()])
        .args(["--threads", &o.threads.to_string()])
        .args(["--seed", &o.seed.to_string()])
        .env("LD_PRELOAD", &lib)
        .env("HAKMEM_MODE", &o.mode)
        .env("HAKMEM_LEARN_WINDOW_MS", "250")
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut samples = Vec::new();
    let (mut bound_kb, mut provider, mut done) = (0u64, String::new(), None::<String>);
    let mut last_report = 0u64;
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("reading the workload's output: {e}"))?;
        if let Some(s) = sample(&line) {
            if s.t_ms >= last_report + 60_000 || samples.is_empty() {
                last_report = s.t_ms;
                eprintln!(
                    "soak: {:>6} s  ops {:>12}  rss {:>8} KiB  live {:>8} KiB",
                    s.t_ms / 1000,
                    s.ops,
                    s.rss_kb,
                    s.live_kb
                );
            }
            samples.push(s);
        } else if let Some(rest) = line.strip_prefix("SOAK_BOUND ") {
            bound_kb = field(rest, "live_bound_kb").unwrap_or(0);
            provider = rest
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix("provider="))
                .unwrap_or("")
                .to_string();
        } else if line.starts_with("SOAK_DONE ") {
            done = Some(line);
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for the workload: {e}"))?;
    let mut csv = String::from("t_ms,ops,rss_kb,live_kb\n");
    for s in &samples {
        csv.push_str(&format!(
            "{},{},{},{}\n",
            s.t_ms, s.ops, s.rss_kb, s.live_kb
        ));
    }
    let csv_path = o.out.join("samples.csv");
    std::fs::write(&csv_path, csv).map_err(|e| format!("{}: {e}", csv_path.display()))?;
    let Some(done) = done else {
        return Err(format!(
            "the workload ended without its SOAK_DONE line ({status})"
        ));
    };
    let peak = samples.iter().map(|s| s.rss_kb).max().unwrap_or(0);
    let total_ms = field(&done, "t_ms").unwrap_or(0);
    let ops = field(&done, "ops").unwrap_or(0);
    println!("soak: {done}");
    println!(
        "soak: {ops} ops in {:.1} s ({:.0} ops/s), {} threads started, {} forks, peak RSS {peak} KiB, live bound {bound_kb} KiB, {} samples in {}",
        total_ms as f64 / 1000.0,
        ops as f64 * 1000.0 / total_ms.max(1) as f64,
        field(&done, "threads").unwrap_or(0),
        field(&done, "forks").unwrap_or(0),
        samples.len(),
        csv_path.display()
    );
    if !provider.starts_with("libhakmem") {
        return Err(format!("malloc came from `{provider}`, not libhakmem.so"));
    }
    if field(&done, "errors") != Some(0) || !status.success() {
        return Err(format!("the workload reported errors or failed ({status})"));
    }
    judge(&samples, total_ms, bound_kb)?;
    println!("soak: ok");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t_s: u64, rss_mb: u64) -> Sample {
        Sample {
            t_ms: t_s * 1000,
            ops: t_s,
            rss_kb: rss_mb * 1024,
            live_kb: 0,
        }
    }

    #[test]
    fn sample_lines_parse() {
        let l = "SOAK_SAMPLE t_ms=1500 ops=42 rss_kb=9000 live_kb=300 threads=6 forks=1 errors=0";
        assert_eq!(
            sample(l),
            Some(Sample {
                t_ms: 1500,
                ops: 42,
                rss_kb: 9000,
                live_kb: 300
            })
        );
        assert_eq!(sample("SOAK_SAMPLE t_ms=x"), None);
        assert_eq!(field("a=1 ab=2", "ab"), Some(2));
    }

    #[test]
    fn flat_rss_passes_and_growth_fails() {
        let flat: Vec<Sample> = (0..100).map(|t| s(t, 200 + t % 7)).collect();
        assert_eq!(judge(&flat, 100_000, 100 * 1024), Ok(()));
        // a leak: 5 MiB a second after warm-up
        let leak: Vec<Sample> = (0..100).map(|t| s(t, 200 + 5 * t)).collect();
        let e = judge(&leak, 100_000, 400 * 1024).unwrap_err();
        assert!(e.contains("keeps growing"), "{e}");
        // over the live set's bound
        let big: Vec<Sample> = (0..100).map(|t| s(t, 2000)).collect();
        let e = judge(&big, 100_000, 100 * 1024).unwrap_err();
        assert!(e.contains("exceeds the bound"), "{e}");
    }

    #[test]
    fn options_parse() {
        let a = |v: &[&str]| parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let o = a(&["--minutes", "0.5", "--threads=3"]).unwrap().unwrap();
        assert_eq!((o.seconds, o.threads), (30, 3));
        assert_eq!(a(&["--seconds", "10"]).unwrap().unwrap().seconds, 10);
        assert!(a(&["--minutes", "-1"]).is_err());
        assert!(a(&["--bogus"]).is_err());
        assert!(a(&["--help"]).unwrap().is_none());
    }
}
