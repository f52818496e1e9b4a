//! Real programs under `LD_PRELOAD=<libhakmem.so>`, each compared with a run
//! of the same program without the preload: python3 (threaded, every object
//! from malloc, and a stretch of its own test suite), git on a generated
//! repository of a few hundred commits, `sort` of a ~24 MB file with
//! temp-file merges, gcc compiling and linking a generated C file, `xz -T2`
//! compressing and decompressing, perl and ruby running allocation-heavy
//! scripts, sqlite3 running a generated SQL workload, and `cargo build` of a
//! small crate.
//!
//! A test whose program is not installed prints `SKIPPED: ...` and passes;
//! everything else must finish within its deadline and match the reference
//! output byte for byte.
//!
//! Timing: the perl, sqlite3 and python3 test-suite runs are also timed
//! under the release builds of `libhakmem.so` and of mimalloc
//! (`libmimalloc_preload.so`, the benchmark peer; both built by the test,
//! once); `TIMING` lines print the wall times next to glibc's (the reference
//! run) and are appended to `target/tmp/hakmem-timings.txt`. Timed runs hold
//! a lock that keeps the other tests of this binary from starting processes
//! meanwhile. Nothing is asserted on time. `HAKMEM_TIMING=0` skips these
//! runs; `HAKMEM_TIMING_REPS=n` takes the best of `n`.

mod common;
#[path = "real_programs/inputs.rs"]
mod inputs;
#[path = "real_programs/timing.rs"]
mod timing;

use common::{
    assert_preload_took, build_cdylib, hakmem_so, preload, run_exclusive, run_with_input,
    run_with_timeout, which, Finished, Rng, TempDir, MANIFEST_DIR,
};
use inputs::{fast_import_stream, generated_c_source, sqlite_script, write_small_crate};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use timing::{both_timed, note, record_timing, time_against_mimalloc, timing_libs, timing_reps};

const LIMIT: Duration = Duration::from_secs(120);

/// The program on PATH, or None after printing why the test is skipped.
fn require(program: &str) -> Option<PathBuf> {
    let found = which(program);
    if found.is_none() {
        let msg = format!(
            "SKIPPED: `{program}` is not installed, so its run under libhakmem.so is not tested"
        );
        println!("{msg}");
        eprintln!("{msg}");
    }
    found
}

/// Runs `make()` without and with the preload; both must succeed. Returns
/// (reference, preloaded).
fn both(what: &str, make: impl Fn() -> Command) -> (Finished, Finished) {
    both_with(what, make, |cmd| run_with_timeout(cmd, LIMIT))
}

/// [`both`], with the reference run by `run_reference`.
fn both_with(
    what: &str,
    make: impl Fn() -> Command,
    run_reference: impl FnOnce(&mut Command) -> Finished,
) -> (Finished, Finished) {
    let reference = run_reference(&mut make());
    assert!(
        reference.status.success(),
        "{what} failed even without the preload:\n{}",
        reference.describe()
    );
    let mut cmd = make();
    preload(&mut cmd);
    let preloaded = run_with_timeout(&mut cmd, LIMIT);
    assert_preload_took(&preloaded, what);
    assert!(
        preloaded.status.success(),
        "{what} failed under LD_PRELOAD={}:\n{}",
        hakmem_so().display(),
        preloaded.describe()
    );
    (reference, preloaded)
}

/// Asserts equality of two outputs, reporting the first differing line.
fn assert_same_output(what: &str, reference: &[u8], preloaded: &[u8]) {
    if reference == preloaded {
        return;
    }
    let (r, p) = (
        String::from_utf8_lossy(reference),
        String::from_utf8_lossy(preloaded),
    );
    let line = r
        .lines()
        .zip(p.lines())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| r.lines().count().min(p.lines().count()));
    panic!(
        "{what}: output under LD_PRELOAD={} differs from the reference run \
         ({} vs {} bytes); first difference at line {}:\n  reference: {:?}\n  preloaded: {:?}",
        hakmem_so().display(),
        reference.len(),
        preloaded.len(),
        line + 1,
        r.lines().nth(line),
        p.lines().nth(line)
    );
}

