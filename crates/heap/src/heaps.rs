//! The registry of heaps: every heap ever created, and the free ones.
//!
//! Heaps are mapped one by one from the platform and never unmapped, so a
//! pointer to a heap's pending list (stored in superslab headers) stays
//! valid forever. A thread's heap returns here at thread exit and is reused
//! by the next new thread; each heap keeps its tag for life, so tags stay
//! unique.

use core::ptr;

use hakmem_pagemap::Entry;
use hakmem_platform::{Pal, SpinLock, PAGE_SIZE};

use crate::env::HeapEnv;
use crate::heap::Heap;

struct Inner<E> {
    all: *mut Heap<E>,
    free: *mut Heap<E>,
    count: u32,
    live: u32,
}

// SAFETY: heaps are only linked and unlinked under the registry lock.
unsafe impl<E> Send for Inner<E> {}

/// Every heap of one environment (a `static` of the environment).
pub struct Registry<E> {
    inner: SpinLock<Inner<E>>,
}

impl<E> core::fmt::Debug for Registry<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl<E> Default for Registry<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> Registry<E> {
    /// No heap yet.
    pub const fn new() -> Self {
        Registry {
            inner: SpinLock::new(Inner {
                all: ptr::null_mut(),
                free: ptr::null_mut(),
                count: 0,
                live: 0,
            }),
        }
    }

    const HEAP_BYTES: usize = core::mem::size_of::<Heap<E>>().div_ceil(PAGE_SIZE) * PAGE_SIZE;

    /// Returns a heap whose thread is gone (its contents already released
    /// with [`Heap::release_all`]).
    ///
    /// # Safety
    /// `h` must come from [`Registry::acquire`] of this registry, be in use,
    /// and not be used by the caller afterwards.
    pub unsafe fn release(&self, h: *mut Heap<E>) {
        let mut g = self.inner.lock();
        // SAFETY: the caller owned the heap (contract); it joins the free
        // list under the lock.
        unsafe {
            debug_assert!((*h).in_use);
            (*h).in_use = false;
            (*h).next_free = g.free;
        }
        g.free = h;
        g.live -= 1;
    }

    /// Calls `f` on every heap ever created (in use or not), under the
    /// registry lock. `f` may only read the heaps' shared parts (counters).
    pub fn for_each(&self, mut f: impl FnMut(&Heap<E>)) {
        let g = self.inner.lock();
        let mut h = g.all;
        while !h.is_null() {
            // SAFETY: registered heaps live forever; `f` reads only what
            // other threads may read (counters).
            unsafe {
                f(&*h);
                h = (*h).next_all;
            }
        }
    }

    /// Calls `f` on every heap created before the call (in use or not),
    /// with the registry lock held only to read the list's head: `f` may
    /// take other locks and do slow work (the background thread's visits,
    /// [`Heap::visit`]). Heaps created meanwhile are not seen.
    pub fn for_each_unlocked(&self, mut f: impl FnMut(*mut Heap<E>)) {
        let mut h = self.inner.lock().all;
        while !h.is_null() {
            f(h);
            // SAFETY: registered heaps live forever, and `next_all` is
            // written once, under the lock, before the heap is linked (the
            // lock's release-acquire made it visible with the head).
            h = unsafe { (*h).next_all };
        }
    }

    /// (heaps created, heaps in use).
    pub fn counts(&self) -> (u32, u32) {
        let g = self.inner.lock();
        (g.count, g.live)
    }

    /// Checks the registry's bookkeeping under its lock (allocates nothing):
    /// the list of every heap holds exactly `count` heaps, with the tags
    /// `FIRST_TAG + count - 1` down to `FIRST_TAG` in order (so tags are
    /// unique and the list is acyclic), `live` of them in use; the free
    /// list holds exactly the `count - live` others (walked at most that
    /// many links, so a cycle or a heap listed twice is reported).
    pub fn check(&self) -> Result<(), &'static str> {
        let g = self.inner.lock();
        if g.live > g.count {
            return Err("registry: more heaps in use than created");
        }
        let (mut n, mut in_use) = (0u32, 0u32);
        let mut h = g.all;
        while !h.is_null() {
            if n == g.count {
                return Err("registry: heap list longer than its count (cyclic?)");
            }
            // SAFETY: registered heaps live forever; `tag` never changes and
            // `in_use`/`next_all` are written only under the lock we hold.
            let (tag, used, next) = unsafe { ((*h).tag, (*h).in_use, (*h).next_all) };
            if tag != Entry::FIRST_TAG + g.count - 1 - n {
                return Err("registry: heap tags out of sequence");
            }
            in_use += used as u32;
            n += 1;
            h = next;
        }
        if n != g.count {
            return Err("registry: heap list shorter than its count");
        }
        if in_use != g.live {
            return Err("registry: heaps in use disagree with the live count");
        }
        let free = g.count - g.live;
        let mut n = 0u32;
        let mut h = g.free;
        while !h.is_null() {
            if n == free {
                return Err("registry: free list longer than the free heaps (cyclic?)");
            }
            // SAFETY: heaps on the free list are registered heaps (never
            // unmapped) whose `in_use`/`next_free` change only under the
            // lock we hold.
            let (used, next) = unsafe { ((*h).in_use, (*h).next_free) };
            if used {
                return Err("registry: a heap in use is on the free list");
            }
            n += 1;
            h = next;
        }
        if n != free {
            return Err("registry: free list shorter than the free heaps");
        }
        Ok(())
    }

    /// The registry lock, for fork handlers.
    pub fn fork_lock(&self) -> &SpinLock<impl Sized> {
        &self.inner
    }
}

impl<E: HeapEnv> Registry<E> {
    /// A heap for a new thread (or a shared fallback heap): a free one if
    /// any, else a new mapping from `E::Pal`. `None` if the platform is out
    /// of memory or the heap tags are exhausted. The heap is the caller's
    /// (its `mark` and policy are the caller's to set).
    pub fn acquire(&self) -> Option<*mut Heap<E>> {
        {
            let mut g = self.inner.lock();
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
                // SAFETY: the heap is ours now (taken off the free list).
                unsafe {
                    (*h).forward_all_pending();
                    (*h).reopen();
                }
                return Some(h);
            }
        }
        let mem = E::Pal::map(Self::HEAP_BYTES, PAGE_SIZE)?;
        let h = mem.as_ptr().cast::<Heap<E>>();
        let mut g = self.inner.lock();
        let tag = Entry::FIRST_TAG + g.count;
        if tag >= Entry::MAX_TAG {
            drop(g);
            // SAFETY: just mapped, unused, HEAP_BYTES long.
            unsafe { E::Pal::unmap(mem, Self::HEAP_BYTES) };
            return None;
        }
        g.count += 1;
        g.live += 1;
        // SAFETY: the mapping is ours, large enough and suitably aligned
        // (page aligned, and a heap's alignment is 64).
        unsafe {
            h.write(Heap::disabled(tag));
            if E::secure() {
                // checked mode: `malloc(0)` must reach the checked path too
                (*h).size_bins[0] = Heap::<E>::CHECKED_ZERO_BIN;
            }
            (*h).in_use = true;
            (*h).next_all = g.all;
        }
        g.all = h;
        Some(h)
    }
}
