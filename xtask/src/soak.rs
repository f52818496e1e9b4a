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

/// The command line of `soak`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// How long to run, in minutes (fractions allowed) [default: 1].
    #[arg(long, value_name = "N", value_parser = minutes, conflicts_with = "seconds")]
    minutes: Option<u64>,
    /// How long to run, in seconds (for short CI runs).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    seconds: Option<u64>,
    /// Worker threads at once (more are started as they finish).
    #[arg(long, value_name = "N", default_value = "6", value_parser = clap::value_parser!(u64).range(1..))]
    threads: u64,
    /// Random seed.
    #[arg(long, value_name = "N", default_value = "20785")]
    seed: u64,
    /// HAKMEM_MODE for the run.
    #[arg(long, value_name = "MODE", default_value = "learning")]
    mode: String,
    /// Where samples.csv goes [default: target/soak].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// `--minutes`: a positive, finite number of minutes, as whole seconds
/// (at least 1).
fn minutes(v: &str) -> Result<u64, String> {
    match v.parse::<f64>() {
        Ok(m) if m > 0.0 && m.is_finite() => Ok(((m * 60.0).round() as u64).max(1)),
        _ => Err(format!("`{v}` is not a positive number of minutes")),
    }
}

impl Args {
    /// How long to run, in seconds.
    fn run_seconds(&self) -> u64 {
        self.seconds.or(self.minutes).unwrap_or(60)
    }
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
pub fn main(o: &Args) -> Result<(), String> {
    let seconds = o.run_seconds();
    let out = o.out.clone().unwrap_or_else(|| target_dir().join("soak"));
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
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    eprintln!(
        "soak: {} s, {} threads, HAKMEM_MODE={}, seed {}",
        seconds, o.threads, o.mode, o.seed
    );
    let mut child = Command::new(&bin)
        .args(["--seconds", &seconds.to_string()])
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
    let csv_path = out.join("samples.csv");
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
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let a = |v: &[&str]| Cli::try_parse_from(std::iter::once("soak").chain(v.iter().copied()));
        let o = a(&["--minutes", "0.5", "--threads=3"]).unwrap().args;
        assert_eq!((o.run_seconds(), o.threads), (30, 3));
        assert_eq!(a(&["--seconds", "10"]).unwrap().args.run_seconds(), 10);
        assert_eq!(a(&[]).unwrap().args.run_seconds(), 60);
        assert_eq!(a(&[]).unwrap().args.mode, "learning");
        assert!(a(&["--minutes", "-1"]).is_err());
        assert!(a(&["--seconds", "0"]).is_err());
        assert!(a(&["--minutes", "1", "--seconds", "5"]).is_err());
        assert!(a(&["--bogus"]).is_err());
        assert_eq!(
            a(&["--help"]).unwrap_err().kind(),
            clap::error::ErrorKind::DisplayHelp
        );
    }
}