fn assert_same_file(what: &str, reference: &Path, preloaded: &Path) {
    let r = fs::read(reference).unwrap_or_else(|e| panic!("read {}: {e}", reference.display()));
    let p = fs::read(preloaded).unwrap_or_else(|e| panic!("read {}: {e}", preloaded.display()));
    assert_same_output(what, &r, &p);
}

// ---------------------------------------------------------------------------
// python3
// ---------------------------------------------------------------------------

/// The real python3 interpreter (`sys.executable`: a shim such as pyenv's
/// is a shell script, and the preload should be measured on python itself),
/// or None, with a note, when python3 is not installed.
fn python3() -> Option<PathBuf> {
    let python = require("python3")?;
    let exe = run_with_timeout(
        Command::new(&python).args(["-c", "import sys; print(sys.executable)"]),
        LIMIT,
    );
    Some(match exe.stdout_str().trim() {
        s if exe.status.success() && !s.is_empty() => PathBuf::from(s),
        _ => python,
    })
}

/// python3 with `PYTHONMALLOC=malloc` (every object from malloc) runs 8
/// threads building dicts/lists/strings/bytes plus producer/consumer threads
/// handing objects across a queue (cross-thread frees); its deterministic
/// digest output must equal the run without the preload.
#[test]
fn python3_threaded_workload() {
    let Some(interpreter) = python3() else {
        return;
    };
    let script = Path::new(MANIFEST_DIR).join("tests/programs/threaded_workload.py");
    let (reference, preloaded) = both("python3 threaded workload", || {
        let mut cmd = Command::new(&interpreter);
        cmd.arg(&script)
            .env("PYTHONMALLOC", "malloc")
            .env("PYTHONHASHSEED", "0")
            .env("PYTHONDONTWRITEBYTECODE", "1");
        cmd
    });
    let out = reference.stdout_str();
    assert!(
        out.lines().count() == 10 && out.ends_with("done\n"),
        "unexpected reference output:\n{out}"
    );
    assert_same_output("python3", &reference.stdout, &preloaded.stdout);
}

// ---------------------------------------------------------------------------
// git
// ---------------------------------------------------------------------------

fn git_command(git: &Path, home: &Path, repo: &Path) -> Command {
    let mut cmd = Command::new(git);
    cmd.current_dir(repo)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        .env("GIT_PAGER", "cat")
        .env("PAGER", "cat")
        .args([
            "-c",
            "gc.auto=0",
            "-c",
            "maintenance.auto=false",
            "-c",
            "core.pager=cat",
            "-c",
            "init.defaultBranch=main",
        ]);
    cmd
}

/// Builds the repository from the stream and runs the read and maintenance
/// commands; returns a transcript of their standard outputs and exit codes.
fn git_session(git: &Path, home: &Path, repo: &Path, stream: &Path, preloaded: bool) -> String {
    fs::create_dir_all(repo).unwrap();
    let run = |args: &[&str], stdin: Option<&Path>| -> Finished {
        let mut cmd = git_command(git, home, repo);
        cmd.args(args);
        if preloaded {
            preload(&mut cmd);
        }
        let input = match stdin {
            Some(p) => Stdio::from(File::open(p).unwrap()),
            None => Stdio::null(),
        };
        let done = run_with_input(&mut cmd, input, LIMIT);
        if preloaded {
            assert_preload_took(&done, "git");
        }
        assert!(
            done.status.success(),
            "git {args:?} failed (preloaded: {preloaded}):\n{}",
            done.describe()
        );
        done
    };
    let mut transcript = String::new();
    let mut step = |args: &[&str], stdin: Option<&Path>, keep: &dyn Fn(&str) -> bool| {
        let done = run(args, stdin);
        let _ = writeln!(transcript, "$ git {}", args.join(" "));
        for l in done.stdout_str().lines().filter(|l| keep(l)) {
            transcript.push_str(l);
            transcript.push('\n');
        }
    };
    let all = &|_: &str| true;
    step(&["init", "-q"], None, all);
    step(&["fast-import", "--quiet"], Some(stream), all);
    step(&["show-ref"], None, all);
    step(&["reset", "-q", "--hard"], None, all);
    step(&["status", "--porcelain"], None, all);
    step(
        &[
            "log",
            "--graph",
            "--stat",
            "--all",
            "--date=iso",
            "--decorate",
        ],
        None,
        all,
    );
    step(&["log", "-p", "-n", "40", "--format=%H %s"], None, all);
    step(&["diff", "--stat", "HEAD~100", "HEAD"], None, all);
    step(&["blame", "-s", "HEAD", "--", "src/file00.txt"], None, all);
    step(
        &["grep", "--threads=2", "-n", "-e", "ab", "HEAD", "--", "src"],
        None,
        all,
    );
    step(&["-c", "pack.threads=2", "gc", "--quiet"], None, all);
    step(&["fsck", "--full", "--strict", "--no-progress"], None, all);
    step(&["count-objects", "-v"], None, &|l| {
        ["count:", "in-pack:", "packs:", "garbage:"]
            .iter()
            .any(|k| l.starts_with(k))
    });
    step(
        &[
            "-c",
            "pack.threads=2",
            "repack",
            "-a",
            "-d",
            "-f",
            "-q",
            "--window=20",
        ],
        None,
        all,
    );
    step(&["fsck", "--full", "--strict", "--no-progress"], None, all);
    step(
        &["cat-file", "--batch-all-objects", "--batch-check"],
        None,
        all,
    );
    step(&["rev-list", "--objects", "--all"], None, all);
    transcript
}

