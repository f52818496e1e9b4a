//! # hakmem
//!
//! A general-purpose memory allocator built from layered boxes (see
//! `docs/ARCHITECTURE.md`). This crate is the facade: it assembles the boxes
//! into per-thread heaps and offers them two ways:
//!
//! * as a Rust global allocator:
//!   ```ignore
//!   #[global_allocator]
//!   static A: hakmem::HakMem = hakmem::HakMem;
//!   ```
//! * as C-semantics functions ([`malloc`], [`free`], [`calloc`],
//!   [`realloc`], [`aligned_alloc`], [`usable_size`]) that the
//!   `libhakmem.so` crate exports for `LD_PRELOAD`.
//!
//! Nothing reachable from `malloc` allocates through the global allocator,
//! takes a lock a nested `malloc` could want, or touches a thread-local with
//! a destructor.

mod api;
mod classes;
mod fork;
mod heap;
mod heaps;
mod init;
mod report;
mod secure;
mod state;
mod stats;
mod thread;
mod tls;

use core::alloc::{GlobalAlloc, Layout};

pub use api::{
    aligned_alloc, calloc, collect, free, malloc, realloc, realloc_aligned, usable_size,
    zeroed_alloc, MIN_ALIGN,
};
pub use classes::{class_of, class_size, NCLASSES, SLAB_MAX};
pub use stats::{stats, Stats};

/// The hakmem global allocator.
#[derive(Debug, Clone, Copy, Default)]
pub struct HakMem;

// SAFETY: every method returns blocks of at least `layout.size()` bytes
// aligned to `layout.align()`, or null on failure (never unwinds: nothing
// on these paths panics); `dealloc` and `realloc` accept exactly the blocks
// the other methods returned.
unsafe impl GlobalAlloc for HakMem {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= 8 {
            malloc(layout.size())
        } else {
            aligned_alloc(layout.align(), layout.size())
        }
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: the caller passes a live block of ours.
        unsafe { free(ptr) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        zeroed_alloc(layout.size(), layout.align())
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // `new_size` is non-zero per the GlobalAlloc contract, so the C
        // "size 0 frees" rule never applies.
        // SAFETY: a live block of ours allocated with `layout`.
        unsafe { realloc_aligned(ptr, new_size, layout.align()) }
    }
}
