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
mod budget;
mod check;
mod config;
mod exit;
mod fork;
mod huge;
mod init;
mod large;
mod lazy_thread;
mod learner;
mod observe;
mod os;
mod policy_dir;
mod prof;
mod profile;
mod report;
mod ring;
mod secure;
mod sites;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod slot_addr;
mod state;
mod stats;
mod thread;
mod tls;

use core::alloc::{GlobalAlloc, Layout};

/// The joint class numbering lives in the heap box.
use hakmem_heap::classes;

pub use api::{
    aligned_alloc, alloc_recorded, calloc, free, free_after_key_miss, free_after_lookup,
    free_slow_path, malloc, malloc_checked, malloc_observed, malloc_slow, realloc, realloc_aligned,
    set_site_placement, usable_size, zeroed_alloc, MIN_ALIGN,
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
pub use prof::set_profiling;
pub use profile::{
    profile, reset_profile, Profile, ProfileRow, DEFAULT_SHIFT as PROF_DEFAULT_SHIFT,
};
pub use secure::{Flag, CHECKED};
/// For the hand-written C `malloc`/`free` of `hakmem-preload`: secure
/// mode's fast path and the debug ring's layout.
#[doc(hidden)]
pub mod secure_entry {
    pub use crate::api::malloc_written_after_free;
    pub use crate::observe::{SecureLimit, SECURE_LIMIT};
    pub use crate::ring::{
        EVENTS_OFFSET as RING_EVENTS_OFFSET, KIND_ALLOC, KIND_FREE,
        MASK_OFFSET as RING_MASK_OFFSET, POS_OFFSET as RING_POS_OFFSET,
        SIZE_SHIFT as RING_SIZE_SHIFT,
    };
    pub use crate::secure::{
        Canary, TinyInfo, CANARY, INFO_LIMIT_OFFSET, INFO_MUL_OFFSET, INFO_SIZE_OFFSET,
        POISON_WORD, SECURE_BINS, SECURE_ON, SECURE_TINY_MAX, TINY_BIN_BYTES, TINY_INFO,
    };
    pub use crate::tls::RING_OFFSET;
}
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

/// Runs the whole-structure validations now, whatever `HAKMEM_CHECK` says:
/// the calling thread's heap (`Heap::check`), the heap registry
/// (`Registry::check`) and, when checks are on, the large tier
/// (`large::check_large`). A broken invariant is reported as on the slow
/// paths (one line, then abort). For fuzzers and debugging tools (the
/// `c_api` fuzz target calls it between steps); allocates nothing.
/// (Here, above every layer: `check.rs` sits below the modules it calls.)
#[doc(hidden)]
pub fn check_now() {
    crate::init::ensure();
    if let Some(Err(what)) = crate::thread::with_own_heap(|h| h.check()) {
        check::invariant_broken("", what);
    }
    if let Err(what) = crate::state::REGISTRY.check() {
        check::invariant_broken("", what);
    }
    crate::large::check_large();
}

#[cfg(test)]
mod check_now_tests {
    /// `check_now` validates a heap with blocks of every tier live and
    /// after they are freed (a broken invariant would abort the test).
    #[test]
    fn check_now_passes_on_a_used_heap() {
        let sizes = [8usize, 100, 1000, 40_000, 300_000, 3 << 20];
        let blocks: Vec<*mut u8> = sizes.iter().map(|&s| crate::malloc(s)).collect();
        assert!(blocks.iter().all(|p| !p.is_null()));
        crate::check_now();
        for p in blocks {
            // SAFETY: live blocks from `malloc` above, freed once.
            unsafe { crate::free(p) };
        }
        crate::check_now();
    }
}
