//! Superslabs whose thread exited, waiting for another thread to adopt them.

use hakmem_pagemap::Entry;

use crate::lists::SuperslabList;
use crate::remote::PendingList;
use crate::superslab::OwnedSuperslab;
use crate::sync::{const_fn_unless_loom, AtomicUsize, Ordering, SpinLock};

/// The owner of abandoned superslabs.
///
/// It behaves like a heap that never allocates: frees into its superslabs
/// queue their slabs on its pending list like on any owner's; whoever adopts
/// a superslab takes ownership under the lock and forwards the pending
/// entries to their new owners.
#[derive(Debug)]
pub struct Orphanage {
    list: SpinLock<SuperslabList>,
    pending: PendingList,
    count: AtomicUsize,
}

// SAFETY: the list is only touched under its lock.
unsafe impl Sync for Orphanage {}

impl Default for Orphanage {
    fn default() -> Self {
        Self::new()
    }
}

impl Orphanage {
    const_fn_unless_loom! {
        /// An empty orphanage.
        pub fn new() -> Self {
            Orphanage {
                list: SpinLock::new(SuperslabList::new()),
                pending: PendingList::new(),
                count: AtomicUsize::new(0),
            }
        }
    }

    /// Number of superslabs waiting.
    #[inline]
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// True when nothing waits (a relaxed load: cheap to poll).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Publishes a superslab whose owner is going away. The caller must have
    /// flushed its own caches of blocks from it and removed it from its lists.
    pub fn abandon(&self, mut ss: OwnedSuperslab) {
        ss.set_owner(Entry::ORPHAN_TAG, &self.pending);
        let mut g = self.list.lock();
        g.push_front(&mut ss, 0);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Adopts one abandoned superslab for the heap with `tag` and pending
    /// list `owner`. The caller must then drain and classify its slabs.
    pub fn adopt(&self, tag: u32, owner: &PendingList) -> Option<OwnedSuperslab> {
        if self.is_empty() {
            return None;
        }
        let mut g = self.list.lock();
        let mut ss = g.pop_front()?;
        self.count.fetch_sub(1, Ordering::Relaxed);
        ss.set_owner(tag, owner);
        // Slabs queued while orphaned go to their current owners (the adopter
        // for this superslab, back here for the others).
        for slab in self.pending.take_all() {
            PendingList::forward(slab);
        }
        drop(g);
        Some(ss)
    }

    /// Forwards to their superslabs' current owners the slabs that wait on
    /// the orphanage's pending list.
    ///
    /// A remote free that read the orphanage as its superslab's owner just
    /// before [`Orphanage::adopt`] re-owned it queues the slab here after
    /// `adopt` has emptied the list; such a slab keeps `QUEUED` (so its owner
    /// cannot release it) until someone forwards it: the next `adopt`, or
    /// this. Slabs of superslabs still orphaned come back here. Takes the
    /// lock only when something waits.
    pub fn forward_pending(&self) {
        if !self.pending.has_pending() {
            return;
        }
        let g = self.list.lock();
        for slab in self.pending.take_all() {
            PendingList::forward(slab);
        }
        drop(g);
    }

    /// Gives back to the OS the pages of orphaned superslabs' free slots
    /// that stayed free for `decay_ms` (0: every free slot now; see
    /// [`OwnedSuperslab::purge_idle`]). The orphanage owns its superslabs
    /// until one is adopted, and adoption takes them under the same lock, so
    /// whoever holds it may touch their owner-local parts. Returns the bytes
    /// purged. Takes the lock only when some superslab waits.
    pub fn purge_idle<P: hakmem_platform::Pal>(&self, now_ms: u64, decay_ms: u64) -> usize {
        if self.is_empty() {
            return 0;
        }
        let g = self.list.lock();
        let mut bytes = 0;
        let mut cur = g.first();
        while let Some(p) = cur {
            // SAFETY: superslabs on the orphanage's list are the orphanage's,
            // and we hold its lock.
            let mut ss = unsafe { OwnedSuperslab::assume_owned(p) };
            cur = SuperslabList::next_of(&mut ss);
            if ss.dirty_slots() != 0 {
                bytes += ss.purge_idle::<P>(now_ms, decay_ms);
            }
        }
        drop(g);
        bytes
    }

    /// True when some slab waits on the orphanage's pending list (one
    /// relaxed load).
    #[inline]
    pub fn has_pending(&self) -> bool {
        self.pending.has_pending()
    }

    /// The lock, for the fork handlers.
    pub fn fork_lock(&self) -> &SpinLock<impl Sized> {
        &self.list
    }
}
