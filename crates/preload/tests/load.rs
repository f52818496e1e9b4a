//! Faults and load under `LD_PRELOAD=<libhakmem.so>`: the groups of
//! `tests/c/load.c`, each in its own process with a deadline.
//!
//! `HAKMEM_SOAK_SECS=<n>` makes the stress run last `n` seconds instead of
//! 3 (a soak run: `HAKMEM_SOAK_SECS=600 cargo test --release -p
//! hakmem-preload --test load stress -- --nocapture`).

mod common;

use common::{assert_preload_took, compile_c, preload, run_with_timeout, Finished};
use std::process::Command;
use std::time::Duration;

const GROUPS: [&str; 4] = ["fork", "sigfork", "churn", "stress"];

fn run(args: &[&str], env: &[(&str, &str)], limit: Duration) -> Finished {
    let exe = compile_c("load.c", "load", false);
    let mut cmd = Command::new(exe);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    preload(&mut cmd);
    let run = run_with_timeout(&mut cmd, limit);
    assert_preload_took(&run, args[0]);
    print!("{}", run.stdout_str());
    assert!(
        run.status.success(),
        "load {} failed under the preload\n{}",
        args.join(" "),
        run.describe()
    );
    run
}

/// `fork` 100 times while 4 threads allocate (tiny to 3 MiB blocks,
/// calloc, aligned_alloc, realloc, all pattern-checked); each child checks
/// the 5000 B block it inherited, frees it, allocates every tier (0 B ..
/// 3 MiB), starts a thread that allocates, forks a grandchild every tenth
/// round (which does the same), and exits 0. A child still running after
/// 20 s dies of SIGALRM and fails the test as a deadlock; the whole run has
/// a 180 s deadline.
#[test]
fn fork_100_times_while_threads_allocate() {
    let done = run(&["fork", "100"], &[], Duration::from_secs(180));
    assert!(
        done.stdout_str()
            .contains("fork: 100 rounds, 0 deadlocked children"),
        "{}",
        done.describe()
    );
}

/// The same 100 forks with the online learner on (`HAKMEM_MODE=learning`,
/// a 10 ms learning window, so the learner thread is busy when the process
/// forks): no child deadlocks, every child exits 0, so the learner is
/// re-created or quiesced in the child without holding a lock the child
/// needs.
#[test]
fn fork_100_times_with_the_learner_on() {
    let done = run(
        &["fork", "100"],
        &[
            ("HAKMEM_MODE", "learning"),
            ("HAKMEM_LEARN_WINDOW_MS", "10"),
        ],
        Duration::from_secs(180),
    );
    assert!(
        done.stdout_str()
            .contains("fork: 100 rounds, 0 deadlocked children"),
        "{}",
        done.describe()
    );
}

/// A single-threaded program mallocs and frees (tiny to 4 MiB blocks,
/// pattern-checked) while a sender process sends SIGUSR1 and SIGUSR2 as fast
/// as it can; both handlers call `fork` (each signal can interrupt the other's
/// handler, so forks nest inside forks and inside allocator calls), every
/// child `_exit`s at once with code 7, and the loop reaps and checks them.
/// Five runs of 1.5 s; a run still going after 30 s failed (before the fork
/// handlers skipped their locks in a single-threaded process and ignored a
/// nested prepare, every run hung: the handler's `fork` spun on a lock its
/// own interrupted code held).
#[test]
fn fork_in_signal_handlers_while_the_only_thread_allocates() {
    for round in 0..5 {
        let done = run(&["sigfork", "1.5"], &[], Duration::from_secs(30));
        let out = done.stdout_str();
        assert!(
            out.contains("ok sigfork") && out.contains(" 0 bad,"),
            "round {round}: {}",
            done.describe()
        );
    }
}

/// 1000 threads started one after another (each joined before the next
/// starts), each allocating 1 MiB in 16..512 B blocks and freeing them,
/// half of them handed to the next thread to free (odd threads make that
/// cross-thread free their first allocator call). Every block is
/// pattern-checked at its free. After the first 50 threads, RSS may grow by
/// at most 32 MiB and VmSize by at most 256 MiB over the remaining 950
/// (without reclaiming thread caches, 950 threads would keep ~1 GiB).
#[test]
fn thousand_threads_one_after_another_keep_rss_bounded() {
    let done = run(
        &["churn", "1000"],
        &[("CHURN_RSS_MIB", "32"), ("CHURN_VM_MIB", "256")],
        Duration::from_secs(120),
    );
    assert!(done.stdout_str().contains("churn: 1000 threads"));
}

/// test-stress style: 8 threads per round, replaced every 300 ms (heaps
/// reused, superslabs of exited threads adopted), for 3 s (or
/// `HAKMEM_SOAK_SECS`): random sizes (80% 16 B..1 KiB, 18% ..64 KiB, 1.8%
/// ..1 MiB, 0.2% ..4 MiB) through malloc, calloc (checked zero), realloc
/// (prefix checked), aligned_alloc (16 B..32 KiB alignment checked); 3 in 16
/// operations swap a block through 4096 shared slots, so whoever takes it
/// out frees it (cross-thread frees); each block's size/seed header and
/// pattern are checked at every free and its usable size at least its size.
#[test]
fn stress_random_sizes_with_cross_thread_frees() {
    let secs: u64 = std::env::var("HAKMEM_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let done = run(
        &["stress", &secs.to_string(), "8"],
        &[],
        Duration::from_secs(secs + 120),
    );
    assert!(done.stdout_str().contains("ok stress"));
}

/// Every group of load.c has a test above.
#[test]
fn every_load_group_has_a_test() {
    let exe = compile_c("load.c", "load", false);
    let run = run_with_timeout(Command::new(exe).arg("list"), Duration::from_secs(30));
    assert!(run.status.success(), "{}", run.describe());
    let listed: Vec<String> = run.stdout_str().lines().map(str::to_owned).collect();
    assert_eq!(listed, GROUPS, "load.c groups vs. GROUPS in load.rs");
}