/// git builds a ~300-commit repository with merges and tags by fast-import,
/// then log --graph --stat, log -p, diff --stat, blame, threaded grep, gc,
/// fsck --full --strict, repack -adf with 2 threads, fsck again, cat-file of
/// every object and rev-list --objects: the transcript (commit ids
/// included) must equal the run without the preload.
#[test]
fn git_on_a_generated_repository() {
    let Some(git) = require("git") else {
        return;
    };
    let tmp = TempDir::new("git");
    let stream = tmp.join("history.fi");
    fs::write(&stream, fast_import_stream()).unwrap();
    let home = tmp.join("home");
    fs::create_dir_all(&home).unwrap();
    let reference = git_session(&git, &home, &tmp.join("reference"), &stream, false);
    let preloaded = git_session(&git, &home, &tmp.join("preloaded"), &stream, true);
    assert!(
        reference.lines().count() > 3000,
        "suspiciously short git transcript:\n{reference}"
    );
    assert_same_output("git", reference.as_bytes(), preloaded.as_bytes());
}

// ---------------------------------------------------------------------------
// sort
// ---------------------------------------------------------------------------

/// `sort` of a generated ~24 MB file, once whole-line and once by a numeric
/// key, with 2 threads and an 8 MiB buffer (so it spills to temporary files
/// and merges them): outputs identical to the run without the preload.
#[test]
fn sort_of_a_large_file() {
    let Some(sort) = require("sort") else {
        return;
    };
    let tmp = TempDir::new("sort");
    let input = tmp.join("input.txt");
    let mut rng = Rng::new(77);
    let mut text = String::with_capacity(25 << 20);
    while text.len() < 24 << 20 {
        let (a, b) = (3 + rng.below(10) as usize, 1 + rng.below(20) as usize);
        let _ = writeln!(
            text,
            "{} {} {}",
            rng.word(a),
            rng.below(1_000_000),
            rng.word(b)
        );
    }
    fs::write(&input, &text).unwrap();
    drop(text);
    for (name, keys) in [("lines", &[][..]), ("numeric", &["-k2,2n", "-k1,1"][..])] {
        let out_ref = tmp.join(format!("{name}.ref"));
        let out_pre = tmp.join(format!("{name}.pre"));
        let make = |out: &Path| {
            let out = out.to_path_buf();
            let (sort, input, tmpdir) = (sort.clone(), input.clone(), tmp.path().to_path_buf());
            move || {
                let mut cmd = Command::new(&sort);
                cmd.env("LC_ALL", "C")
                    .args(["--parallel=2", "-S", "8M", "-t", " "])
                    .args(keys)
                    .arg("-T")
                    .arg(&tmpdir)
                    .arg("-o")
                    .arg(&out)
                    .arg(&input);
                cmd
            }
        };
        let reference = run_with_timeout(&mut make(&out_ref)(), LIMIT);
        assert!(reference.status.success(), "{}", reference.describe());
        let mut cmd = make(&out_pre)();
        preload(&mut cmd);
        let preloaded = run_with_timeout(&mut cmd, LIMIT);
        assert_preload_took(&preloaded, "sort");
        assert!(
            preloaded.status.success(),
            "sort ({name}) failed under the preload:\n{}",
            preloaded.describe()
        );
        assert!(fs::metadata(&out_ref).unwrap().len() >= 24 << 20);
        assert_same_file(&format!("sort ({name})"), &out_ref, &out_pre);
    }
}

