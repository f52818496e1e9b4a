//! Remote frees, both ways: the blocks this heap's thread frees into slabs
//! other owners hold (per-heap [`RemoteBatch`] slots, flushed to the slabs'
//! remote stacks in one splice each), and the slabs queued on this heap's
//! pending list because other threads freed blocks into them.

use hakmem_superslab::{remote_claim, PendingList, RemoteBatch};
use hakmem_tiny_sll::TINY_CLASSES;

use super::{Heap, S_FULL, S_PARTIAL};
use crate::classes::{class_size, NCLASSES};
use crate::env::HeapEnv;

/// The batch of a slot number (a multiplicative hash: the slots in use
/// are runs of neighbours, in superslabs 2 MiB apart).
#[inline(always)]
fn batch_index(key: usize) -> usize {
    ((key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize
}

/// Most blocks one batch holds before it is flushed.
const RB_MAX_BLOCKS: u32 = 64;
/// Most bytes one batch of mid blocks holds before it is flushed (so at
/// most `RB_SLOTS * RB_MAX_BYTES` of other heaps' memory waits in one
/// thread). Mid batches are keyed by slab, not slot: a slot holds only
/// 2-64 mid blocks, a slab at least 8.
const RB_MAX_BYTES: usize = 128 * 1024;

impl<E: HeapEnv> Heap<E> {
    /// Frees a block of a superslab another owner holds (a heap's or the
    /// orphanage's), on this heap's thread: claims it (the free mark is
    /// swapped in atomically, as [`hakmem_superslab::remote_free`] does) and
    /// adds it to the batch of its slot (of its slab for mid blocks); a
    /// batch goes to the slab's remote stack in one splice when it is full,
    /// when another slot needs its place, and on this heap's slow paths
    /// (refill, maintain, collect, release_all). Returns `false`, doing nothing else, if the block was
    /// free already (a double free, maybe racing another thread's).
    ///
    /// A block in a batch is free as far as everyone else is concerned (its
    /// mark is set) and still counted as used in its slab, so the slab and
    /// its superslab stay live (and unreleased) until the flush.
    ///
    /// # Safety
    /// `p` must be a live block of class `class` in a slab of a live
    /// superslab, not used by the caller afterwards; the heap must be the
    /// calling thread's own (not the placeholder, not a shared heap).
    #[inline(always)]
    pub unsafe fn free_remote(&mut self, p: *mut u8, class: usize) -> bool {
        // SAFETY: a live block (≥ 16 bytes) of a live superslab.
        if !unsafe { remote_claim(p, self.mark) } {
            return false;
        }
        debug_assert!(class < NCLASSES);
        // (counted in the stats when its batch is flushed)
        let k = RemoteBatch::key_of(p);
        let i = batch_index(k);
        let b = &mut self.remote[i];
        if b.key() == k {
            // SAFETY: claimed above, given up by the caller, of this
            // batch's slot (a slot-keyed batch, or the batch of the mid
            // slab whose first slot this is: `p`'s slab either way).
            if unsafe { b.push(p) } {
                self.flush_batch(i);
            }
        } else if self.remote[i ^ 1].key() == k {
            // (the pair's other entry: see `start_batch`)
            // SAFETY: `p` is claimed (its mark swapped in above), given up
            // by the caller, and of this batch's slot (the key matched).
            if unsafe { self.remote[i ^ 1].push(p) } {
                self.flush_batch(i ^ 1);
            }
        } else {
            // SAFETY: `p` is claimed (its mark swapped in above) and given
            // up by the caller, a block of `class` in a live superslab.
            unsafe { self.start_batch(i, p, k, class) };
        }
        true
    }

    /// Block `p` (claimed, of `class`) missed the batch `i` of its slot
    /// `k`. A mid block goes to its slab's batch (keyed by the slab's first
    /// slot) if there is one. Batches are two-way: the key's batch may be
    /// in entry `i` or `i ^ 1` (`i` of the slot, or of the slab for a mid
    /// block); if neither holds it, `p` starts a batch in an empty entry of
    /// the two, or, when both hold other keys' blocks, in the fuller one
    /// after flushing it.
    ///
    /// # Safety
    /// `p` is a claimed block of `class` in a live superslab, which the
    /// caller gives up; `k` is its slot's number and `i` its batch index.
    #[inline(never)]
    unsafe fn start_batch(&mut self, i: usize, p: *mut u8, k: usize, class: usize) {
        let (i, k) = if class < TINY_CLASSES {
            (i, k)
        } else {
            // SAFETY: a live block of a live superslab (caller's contract).
            let sk = unsafe { RemoteBatch::slab_key_of(p) };
            let j = batch_index(sk);
            if sk != k && self.remote[j].key() == sk {
                // SAFETY: claimed, given up, of this batch's slab.
                if unsafe { self.remote[j].push(p) } {
                    self.flush_batch(j);
                }
                return;
            }
            (j, sk)
        };
        // Two ways: the batch may live in the pair's other entry `i ^ 1`
        // (the fast path looks only at `i`); a new batch takes an empty
        // entry of the pair, and only when both hold others' blocks is one
        // flushed, the fuller one (more blocks for its splice, and the
        // other keeps room to grow).
        let alt = i ^ 1;
        if self.remote[alt].key() == k {
            // SAFETY: claimed, given up, of this batch's slot (or slab).
            if unsafe { self.remote[alt].push(p) } {
                self.flush_batch(alt);
            }
            return;
        }
        let i = if self.remote[i].is_empty() {
            i
        } else if self.remote[alt].is_empty() {
            alt
        } else {
            let i = if self.remote[alt].len() > self.remote[i].len() {
                alt
            } else {
                i
            };
            self.flush_one(i);
            i
        };
        let limit = if class < TINY_CLASSES {
            RB_MAX_BLOCKS
        } else {
            ((RB_MAX_BYTES / class_size(class)) as u32).clamp(1, RB_MAX_BLOCKS)
        };
        self.remote_busy |= 1 << i;
        // SAFETY: the batch is empty now; `p` is claimed and given up.
        if unsafe { self.remote[i].start_tagged(p, k, limit, class as u32) } {
            self.flush_batch(i);
        }
    }

    /// Hands batch `i` to its slab's remote stack.
    #[inline(never)]
    fn flush_batch(&mut self, i: usize) {
        self.flush_one(i);
        self.remote_busy &= !(1 << i);
    }

    /// Flushes batch `i` (not empty) and counts its blocks as remote frees
    /// of their class (the batch's tag).
    #[inline]
    fn flush_one(&mut self, i: usize) {
        let class = self.remote[i].tag() as usize;
        let n = self.remote[i].flush();
        if let Some(st) = self.stats.classes.get(class) {
            st.remote_frees.add(n as u64);
        }
    }

    /// Hands every batched remote free to its slab's remote stack.
    pub fn flush_remote(&mut self) {
        let mut busy = self.remote_busy;
        while busy != 0 {
            let i = busy.trailing_zeros() as usize;
            busy &= busy - 1;
            self.flush_one(i);
        }
        debug_assert!(self.remote.iter().all(RemoteBatch::is_empty));
        self.remote_busy = 0;
    }

    /// Drains the remote frees of every slab on the pending list.
    #[cold]
    pub fn process_pending(&mut self) {
        let me = &self.pending as *const PendingList;
        for s in self.pending.take_all() {
            // SAFETY: a queued slab's superslab is live.
            let owner = unsafe { s.superslab().as_ref() }.owner();
            if owner != me {
                PendingList::forward(s);
                continue;
            }
            // SAFETY: we own it (its owner is us) and it is off the list.
            let mut h = unsafe { s.handle() };
            let n = h.drain_pending();
            let class = h.class() as usize;
            self.stats.classes[class].remote_drained.add(n as u64);
            if h.used() == 0 {
                self.slab_empty(h);
            } else if h.state() == S_FULL && h.available() > 0 {
                h.set_state(S_PARTIAL);
                self.partial[class].push_front(&mut h);
            }
        }
    }

    /// Forwards stale pending entries (a reused heap may have some from its
    /// previous life).
    pub(crate) fn forward_all_pending(&mut self) {
        for s in self.pending.take_all() {
            PendingList::forward(s);
        }
    }
}
