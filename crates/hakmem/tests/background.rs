//! The background maintenance thread: memory unused for the decay time goes
//! back to the OS with no allocator call at all, from exited threads and
//! idle living ones.
//!
//! The tests of this binary share one process; they are serialised and
//! measure RSS relative to their own start.

use std::sync::{Barrier, Mutex};
use std::time::Duration;

#[global_allocator]
static A: hakmem::HakMem = hakmem::HakMem;

static SERIAL: Mutex<()> = Mutex::new(());

mod common;
use common::{rss_bytes, touch};

/// Allocates `mib` MiB of mixed tiny, mid and large blocks (touched) and
/// frees them all.
fn churn(mib: usize) {
    let t = mib << 20;
    let mut blocks = Vec::with_capacity(t / 64 / 4 + 16);
    for (size, bytes) in [
        (64usize, t / 4),
        (24 << 10, t * 3 / 8),
        (3 << 20, t * 3 / 8),
    ] {
        for _ in 0..bytes / size {
            let p = hakmem::malloc(size);
            assert!(!p.is_null());
            touch(p, size);
            blocks.push(p);
        }
    }
    for p in blocks {
        // SAFETY: each block freed once.
        unsafe { hakmem::free(p) };
    }
}

/// Sleeps long enough for the decay time (1 s by default) and a few ticks,
/// making no allocator call.
fn idle() {
    std::thread::sleep(Duration::from_millis(2600));
}

#[test]
fn the_thread_runs() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // any slow path starts it
    let p = hakmem::malloc(100_000);
    // SAFETY: freed once.
    unsafe { hakmem::free(p) };
    for _ in 0..100 {
        if hakmem::background_running() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the background thread did not start");
}

#[test]
fn exited_threads_memory_decays_without_calls() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    hakmem::collect();
    let before = rss_bytes();
    let t = std::thread::spawn(|| churn(256));
    t.join().unwrap();
    let right_after = rss_bytes().saturating_sub(before);
    idle();
    let kept = rss_bytes().saturating_sub(before);
    eprintln!(
        "exited: +{} MiB right after, +{} MiB after idling",
        right_after >> 20,
        kept >> 20
    );
    assert!(
        kept < 16 << 20,
        "kept +{} MiB after idling (+{} MiB right after the threads exited)",
        kept >> 20,
        right_after >> 20
    );
}

#[test]
fn idle_threads_memory_decays_without_calls() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (right_after, kept) = kept_by_idle_threads("idle", |_| churn(128));
    assert!(
        kept < 16 << 20,
        "kept +{} MiB after idling (+{} MiB right after the threads freed)",
        kept >> 20,
        right_after >> 20
    );
}

/// Two living threads run `work(1)` and `work(2)` and block; returns the
/// RSS growth (bytes) right after they finished it and after [`idle`].
fn kept_by_idle_threads(what: &str, work: fn(u64)) -> (usize, usize) {
    hakmem::collect();
    let before = rss_bytes();
    let freed = std::sync::Arc::new(Barrier::new(3));
    let done = std::sync::Arc::new(Barrier::new(3));
    let ts: Vec<_> = (0..2u64)
        .map(|i| {
            let (freed, done) = (freed.clone(), done.clone());
            std::thread::spawn(move || {
                work(i + 1);
                freed.wait();
                done.wait();
            })
        })
        .collect();
    freed.wait();
    let right_after = rss_bytes().saturating_sub(before);
    idle();
    let kept = rss_bytes().saturating_sub(before);
    done.wait();
    for t in ts {
        t.join().unwrap();
    }
    eprintln!(
        "{what}: +{} MiB right after, +{} MiB after idling",
        right_after >> 20,
        kept >> 20
    );
    (right_after, kept)
}

/// Allocates `total` bytes of blocks of every size, at most `live` of them
/// live at a time (then frees them all and starts over), and frees
/// everything: as the matrix's `idle-return` workload, a quarter of the
/// bytes tiny (16 B-1 KiB), three eighths mid (2-32 KiB), three eighths
/// 64 KiB-4 MiB, so that blocks of every class sit in the thread's bins
/// when it stops.
fn churn_every_class(seed: u64, total: usize, live: usize) {
    let mut rng = common::Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut blocks: Vec<(*mut u8, usize)> = Vec::new();
    let (mut done, mut held) = (0, 0);
    let free = |blocks: &mut Vec<(*mut u8, usize)>| {
        for (p, _) in blocks.drain(..) {
            // SAFETY: each block freed once.
            unsafe { hakmem::free(p) };
        }
    };
    while done < total {
        let r = rng.below(1 << 20) as usize;
        let (large_p, mid_p) = (
            (1 << 20) * 3 / 8 * 520 / (2 << 20),
            (1 << 20) * 3 / 8 * 520 / (17 << 10),
        );
        let (lo, hi) = if r < large_p {
            (64 << 10, 4 << 20)
        } else if r < large_p + mid_p {
            (2 << 10, 32 << 10)
        } else {
            (16, 1024)
        };
        let n = lo + rng.below((hi - lo) as u64) as usize;
        let p = hakmem::malloc(n);
        assert!(!p.is_null());
        touch(p, n);
        blocks.push((p, n));
        done += n;
        held += n;
        if held >= live {
            free(&mut blocks);
            held = 0;
        }
    }
    free(&mut blocks);
}