// ---------------------------------------------------------------------------
// gcc
// ---------------------------------------------------------------------------

/// gcc (driver, cc1, as, collect2, ld all preloaded) compiles a generated
/// 300-function C file to assembly with -O2 -g (identical to the reference
/// assembly), then compiles and links it; the program built under the
/// preload prints the same checksum as the reference build.
#[test]
fn gcc_compiles_a_c_file() {
    let Some(gcc) = require("gcc") else {
        return;
    };
    let tmp = TempDir::new("gcc");
    fs::write(tmp.join("gen.c"), generated_c_source()).unwrap();
    let compile = |args: &'static [&'static str]| {
        let (gcc, dir) = (gcc.clone(), tmp.path().to_path_buf());
        move || {
            let mut cmd = Command::new(&gcc);
            cmd.current_dir(&dir)
                .env("LC_ALL", "C")
                .args(["-O2", "-frandom-seed=hakmem"])
                .args(args);
            cmd
        }
    };
    let reference = run_with_timeout(&mut compile(&["-g", "-S", "gen.c", "-o", "ref.s"])(), LIMIT);
    assert!(reference.status.success(), "{}", reference.describe());
    let mut cmd = compile(&["-g", "-S", "gen.c", "-o", "pre.s"])();
    preload(&mut cmd);
    let preloaded = run_with_timeout(&mut cmd, LIMIT);
    assert_preload_took(&preloaded, "gcc -S");
    assert!(
        preloaded.status.success(),
        "gcc -S failed under the preload:\n{}",
        preloaded.describe()
    );
    assert_same_file("gcc -S (assembly)", &tmp.join("ref.s"), &tmp.join("pre.s"));

    let reference = run_with_timeout(&mut compile(&["gen.c", "-o", "ref"])(), LIMIT);
    assert!(reference.status.success(), "{}", reference.describe());
    let mut cmd = compile(&["gen.c", "-o", "pre"])();
    preload(&mut cmd);
    let preloaded = run_with_timeout(&mut cmd, LIMIT);
    assert_preload_took(&preloaded, "gcc");
    assert!(
        preloaded.status.success(),
        "gcc failed under the preload:\n{}",
        preloaded.describe()
    );
    let want = run_with_timeout(&mut Command::new(tmp.join("ref")), LIMIT);
    let got = run_with_timeout(&mut Command::new(tmp.join("pre")), LIMIT);
    assert!(want.status.success() && got.status.success());
    assert!(want.stdout_str().starts_with("checksum "));
    assert_same_output("program built by gcc", &want.stdout, &got.stdout);
}

// ---------------------------------------------------------------------------
// xz
// ---------------------------------------------------------------------------

/// `xz -T2` (1 MiB blocks, so both threads work) compresses ~8 MB of text with
/// some noise to exactly the bytes of the reference run; `xz -d -T2`
/// under the preload restores the input, and `xz -t` accepts both files.
#[test]
fn xz_multithreaded_round_trip() {
    let Some(xz) = require("xz") else {
        return;
    };
    let tmp = TempDir::new("xz");
    let input = tmp.join("data");
    let mut rng = Rng::new(11);
    let vocabulary: Vec<String> = (0..4096)
        .map(|_| {
            let len = 2 + rng.below(10) as usize;
            rng.word(len)
        })
        .collect();
    let mut data = Vec::with_capacity(9 << 20);
    while data.len() < 8 << 20 {
        if rng.below(50) == 0 {
            data.extend((0..256).map(|_| rng.next_u64() as u8));
        }
        for _ in 0..8 + rng.below(9) {
            data.extend_from_slice(vocabulary[rng.below(4096) as usize].as_bytes());
            data.push(b' ');
        }
        data.push(b'\n');
    }
    fs::write(&input, &data).unwrap();
    let (reference, preloaded) = both("xz -T2 compression", || {
        let mut cmd = Command::new(&xz);
        cmd.args(["-T2", "--block-size=1MiB", "-1", "-c"])
            .arg(&input);
        cmd
    });
    assert!(!reference.stdout.is_empty());
    // Compare bytes without printing megabytes of binary on a mismatch.
    assert!(
        reference.stdout == preloaded.stdout,
        "xz -T2 output under the preload differs from the reference ({} vs {} bytes)",
        reference.stdout.len(),
        preloaded.stdout.len()
    );
    let compressed = tmp.join("data.xz");
    fs::write(&compressed, &preloaded.stdout).unwrap();
    let mut cmd = Command::new(&xz);
    cmd.args(["-d", "-T2", "-c"]);
    preload(&mut cmd);
    let restored = run_with_input(
        &mut cmd,
        Stdio::from(File::open(&compressed).unwrap()),
        LIMIT,
    );
    assert_preload_took(&restored, "xz -d");
    assert!(restored.status.success(), "{}", restored.describe());
    assert!(
        restored.stdout == data,
        "xz -d -T2 under the preload did not restore the input ({} vs {} bytes)",
        restored.stdout.len(),
        data.len()
    );
    let mut cmd = Command::new(&xz);
    cmd.args(["-t", "-T2"]).arg(&compressed);
    preload(&mut cmd);
    let tested = run_with_timeout(&mut cmd, LIMIT);
    assert!(tested.status.success(), "{}", tested.describe());
}

