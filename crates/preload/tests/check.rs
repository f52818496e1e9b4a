//! `HAKMEM_CHECK=1` under `LD_PRELOAD=<libhakmem.so>` (`tests/c/check.c`):
//! a multi-threaded workload passes every whole-heap and large-tier check
//! on the slow paths, and a write after free into a freed block's link word
//! — which no misuse check catches (the run without `HAKMEM_CHECK` shows
//! malloc then hands out memory outside the heap) — is caught by the
//! validator at the next slow path: one `hakmem: invariant broken: ...`
//! line, then `SIGABRT`.

mod common;

use common::{
    assert_preload_took, compile_c, preload, run_with_timeout, without_hakmem_env, Finished,
};
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

fn run(case: &str, check: Option<&str>) -> Finished {
    let exe = compile_c("check.c", "check", false);
    let mut cmd = Command::new(exe);
    // only the options set here (hakmem reports unknown HAKMEM_* variables)
    without_hakmem_env(&mut cmd).arg(case);
    if let Some(v) = check {
        cmd.env("HAKMEM_CHECK", v);
    }
    preload(&mut cmd);
    let run = run_with_timeout(&mut cmd, LIMIT);
    assert_preload_took(&run, case);
    run
}

fn hakmem_lines(run: &Finished) -> Vec<String> {
    run.stderr_str()
        .lines()
        .filter(|l| l.starts_with("hakmem:"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_workload_passes_every_check() {
    let r = run("workload", Some("1"));
    assert!(
        r.status.success() && r.stdout_str().ends_with("ok\n"),
        "{}",
        r.describe()
    );
    assert!(hakmem_lines(&r).is_empty(), "{}", r.describe());
}

#[test]
fn a_corrupted_bin_link_goes_unnoticed_without_checks() {
    let r = run("corrupt_link", None);
    let out = r.stdout_str();
    assert!(r.status.success(), "{}", r.describe());
    assert!(
        out.contains("continued\n") && out.contains("foreign ") && out.ends_with("ok\n"),
        "without HAKMEM_CHECK, malloc is expected to hand out the buffer the \
         corrupted link points at (nothing else checks bin links):\n{}",
        r.describe()
    );
    assert!(hakmem_lines(&r).is_empty(), "{}", r.describe());
}

#[test]
fn a_corrupted_bin_link_is_caught_by_the_validator() {
    let r = run("corrupt_link", Some("1"));
    let out = r.stdout_str();
    assert!(out.starts_with("target "), "{}", r.describe());
    assert!(
        !out.contains("continued"),
        "the slow path after the corruption returned:\n{}",
        r.describe()
    );
    assert_eq!(
        r.status.signal(),
        Some(libc::SIGABRT),
        "expected death by SIGABRT\n{}",
        r.describe()
    );
    assert_eq!(
        hakmem_lines(&r),
        ["hakmem: invariant broken: bin: block outside the heap's superslabs of its class"],
        "{}",
        r.describe()
    );
}

#[test]
fn check_zero_turns_the_validator_off() {
    let r = run("corrupt_link", Some("0"));
    assert!(r.status.success(), "{}", r.describe());
    assert!(r.stdout_str().contains("foreign "), "{}", r.describe());
}
