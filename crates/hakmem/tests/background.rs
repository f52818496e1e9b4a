//! The background maintenance thread: memory unused for the decay time goes
//! back to the OS with no allocator call at all, from exited threads and
//! idle living ones.
//!
//! The tests of this binary share one process; they are serialised and
//! measure RSS relative to their own start.

use std::io::Read;
use std::sync::{Barrier, Mutex};
use std::time::Duration;

#[global_allocator]
static A: hakmem::HakMem = hakmem::HakMem;

static SERIAL: Mutex<()> = Mutex::new(());

/// RSS from /proc/self/statm, read without allocating (so that reading it
/// makes no allocator call).
fn rss_bytes() -> usize {
    let mut f = std::fs::File::open("/proc/self/statm").unwrap();
    let mut buf = [0u8; 128];
    let n = f.read(&mut buf).unwrap();
    let s = core::str::from_utf8(&buf[..n]).unwrap();
    let pages: usize = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn touch(p: *mut u8, n: usize) {
    let mut off = 0;
    while off < n {
        // SAFETY: the caller passes a live block of n bytes.
        unsafe { p.add(off).write(1) };
        off += 4096;
    }
}

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
    hakmem::collect();
    let before = rss_bytes();
    let freed = std::sync::Arc::new(Barrier::new(3));
    let done = std::sync::Arc::new(Barrier::new(3));
    let ts: Vec<_> = (0..2)
        .map(|_| {
            let (freed, done) = (freed.clone(), done.clone());
            std::thread::spawn(move || {
                churn(128);
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
        "idle: +{} MiB right after, +{} MiB after idling",
        right_after >> 20,
        kept >> 20
    );
    assert!(
        kept < 16 << 20,
        "kept +{} MiB after idling (+{} MiB right after the threads freed)",
        kept >> 20,
        right_after >> 20
    );
}
