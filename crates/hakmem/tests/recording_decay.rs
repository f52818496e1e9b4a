//! A recording heap (the shared heaps that serve `alloc_cs`) belongs to no
//! thread, so nothing but recorded allocations (and the background thread,
//! off here) ages its idle slabs. It checks once in a while, not on every
//! recorded call: empty slabs left idle past the decay time must still go
//! back to their superslabs while recording goes on.
//!
//! One test in its own binary: the options below must be set before the
//! allocator's first call.

use std::alloc::Layout;
use std::time::Duration;

/// A recorded block of `size` bytes: the caller's line is the site.
#[track_caller]
fn alloc(size: usize) -> *mut u8 {
    let p = hakmem::alloc_cs(Layout::from_size_align(size, 16).unwrap());
    assert!(!p.is_null());
    p
}

fn free(p: *mut u8, size: usize) {
    // SAFETY: a live block from `alloc`, freed once.
    unsafe { hakmem::free_cs(p, Layout::from_size_align(size, 16).unwrap()) };
}

/// Slabs of `class` given back to their superslabs so far, over all heaps.
fn released(class: usize) -> u64 {
    hakmem::stats().classes.classes[class].slabs_released
}

#[test]
fn recording_heaps_age_idle_slabs_while_recording_goes_on() {
    // SAFETY: before any other thread exists and before the allocator's
    // first call, which reads the options.
    unsafe {
        std::env::set_var("HAKMEM_BACKGROUND", "0");
        std::env::set_var("HAKMEM_DECAY_MS", "50");
    }
    // A (2000 blocks of 200 bytes: several slabs) and B share no class,
    // also with the short record each recorded block keeps at its end.
    const A: usize = 200;
    const B: usize = 3000;
    let b_first = alloc(B);
    let blocks: Vec<*mut u8> = (0..2000).map(|_| alloc(A)).collect();
    // the block's class: its usable size is the class less a short record
    // SAFETY: a live block of ours.
    let class_a = hakmem::class_of(unsafe { hakmem::usable_size(blocks[0]) } + 1);
    assert!(hakmem::class_size(class_a) >= A);
    for p in blocks {
        free(p, A);
    }
    let before = released(class_a);
    // The frees went to the slabs' remote stacks; refills of B drain them
    // (A's slabs empty and are kept for reuse, none released yet).
    let mut bs = vec![b_first];
    while hakmem::stats().classes.classes[class_a].remote_drained < 2000 {
        assert!(bs.len() < 100_000, "A's frees never drained");
        bs.push(alloc(B));
    }
    assert_eq!(released(class_a), before, "kept, not released at once");
    std::thread::sleep(Duration::from_millis(300));
    // recording goes on in another class: A's slabs have idled past the
    // decay time and go back within a few hundred recorded calls
    for _ in 0..256 {
        bs.push(alloc(B));
    }
    assert!(
        released(class_a) > before,
        "no idle slab of class {class_a} released ({before} before)"
    );
    for p in bs {
        free(p, B);
    }
}
