//! Multi-threaded stress in the style of mimalloc's test-stress: threads
//! allocate blocks of random sizes, fill every word with a per-block
//! pattern, free a random earlier block two times in three, and swap blocks
//! through a shared slot array a quarter of the time, so many frees are
//! cross-thread. Every block's pattern is checked when it is freed. Threads
//! are started anew each round, so heaps are reused and the superslabs of
//! exited threads are adopted.
//!
//! Bounded to a few seconds; `HAKMEM_STRESS_SECS` makes it run longer.

mod common;
use common::Rng;

use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[global_allocator]
static A: hakmem::HakMem = hakmem::HakMem;

const THREADS: usize = 6;
const SLOTS: usize = 4096;

/// Word 0: the size in words; word 1..: `cookie ^ i`.
fn alloc_block(rng: &mut Rng) -> *mut u64 {
    let r = rng.below(1000);
    let words = if r < 10 {
        // 1%: 100x larger, 1% of those: mid and large sizes
        if rng.below(100) == 0 {
            1 + rng.below(300_000) as usize
        } else {
            1 + rng.below(1600) as usize
        }
    } else {
        1 + rng.below(16) as usize
    };
    let p = hakmem::malloc(words * 8).cast::<u64>();
    assert!(!p.is_null());
    assert_eq!(p as usize % if words * 8 > 8 { 16 } else { 8 }, 0);
    let cookie = p as u64 ^ 0x5bd1_e995_u64;
    // SAFETY: the block holds `words` words.
    unsafe {
        p.write(words as u64);
        for i in 1..words {
            p.add(i).write(cookie ^ i as u64);
        }
    }
    p
}

fn free_block(p: *mut u64) {
    if p.is_null() {
        return;
    }
    // SAFETY: a live block written by alloc_block.
    unsafe {
        let words = p.read() as usize;
        assert!(
            (1..=300_001).contains(&words),
            "corrupted size word {words}"
        );
        assert!(hakmem::usable_size(p.cast()) >= words * 8);
        let cookie = p as u64 ^ 0x5bd1_e995_u64;
        for i in 1..words {
            assert_eq!(
                p.add(i).read(),
                cookie ^ i as u64,
                "block {p:?} word {i} corrupted"
            );
        }
        hakmem::free(p.cast());
    }
}

#[test]
fn stress_cross_thread() {
    let secs = common::stress_secs(3);
    let shared: Vec<AtomicPtr<u64>> = (0..SLOTS)
        .map(|_| AtomicPtr::new(std::ptr::null_mut()))
        .collect();
    let ops = AtomicU64::new(0);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut round = 0u64;
    let live_before = hakmem::stats().heaps_live;
    while Instant::now() < deadline || round < 3 {
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let shared = &shared;
                let ops = &ops;
                s.spawn(move || {
                    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (round * 1000 + t as u64 + 1));
                    let mut mine: Vec<*mut u64> = Vec::new();
                    let n = 20_000 + rng.below(20_000) as usize;
                    for _ in 0..n {
                        mine.push(alloc_block(&mut rng));
                        if rng.below(3) < 2 && !mine.is_empty() {
                            let i = rng.below(mine.len() as u64) as usize;
                            free_block(mine.swap_remove(i));
                        }
                        if rng.below(4) == 0 && !mine.is_empty() {
                            let i = rng.below(mine.len() as u64) as usize;
                            let slot = rng.below(SLOTS as u64) as usize;
                            let old = shared[slot].swap(mine[i], Ordering::AcqRel);
                            if old.is_null() {
                                mine.swap_remove(i);
                            } else {
                                mine[i] = old; // now ours: freed later by this thread
                            }
                        }
                    }
                    // leave about half for the next round's threads? no: free
                    // all but what sits in the shared slots.
                    for p in mine {
                        free_block(p);
                    }
                    ops.fetch_add(n as u64, Ordering::Relaxed);
                });
            }
        });
        round += 1;
        // `thread::scope` returns when the threads' closures are done, not
        // when the threads have exited: their heaps come back from the
        // thread-exit destructor a little later (much later on a loaded
        // machine). Wait for that, so that the next round can reuse them.
        let wait = Instant::now() + Duration::from_secs(10);
        while hakmem::stats().heaps_live > live_before && Instant::now() < wait {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    for s in &shared {
        free_block(s.swap(std::ptr::null_mut(), Ordering::AcqRel));
    }
    let st = hakmem::stats();
    let remote: u64 = st.classes.sum(0..hakmem::NCLASSES, |c| c.remote_frees);
    let drained: u64 = st.classes.sum(0..hakmem::NCLASSES, |c| c.remote_drained);
    eprintln!(
        "stress: {round} rounds, {} allocations, {remote} remote frees, {drained} drained, {} heaps created, {} adopted",
        ops.load(Ordering::Relaxed),
        st.heaps_created,
        st.classes.superslabs_adopted
    );
    assert!(
        remote > 1000,
        "the shared slots must cause cross-thread frees"
    );
    assert!(
        st.heaps_created as usize <= THREADS + 4,
        "heaps of exited threads are reused: {}",
        st.heaps_created
    );
}
