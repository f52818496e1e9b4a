//! hakmem facade (work in progress: forwards to the system allocator until
//! the boxes are assembled).
use std::alloc::{GlobalAlloc, Layout, System};

/// The hakmem global allocator.
#[derive(Debug, Clone, Copy, Default)]
pub struct HakMem;

// SAFETY: forwards to System, which upholds the GlobalAlloc contract.
unsafe impl GlobalAlloc for HakMem {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}
