//! The `hakmem` command as a user runs it: every subcommand, its output
//! and its exit status, including the error paths (one line, status 2).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use hakmem_policy_rcu::{FrozenPolicy, DEFAULT_POLICY, POLICY_FILE_MAX};

const BIN: &str = env!("CARGO_BIN_EXE_hakmem");

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hakmem-cli-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn hakmem(bin: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("HAKMEM_") || k == "LD_PRELOAD" {
            cmd.env_remove(k);
        }
    }
    // A copy just written may still be open for writing in a child another
    // test thread forked meanwhile (ETXTBSY until that child execs): retry.
    for _ in 0..100 {
        match cmd.output() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            r => return r.expect("run hakmem"),
        }
    }
    panic!("{} stayed busy", bin.display())
}

/// A copy of the binary at `to` (a hard link where the file system allows).
fn copy_bin(to: &Path) {
    if std::fs::hard_link(BIN, to).is_err() {
        std::fs::copy(BIN, to).unwrap();
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The failure is one `hakmem: ` line containing `what`, with status 2.
fn assert_one_line_error(o: &Output, what: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("hakmem: ") && err.contains(what), "{err}");
}

fn write_policy(path: &Path, p: &FrozenPolicy) {
    let mut buf = [0u8; POLICY_FILE_MAX];
    let n = p.serialize(&mut buf).unwrap();
    std::fs::write(path, &buf[..n]).unwrap();
}

/// libhakmem.so beside the `hakmem` binary: built by a nested cargo (a
/// no-op when fresh), as the preload crate's tests do.
fn build_lib() -> PathBuf {
    let dir = Path::new(BIN).parent().unwrap();
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_owned(),
        Some(p) => p.to_owned(),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let st = Command::new(cargo)
        .args([
            "build",
            "-p",
            "hakmem-preload",
            "--lib",
            "--profile",
            &profile,
        ])
        .status()
        .expect("cargo");
    assert!(st.success());
    let lib = dir.join("libhakmem.so");
    assert!(lib.is_file(), "no {}", lib.display());
    lib
}

#[test]
fn run_preloads_the_library_beside_the_binary_and_sets_the_options() {
    // a copy of the binary with a stand-in library beside it: `env` shows
    // what `run` set (ld.so skips the stand-in with a warning on stderr)
    let dir = Scratch::new("run-env");
    let bin = dir.join("hakmem");
    copy_bin(&bin);
    std::fs::write(dir.join("libhakmem.so"), b"").unwrap();
    let o = hakmem(
        &bin,
        &[
            "run",
            "--mode",
            "fast",
            "--stats",
            "--policy-save",
            "p.%p",
            "--",
            "env",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lib = std::fs::canonicalize(dir.join("libhakmem.so")).unwrap();
    for want in [
        format!("LD_PRELOAD={}", lib.display()),
        "HAKMEM_MODE=fast".into(),
        "HAKMEM_STATS=1".into(),
        "HAKMEM_POLICY_SAVE=p.%p".into(),
    ] {
        assert!(out.lines().any(|l| l == want), "no {want} in\n{out}");
    }
    assert!(!out.contains("HAKMEM_SITES"), "{out}");
}

#[test]
fn run_passes_on_the_exit_status_and_reports_failures_in_one_line() {
    let dir = Scratch::new("run-err");
    let bin = dir.join("hakmem");
    copy_bin(&bin);
    // no library anywhere near a copy in a scratch directory
    let o = hakmem(&bin, &["run", "--", "true"]);
    assert_one_line_error(&o, "cannot find libhakmem.so");
    let o = hakmem(
        &bin,
        &["run", "--lib", "/nonexistent/libhakmem.so", "--", "true"],
    );
    assert_one_line_error(&o, "/nonexistent/libhakmem.so");
    std::fs::write(dir.join("libhakmem.so"), b"").unwrap();
    let o = hakmem(&bin, &["run", "--", "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    let o = hakmem(&bin, &["run", "--", "/nonexistent/program"]);
    assert_eq!(o.status.code(), Some(127));
    let err = stderr(&o);
    assert!(
        err.contains("hakmem: cannot run /nonexistent/program"),
        "{err}"
    );
    // usage errors are clap's, status 2
    assert_eq!(hakmem(&bin, &["run"]).status.code(), Some(2));
}

#[test]
fn run_then_sites_end_to_end() {
    let lib = build_lib();
    let dir = Scratch::new("e2e");
    let report = dir.join("sites-%e.json");
    let o = hakmem(
        Path::new(BIN),
        &[
            "run",
            "--lib",
            lib.to_str().unwrap(),
            "--sites",
            report.to_str().unwrap(),
            "--sample",
            "0",
            "--",
            "sh",
            "-c",
            "ls / >/dev/null",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // `sh -c` with one command execs `ls` in place: its report
    let written = dir.join("sites-ls.json");
    assert!(
        written.is_file(),
        "no {}: {}",
        written.display(),
        stderr(&o)
    );
    let o = hakmem(
        Path::new(BIN),
        &["sites", written.to_str().unwrap(), "--top", "3"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("every recorded call"), "{out}");
    // three numbered rows, each naming its site in ls or a library
    for n in 1..=3 {
        let row = out
            .lines()
            .find(|l| {
                l.trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
                    .starts_with(&format!("{n} "))
            })
            .unwrap_or_else(|| panic!("no row {n} in\n{out}"));
        assert!(row.contains("+0x"), "{row}");
    }
}

const REPORT: &str = r#"{"version": 1, "sample_shift": 4, "sites": [
  {"kind": "sampled", "name": "few_big+0x10 (prog)", "est_allocs": 10, "est_bytes": 10485760, "live_bytes": 0, "avg_size": 1048576, "frees": 10, "remote_frees": 5, "class": "LARGE", "lifetime": "SHORT"},
  {"kind": "sampled", "name": "many_small+0x20 (prog)", "est_allocs": 5000, "est_bytes": 80000, "live_bytes": 160, "avg_size": 16, "frees": 4990, "remote_frees": 0, "class": "SMALL_FREQUENT", "lifetime": "LONG"}],
  "other": {"kind": "other", "name": "(other sites)", "est_allocs": 0}}"#;

#[test]
fn sites_sorts_by_bytes_or_calls() {
    let dir = Scratch::new("sites");
    let f = dir.join("r.json");
    std::fs::write(&f, REPORT).unwrap();
    let f = f.to_str().unwrap();
    let order = |args: &[&str]| {
        let o = hakmem(Path::new(BIN), args);
        assert!(o.status.success(), "{}", stderr(&o));
        let out = stdout(&o);
        let big = out.find("few_big").expect("few_big");
        let small = out.find("many_small").expect("many_small");
        (big < small, out)
    };
    let (big_first, out) = order(&["sites", f]);
    assert!(big_first, "{out}");
    assert!(out.contains("10.0 MiB") && out.contains("50%"), "{out}");
    assert!(out.contains("one call in 16 sampled"), "{out}");
    assert!(!out.contains("other sites"), "{out}");
    let (big_first, out) = order(&["sites", f, "--by", "calls"]);
    assert!(!big_first, "{out}");
    let o = hakmem(Path::new(BIN), &["sites", f, "--top", "1"]);
    assert!(!stdout(&o).contains("many_small"));
}

#[test]
fn sites_errors() {
    let dir = Scratch::new("sites-err");
    let f = dir.join("bad.json");
    std::fs::write(&f, "{\"version\": 1, \"sites\": [").unwrap();
    let o = hakmem(Path::new(BIN), &["sites", f.to_str().unwrap()]);
    assert_one_line_error(&o, "not JSON");
    std::fs::write(&f, "[1, 2]").unwrap();
    let o = hakmem(Path::new(BIN), &["sites", f.to_str().unwrap()]);
    assert_one_line_error(&o, "not a hakmem site report");
    let o = hakmem(Path::new(BIN), &["sites", "/nonexistent.json"]);
    assert_one_line_error(&o, "cannot read /nonexistent.json");
}

#[test]
fn policy_show_and_diff() {
    let dir = Scratch::new("policy");
    let (a, b) = (dir.join("a.policy"), dir.join("b.policy"));
    write_policy(&a, &DEFAULT_POLICY);
    let mut changed = DEFAULT_POLICY;
    changed.decay_ms = 12_345;
    changed.mid_cap[1] = DEFAULT_POLICY.mid_cap[1] + 3;
    write_policy(&b, &changed);
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());

    let o = hakmem(Path::new(BIN), &["policy", "show", b]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let row = out.lines().find(|l| l.contains("decay_ms")).unwrap();
    assert!(
        row.contains("12345") && row.trim_end_matches(['│', ' ']).ends_with('*'),
        "{row}"
    );
    let row = out.lines().find(|l| l.contains("madvise_batch")).unwrap();
    assert!(!row.contains('*'), "{row}");

    let o = hakmem(Path::new(BIN), &["policy", "diff", a, a]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("the same"));
    let o = hakmem(Path::new(BIN), &["policy", "diff", a, b]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains("decay_ms") && out.contains("12345"), "{out}");
    assert!(out.contains("mid_cap[1]"), "{out}");
    assert_eq!(
        out.matches('[').count(),
        1,
        "only the changed class:\n{out}"
    );

    std::fs::write(
        dir.join("bad.policy"),
        "hakmem-policy v1\nno_such_key = 1\n",
    )
    .unwrap();
    let bad = dir.join("bad.policy");
    let o = hakmem(Path::new(BIN), &["policy", "show", bad.to_str().unwrap()]);
    assert_one_line_error(&o, "line 2");
    let o = hakmem(
        Path::new(BIN),
        &["policy", "diff", a, "/nonexistent.policy"],
    );
    assert_one_line_error(&o, "cannot read /nonexistent.policy");
}