// ---------------------------------------------------------------------------
// Timing against mimalloc
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// perl
// ---------------------------------------------------------------------------

/// perl runs `tests/programs/workload.pl`: a 40 000-key hash grown, half
/// deleted and grown again; 12 000 generated lines joined, split, reversed,
/// cut with substr; regex matches with captures, a global `s///` with case
/// changes, `tr` and a regex split; numeric and multi-key sorts of 100 000
/// items; 6 rounds of 4000 nested records (hashes of arrays of hashes) and
/// 1000 closures built and dropped. Its output (digests of everything) must
/// equal the run without the preload; the wall time is printed next to
/// mimalloc's.
#[test]
fn perl_allocation_heavy_script() {
    let Some(perl) = require("perl") else {
        return;
    };
    let script = Path::new(MANIFEST_DIR).join("tests/programs/workload.pl");
    let make = || {
        let mut cmd = Command::new(&perl);
        cmd.arg(&script)
            .env("PERL_HASH_SEED", "0")
            .env("PERL_PERTURB_KEYS", "0")
            .env("LC_ALL", "C");
        cmd
    };
    let (reference, preloaded) = both_timed("perl workload", make);
    let out = reference.stdout_str();
    assert!(
        out.lines().count() == 12 && out.ends_with("done\n"),
        "unexpected reference output:\n{out}"
    );
    assert_same_output("perl", &reference.stdout, &preloaded.stdout);
    time_against_mimalloc("perl workload", &reference, make, |name, run| {
        assert_same_output(&format!("perl ({name})"), &reference.stdout, &run.stdout)
    });
}

// ---------------------------------------------------------------------------
// sqlite3
// ---------------------------------------------------------------------------

