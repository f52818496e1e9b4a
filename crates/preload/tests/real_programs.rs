//! Real programs under `LD_PRELOAD=<libhakmem.so>`, each compared with a run
//! of the same program without the preload: python3 (threaded, every object
//! from malloc), git on a generated repository of a few hundred commits,
//! `sort` of a ~24 MB file with temp-file merges, gcc compiling and linking a
//! generated C file, and `xz -T2` compressing and decompressing.
//!
//! A test whose program is not installed prints `SKIPPED: ...` and passes;
//! everything else must finish within its deadline and match the reference
//! output byte for byte.

mod common;

use common::{
    assert_preload_took, hakmem_so, preload, run_with_input, run_with_timeout, which, Finished,
    Rng, TempDir, MANIFEST_DIR,
};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

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
    let reference = run_with_timeout(&mut make(), LIMIT);
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

/// python3 with `PYTHONMALLOC=malloc` (every object from malloc) runs 8
/// threads building dicts/lists/strings/bytes plus producer/consumer threads
/// handing objects across a queue (cross-thread frees); its deterministic
/// digest output must equal the run without the preload.
#[test]
fn python3_threaded_workload() {
    let Some(python) = require("python3") else {
        return;
    };
    // Resolve the real interpreter: a shim (pyenv) is a shell script, and the
    // preload should be measured on python itself.
    let exe = run_with_timeout(
        Command::new(&python).args(["-c", "import sys; print(sys.executable)"]),
        LIMIT,
    );
    let interpreter = match exe.stdout_str().trim() {
        s if exe.status.success() && !s.is_empty() => PathBuf::from(s),
        _ => python,
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

/// A `git fast-import` stream: ~300 commits on `main` touching ~60 text
/// files (edits, new files, deletions), topic branches merged back every 60
/// commits, and tags.
fn fast_import_stream() -> Vec<u8> {
    use std::collections::BTreeMap;
    let mut rng = Rng::new(2024);
    let mut out = Vec::new();
    let mut mark = 0u32;
    let mut time = 1_600_000_000u64;
    let mut files: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut topic: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut main_head: Option<u32> = None;
    let line = |rng: &mut Rng| -> String {
        let n = 3 + rng.below(9) as usize;
        (0..n)
            .map(|_| {
                let len = 2 + rng.below(9) as usize;
                rng.word(len)
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let data = |out: &mut Vec<u8>, body: &str| {
        out.extend_from_slice(format!("data {}\n{body}\n", body.len()).as_bytes());
    };
    let edit = |rng: &mut Rng, lines: &mut Vec<String>| {
        for _ in 0..1 + rng.below(6) {
            let at = rng.below(lines.len() as u64 + 1) as usize;
            match rng.below(3) {
                0 if !lines.is_empty() && at < lines.len() => {
                    lines.remove(at);
                }
                1 if at < lines.len() => lines[at] = line(rng),
                _ => lines.insert(at, line(rng)),
            }
        }
    };
    fn commit_header(
        out: &mut Vec<u8>,
        branch: &str,
        mark: u32,
        time: u64,
        msg: &str,
        from: Option<u32>,
        merge: Option<u32>,
    ) {
        let mut s = format!("commit refs/heads/{branch}\nmark :{mark}\n");
        let _ = writeln!(s, "author A U Thor <author@example.com> {time} +0000");
        let _ = writeln!(
            s,
            "committer C O Mitter <committer@example.com> {time} +0000"
        );
        let _ = write!(s, "data {}\n{msg}\n", msg.len());
        if let Some(f) = from {
            let _ = writeln!(s, "from :{f}");
        }
        if let Some(m) = merge {
            let _ = writeln!(s, "merge :{m}");
        }
        out.extend_from_slice(s.as_bytes());
    }
    for n in 0..300u32 {
        mark += 1;
        time += 60 + rng.below(7200);
        let msg = format!("commit {n}: {}", line(&mut rng));
        commit_header(&mut out, "main", mark, time, &msg, main_head, None);
        main_head = Some(mark);
        let touched = if n == 0 { 40 } else { 1 + rng.below(4) };
        for _ in 0..touched {
            let name = format!("src/file{:02}.txt", rng.below(if n == 0 { 40 } else { 60 }));
            if n > 0 && rng.below(25) == 0 && name != "src/file00.txt" && files.contains_key(&name)
            {
                files.remove(&name);
                out.extend_from_slice(format!("D {name}\n").as_bytes());
                continue;
            }
            let lines = files.entry(name.clone()).or_insert_with(|| {
                let len = 20 + rng.below(120);
                (0..len).map(|_| line(&mut rng)).collect()
            });
            edit(&mut rng, lines);
            out.extend_from_slice(format!("M 100644 inline {name}\n").as_bytes());
            data(&mut out, &lines.join("\n"));
        }
        if n % 60 == 30 {
            // a topic branch forked here, merged 4 commits later on main
            let fork = mark;
            let mut topic_head = fork;
            for k in 0..4 {
                mark += 1;
                time += 300;
                let msg = format!("topic {n}.{k}: {}", line(&mut rng));
                commit_header(&mut out, "topic", mark, time, &msg, Some(topic_head), None);
                topic_head = mark;
                let name = format!("topic/t{}-{}.txt", n, rng.below(3));
                let lines = topic.entry(name.clone()).or_default();
                edit(&mut rng, lines);
                out.extend_from_slice(format!("M 100644 inline {name}\n").as_bytes());
                data(&mut out, &lines.join("\n"));
            }
            mark += 1;
            time += 60;
            let msg = format!("Merge topic at {n}");
            commit_header(
                &mut out,
                "main",
                mark,
                time,
                &msg,
                main_head,
                Some(topic_head),
            );
            main_head = Some(mark);
            for (name, lines) in &topic {
                out.extend_from_slice(format!("M 100644 inline {name}\n").as_bytes());
                data(&mut out, &lines.join("\n"));
            }
        }
        if n % 50 == 49 {
            out.extend_from_slice(
                format!(
                    "tag v{}\nfrom :{mark}\ntagger T Agger <t@example.com> {time} +0000\n",
                    n / 50
                )
                .as_bytes(),
            );
            data(&mut out, &format!("release {}", n / 50));
        }
    }
    out
}

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

/// A C file with a few hundred interdependent functions, a table and a main
/// that prints a checksum.
fn generated_c_source() -> String {
    let mut rng = Rng::new(5);
    let mut s = String::from("#include <stdio.h>\n#include <string.h>\n\n");
    let n = 300;
    for i in 0..n {
        let _ = writeln!(s, "static unsigned f{i}(unsigned x);");
    }
    let _ = writeln!(s, "static const char *names[] = {{");
    for i in 0..n {
        let len = 3 + rng.below(12) as usize;
        let _ = writeln!(s, "    \"{}{i}\",", rng.word(len));
    }
    let _ = writeln!(s, "}};\n");
    for i in 0..n {
        let (a, b, c) = (rng.below(1000), rng.below(31) + 1, rng.below(7) + 2);
        let _ = writeln!(s, "static unsigned f{i}(unsigned x) {{");
        let _ = writeln!(s, "    unsigned a = x * {a}u + {i}u;");
        let _ = writeln!(s, "    switch (a % {c}u) {{");
        for k in 0..c {
            let callee = if i > 0 { rng.below(i) } else { 0 };
            let body = if i > 0 && k % 2 == 0 {
                format!("a ^= f{callee}(a >> {b});")
            } else {
                format!("a = (a << {}) | (a >> {});", b % 31 + 1, 32 - (b % 31 + 1))
            };
            let _ = writeln!(s, "    case {k}u: {body} break;");
        }
        let _ = writeln!(s, "    }}");
        let _ = writeln!(
            s,
            "    for (unsigned i = 0; i < {c}u; i++) a += (a >> 3) ^ (unsigned)strlen(names[{i}]) ^ i;"
        );
        let _ = writeln!(s, "    return x > 4096u ? a : a + (x & 7u);\n}}\n");
    }
    let _ = writeln!(s, "int main(void) {{");
    let _ = writeln!(s, "    unsigned sum = 0;");
    let _ = writeln!(
        s,
        "    for (unsigned v = 0; v < 2000u; v++) sum = sum * 31u + f{}(v) + f{}(v * 7u);",
        n - 1,
        n / 2
    );
    let _ = writeln!(s, "    printf(\"checksum %u\\n\", sum);\n    return 0;\n}}");
    s
}

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