/// Living threads that freed blocks of every class and went quiet (the
/// matrix's idle-threads row): their bins would pin a slab of every class
/// they hold a block of; a thread that spills far more than it refills
/// drains its bins, so the background thread's visits give its slabs back.
#[test]
fn idle_threads_that_freed_every_class_keep_little() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (right_after, kept) = kept_by_idle_threads("idle, every class", |i| {
        churn_every_class(i, 256 << 20, 64 << 20)
    });
    // (under valgrind RSS counts shadow memory that never shrinks: the
    // paths run there, the bound is checked by the plain run)
    if std::env::var_os("HAKMEM_TEST_UNDER_MEMCHECK").is_some() {
        return;
    }
    assert!(
        kept < 12 << 20,
        "kept +{} MiB after idling (+{} MiB right after the threads freed)",
        kept >> 20,
        right_after >> 20
    );
}

/// Fills `n` bytes of `p` with a pattern of `seed`.
fn fill(p: *mut u8, n: usize, seed: u8) {
    for i in (0..n).step_by(61) {
        // SAFETY: a live block of n bytes.
        unsafe { p.add(i).write(seed ^ i as u8) };
    }
}

fn intact(p: *const u8, n: usize, seed: u8) -> bool {
    // SAFETY: a live block of n bytes.
    (0..n)
        .step_by(61)
        .all(|i| unsafe { p.add(i).read() } == seed ^ i as u8)
}

/// What the child of a fork does: allocate, check, free and collect in every
/// size range, with a heap of its own, then exit. 0: all good.
fn child_work() -> i32 {
    let sizes = [24usize, 200, 1000, 5000, 30_000, 300_000, 3 << 20];
    let mut blocks = Vec::with_capacity(4096);
    for round in 0..3u8 {
        for (k, &n) in sizes.iter().cycle().take(350).enumerate() {
            let p = hakmem::malloc(n);
            if p.is_null() {
                return 2;
            }
            fill(p, n, round ^ k as u8);
            blocks.push((p, n, round ^ k as u8));
        }
        for &(p, n, seed) in &blocks {
            if !intact(p, n, seed) {
                return 3;
            }
        }
        for (p, _, _) in blocks.drain(..) {
            // SAFETY: each block freed once.
            unsafe { hakmem::free(p) };
        }
        hakmem::collect();
    }
    // the child's background thread comes back with its next slow path
    for _ in 0..200 {
        let p = hakmem::malloc(100_000);
        // SAFETY: freed once.
        unsafe { hakmem::free(p) };
        if hakmem::background_running() {
            return 0;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    4
}

/// Forks again and again while other threads purge (the background thread
/// on its clock, a thread calling `collect` in a loop, which visits every
/// heap) and churn memory: every child finds a consistent allocator, and
/// none hangs.
#[test]
fn fork_in_the_middle_of_a_purge_leaves_the_child_consistent() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let stop = Arc::new(AtomicBool::new(false));
    let mut helpers = Vec::new();
    {
        let stop = stop.clone();
        helpers.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                hakmem::collect();
            }
        }));
    }
    for t in 0..2 {
        let stop = stop.clone();
        helpers.push(std::thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                // empty slabs and free slots for the purges to find
                let v: Vec<*mut u8> = (0..2000)
                    .map(|k| hakmem::malloc([48, 3000, 20_000, 200_000][(k + i + t) % 4]))
                    .collect();
                for p in v {
                    // SAFETY: each block freed once.
                    unsafe { hakmem::free(p) };
                }
                i += 1;
            }
        }));
    }
    for _ in 0..16 {
        // SAFETY: the child runs only `child_work` and `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = child_work();
            // SAFETY: ends the child without running the parent's atexit
            // handlers or the test harness.
            unsafe { libc::_exit(code) };
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut status = 0;
        loop {
            // SAFETY: waits for our own child, without blocking.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                break;
            }
            assert_eq!(r, 0, "waitpid failed");
            if std::time::Instant::now() > deadline {
                // SAFETY: our own child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                stop.store(true, Ordering::Relaxed);
                panic!("a child of fork hung");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the child failed: status {status:#x}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for h in helpers {
        h.join().unwrap();
    }
}
