//! Thread lifecycle and memory return: heaps come back at thread exit and
//! are reused, superslabs of exited threads are adopted, a thread's first
//! call may be a free or realloc of another thread's block, and RSS falls
//! after a program frees its memory.
//!
//! The tests of this binary share one process; RSS assertions use margins
//! wide enough for what the other tests hold meanwhile.

use std::sync::Mutex;

// The test's own bookkeeping (vectors of pointers) goes through hakmem too,
// so the process's RSS is hakmem's to account for.
#[global_allocator]
static A: hakmem::HakMem = hakmem::HakMem;

/// Serialises the tests that measure process-wide quantities.
static SERIAL: Mutex<()> = Mutex::new(());

mod common;
use common::{rss_bytes, touch};

fn working_set(total_mib: usize) -> Vec<*mut u8> {
    // a quarter tiny, three eighths mid, three eighths large
    let t = total_mib << 20;
    let mut blocks = Vec::new();
    for (size, bytes) in [
        (64usize, t / 4),
        (48 << 10, t * 3 / 8),
        (6 << 20, t * 3 / 8),
    ] {
        for _ in 0..bytes / size {
            let p = hakmem::malloc(size);
            assert!(!p.is_null());
            touch(p, size);
            blocks.push(p);
        }
    }
    blocks
}

fn free_all(blocks: Vec<*mut u8>) {
    for p in blocks {
        // SAFETY: each block freed once.
        unsafe { hakmem::free(p) };
    }
}

#[test]
fn rss_falls_back_after_freeing_1_gib() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    hakmem::collect();
    let before = rss_bytes();
    let blocks = working_set(1024);
    let peak = rss_bytes();
    assert!(peak - before >= 900 << 20, "the working set is resident");
    free_all(blocks);
    let after = rss_bytes().saturating_sub(before);
    // (under valgrind, RSS also counts its shadow memory, which never
    // shrinks: scripts/memcheck.sh runs the paths, `cargo test` the bounds)
    let bounds = std::env::var_os("HAKMEM_TEST_UNDER_MEMCHECK").is_none();
    // At once: only what the caches may keep with their pages stays: 64 MiB
    // of large mappings, 32 pooled superslabs (64 MiB), a heap's 64 MiB of
    // empty slabs and 8 empty superslabs (16 MiB), its bins (up to 128 KiB
    // per tiny class since the caps were raised for request bursts, and
    // the slabs their blocks pin, whole 2 MiB superslabs where they are
    // huge pages): 208 MiB of cache budgets plus up to 24 MiB of bins.
    assert!(
        !bounds || after < 232 << 20,
        "kept {} MiB right after the free",
        after >> 20
    );
    // After the decay time the background thread (on its clock: a tick
    // every decay/8, the large cache scanning at most twice per decay
    // period) and the next allocator calls purge the rest.
    std::thread::sleep(std::time::Duration::from_millis(1700));
    for _ in 0..300 {
        let p = hakmem::malloc(3 << 20);
        // SAFETY: freed once.
        unsafe { hakmem::free(p) };
    }
    let decayed = rss_bytes().saturating_sub(before);
    eprintln!(
        "rss: before {} MiB, peak {} MiB, right after free +{} MiB, after decay +{} MiB",
        before >> 20,
        peak >> 20,
        after >> 20,
        decayed >> 20
    );
    // (what stays is the calling thread's bins, up to 128 KiB per tiny
    // class, and the slabs their blocks pin)
    assert!(
        !bounds || decayed < 16 << 20,
        "within a few MiB of the start after decay: +{} MiB",
        decayed >> 20
    );
}

#[test]
fn collect_returns_memory_at_once() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    hakmem::collect();
    let before = rss_bytes();
    free_all(working_set(256));
    assert!(hakmem::collect(), "something was released");
    let kept = rss_bytes().saturating_sub(before);
    assert!(kept < 8 << 20, "collect() leaves +{} MiB", kept >> 20);
    let st = hakmem::stats();
    assert_eq!(st.large_cache.dirty.0 + st.large_cache.clean.0, 0);
    assert_eq!(st.pool.dirty + st.pool.clean, 0);
}

#[test]
fn exiting_threads_return_their_heaps() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
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
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
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
    // Its superslabs hold live blocks: they are orphans now, unless another
    // thread of the harness (the main thread printing results) needed memory
    // meanwhile and adopted them already.
    let now = hakmem::stats();
    assert!(
        now.orphaned_superslabs > 0
            || now.classes.superslabs_adopted > start.classes.superslabs_adopted,
        "the exited thread's superslabs hold live blocks but were neither orphaned nor adopted"
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
    // its threads could adopt the orphans another test counts
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
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
