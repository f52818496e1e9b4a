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
mod background;
mod check;
mod config;
mod exit;
mod fork;
mod huge;
mod init;
mod large;
mod learner;
mod observe;
mod report;
mod secure;
mod sites;
mod state;
mod stats;
mod thread;
mod tls;

use core::alloc::{GlobalAlloc, Layout};

/// The joint class numbering lives in the heap box.
use hakmem_heap::classes;

pub use api::{
    aligned_alloc, alloc_recorded, calloc, free, free_slow_path, malloc, malloc_observed,
    malloc_slow, realloc, realloc_aligned, set_site_placement, usable_size, zeroed_alloc,
    MIN_ALIGN,
};
pub use background::background_running;
pub use classes::{class_of, class_size, NCLASSES, SLAB_MAX, TINY_BIN_OFFSET};
pub use hakmem_sites::{Lane, PlacementStats};
pub use hakmem_sites::{SiteBox, SiteId, SiteVec};
pub use large::collect;
#[doc(hidden)]
pub use learner::testing as learner_testing;
pub use learner::{learned_policy, learner_phase};
pub use observe::{Limit, SAMPLE_LIMIT, TINY_LIMIT};
pub use sites::placement_stats;
pub use tls::SAMPLE_LEFT_OFFSET;

/// Call-site reports and control.
pub mod site_report {
    pub use crate::sites::{report, report_json, reset, table};
    pub use hakmem_sites::{Class, PolicyClass, SiteStats, SiteTable};
}

/// Allocates a block for `layout`, recorded at the caller's source location
/// (`#[track_caller]`): the call-site profiling API. Null on failure.
/// Free it with [`free_cs`] (or [`free`], or `dealloc`: any of them records
/// the free).
#[track_caller]
#[inline]
pub fn alloc_cs(layout: Layout) -> *mut u8 {
    api::alloc_recorded(layout.size(), layout.align(), SiteId::caller())
}

/// Frees a block from [`alloc_cs`].
///
/// # Safety
/// `ptr` must be a live block from this allocator, not used afterwards.
#[inline]
pub unsafe fn free_cs(ptr: *mut u8, _layout: Layout) {
    // SAFETY: forwarded contract.
    unsafe { free(ptr) }
}

// SAFETY: `alloc_at` returns null or a block of at least `layout.size()`
// bytes aligned to `layout.align()`; `dealloc_at` frees exactly those.
unsafe impl hakmem_sites::SiteAlloc for HakMem {
    #[inline]
    unsafe fn alloc_at(&self, layout: Layout, site: SiteId) -> *mut u8 {
        api::alloc_recorded(layout.size(), layout.align(), site)
    }

    #[inline]
    unsafe fn dealloc_at(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: the caller passes a live block of ours.
        unsafe { free(ptr) }
    }
}
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
