//! Size limits and memory exhaustion under `LD_PRELOAD=<libhakmem.so>`: the
//! groups of `tests/c/limits.c`, each in its own process.
//!
//! * `overflow`: size overflow and impossible alignments beyond what
//!   conformance.c's `errno` group covers: NULL with the right errno and never
//!   a block, `*memptr` untouched, and a failed `realloc`/`reallocarray`
//!   leaves blocks of every tier (24 B .. 9 MiB) intact and usable.
//! * `oom_*`: under `RLIMIT_AS` (the process's address-space size plus 256
//!   MiB, read from `/proc/self/statm`), allocation of one kind of block until
//!   NULL; every NULL comes with `ENOMEM`, nothing crashes, at least a quarter
//!   of the headroom was handed out, everything frees cleanly with contents
//!   intact, and filling again with the same kind works (at least half as
//!   many blocks).
//!
//! After everything was freed at the limit, the C program also allocates
//! every other tier (1 B .. 3 MiB, aligned, calloc, a realloc to 64 MiB):
//! the "recovery" checks. A mapping that fails makes hakmem give cached
//! memory back and retry, so they pass: every group must exit 0, and
//! [`oom_memory_freed_at_the_limit_serves_every_size`] checks them on their
//! own.

mod common;

use common::{
    assert_preload_took, compile_c, hakmem_so, preload, run_with_timeout, which, Finished, TempDir,
};
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

const GROUPS: [&str; 10] = [
    "overflow",
    "oom_tiny",
    "oom_small",
    "oom_mid",
    "oom_big_mid",
    "oom_large",
    "oom_aligned",
    "oom_calloc",
    "oom_mixed",
    "impossible",
];

/// Exit status of limits.c when only the recovery checks failed.
const RECOVERY_ONLY: i32 = 3;

fn run_group(group: &str) -> Finished {
    let exe = compile_c("limits.c", "limits", false);
    let mut cmd = Command::new(exe);
    cmd.arg(group);
    preload(&mut cmd);
    let run = run_with_timeout(&mut cmd, LIMIT);
    assert_preload_took(&run, group);
    print!("{}", run.stdout_str());
    run
}

/// Runs an `oom_*` group: it must pass, recovery checks included (exit 3
/// means only they failed).
fn oom(group: &str) {
    let run = run_group(group);
    match run.status.code() {
        Some(0) => {}
        Some(RECOVERY_ONLY) => panic!(
            "{group}: after freeing everything at the limit, other sizes could not be allocated\n{}",
            run.describe()
        ),
        _ => panic!("{group} failed under RLIMIT_AS\n{}", run.describe()),
    }
}

/// limits.c `overflow`: aligned_alloc/memalign/posix_memalign with
/// alignments 2^48, 2^62, 2^63 fail with ENOMEM or EINVAL (and leave
/// `*memptr` alone); memalign(SIZE_MAX) and memalign(2^63 + 1) fail;
/// size + alignment padding that overflows fails with ENOMEM; valloc/pvalloc
/// whose page rounding overflows fail; reallocarray(NULL, ...) overflow
/// (including products wrapping to 0) and calloc(2^32, 2^32) fail with
/// ENOMEM; calloc(0, SIZE_MAX) and calloc(SIZE_MAX, 0) give distinct
/// freeable pointers; on blocks of 24 B, 1000 B, 5000 B, 200 KB, 3 MiB and
/// 9 MiB, realloc to SIZE_MAX, PTRDIFF_MAX + 1, PTRDIFF_MAX - 4096, 2^47 and
/// wrapping reallocarray products fail with ENOMEM, never return the freed
/// neighbour of the same size, and leave the block's contents and usable
/// size intact; a wrapping calloc returns NULL; the block then grows fine.
#[test]
fn size_overflow_and_impossible_alignments() {
    let run = run_group("overflow");
    assert!(
        run.status.success(),
        "overflow group failed\n{}",
        run.describe()
    );
}

/// 24 B blocks until NULL under RLIMIT_AS (about 8 million of them).
#[test]
fn oom_tiny_blocks() {
    oom("oom_tiny");
}

/// 200 B blocks until NULL under RLIMIT_AS.
#[test]
fn oom_small_blocks() {
    oom("oom_small");
}

/// 5000 B (mid) blocks until NULL under RLIMIT_AS.
#[test]
fn oom_mid_blocks() {
    oom("oom_mid");
}

/// 300 000 B (the largest mid classes) blocks until NULL under RLIMIT_AS.
#[test]
fn oom_big_mid_blocks() {
    oom("oom_big_mid");
}

/// 3 MiB (large, mapped) blocks until NULL under RLIMIT_AS.
#[test]
fn oom_large_blocks() {
    oom("oom_large");
}

/// `aligned_alloc(4096, 10000)` until NULL under RLIMIT_AS.
#[test]
fn oom_aligned_blocks() {
    oom("oom_aligned");
}

/// `calloc(2500, 16)` until NULL under RLIMIT_AS; every block reads zero.
#[test]
fn oom_calloc_blocks() {
    oom("oom_calloc");
}

/// Random sizes 24 B .. 6 MiB until 200 NULLs in a row (small requests keep
/// succeeding after large ones fail); a realloc of a 100 KB block to 64 MiB
/// at the limit fails with ENOMEM and keeps the block intact; calloc(64,
/// 1 MiB) fails with ENOMEM.
#[test]
fn oom_mixed_sizes() {
    oom("oom_mixed");
}

