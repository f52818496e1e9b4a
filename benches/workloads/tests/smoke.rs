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
        (
            "handoff",
            env!("CARGO_BIN_EXE_handoff"),
            &[
                "--blocks",
                "5k",
                "--producers",
                "3",
                "--consumers",
                "2",
                "--batch",
                "7",
            ],
        ),
        (
            "site-lifetimes",
            env!("CARGO_BIN_EXE_site-lifetimes"),
            &["--phases", "3", "--phase-bytes", "1M", "--work-ms", "1"],
        ),
        (
            "request-burst",
            env!("CARGO_BIN_EXE_request-burst"),
            &["--requests", "20", "--objects", "2000"],
        ),
        (
            "query-batches",
            env!("CARGO_BIN_EXE_query-batches"),
            &["--queries", "3", "--rows", "100k"],
        ),
        (
            "index-build",
            env!("CARGO_BIN_EXE_index-build"),
            &["--chunks", "20", "--chunk-max", "4M"],
        ),
        (
            "cache-budget",
            env!("CARGO_BIN_EXE_cache-budget"),
            &["--budget-mb", "16", "--requests", "200", "--objects", "50"],
        ),
        (
            "phase-shift",
            env!("CARGO_BIN_EXE_phase-shift"),
            &[
                "--chunks",
                "10",
                "--chunk-max",
                "4M",
                "--requests",
                "20",
                "--objects",
                "2000",
            ],
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

/// The learning mode on a special workload, with 10 ms windows for about
/// two seconds (the first is the learner's warm-up, when it explores
/// nothing): the learner runs (its research log shows an epoch and the
/// candidate policies it published), `HAKMEM_POLICY_SAVE` writes a policy
/// file at exit, and a fresh run on that file (`HAKMEM_POLICY`) starts
/// FROZEN: it explores nothing.
#[test]
fn the_learner_runs_under_a_special_workload_and_its_policy_reloads() {
    let lib = libhakmem();
    let dir = std::env::temp_dir().join(format!("hakmem-learning-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let policy = dir.join("learned.policy");
    let run = |env: &[(&str, &Path)], mode: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_request-burst"));
        cmd.args(["--requests", "8000", "--objects", "10000"])
            .env("LD_PRELOAD", lib)
            .env("HAKMEM_MODE", mode)
            .env("HAKMEM_LEARN_WINDOW_MS", "10");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run request-burst");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("malloc_lib=libhakmem.so"));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let log = run(&[("HAKMEM_POLICY_SAVE", &policy)], "research");
    let events = |log: &str, what: &str| {
        log.lines()
            .filter(|l| l.starts_with("hakmem: learner: ") && l.contains(what))
            .count()
    };
    assert!(events(&log, "EpochStarted") >= 1, "no epoch:\n{log}");
    assert!(events(&log, "Explore") >= 3, "no policy published:\n{log}");
    let saved = std::fs::read_to_string(&policy).expect("HAKMEM_POLICY_SAVE wrote the file");
    assert!(saved.starts_with("hakmem-policy v1"), "{saved}");
    assert!(saved.contains("tiny_cap = ") && saved.contains("large_cache_budget = "));
    let log = run(&[("HAKMEM_POLICY", &policy)], "research");
    assert_eq!(events(&log, "Explore"), 0, "reloaded run explored:\n{log}");
    assert!(
        !log.contains("HAKMEM_POLICY="),
        "the policy file was rejected:\n{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `HAKMEM_MEM_BUDGET_MB` holds: a shorter `cache-budget` than the
/// matrix's (a cache filled to 80 % of a 128 MiB budget, two workers)
/// stays under the budget in peak RSS under hakmem with the budget, where
/// the same run without it goes over (so the workload does test the
/// budget). (Smaller budgets leave too little room for the process's own
/// few MiB: at 48 MiB the peak is about 1.5 % over.)
/// The standard output of a workload run that must have succeeded under
/// libhakmem.so (its result line names the library).
fn hakmem_result(out: std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains("malloc_lib=libhakmem.so"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The number `k=N` of a result line.
fn result_field(stdout: &str, k: &str) -> u64 {
    stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix(k)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {k}= in {stdout}"))
}

#[test]
fn the_memory_budget_holds_the_peak_rss() {
    let lib = libhakmem();
    let run = |budget: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cache-budget"));
        cmd.args(["--budget-mb", "128", "--requests", "4000", "--threads", "2"])
            .env("LD_PRELOAD", lib)
            .env_remove("HAKMEM_MEM_BUDGET_MB");
        if let Some(b) = budget {
            cmd.env("HAKMEM_MEM_BUDGET_MB", b);
        }
        let stdout = hakmem_result(cmd.output().expect("run cache-budget"));
        let field = |k: &str| result_field(&stdout, k);
        (field("peak_rss_kb"), field("budget_kb"), field("cache_kb"))
    };
    let (peak, budget, cache) = run(Some("128"));
    assert_eq!(budget, 128 << 10);
    assert!(cache > budget * 3 / 4, "the cache filled: {cache} KiB");
    assert!(
        peak <= budget,
        "peak RSS {peak} KiB over the {budget} KiB budget"
    );
    let (free_peak, _, _) = run(None);
    assert!(
        free_peak > budget,
        "without the budget the same run stays under it ({free_peak} KiB): the test tests nothing"
    );
}

/// `HAKMEM_MEM_BUDGET_MB` keeps the working set resident: on the same
/// short `cache-budget` run, the minor faults beyond those of filling the
/// cache once (a page per 4 KiB of it) stay under 4.5 per request. (The
/// old rule, which gave back everything free on every tick from 13/16 of
/// the budget and kept 2 MiB of freed big blocks, made about 7 per
/// request: the requests' own buffers faulted in again and again.)
#[test]
fn the_memory_budget_keeps_the_working_set_resident() {
    let lib = libhakmem();
    let out = Command::new(env!("CARGO_BIN_EXE_cache-budget"))
        .args(["--budget-mb", "128", "--requests", "4000", "--threads", "2"])
        .env("LD_PRELOAD", lib)
        .env("HAKMEM_MEM_BUDGET_MB", "128")
        .output()
        .expect("run cache-budget");
    let stdout = hakmem_result(out);
    let field = |k: &str| result_field(&stdout, k);
    let (faults, cache_kb, budget_kb) = (field("minflt"), field("cache_kb"), field("budget_kb"));
    assert!(field("peak_rss_kb") <= budget_kb, "{stdout}");
    let requests = 2 * 4000;
    let refaults = faults.saturating_sub(cache_kb / 4);
    assert!(
        refaults * 10 <= requests * 45,
        "{refaults} faults beyond the cache's own for {requests} requests: {stdout}"
    );
}

#[test]
fn broken_arguments_fail_loudly() {
    let (_, path, _) = workloads()[1];
    let out = Command::new(path).arg("--bogus").output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown option --bogus"));
    assert!(out.stdout.is_empty(), "no result line on error");
}
