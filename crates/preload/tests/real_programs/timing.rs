//! Timed runs of the real-program tests: the same program under glibc,
//! hakmem and mimalloc (release builds), printed and appended to
//! `target/tmp/hakmem-timings.txt`; never asserted.

use super::*;

/// Release builds of `libhakmem.so` and of the benchmark peer
/// `libmimalloc_preload.so` (package `bench-peer-mimalloc`), built once per
/// test process for the timing runs. None, with a printed note, when
/// `HAKMEM_TIMING=0` or a build fails: timings are information, never a
/// verdict.
pub fn timing_libs() -> Option<&'static (PathBuf, PathBuf)> {
    static LIBS: std::sync::OnceLock<Option<(PathBuf, PathBuf)>> = std::sync::OnceLock::new();
    LIBS.get_or_init(|| {
        if std::env::var("HAKMEM_TIMING").is_ok_and(|v| v == "0") {
            note("timing runs are off (HAKMEM_TIMING=0)");
            return None;
        }
        let built = build_cdylib("hakmem-preload", "release")
            .and_then(|h| build_cdylib("bench-peer-mimalloc", "release").map(|m| (h, m)));
        match built {
            Ok(libs) => Some(libs),
            Err(e) => {
                note(&format!("no timing runs: {e}"));
                None
            }
        }
    })
    .as_ref()
}

/// `HAKMEM_TIMING_REPS` (default 1): timed runs per allocator, best taken.
pub fn timing_reps() -> usize {
    std::env::var("HAKMEM_TIMING_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1)
}

pub fn note(msg: &str) {
    println!("NOTE: {msg}");
    eprintln!("NOTE: {msg}");
}

/// Times `make()` under the release builds of hakmem and mimalloc (best of
/// `HAKMEM_TIMING_REPS` runs each, default 1, alternating), checks every run
/// with `check`, and prints the times next to the glibc reference run's.
/// Never asserts on time: the machine is shared and noisy.
pub fn time_against_mimalloc(
    what: &str,
    reference: &Finished,
    make: impl Fn() -> Command,
    check: impl Fn(&str, &Finished),
) {
    let Some((hakmem, mimalloc)) = timing_libs() else {
        return;
    };
    let reps = timing_reps();
    let mut best = [Duration::MAX; 2];
    for _ in 0..reps {
        for (i, (name, lib)) in [("hakmem", hakmem), ("mimalloc", mimalloc)]
            .into_iter()
            .enumerate()
        {
            let mut cmd = make();
            cmd.env("LD_PRELOAD", lib);
            let run = run_exclusive(&mut cmd, Stdio::null(), LIMIT);
            assert!(
                !run.stderr_str().contains("cannot be preloaded"),
                "{what}: {} was not preloaded:\n{}",
                lib.display(),
                run.describe()
            );
            assert!(
                run.status.success(),
                "{what} failed under LD_PRELOAD={} (timing run):\n{}",
                lib.display(),
                run.describe()
            );
            check(name, &run);
            best[i] = best[i].min(run.elapsed);
        }
    }
    let [h, m] = best.map(|d| d.as_secs_f64());
    let line = format!(
        "TIMING {what}: glibc {:.2} s, hakmem {h:.2} s, mimalloc {m:.2} s (release builds, \
         best of {reps}; hakmem/mimalloc {:.2}, hakmem/glibc {:.2})",
        reference.elapsed.as_secs_f64(),
        h / m,
        h / reference.elapsed.as_secs_f64()
    );
    record_timing(&line);
}

/// Prints a `TIMING` line and appends it to `target/tmp/hakmem-timings.txt`
/// (test output is captured unless `--nocapture`).
pub fn record_timing(line: &str) {
    use std::io::Write as _;
    println!("{line}");
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hakmem-timings.txt");
    if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(&path) {
        let _ = writeln!(f, "{line}");
    }
}

/// [`both`] with the reference run timed: it runs while no other process of
/// this test binary does, and its wall time is glibc's in the `TIMING` line.
pub fn both_timed(what: &str, make: impl Fn() -> Command) -> (Finished, Finished) {
    both_with(what, make, |cmd| run_exclusive(cmd, Stdio::null(), LIMIT))
}