/// The full recovery contract: after a program freed everything it
/// allocated at the limit, every size can be allocated again (glibc and
/// mimalloc pass this). hakmem keeps the freed superslabs and mappings
/// (VmSize stays at the limit), so a 3 MiB malloc fails.
#[test]
fn oom_memory_freed_at_the_limit_serves_every_size() {
    let mut failed = Vec::new();
    for group in GROUPS.iter().filter(|g| g.starts_with("oom_")) {
        let run = run_group(group);
        if !run.status.success() {
            failed.push(format!("{group}:\n{}", run.describe()));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// Every group of limits.c has a test above.
#[test]
fn every_limits_group_has_a_test() {
    let exe = compile_c("limits.c", "limits", false);
    let run = run_with_timeout(Command::new(exe).arg("list"), LIMIT);
    assert!(run.status.success(), "{}", run.describe());
    let listed: Vec<String> = run.stdout_str().lines().map(str::to_owned).collect();
    assert_eq!(listed, GROUPS, "limits.c groups vs. GROUPS in limits.rs");
}

/// limits.c `impossible`: under `RLIMIT_AS`, 32,000 requests that can never
/// succeed (2^36 .. 2^47 bytes, beyond the limit; 2^50 .. `SIZE_MAX`,
/// beyond the address space), through malloc, calloc, realloc,
/// posix_memalign, aligned_alloc, memalign, valloc, pvalloc and
/// reallocarray in turn, each right after a `malloc(16)`/`free`: every one
/// gives NULL (posix_memalign `ENOMEM`) with `errno == ENOMEM`, and the live
/// blocks of every tier (and the blocks realloc was asked to grow) keep their
/// contents.
#[test]
fn impossible_requests_fail_with_enomem_and_lose_nothing() {
    let run = run_group("impossible");
    assert!(
        run.status.success() && run.stdout_str().contains(", 0 not NULL/ENOMEM"),
        "{}",
        run.describe()
    );
}

/// The memory system calls (`mmap`, `munmap`, `madvise`, `mremap`, `brk`)
/// the `impossible` loop makes, counted by `strace` between the program's
/// two `getppid` markers: at most 4 for the 32,000 requests (one failing
/// `mmap` may be needed to learn that `RLIMIT_AS` is set). Before requests
/// that cannot fit failed up front, each went to the OS and its
/// out-of-memory reclaim gave away the thread's just-emptied memory, which
/// the next `malloc(16)` mapped again: 59,852 calls. Then 2000 requests of
/// nearly the whole limit, which only a failing `mmap` can refuse: besides
/// those, at most 40 calls (the reclaim of the thread's own memory runs at
/// most once per 100 ms; before, 2000 `madvise`s). Skipped (with a note)
/// when strace is not installed or cannot trace here; `.ci/run` installs
/// it.
#[test]
fn impossible_requests_make_no_memory_system_calls() {
    let Some(strace) = which("strace") else {
        eprintln!("SKIP: strace is not installed (Debian package `strace`)");
        return;
    };
    let probe = run_with_timeout(
        Command::new(&strace).args(["-f", "-o", "/dev/null", "true"]),
        Duration::from_secs(30),
    );
    if !probe.status.success() {
        eprintln!(
            "SKIP: strace cannot trace here (ptrace not allowed?)\n{}",
            probe.describe()
        );
        return;
    }
    let dir = TempDir::new("impossible");
    let log = dir.join("strace.log");
    let exe = compile_c("limits.c", "limits", false);
    let mut cmd = Command::new(&strace);
    cmd.args(["-f", "-o"])
        .arg(&log)
        .args(["-e", "trace=mmap,munmap,madvise,mremap,brk,getppid", "-E"])
        .arg(format!("LD_PRELOAD={}", hakmem_so().display()))
        .arg(exe)
        .arg("impossible");
    let run = run_with_timeout(&mut cmd, LIMIT);
    assert_preload_took(&run, "impossible");
    print!("{}", run.stdout_str());
    assert!(
        run.status.success() && run.stdout_str().contains(", 0 not NULL/ENOMEM"),
        "{}",
        run.describe()
    );
    let text = std::fs::read_to_string(&log).expect("strace log");
    let mut markers = 0;
    // phase 1: the impossible requests; phase 3: the requests near the limit
    let (mut impossible, mut near): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
    for line in text.lines() {
        // "<pid> <name>(<args>) = <result>"
        let name = line
            .split_whitespace()
            .nth(1)
            .and_then(|w| w.split('(').next())
            .unwrap_or("");
        if name == "getppid" {
            markers += 1;
        } else if !name.is_empty() && line.contains('(') {
            match markers {
                1 => impossible.push(line),
                // each of these requests costs one failing mmap, which only
                // the OS can refuse; anything else is the reclaim's
                3 if !(name == "mmap" && line.contains("ENOMEM")) => near.push(line),
                _ => {}
            }
        }
    }
    assert_eq!(markers, 4, "the four markers are in the strace log");
    println!(
        "{} memory system calls for 32,000 impossible requests; {} besides the failing mmaps \
         for 2000 requests near the limit",
        impossible.len(),
        near.len()
    );
    assert!(
        impossible.len() <= 4,
        "{} memory system calls for 32,000 impossible requests; the first ones:\n{}",
        impossible.len(),
        impossible[..impossible.len().min(20)].join("\n")
    );
    assert!(
        near.len() <= 40,
        "2000 requests near the limit: {} memory system calls besides their failing mmaps \
         (the out-of-memory reclaim gives the thread's memory away each time?); the first \
         ones:\n{}",
        near.len(),
        near[..near.len().min(20)].join("\n")
    );
}
