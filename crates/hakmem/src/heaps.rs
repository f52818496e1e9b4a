//! The registry of heaps: every heap ever created, and the free ones.
//!
//! Heaps are mapped one by one from the OS and never unmapped, so a pointer
//! to a heap's pending list (stored in superslab headers) stays valid
//! forever. A thread's heap returns here at thread exit and is reused by the
//! next new thread; each heap keeps its tag for life, so tags stay unique.

use core::ptr;

use hakmem_pagemap::Entry;
use hakmem_platform::{Pal, SpinLock, PAGE_SIZE};

use crate::heap::Heap;
use crate::state::Os;

struct Registry {
    all: *mut Heap,
    free: *mut Heap,
    count: u32,
    live: u32,
}

// SAFETY: heaps are only linked and unlinked under the registry lock.
unsafe impl Send for Registry {}

static REGISTRY: SpinLock<Registry> = SpinLock::new(Registry {
    all: ptr::null_mut(),
    free: ptr::null_mut(),
    count: 0,
    live: 0,
});

const HEAP_BYTES: usize = core::mem::size_of::<Heap>().div_ceil(PAGE_SIZE) * PAGE_SIZE;

/// A heap for a new thread (or the fallback heap): a free one if any, else a
/// new mapping. `None` if the OS is out of memory.
pub(crate) fn acquire() -> Option<*mut Heap> {
    {
        let mut g = REGISTRY.lock();
        let h = g.free;
        if !h.is_null() {
            // SAFETY: heaps on the free list are valid and unused.
            unsafe {
                g.free = (*h).next_free;
                (*h).next_free = ptr::null_mut();
                (*h).in_use = true;
            }
            g.live += 1;
            drop(g);
            // SAFETY: the heap is ours now.
            unsafe { (*h).forward_all_pending() };
            return Some(h);
        }
    }
    let mem = Os::map(HEAP_BYTES, PAGE_SIZE)?;
    let h = mem.as_ptr().cast::<Heap>();
    let mut g = REGISTRY.lock();
    let tag = Entry::FIRST_TAG + g.count;
    if tag >= Entry::MAX_TAG {
        drop(g);
        // SAFETY: just mapped, unused.
        unsafe { Os::unmap(mem, HEAP_BYTES) };
        return None;
    }
    g.count += 1;
    g.live += 1;
    // SAFETY: the mapping is ours, large enough and suitably aligned (page).
    unsafe {
        h.write(Heap::disabled(tag));
        (*h).in_use = true;
        (*h).next_all = g.all;
    }
    g.all = h;
    Some(h)
}

/// Returns a heap whose thread is gone (its contents already released).
pub(crate) fn release(h: *mut Heap) {
    let mut g = REGISTRY.lock();
    // SAFETY: the caller owned the heap; it joins the free list.
    unsafe {
        (*h).in_use = false;
        (*h).next_free = g.free;
    }
    g.free = h;
    g.live -= 1;
}

/// Calls `f` on every heap ever created (in use or not), under the registry
/// lock. `f` may only read the heaps' shared parts (counters).
pub(crate) fn for_each(mut f: impl FnMut(&Heap)) {
    let g = REGISTRY.lock();
    let mut h = g.all;
    while !h.is_null() {
        // SAFETY: registered heaps live forever.
        unsafe {
            f(&*h);
            h = (*h).next_all;
        }
    }
}

/// (heaps created, heaps in use).
pub(crate) fn counts() -> (u32, u32) {
    let g = REGISTRY.lock();
    (g.count, g.live)
}

/// The registry lock, for the fork handlers.
pub(crate) fn fork_lock() -> &'static SpinLock<impl Sized> {
    &REGISTRY
}
