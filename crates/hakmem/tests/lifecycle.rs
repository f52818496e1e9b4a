//! Thread lifecycle and memory return: heaps come back at thread exit and
//! are reused, superslabs of exited threads are adopted, a thread's first
//! call may be a free or realloc of another thread's block, and RSS falls
//! after a program frees its memory.
//!
//! The tests of this binary share one process; RSS assertions use margins
//! wide enough for what the other tests hold meanwhile.

use std::sync::Mutex;

/// Serialises the tests that measure process-wide quantities.
static SERIAL: Mutex<()> = Mutex::new(());

fn rss_bytes() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
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
    // SAFETY: as above.
    unsafe { p.add(n - 1).write(1) };
}

#[test]
fn rss_falls_after_freeing_a_working_set() {
    let _g = SERIAL.lock().unwrap();
    let before = rss_bytes();
    let mut blocks = Vec::new();
    let mut total = 0usize;
    // 256 MiB: a third tiny, a third mid, a third large
    for (size, count) in [(64usize, 1_400_000usize), (48 << 10, 1800), (6 << 20, 14)] {
        for _ in 0..count {
            let p = hakmem::malloc(size);
            assert!(!p.is_null());
            touch(p, size);
            blocks.push(p);
            total += size;
        }
    }
    let peak = rss_bytes();
    assert!(
        peak - before >= total * 9 / 10,
        "the working set is resident"
    );
    for p in blocks.drain(..) {
        // SAFETY: each block freed once.
        unsafe { hakmem::free(p) };
    }
    let after = rss_bytes();
    let kept = after.saturating_sub(before);
    eprintln!(
        "rss: before {} MiB, peak {} MiB, after {} MiB (kept {} MiB of {} MiB)",
        before >> 20,
        peak >> 20,
        after >> 20,
        kept >> 20,
        total >> 20
    );
    assert!(
        kept < (peak - before) / 4,
        "freed memory goes back to the OS"
    );
}

#[test]
fn exiting_threads_return_their_heaps() {
    let _g = SERIAL.lock().unwrap();
    let start = hakmem::stats();
    let rss0 = rss_bytes();
    for _ in 0..200 {
        std::thread::spawn(|| {
            let v: Vec<*mut u8> = (0..16_384).map(|i| hakmem::malloc(16 + i % 100)).collect();
            for p in v {
                // SAFETY: each block freed once.
                unsafe { hakmem::free(p) };
            }
        })
        .join()
        .unwrap();
    }
    let end = hakmem::stats();
    assert!(
        end.heaps_created - start.heaps_created <= 2,
        "one heap is reused by thread after thread: {} new",
        end.heaps_created - start.heaps_created
    );
    let grown = rss_bytes().saturating_sub(rss0);
    assert!(
        grown < 32 << 20,
        "RSS stays bounded under thread churn: +{} MiB",
        grown >> 20
    );
}

#[test]
fn blocks_of_exited_threads_can_be_freed_and_their_memory_adopted() {
    let _g = SERIAL.lock().unwrap();
    let start = hakmem::stats();
    let ptrs: Vec<usize> = std::thread::spawn(|| {
        (0..50_000)
            .map(|i| {
                let p = hakmem::malloc(32 + (i % 5) * 16);
                // SAFETY: at least 32 bytes.
                unsafe { p.cast::<u64>().write(i as u64) };
                p as usize
            })
            .collect()
    })
    .join()
    .unwrap();
    assert!(
        hakmem::stats().orphaned_superslabs > 0,
        "the exited thread left live blocks behind"
    );
    for (i, p) in ptrs.into_iter().enumerate() {
        // SAFETY: live blocks written above, freed once.
        unsafe {
            assert_eq!((p as *const u64).read(), i as u64);
            hakmem::free(p as *mut u8);
        }
    }
    // a new thread needing memory adopts the orphans
    std::thread::spawn(|| {
        let v: Vec<*mut u8> = (0..200_000).map(|_| hakmem::malloc(48)).collect();
        for p in v {
            // SAFETY: freed once.
            unsafe { hakmem::free(p) };
        }
    })
    .join()
    .unwrap();
    let end = hakmem::stats();
    assert!(
        end.classes.superslabs_adopted > start.classes.superslabs_adopted,
        "orphans were adopted"
    );
}

#[test]
fn a_threads_first_call_may_free_or_realloc_a_foreign_block() {
    let a = hakmem::malloc(100) as usize;
    let b = hakmem::malloc(3000) as usize;
    // SAFETY: 100 bytes.
    unsafe { (b as *mut u8).write(9) };
    std::thread::spawn(move || {
        // SAFETY: a live block of the main thread, freed once.
        unsafe { hakmem::free(a as *mut u8) };
    })
    .join()
    .unwrap();
    let c = std::thread::spawn(move || {
        // SAFETY: a live block of the main thread.
        let c = unsafe { hakmem::realloc(b as *mut u8, 100_000) };
        assert!(!c.is_null());
        // SAFETY: the first byte was copied.
        assert_eq!(unsafe { c.read() }, 9);
        c as usize
    })
    .join()
    .unwrap();
    // SAFETY: live block, freed once.
    unsafe { hakmem::free(c as *mut u8) };
}