/// sqlite3 (the CLI) runs [`sqlite_script`] on a fresh database file: the
/// query results must equal the run without the preload; the wall time is
/// printed next to mimalloc's.
#[test]
fn sqlite3_scripted_workload() {
    let Some(sqlite) = require("sqlite3") else {
        return;
    };
    let tmp = TempDir::new("sqlite");
    let script = tmp.join("script.sql");
    fs::write(&script, sqlite_script()).unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let run_once = |preload_lib: Option<&Path>, timed: bool| -> Finished {
        let db = tmp.join(format!(
            "db{}.sqlite",
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let mut cmd = Command::new(&sqlite);
        cmd.args(["-batch", "-bail"]).arg(&db).env("LC_ALL", "C");
        match preload_lib {
            Some(lib) => {
                cmd.env("LD_PRELOAD", lib);
            }
            None => {
                cmd.env_remove("LD_PRELOAD");
            }
        }
        let input = Stdio::from(File::open(&script).unwrap());
        let done = if timed {
            run_exclusive(&mut cmd, input, LIMIT)
        } else {
            run_with_input(&mut cmd, input, LIMIT)
        };
        let _ = fs::remove_file(&db);
        done
    };
    let reference = run_once(None, true);
    assert!(reference.status.success(), "{}", reference.describe());
    let out = reference.stdout_str();
    assert!(
        out.lines().count() > 150 && out.contains("\nok\n"),
        "unexpected reference output:\n{out}"
    );
    let preloaded = run_once(Some(hakmem_so()), false);
    assert_preload_took(&preloaded, "sqlite3");
    assert!(
        preloaded.status.success(),
        "sqlite3 failed under the preload:\n{}",
        preloaded.describe()
    );
    assert_same_output("sqlite3", &reference.stdout, &preloaded.stdout);
    // The timing runs need a fresh database each time: run them by hand.
    let Some((hakmem, mimalloc)) = timing_libs() else {
        return;
    };
    let reps = timing_reps();
    let mut times = [f64::MAX; 2];
    for _ in 0..reps {
        for (i, (name, lib)) in [("hakmem", hakmem), ("mimalloc", mimalloc)]
            .into_iter()
            .enumerate()
        {
            let run = run_once(Some(lib), true);
            assert!(
                run.status.success(),
                "sqlite3 under {name}:\n{}",
                run.describe()
            );
            assert_same_output(&format!("sqlite3 ({name})"), &reference.stdout, &run.stdout);
            times[i] = times[i].min(run.elapsed.as_secs_f64());
        }
    }
    let line = format!(
        "TIMING sqlite3 workload: glibc {:.2} s, hakmem {:.2} s, mimalloc {:.2} s (release \
         builds, best of {reps}; hakmem/mimalloc {:.2}, hakmem/glibc {:.2})",
        reference.elapsed.as_secs_f64(),
        times[0],
        times[1],
        times[0] / times[1],
        times[0] / reference.elapsed.as_secs_f64()
    );
    record_timing(&line);
}

// ---------------------------------------------------------------------------
// ruby
// ---------------------------------------------------------------------------

/// ruby (if installed) runs `tests/programs/workload.rb`: a 60 000-key hash grown and
/// half deleted, 20 000 formatted lines split, reversed, gsub'd with a
/// block and scanned, a 200 000-element sort, 8 rounds of 5000 nested
/// records; the output must equal the run without the preload. Skipped
/// with a printed note when ruby is not installed.
#[test]
fn ruby_allocation_heavy_script() {
    let Some(ruby) = require("ruby") else {
        return;
    };
    let script = Path::new(MANIFEST_DIR).join("tests/programs/workload.rb");
    let (reference, preloaded) = both("ruby script", || {
        let mut cmd = Command::new(&ruby);
        cmd.arg(&script).env("LC_ALL", "C");
        cmd
    });
    let out = reference.stdout_str();
    assert!(
        out.ends_with("done\n"),
        "unexpected reference output:\n{out}"
    );
    assert_same_output("ruby", &reference.stdout, &preloaded.stdout);
}

// ---------------------------------------------------------------------------
// cargo build
// ---------------------------------------------------------------------------

/// The cargo running the tests (`$CARGO`) and the rustc next to it, so the
/// build needs neither a rustup default toolchain nor the network.
fn cargo_and_rustc() -> Option<(PathBuf, Option<PathBuf>)> {
    let cargo = std::env::var_os("CARGO")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| which("cargo"))?;
    let rustc = cargo
        .parent()
        .map(|d| d.join("rustc"))
        .filter(|p| p.is_file());
    Some((cargo, rustc))
}

/// `cargo build --offline` of a small crate (a path dependency, a build
/// script, a binary) with cargo, rustc, the build script and the linker all
/// under the preload, `CARGO_HOME` the real one; the binary it builds must
/// print the same as the one built without the preload.
#[test]
fn cargo_builds_a_small_crate() {
    let Some((cargo, rustc)) = cargo_and_rustc() else {
        note("SKIPPED: cargo not found, so `cargo build` under libhakmem.so is not tested");
        return;
    };
    let tmp = TempDir::new("cargo");
    let src = tmp.join("probe");
    write_small_crate(&src);
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let build = |target: &Path, preloaded: bool| -> PathBuf {
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(&src)
            .args(["build", "--offline", "--jobs", "2"])
            .env("CARGO_TARGET_DIR", target)
            .env("CARGO_INCREMENTAL", "0")
            .env_remove("RUSTC_WRAPPER")
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .env_remove("CARGO_BUILD_TARGET")
            .env_remove("LD_PRELOAD");
        if let Some(home) = &cargo_home {
            cmd.env("CARGO_HOME", home);
        }
        if let Some(rustc) = &rustc {
            cmd.env("RUSTC", rustc);
        }
        if preloaded {
            preload(&mut cmd);
        }
        let done = run_with_timeout(&mut cmd, LIMIT);
        if preloaded {
            assert_preload_took(&done, "cargo build");
        }
        assert!(
            done.status.success(),
            "cargo build (preloaded: {preloaded}) failed:\n{}",
            done.describe()
        );
        target.join("debug/hakmem-cargo-probe")
    };
    let reference = build(&tmp.join("target-ref"), false);
    let preloaded = build(&tmp.join("target-pre"), true);
    let want = run_with_timeout(&mut Command::new(&reference), LIMIT);
    let got = run_with_timeout(&mut Command::new(&preloaded), LIMIT);
    assert!(want.status.success(), "{}", want.describe());
    assert!(got.status.success(), "{}", got.describe());
    assert!(
        want.stdout_str().contains("checksum "),
        "{}",
        want.describe()
    );
    assert_same_output(
        "the binary cargo built under the preload",
        &want.stdout,
        &got.stdout,
    );
}

// ---------------------------------------------------------------------------
// python3's own test suite
// ---------------------------------------------------------------------------

/// The stretch of CPython's test suite that is run: containers, strings,
/// regexes (about 2 s on 2 cores).
const PYTHON_TESTS: [&str; 6] = [
    "test_dict",
    "test_list",
    "test_unicode",
    "test_re",
    "test_deque",
    "test_ordered_dict",
];

/// The lines of a regrtest run that must agree: how many tests and files
/// ran, and the verdict.
fn regrtest_summary(run: &Finished) -> String {
    run.stdout_str()
        .lines()
        .filter(|l| {
            l.starts_with("Total tests:")
                || l.starts_with("Total test files:")
                || l.starts_with("Result:")
                || l.starts_with("Tests result:")
                || (l.contains(" tests OK") && !l.contains('['))
        })
        .map(|l| format!("{}\n", l.trim()))
        .collect()
}

/// `python3 -m test -j0` on [`PYTHON_TESTS`] with `PYTHONMALLOC=malloc`
/// (every object from malloc), the interpreter and all its worker processes
/// under the preload: the run must succeed and its summary (tests run,
/// skipped, files, result) equal the run without the preload. Skipped with
/// a note when the interpreter's `test` package lacks those modules (Debian:
/// `apt-get install libpython3.11-testsuite`). The wall time is printed next
/// to mimalloc's.
#[test]
fn python3_test_suite_stretch() {
    let Some(interpreter) = python3() else {
        return;
    };
    let imports = format!(
        "import {}",
        PYTHON_TESTS.map(|t| format!("test.{t}")).join(", ")
    );
    let probe = run_with_timeout(Command::new(&interpreter).args(["-c", &imports]), LIMIT);
    if !probe.status.success() {
        note(&format!(
            "SKIPPED: {}'s test suite is not installed (Debian: libpython3.X-testsuite), so it \
             is not run under libhakmem.so:\n{}",
            interpreter.display(),
            probe.stderr_str().trim_end()
        ));
        return;
    }
    let tmp = TempDir::new("pytest");
    let make = || {
        let mut cmd = Command::new(&interpreter);
        cmd.args(["-m", "test", "-j0", "--tempdir"])
            .arg(tmp.path())
            .args(PYTHON_TESTS)
            .current_dir(tmp.path())
            .env("PYTHONMALLOC", "malloc")
            .env("PYTHONHASHSEED", "0")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("LC_ALL", "C.UTF-8");
        cmd
    };
    let (reference, preloaded) = both_timed("python3 -m test", make);
    let summary = regrtest_summary(&reference);
    assert!(
        summary.contains("Total tests: run=") && summary.contains("SUCCESS"),
        "unexpected reference summary:\n{}",
        reference.describe()
    );
    assert_same_output(
        "python3 -m test (summary)",
        summary.as_bytes(),
        regrtest_summary(&preloaded).as_bytes(),
    );
    time_against_mimalloc("python3 -m test", &reference, make, |name, run| {
        assert_same_output(
            &format!("python3 -m test ({name})"),
            summary.as_bytes(),
            regrtest_summary(run).as_bytes(),
        )
    });
}
