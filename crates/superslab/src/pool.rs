//! The pool of empty superslabs, and the only place superslabs are mapped
//! and unmapped.

use core::marker::PhantomData;
use core::ptr::{self, NonNull};

use hakmem_pagemap::{Entry, PageMap};
use hakmem_platform::{Pal, SpinLock};

use crate::remote::PendingList;
use crate::superslab::OwnedSuperslab;
use crate::{SLOT_SIZE, SUPERSLAB_SIZE};

/// Counters of the pool (all-time).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// Superslabs obtained from the OS.
    pub mapped: u64,
    /// Superslabs returned to the OS.
    pub unmapped: u64,
    /// Acquisitions served from the pool.
    pub reused: u64,
    /// Superslabs whose pages were purged on the way into the pool.
    pub purged: u64,
    /// Superslabs in the pool now.
    pub pooled: u64,
}

struct Inner {
    /// Singly linked through the first word of each pooled chunk.
    head: *mut u8,
    stats: PoolStats,
}

/// Empty superslabs waiting for reuse.
///
/// The pool keeps at most `keep` of them; the first `keep_dirty` keep their
/// pages (cheap reuse), the rest are purged (`madvise`) so they cost address
/// space only. Beyond `keep`, released superslabs go back to the OS. Pooled
/// chunks carry [`Entry::FREE_TAG`] in the page map, so a stray free into
/// one is recognised as invalid.
pub struct SuperslabPool<P: Pal> {
    inner: SpinLock<Inner>,
    keep: usize,
    keep_dirty: usize,
    _pal: PhantomData<P>,
}

// SAFETY: the raw list is only touched under the lock; pooled chunks are
// owned by the pool alone.
unsafe impl<P: Pal> Sync for SuperslabPool<P> {}
// SAFETY: as above.
unsafe impl<P: Pal> Send for SuperslabPool<P> {}

impl<P: Pal> core::fmt::Debug for SuperslabPool<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SuperslabPool")
            .field("keep", &self.keep)
            .finish_non_exhaustive()
    }
}

impl<P: Pal> SuperslabPool<P> {
    /// A pool keeping at most `keep` empty superslabs, `keep_dirty` of them
    /// with their pages.
    pub const fn new(keep: usize, keep_dirty: usize) -> Self {
        SuperslabPool {
            inner: SpinLock::new(Inner {
                head: ptr::null_mut(),
                stats: PoolStats {
                    mapped: 0,
                    unmapped: 0,
                    reused: 0,
                    purged: 0,
                    pooled: 0,
                },
            }),
            keep,
            keep_dirty,
            _pal: PhantomData,
        }
    }

    /// Hands out an empty superslab owned by the heap with `tag`, whose
    /// pending list is `owner`: from the pool, or freshly mapped. `None` when
    /// the OS is out of memory.
    pub fn acquire(&self, map: &PageMap, tag: u32, owner: &PendingList) -> Option<OwnedSuperslab> {
        let pooled = {
            let mut g = self.inner.lock();
            let h = g.head;
            if !h.is_null() {
                // SAFETY: pooled chunks store the next link in their first word.
                g.head = unsafe { h.cast::<*mut u8>().read() };
                g.stats.reused += 1;
                g.stats.pooled -= 1;
            }
            h
        };
        let base = match NonNull::new(pooled) {
            Some(b) => b,
            None => {
                let b = P::map(SUPERSLAB_SIZE, SUPERSLAB_SIZE)?;
                if !map.reserve::<P>(b.as_ptr() as usize, SUPERSLAB_SIZE) {
                    // SAFETY: we just mapped it and nobody knows about it.
                    unsafe { P::unmap(b, SUPERSLAB_SIZE) };
                    return None;
                }
                self.inner.lock().stats.mapped += 1;
                b
            }
        };
        // SAFETY: the chunk is empty, ours alone (fresh or from the pool) and
        // reserved in the map; formatting writes the header, then the entries.
        Some(unsafe { OwnedSuperslab::format(base, map, tag, owner) })
    }

    /// Takes back an empty superslab.
    ///
    /// The caller must have made sure no slab of it is waiting in a pending
    /// list and no block of it is live (an empty superslab: all slabs released).
    pub fn release(&self, map: &PageMap, mut ss: OwnedSuperslab) {
        if !ss.is_empty() {
            hakmem_platform::fatal_at("internal error: releasing a busy superslab", ss.base());
        }
        ss.set_all_entries(Entry::slot(Entry::FREE_TAG, Entry::NO_CLASS));
        let base = ss.into_raw().cast::<u8>();
        let addr = base.as_ptr() as usize;
        let mut g = self.inner.lock();
        let pooled = g.stats.pooled as usize;
        if pooled < self.keep {
            if pooled >= self.keep_dirty {
                // SAFETY: the block slots hold nothing live; the header slot
                // keeps our list link and stays.
                unsafe {
                    P::purge(
                        NonNull::new_unchecked((addr + SLOT_SIZE) as *mut u8),
                        SUPERSLAB_SIZE - SLOT_SIZE,
                    )
                };
                g.stats.purged += 1;
            }
            // SAFETY: the chunk is ours; its first word becomes the link.
            unsafe { base.as_ptr().cast::<*mut u8>().write(g.head) };
            g.head = base.as_ptr();
            g.stats.pooled += 1;
        } else {
            g.stats.unmapped += 1;
            drop(g);
            map.set_slots(addr, SUPERSLAB_SIZE / SLOT_SIZE, |_| Entry::NONE);
            // SAFETY: empty and unreferenced, per the contract.
            unsafe { P::unmap(base, SUPERSLAB_SIZE) };
        }
    }

    /// Returns every pooled superslab to the OS.
    pub fn trim(&self, map: &PageMap) {
        let mut g = self.inner.lock();
        while let Some(b) = NonNull::new(g.head) {
            // SAFETY: pooled chunk link.
            g.head = unsafe { b.as_ptr().cast::<*mut u8>().read() };
            g.stats.pooled -= 1;
            g.stats.unmapped += 1;
            map.set_slots(b.as_ptr() as usize, SUPERSLAB_SIZE / SLOT_SIZE, |_| {
                Entry::NONE
            });
            // SAFETY: pooled chunks hold nothing live.
            unsafe { P::unmap(b, SUPERSLAB_SIZE) };
        }
    }

    /// The counters.
    pub fn stats(&self) -> PoolStats {
        self.inner.lock().stats
    }

    /// The pool's lock, for the fork handlers.
    pub fn fork_lock(&self) -> &SpinLock<impl Sized> {
        &self.inner
    }
}
