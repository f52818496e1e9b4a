//! Smoke test: every workload runs briefly under the system malloc and under
//! hakmem (`LD_PRELOAD` of libhakmem.so, built here if needed) and prints one
//! well-formed result line that names the allocator actually used.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// (program, path, small arguments)
fn workloads() -> Vec<(&'static str, &'static str, &'static [&'static str])> {
    vec![
        (
            "larson",
            env!("CARGO_BIN_EXE_larson"),
            &["--chunks", "200", "--generations", "3", "--threads", "2"],
        ),
        (
            "tiny-hot",
            env!("CARGO_BIN_EXE_tiny-hot"),
            &["--iters", "20k"],
        ),
        (
            "random-mixed",
            env!("CARGO_BIN_EXE_random-mixed"),
            &["--ops", "20k", "--slots", "256"],
        ),
        (
            "mid-mt",
            env!("CARGO_BIN_EXE_mid-mt"),
            &["--ops", "2k", "--threads", "2"],
        ),
        (
            "json",
            env!("CARGO_BIN_EXE_json"),
            &["--iters", "1", "--scale", "0.05"],
        ),
        (
            "mir",
            env!("CARGO_BIN_EXE_mir"),
            &["--iters", "1", "--scale", "0.1"],
        ),
        (
            "vm",
            env!("CARGO_BIN_EXE_vm"),
            &["--iters", "1", "--scale", "0.2"],
        ),
        (
            "mixed",
            env!("CARGO_BIN_EXE_mixed"),
            &["--iters", "1", "--scale", "0.05"],
        ),
        (
            "realloc-chain",
            env!("CARGO_BIN_EXE_realloc-chain"),
            &["--iters", "1", "--max", "1M"],
        ),
        (
            "fragmentation",
            env!("CARGO_BIN_EXE_fragmentation"),
            &["--blocks", "2k"],
        ),
        (
            "large-working-set",
            env!("CARGO_BIN_EXE_large-working-set"),
            &["--mib", "2", "--ops", "10k"],
        ),
        (
            "cache-scratch",
            env!("CARGO_BIN_EXE_cache-scratch"),
            &["--iters", "2k", "--writes", "2"],
        ),
        (
            "cache-thrash",
            env!("CARGO_BIN_EXE_cache-thrash"),
            &["--iters", "2k", "--writes", "2"],
        ),
        (
            "producer-consumer",
            env!("CARGO_BIN_EXE_producer-consumer"),
            &["--blocks", "5k"],
        ),
    ]
}

/// Runs a workload; returns the fields of its result line, or what went wrong.
fn run(
    path: &str,
    args: &[&str],
    preload: Option<&Path>,
) -> Result<BTreeMap<String, String>, String> {
    let mut cmd = Command::new(path);
    cmd.args(args).env_remove("LD_PRELOAD");
    if let Some(p) = preload {
        cmd.env("LD_PRELOAD", p);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {path}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "{}; stderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("HAKMEM_BENCH "))
        .collect();
    if lines.len() != 1 {
        return Err(format!(
            "expected one result line, got {}: {stdout}",
            lines.len()
        ));
    }
    let mut fields = BTreeMap::new();
    for w in lines[0].split_whitespace().skip(1) {
        let (k, v) = w
            .split_once('=')
            .ok_or_else(|| format!("`{w}` is not key=value"))?;
        if fields.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("{k} repeated"));
        }
    }
    Ok(fields)
}

fn number(f: &BTreeMap<String, String>, key: &str) -> Result<f64, String> {
    f.get(key)
        .ok_or_else(|| format!("no {key}="))?
        .parse::<f64>()
        .map_err(|_| format!("{key}= is not a number"))
}

/// Checks one result line; `lib` is the library that must provide malloc.
fn check(name: &str, f: &BTreeMap<String, String>, lib: &str) -> Result<(), String> {
    if f.get("workload").map(String::as_str) != Some(name) {
        return Err(format!("workload={:?}", f.get("workload")));
    }
    for key in [
        "ops",
        "secs",
        "ops_per_sec",
        "peak_rss_kb",
        "minflt",
        "threads",
    ] {
        if number(f, key)? <= 0.0 {
            return Err(format!("{key} is not positive"));
        }
    }
    let ops = number(f, "ops")?;
    let rate = number(f, "ops_per_sec")?;
    let secs = number(f, "secs")?;
    if (rate * secs - ops).abs() > ops * 0.01 + 1.0 {
        return Err(format!("ops_per_sec {rate} * secs {secs} != ops {ops}"));
    }
    let (p50, p95, p99) = (
        number(f, "p50_ns")?,
        number(f, "p95_ns")?,
        number(f, "p99_ns")?,
    );
    if !(0.0 <= p50 && p50 <= p95 && p95 <= p99) {
        return Err(format!("percentiles out of order: {p50} {p95} {p99}"));
    }
    if number(f, "samples")? < 1.0 {
        return Err("no latency samples".into());
    }
    if f.get("malloc_lib").map(String::as_str) != Some(lib) {
        return Err(format!(
            "malloc from {:?}, expected {lib}",
            f.get("malloc_lib")
        ));
    }
    if f.get("global").map(String::as_str) != Some("system") {
        return Err(format!("global={:?}", f.get("global")));
    }
    Ok(())
}

fn run_all(preload: Option<&Path>, lib: &str) {
    let mut failures = Vec::new();
    for (name, path, args) in workloads() {
        if let Err(e) = run(path, args, preload).and_then(|f| check(name, &f, lib)) {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(failures.is_empty(), "under {lib}:\n{}", failures.join("\n"));
}

#[test]
fn every_workload_runs_under_system_malloc() {
    run_all(None, "libc.so.6");
}

/// Builds libhakmem.so with the profile these tests were built with and
/// returns its path.
fn libhakmem() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_larson"))
            .parent()
            .expect("bin dir")
            .to_path_buf();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(&root)
            .args(["build", "--quiet", "-p", "hakmem-preload"]);
        if bin_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        // The target directory of these tests, wherever it is.
        if let Some(target) = bin_dir.parent() {
            cmd.arg("--target-dir").arg(target);
        }
        let status = cmd.status().expect("run cargo");
        assert!(
            status.success(),
            "cargo build -p hakmem-preload failed: {status}"
        );
        let lib = bin_dir.join("libhakmem.so");
        assert!(lib.exists(), "{} missing after the build", lib.display());
        lib
    })
}

#[test]
fn every_workload_runs_under_hakmem_preload() {
    run_all(Some(libhakmem()), "libhakmem.so");
}

#[test]
fn broken_arguments_fail_loudly() {
    let (_, path, _) = workloads()[1];
    let out = Command::new(path).arg("--bogus").output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown option --bogus"));
    assert!(out.stdout.is_empty(), "no result line on error");
}
