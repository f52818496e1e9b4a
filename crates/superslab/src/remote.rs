//! Cross-thread frees: the per-slab remote stack and the owner's pending list.

use core::ptr;
use hakmem_tiny_sll::Block;

use crate::slab::{Slab, SlabRef};
use crate::superslab::Superslab;
use crate::sync::{const_fn_unless_loom, AtomicPtr, Ordering};

/// Bit 0 of a slab's remote word: the slab is on (or being put on) a
/// pending list. Blocks are 8-aligned, so the bit is free.
pub(crate) const QUEUED: usize = 1;

/// A lock-free MPSC list of slabs that have remote frees for one owner.
///
/// Any thread pushes (from [`remote_free`]); only the owner takes, in its
/// slow path. Owners live as long as the process (heaps are pooled, never
/// unmapped), so a pusher may always touch the list it read from a header.
#[derive(Debug)]
pub struct PendingList {
    head: AtomicPtr<Slab>,
}

impl Default for PendingList {
    fn default() -> Self {
        Self::new()
    }
}

impl PendingList {
    const_fn_unless_loom! {
        /// An empty list.
        pub fn new() -> Self {
            PendingList {
                head: AtomicPtr::new(ptr::null_mut()),
            }
        }
    }

    /// True if some slab waits (one relaxed load: cheap to poll).
    #[inline]
    pub fn has_pending(&self) -> bool {
        !self.head.load(Ordering::Relaxed).is_null()
    }

    /// Pushes a slab whose `QUEUED` bit the caller has just set.
    pub(crate) fn push(&self, slab: &Slab) {
        let s = slab as *const Slab as *mut Slab;
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            slab.pending_next.store(head, Ordering::Relaxed);
            match self
                .head
                .compare_exchange_weak(head, s, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }

    /// Takes every waiting slab. Each returned slab still has `QUEUED` set;
    /// the caller must either drain it as its owner
    /// ([`crate::SlabHandle::drain_pending`]) or [`PendingList::forward`] it.
    ///
    /// Only the list's owner may call this.
    pub fn take_all(&self) -> PendingIter {
        let head = self.head.swap(ptr::null_mut(), Ordering::Acquire);
        PendingIter { next: head }
    }

    /// Re-queues a slab taken from some pending list onto the pending list of
    /// its superslab's current owner (used when ownership moved while the
    /// slab waited).
    pub fn forward(slab: SlabRef) {
        // SAFETY: a slab taken from a pending list still has `QUEUED` set, and
        // a superslab is never released while one of its slabs is queued, so
        // the header and the slab record are live; owners' pending lists
        // (heaps, the orphanage) are never unmapped.
        unsafe {
            let ss = slab.superslab();
            let owner = ss.as_ref().owner();
            (*owner).push(slab.slab());
        }
    }
}

/// Iterator over slabs taken from a pending list.
#[derive(Debug)]
pub struct PendingIter {
    next: *mut Slab,
}

impl Iterator for PendingIter {
    type Item = SlabRef;
    fn next(&mut self) -> Option<SlabRef> {
        if self.next.is_null() {
            return None;
        }
        // SAFETY: slabs on a pending list are live and queued; the link was
        // written before the push that published the slab.
        unsafe {
            let s = SlabRef::from_raw(self.next);
            self.next = s.slab().pending_next.load(Ordering::Relaxed);
            Some(s)
        }
    }
}

/// Frees a block on behalf of a thread that does not own its superslab.
///
/// First swaps `mark` into the block's free mark atomically: if the mark was
/// already there the block is free already (a double free, possibly by two
/// threads at once) and nothing else happens; `false` is returned. Otherwise
/// pushes the block on its slab's remote stack; the first push after the
/// owner last drained the slab also queues the slab on the owner's pending
/// list (before the block becomes visible, so the owner cannot free the
/// superslab under us). The push is this function's last access to the
/// superslab.
///
/// # Safety
/// `p` must be a block (at least 16 bytes) handed out from a slab of the live
/// superslab `ss`, and it must not be used again by the caller.
pub unsafe fn remote_free(ss: &Superslab, p: *mut u8, mark: u64) -> bool {
    let Some(slab) = ss.slab_of(p) else {
        debug_assert!(false, "remote_free of a pointer outside any slab");
        return false;
    };
    let b = p.cast::<Block>();
    // SAFETY: `p` is a block handed out from a slab of `ss` (the caller's
    // contract): at least 16 bytes, 16-aligned, so its mark word is an
    // aligned atomic inside memory that stays mapped while the block lives.
    // Every other access to the mark is atomic too (`Mark`).
    let m = unsafe { &(*b).mark };
    if m.swap(mark, Ordering::AcqRel) == mark {
        return false;
    }
    let remote = &slab.remote;
    let mut old = remote.load(Ordering::Relaxed);
    loop {
        if old & QUEUED == 0 {
            // Become the one who notifies the owner.
            match remote.compare_exchange_weak(
                old,
                old | QUEUED,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    let owner = ss.owner();
                    // SAFETY: owners' pending lists live forever; our block
                    // is still live, so the superslab is too.
                    unsafe { (*owner).push(slab) };
                    old = remote.load(Ordering::Relaxed);
                }
                Err(x) => old = x,
            }
            continue;
        }
        // SAFETY: the caller gave up the block; we may write its link.
        unsafe { (*b).next = (old & !QUEUED) as *mut Block };
        match remote.compare_exchange_weak(
            old,
            b as usize | QUEUED,
            Ordering::Release,
            Ordering::Relaxed,
        ) {
            Ok(_) => return true,
            Err(x) => old = x,
        }
    }
}
