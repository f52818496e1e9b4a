//! A heap: one thread's bins plus the superslabs it owns.
//!
//! The bins are the fast path (the facade's `api.rs` and the C entry read
//! them); everything else here is the slow path that feeds and drains them:
//! refills from slabs, spills back to slabs, finding or adopting
//! superslabs, and giving everything back when the thread exits. Remote
//! frees (batched out, drained in) are in `remote.rs`, the whole-heap
//! validator in `check.rs`. The invariants are in the crate documentation.

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ptr;
use core::sync::atomic::{AtomicU8, Ordering};

use hakmem_pagemap::Entry;
use hakmem_policy_rcu::FrozenPolicy;
use hakmem_stats::ThreadStats;
use hakmem_superslab::{
    OwnedSuperslab, PendingList, Put, RemoteBatch, Slab, SlabHandle, SlabList, SlabRef, Superslab,
    SuperslabList, SLOTS, SLOT_SIZE,
};
use hakmem_tiny_sll::{Bin, Block, Chain, TINY_CLASSES, TINY_MAX};

use hakmem_platform::Pal;

use crate::classes::{class_size, class_span, BIN_BYTES, NBINS, NCLASSES, TINY_BIN_OFFSET};
use crate::env::{pool_limits, HeapEnv};
use crate::observation::Observation;

mod check;
mod remote;

const _: () = assert!(BIN_BYTES == 32);
const _: () = assert!(RB_SLOTS == 64); // `remote_busy` has a bit per batch
const _: () = assert!(Entry::KEY_HIT as usize == NBINS * BIN_BYTES);
// The layout does not depend on the environment (its marker is zero-sized
// and last): checked on one, `()`.
const _: () = assert!(core::mem::offset_of!(Heap<()>, bins) == 0);
const _: () = assert!(core::mem::align_of::<Heap<()>>() == 64);

/// Byte offsets of the fields the hand-written fast paths read
/// (`hakmem-preload`): the key, the mark and the size table.
pub const HEAP_KEY_OFFSET: usize = core::mem::offset_of!(Heap<()>, key);
/// See [`HEAP_KEY_OFFSET`].
pub const HEAP_MARK_OFFSET: usize = core::mem::offset_of!(Heap<()>, mark);
/// See [`HEAP_KEY_OFFSET`].
pub const HEAP_SIZE_BINS_OFFSET: usize = core::mem::offset_of!(Heap<()>, size_bins);

/// Slab states (the slab's owner-defined state byte).
const S_CURRENT: u8 = 1;
const S_PARTIAL: u8 = 2;
const S_FULL: u8 = 3;

/// Set on the state of an empty slab kept on a partial list (counted in
/// `Heap::empty_bytes`).
const F_RETAINED: u8 = 0x80;

/// Remote-free batches per heap (a power of two): a block freed by this
/// thread into another owner's slab joins the batch its slab hashes to.
const RB_SLOTS: usize = 64;

/// States of [`Heap::maint`], the maintenance lock.
const M_FREE: u8 = 0;
/// Held by the owner thread (one of its slow paths).
const M_OWNER: u8 = 1;
/// Held by a visitor (the background thread, or `collect` on another
/// thread) through [`Heap::visit`].
const M_VISITOR: u8 = 2;
/// The heap's thread exited ([`Heap::release_all`]): nothing to visit until
/// the registry hands the heap to a new thread.
const M_RELEASED: u8 = 3;

/// Bytes spilled from the bins to their slabs with no refill in between
/// after which the heap drains ([`Heap::start_drain`]): a thread freeing
/// far more than its bins hold while allocating nothing from its slabs is
/// most likely winding down (a request's or a phase's memory going back,
/// or everything before the thread goes quiet), and what its bins keep then
/// would pin its slabs for as long as it stays quiet.
pub const DRAIN_AFTER_BYTES: usize = 8 << 20;

/// Bytes a bin keeps of each class while the heap drains (at least one
/// block of classes up to this size, none of larger ones).
pub const DRAIN_BIN_BYTES: usize = 1024;

/// Most doublings a tiny bin's capacity gets above its policy's for
/// churning (see [`Heap::grow_bin`]): ×4.
pub const MAX_GROWTH: u8 = 2;

/// Most bytes of bin capacity one heap may hold above its policy's through
/// growth (blocks × size over all tiny classes).
pub const GROWTH_BYTES: usize = 8 << 20;

/// Superslab list tags.
const SS_SPACE: u8 = 1;
const SS_FULL: u8 = 2;

/// One thread's allocator state, in environment `E` (a [`HeapEnv`]).
#[repr(C, align(64))]
pub struct Heap<E> {
    /// The thread-local free lists, indexed by class byte. First field, so
    /// that `heap + class * BIN_BYTES` is a bin: the fast paths add a byte
    /// offset (from a table, or from the page-map entry) to the heap pointer.
    pub bins: [Bin; NBINS],
    /// `Entry::key(tag)`: the free fast path computes `entry ^ key`, which
    /// is the bin's byte offset exactly when the entry is a slot this heap
    /// owns. [`Entry::NEVER_KEY`] for the placeholder.
    pub key: usize,
    /// The free mark: written into the second word of every block this heap
    /// frees, cleared when the block is handed out again; finding it in a
    /// block being freed means the block is free already. One secret value
    /// per process (every heap holds a copy, next to `key`).
    pub mark: u64,
    /// A copy of [`crate::classes::TINY_BIN_OFFSET`] (the bin offset of
    /// every tiny size), next to the bins: the malloc fast paths index it
    /// from the heap pointer they already hold (one instruction fewer than
    /// a table elsewhere in a position-independent library). Never written
    /// after construction (where a checked mode points size 0 at
    /// [`Heap::CHECKED_ZERO_BIN`]).
    pub size_bins: [u16; TINY_MAX + 1],
    /// Page-map tag of the superslabs this heap owns (`u32::MAX` for the
    /// placeholder, which owns nothing).
    pub tag: u32,
    /// Slabs with remote frees for this heap.
    pub(crate) pending: PendingList,
    /// Remote frees gathered per destination slot, not yet on its slab's
    /// remote stack (see [`Heap::free_remote`]).
    remote: [RemoteBatch; RB_SLOTS],
    /// Bit `i` set while `remote[i]` holds blocks.
    remote_busy: u64,
    current: [*mut Slab; NCLASSES],
    partial: [SlabList; NCLASSES],
    spaces: SuperslabList,
    fulls: SuperslabList,
    /// Superslabs on `spaces` with no slab at all.
    empties: u32,
    /// Bytes of empty slabs kept on partial lists (`F_RETAINED`).
    empty_bytes: usize,
    /// Refills since the last decay check.
    ticks: u32,
    /// When this heap last purged idle slots (ms).
    last_maintain: u64,
    /// Bytes spilled from the bins since the last refill (saturating).
    spilled: usize,
    /// The bins are cut down to [`drain_cap`] until the next refill
    /// ([`Heap::start_drain`]).
    draining: bool,
    /// Times the heap started draining.
    drains: u64,
    /// Per tiny class: how many times its bin's capacity was doubled above
    /// the policy's ([`Heap::grow_bin`]); back to 0 when the heap drains.
    growth: [u8; TINY_CLASSES],
    /// Bit `c` set when class `c`'s bin spilled since its last refill.
    churn: u32,
    /// Bytes of bin capacity above the policy's (at most [`GROWTH_BYTES`]).
    growth_bytes: usize,
    policy_gen: u64,
    /// Slow-path counters.
    pub stats: ThreadStats<NCLASSES>,
    /// Calls and latencies counted in the learner's observation slices.
    pub obs: Observation,
    /// Registry links (see `heaps.rs`).
    pub(crate) next_all: *mut Heap<E>,
    pub(crate) next_free: *mut Heap<E>,
    pub(crate) in_use: bool,
    /// The maintenance lock: whoever holds it may touch the heap's slab and
    /// superslab lists (`current`, `partial`, `spaces`, `fulls`, `empties`,
    /// `empty_bytes`) and the slabs and free slots they
    /// lead to. The owner's slow paths that touch them (refill, spill,
    /// pending drain, maintain, collect, policy change, release_all) take
    /// it with one uncontended compare-and-swap (re-entrantly: a nested
    /// slow path sees `M_OWNER` and takes nothing) and wait for a visitor
    /// to finish; a visitor only ever try-locks it ([`Heap::visit`]) and
    /// skips a busy heap.
    ///
    /// **Never under it, never by a visitor**: the bins, `key`, `mark`,
    /// `size_bins` (the owner's inline fast paths touch them with no lock
    /// at all), the remote batches (`remote`, `remote_held`,
    /// `remote_busy`: the owner's free slow path fills them with no lock)
    /// and the pending list's consumer side (the owner's). A slab that is
    /// empty (`is_releasable`) has no block in any bin nor in any batch, so
    /// releasing it touches nothing the fast paths reach.
    maint: AtomicU8,
    /// A refill ran out of memory and gave back what it could; if the retry
    /// fails too, the refill fails.
    reclaimed: bool,
    /// The environment (zero-sized, last: the layout does not depend on it).
    env: PhantomData<fn() -> E>,
}

/// The heap of threads that have none yet: every bin empty with no room, a
/// tag no chunk carries. Never written (fast paths only read it, through raw
/// pointers; slow paths swap it out before doing anything).
///
/// Its address is the heap's (transparent), so assembly may refer to a
/// `static` placeholder as a heap.
#[repr(transparent)]
pub struct Placeholder<E>(UnsafeCell<Heap<E>>);

// SAFETY: the placeholder is never written after construction (its type
// hands out only a raw pointer, and every path that writes a heap swaps the
// placeholder out first).
unsafe impl<E> Sync for Placeholder<E> {}

impl<E> core::fmt::Debug for Placeholder<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("Placeholder").field(&self.get()).finish()
    }
}

impl<E> Default for Placeholder<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> Placeholder<E> {
    /// The placeholder heap: every bin disabled, the never-matching key.
    pub const fn new() -> Self {
        Placeholder(UnsafeCell::new(Heap::disabled(u32::MAX)))
    }

    /// Its address.
    #[inline(always)]
    pub fn get(&self) -> *mut Heap<E> {
        self.0.get()
    }
}

impl<E> core::fmt::Debug for Heap<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Heap")
            .field("tag", &self.tag)
            .field("in_use", &self.in_use)
            .finish_non_exhaustive()
    }
}

/// The owner's hold on [`Heap::maint`], released when dropped (null: a
/// nested slow path that took nothing).
struct MaintGuard(*const AtomicU8);

impl Drop for MaintGuard {
    #[inline]
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the heap's lock field (heaps are never unmapped).
            unsafe { (*self.0).store(M_FREE, Ordering::Release) };
        }
    }
}

/// Outcome of looking for a new slab.
enum NewSlab {
    Got(SlabRef),
    /// An orphan was adopted: look at the partial list again.
    Retry,
    OutOfMemory,
}

impl<E> Heap<E> {
    /// The bin offset a heap made in a checked mode ([`HeapEnv::secure`])
    /// gives size 0 in [`Heap::size_bins`]: a bin past the classes, which
    /// stays disabled (never holds a block). A checked mode sets the fast
    /// paths' size limit to 0, which still lets size 0 through; this bin
    /// sends it on to the checked path as well (which records it in the
    /// debug ring, for one).
    pub const CHECKED_ZERO_BIN: u16 = {
        assert!(NBINS > NCLASSES && (NBINS - 1) * BIN_BYTES <= u16::MAX as usize);
        ((NBINS - 1) * BIN_BYTES) as u16
    };

    /// A heap with every bin disabled and tag `tag` (its key is the
    /// never-matching one when `tag` is not a heap tag).
    pub(crate) const fn disabled(tag: u32) -> Heap<E> {
        Heap {
            bins: [const { Bin::DISABLED }; NBINS],
            key: if tag < Entry::MAX_TAG {
                Entry::key(tag) as usize
            } else {
                Entry::NEVER_KEY as usize
            },
            mark: 0,
            size_bins: TINY_BIN_OFFSET,
            tag,
            pending: PendingList::new(),
            remote: [const { RemoteBatch::EMPTY }; RB_SLOTS],
            remote_busy: 0,
            current: [ptr::null_mut(); NCLASSES],
            partial: [const { SlabList::new() }; NCLASSES],
            spaces: SuperslabList::new(),
            fulls: SuperslabList::new(),
            empties: 0,
            empty_bytes: 0,
            ticks: 0,
            last_maintain: 0,
            spilled: 0,
            draining: false,
            drains: 0,
            growth: [0; TINY_CLASSES],
            churn: 0,
            growth_bytes: 0,
            policy_gen: 0,
            stats: ThreadStats::new(),
            obs: Observation::new(),
            next_all: ptr::null_mut(),
            next_free: ptr::null_mut(),
            in_use: false,
            maint: AtomicU8::new(M_FREE),
            reclaimed: false,
            env: PhantomData,
        }
    }

    /// Pointer to the bin at byte offset `off` (`class * BIN_BYTES`, below
    /// `NBINS * BIN_BYTES`) without forming a reference.
    ///
    /// # Safety
    /// `heap` must point at a heap (or the placeholder) and `off` must be a
    /// bin offset.
    #[inline(always)]
    pub unsafe fn bin_at(heap: *mut Heap<E>, off: usize) -> *mut Bin {
        debug_assert!(off.is_multiple_of(BIN_BYTES) && off < NBINS * BIN_BYTES);
        // SAFETY: bins are the heap's first field (asserted at compile time);
        // `off` selects one of them (caller's contract).
        unsafe { heap.cast::<u8>().add(off).cast::<Bin>() }
    }
}

impl<E: HeapEnv> Heap<E> {
    /// [`Heap::check`] when the environment asks for it
    /// ([`HeapEnv::checking`]); a failure goes to
    /// [`HeapEnv::invariant_broken`].
    #[inline(always)]
    fn check_hook(&self) {
        if E::checking() {
            self.check_or_report();
        }
    }

    #[cold]
    #[inline(never)]
    fn check_or_report(&self) {
        if let Err(what) = self.check() {
            E::invariant_broken(what);
        }
    }

    /// Takes the maintenance lock for the owner ([`Heap::maint`]), waiting
    /// for a visitor to finish; nothing if the owner holds it already.
    #[inline]
    fn lock_owner(&self) -> MaintGuard {
        let m = &self.maint;
        if m.load(Ordering::Relaxed) == M_OWNER {
            return MaintGuard(ptr::null());
        }
        if m.compare_exchange(M_FREE, M_OWNER, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.wait_for_visitor();
        }
        MaintGuard(m)
    }

    #[cold]
    #[inline(never)]
    fn wait_for_visitor(&self) {
        let mut spins = 0u32;
        while self
            .maint
            .compare_exchange_weak(M_FREE, M_OWNER, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins < 128 {
                core::hint::spin_loop();
            } else {
                hakmem_platform::thread::yield_now();
            }
        }
    }

    /// Opens a heap the registry hands to a new thread for visits again
    /// ([`Heap::release_all`] closed it).
    pub(crate) fn reopen(&self) {
        self.maint.store(M_FREE, Ordering::Release);
    }

    /// Maintenance of a heap by a thread that may not own it: the
    /// background thread's decay, and `collect` reaching every heap. If the
    /// heap's maintenance lock is free ([`Heap::maint`]), takes it and gives
    /// back what sat idle for `decay_ms` (0: everything idle now): empty
    /// slabs go back to their superslabs, the pages of free slots to the
    /// OS, and with `decay_ms == 0` empty superslabs to the pool. Touches
    /// neither the bins nor the remote batches nor the pending list.
    /// Returns false, having done nothing, when the heap is busy (its owner
    /// is in a slow path, or another visitor is there) or released: a busy
    /// heap is skipped, never waited for.
    ///
    /// # Safety
    /// `h` must point at a heap of a [`crate::Registry`] of this environment
    /// (heaps are never unmapped). The caller must not hold the heap's
    /// maintenance lock (as its owner, in one of its slow paths). A visitor
    /// that may run while the process forks must hold a lock the fork
    /// handlers take, so that no child inherits a heap locked by a thread
    /// it does not have.
    pub unsafe fn visit(h: *mut Heap<E>, now: u64, decay_ms: u64) -> bool {
        // SAFETY: `h` is a registered heap (contract): its lock field is
        // valid forever; only a shared reference to the atomic is formed.
        let m = unsafe { &*ptr::addr_of!((*h).maint) };
        if m.load(Ordering::Relaxed) != M_FREE
            || m.compare_exchange(M_FREE, M_VISITOR, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        // SAFETY: we hold the maintenance lock, which gives exclusive access
        // to the slab and superslab lists and what they lead to; the owner
        // meanwhile touches only the bins, the remote batches and the
        // pending list (see `Heap::maint`), which `visit_locked` leaves
        // alone.
        let heap = unsafe { &mut *h };
        heap.visit_locked(now, decay_ms);
        m.store(M_FREE, Ordering::Release);
        true
    }

    fn visit_locked(&mut self, now: u64, decay_ms: u64) {
        let _e = hakmem_platform::ErrnoGuard::new();
        self.decay_lists(now, decay_ms);
        if decay_ms == 0 {
            self.release_empty_superslabs(now);
        }
    }

    /// Makes the bins follow the current policy if it changed.
    #[inline]
    pub fn sync_policy(&mut self) {
        let policy = E::policy();
        let g = policy.generation();
        if g != self.policy_gen {
            let _m = self.lock_owner();
            self.policy_gen = g;
            self.apply_policy(policy.load());
        }
    }

    fn apply_policy(&mut self, p: &FrozenPolicy) {
        self.draining = false;
        for c in 0..NCLASSES {
            let excess = self.bins[c].set_cap(self.grown_cap(p, c));
            self.give_back(excess);
            // The free fast path checks that a pointer's offset in its slot is
            // a block start: exact for blocks that never straddle a slot (up to
            // half a slot); bigger blocks leave the check to the slow path
            // (the test always fails for them).
            // (Off in secure mode: see `HeapEnv::secure`.)
            let size = class_size(c);
            let per_slot = hakmem_superslab::blocks_per_slot(size);
            let test = if E::secure() {
                (0, 0)
            } else {
                Bin::block_test(size as u64, per_slot as u64)
            };
            self.bins[c].set_block_test(test);
        }
    }

    /// Serves one block of `class` (bin first, then a refill); null when out
    /// of memory.
    pub fn alloc_class(&mut self, class: usize) -> *mut u8 {
        if let Some(p) = self.bins[class].pop() {
            return p;
        }
        self.refill(class)
    }

    /// A block for a mid `size` of `class` whose bin is empty, taken from a
    /// larger class's bin when one within W_MAX holds a block (the block
    /// keeps its own class, so it is freed to the right bin).
    pub fn alloc_mid_wmax(&mut self, class: usize, size: usize) -> *mut u8 {
        let limit = (size as u64 * E::policy().load().mid_wmax_permille as u64 / 1000) as usize;
        let mut c = class + 1;
        while c < NCLASSES && class_size(c) <= limit {
            if let Some(p) = self.bins[c].pop() {
                return p;
            }
            c += 1;
        }
        self.refill(class)
    }

    /// Purges the pages of slots that stayed free for the decay time (all
    /// free slots when `force`), at most four times per decay period unless
    /// forced.
    pub fn maintain(&mut self, force: bool) {
        let now = E::Pal::now_ms();
        let decay = E::policy().load().decay_ms;
        if !force && now.saturating_sub(self.last_maintain) * 4 < decay {
            return;
        }
        let _m = self.lock_owner();
        self.last_maintain = now;
        self.flush_remote();
        let _e = hakmem_platform::ErrnoGuard::new();
        // A remote free that raced an adoption may have queued a slab on the
        // orphanage after its superslab found a new owner: hand such slabs
        // on (found by the loom model; see `Orphanage::forward_pending`).
        E::orphanage().forward_pending();
        self.decay_lists(now, if force { 0 } else { decay });
    }

    /// Gives back what sat idle for `decay` ms (0: everything idle now):
    /// empty slabs to their superslabs, free slots' pages to the OS. The
    /// caller holds the maintenance lock (owner or visitor).
    fn decay_lists(&mut self, now: u64, decay: u64) {
        let aged = |h: &SlabHandle<'_>| {
            h.is_releasable() && (now as u32).wrapping_sub(h.idle_since()) as u64 >= decay
        };
        // empty slabs that idled for the decay time go back to their superslabs
        for c in 0..NCLASSES {
            let cur = self.current[c];
            if !cur.is_null() {
                // SAFETY: current slabs are ours.
                let h = unsafe { SlabRef::from_raw(cur).handle() };
                if aged(&h) {
                    self.current[c] = ptr::null_mut();
                    self.release_slab(h, now);
                }
            }
            let mut next = self.partial[c].first();
            while let Some(s) = next {
                next = self.partial[c].next_after(s);
                // SAFETY: listed slabs are ours.
                let mut h = unsafe { s.handle() };
                if aged(&h) {
                    self.partial[c].remove(&mut h);
                    self.unretain(&h);
                    self.release_slab(h, now);
                }
            }
        }
        // and free slots that idled for the decay time give their pages back
        let mut cur = self.spaces.first();
        while let Some(p) = cur {
            // SAFETY: superslabs on our lists are ours.
            let mut ss = unsafe { OwnedSuperslab::assume_owned(p) };
            cur = SuperslabList::next_of(&mut ss);
            if ss.dirty_slots() != 0 {
                ss.purge_idle::<E::Pal>(now, decay);
            }
        }
    }

    /// Gives back to the OS what this heap can: its bins' blocks go to their
    /// slabs, and empty superslabs to the pool.
    pub fn collect(&mut self) {
        let _m = self.lock_owner();
        self.flush_remote();
        for c in 0..NCLASSES {
            let chain = self.bins[c].take_all();
            self.give_back(chain);
        }
        self.process_pending();
        self.maintain(true);
        let _e = hakmem_platform::ErrnoGuard::new();
        self.release_empty_superslabs(E::Pal::now_ms());
    }

    /// Every empty superslab goes to the pool (the pool decides what the OS
    /// gets back). The caller holds the maintenance lock.
    fn release_empty_superslabs(&mut self, now: u64) {
        self.empties = 0;
        let mut cur = self.spaces.first();
        while let Some(p) = cur {
            // SAFETY: superslabs on our lists are ours.
            let mut ss = unsafe { OwnedSuperslab::assume_owned(p) };
            cur = SuperslabList::next_of(&mut ss);
            if ss.is_empty() {
                self.spaces.remove(&mut ss);
                self.stats.superslabs_released.inc();
                let limits = pool_limits(E::policy().load());
                E::pool().release(E::page_map(), ss, now, now, &limits);
            }
        }
    }

    /// The bin of `class` is empty: fill it from slabs and return one block.
    #[cold]
    pub fn refill(&mut self, class: usize) -> *mut u8 {
        let _m = self.lock_owner();
        self.check_hook();
        if self.remote_busy != 0 {
            self.flush_remote();
        }
        if self.pending.has_pending() {
            self.process_pending();
        }
        self.spilled = 0;
        if self.draining {
            self.end_drain();
        }
        self.ticks += 1;
        if self.ticks >= 256 {
            self.ticks = 0;
            self.maintain(false);
            E::decay_tick();
        }
        self.sync_policy();
        if class < TINY_CLASSES && self.churn & (1 << class) != 0 {
            self.grow_bin(class);
        }
        let want = E::policy()
            .load()
            .refill(class)
            .min(self.bins[class].room() + 1)
            .max(1);
        loop {
            let cur = self.current[class];
            if !cur.is_null() {
                // SAFETY: current slabs are in superslabs we own.
                let mut h = unsafe { SlabRef::from_raw(cur).handle() };
                if h.available() == 0 {
                    let n = h.drain_remote();
                    self.stats.classes[class].remote_drained.add(n as u64);
                }
                if h.available() > 0 {
                    let carved = h.carved();
                    // A free list (often a remote stack just drained) of
                    // up to half the bin's capacity (at least four
                    // refills' worth) that fits the bin moves in whole: no
                    // walk to split `want` blocks off it, and the bin keeps
                    // room for the thread's own frees.
                    let bin = &self.bins[class];
                    let whole = (bin.room() + 1).min((bin.cap() / 2).max(want.saturating_mul(4)));
                    let mut chain = h.take_up_to(want, whole);
                    if E::secure() && h.carved() > carved {
                        // SAFETY: blocks carved..h.carved() were just carved
                        // from this slab, which we own, and nobody has seen
                        // them.
                        unsafe {
                            E::forget_fresh(
                                h.data(),
                                h.block_size() as usize,
                                carved as usize..h.carved() as usize,
                            )
                        };
                    }
                    let (fresh, size) = (h.carved() - carved, h.block_size());
                    if h.is_full() {
                        h.set_state(S_FULL);
                        self.current[class] = ptr::null_mut();
                    }
                    let st = &self.stats.classes[class];
                    st.refills.inc();
                    st.refill_blocks.add(chain.len as u64);
                    // SAFETY: take() returned a valid, non-empty chain.
                    let first = unsafe { chain.pop() }.unwrap_or(ptr::null_mut());
                    if !first.is_null() {
                        // SAFETY: a block (≥ 16 bytes) we are handing out.
                        unsafe { (*first).mark.store(0) };
                    }
                    // SAFETY: the chain's blocks are of this class and fit
                    // (want and whole ≤ room + 1).
                    let ok = unsafe { self.bins[class].push_chain(chain) };
                    debug_assert!(ok);
                    if fresh > 0 {
                        self.densify_at(cur, fresh, size);
                    }
                    return first.cast();
                }
                h.set_state(S_FULL);
                self.current[class] = ptr::null_mut();
            }
            if let Some(s) = self.partial[class].first() {
                // SAFETY: listed slabs are ours.
                let mut h = unsafe { s.handle() };
                self.partial[class].remove(&mut h);
                self.unretain(&h);
                h.set_state(S_CURRENT);
                self.current[class] = s.as_ptr();
                continue;
            }
            match self.new_slab(class) {
                NewSlab::Got(s) => self.current[class] = s.as_ptr(),
                NewSlab::Retry => continue,
                NewSlab::OutOfMemory => return ptr::null_mut(),
            }
        }
    }

    /// After a refill carved `fresh` blocks of `size` bytes from `slab`: its
    /// superslab, if small-paged, is collapsed into a huge page once densely
    /// used (`SuperslabPool::densify`).
    fn densify_at(&self, slab: *mut Slab, fresh: u32, size: u32) {
        let base = Superslab::of(slab.cast::<u8>().cast_const());
        // SAFETY: `slab` is a slab record in the header of a superslab we
        // own (a current slab), so `base` is that non-null header; the
        // refill's handle is no longer used, so no other token or handle
        // of it is in use while this one lives.
        let mut ss =
            unsafe { OwnedSuperslab::assume_owned(ptr::NonNull::new_unchecked(base.cast_mut())) };
        if ss.is_small() {
            E::pool().densify(&mut ss, fresh, size);
        }
    }

    /// Carves a new slab for `class` from a superslab with room (a shorter
    /// one where only a shorter run is free, see [`fitting_span`]), an
    /// adopted orphan, or a new superslab.
    fn new_slab(&mut self, class: usize) -> NewSlab {
        let span = class_span(class);
        let bs = class_size(class) as u32;
        let mut cur = self.spaces.first();
        while let Some(p) = cur {
            // SAFETY: superslabs on our lists are ours.
            let mut ss = unsafe { OwnedSuperslab::assume_owned(p) };
            cur = SuperslabList::next_of(&mut ss);
            let was_empty = ss.is_empty();
            let fit = fitting_span(bs, span, ss.max_span());
            if let Some(s) = (fit > 0)
                .then(|| ss.alloc_slab(class as u8, bs, fit))
                .flatten()
            {
                if was_empty {
                    self.empties -= 1;
                }
                if ss.free_slots() == 0 {
                    self.spaces.remove(&mut ss);
                    self.fulls.push_front(&mut ss, SS_FULL);
                }
                self.stats.classes[class].slabs_created.inc();
                // SAFETY: the new slab is ours.
                unsafe { s.handle() }.set_state(S_CURRENT);
                return NewSlab::Got(s);
            }
        }
        if let Some(ss) = E::orphanage().adopt(self.tag, &self.pending) {
            self.stats.superslabs_adopted.inc();
            self.take_in(ss);
            return NewSlab::Retry;
        }
        // Empty slabs kept for their own classes give their slots to this
        // one before new memory is taken (a program that moves from size to
        // size would otherwise hold a budget's worth of idle slabs).
        if self.empty_bytes > 0 && self.release_retained() {
            return NewSlab::Retry;
        }
        // a heap's first superslab starts small-paged (see `acquire_for`)
        let first = self.spaces.is_empty() && self.fulls.is_empty();
        let Some(mut ss) = E::pool().acquire_for(E::page_map(), self.tag, &self.pending, first)
        else {
            if self.reclaimed {
                self.reclaimed = false;
                return NewSlab::OutOfMemory;
            }
            // The OS said no: give back this heap's empty slabs and the
            // shared caches (address space may be what ran out), then retry
            // once.
            self.reclaimed = true;
            self.collect();
            E::reclaim_shared();
            return NewSlab::Retry;
        };
        self.reclaimed = false;
        self.stats.superslabs_acquired.inc();
        let s = ss.alloc_slab(class as u8, bs, span);
        self.spaces.push_front(&mut ss, SS_SPACE);
        match s {
            Some(s) => {
                self.stats.classes[class].slabs_created.inc();
                // SAFETY: the new slab is ours.
                unsafe { s.handle() }.set_state(S_CURRENT);
                NewSlab::Got(s)
            }
            None => NewSlab::OutOfMemory,
        }
    }

    /// Files an adopted superslab's slabs into this heap's lists.
    fn take_in(&mut self, mut ss: OwnedSuperslab) {
        let slabs = collect_slabs(&ss);
        for s in slabs.iter().flatten() {
            // SAFETY: we own the superslab now.
            let mut h = unsafe { s.handle() };
            let n = h.drain_remote();
            let class = h.class() as usize;
            self.stats.classes[class].remote_drained.add(n as u64);
            if h.is_releasable() {
                // SAFETY: no live block, not queued.
                unsafe { ss.release_slab(*s) };
                self.stats.classes[class].slabs_released.inc();
            } else if h.available() > 0 {
                h.set_state(S_PARTIAL);
                self.partial[class].push_front(&mut h);
            } else {
                h.set_state(S_FULL);
            }
        }
        if ss.free_slots() == 0 {
            self.fulls.push_front(&mut ss, SS_FULL);
        } else {
            if ss.is_empty() {
                self.empties += 1;
            }
            self.spaces.push_front(&mut ss, SS_SPACE);
        }
    }

    /// Frees an own block the fast path did not take: its bin is full, or
    /// disabled, or its class is one the fast path does not test (blocks
    /// above 32 KiB). Into the bin if it has room; a full bin spills half to
    /// the slabs first.
    ///
    /// # Safety
    /// `p` must be a live block of class `class` (handed out by this heap or
    /// another that owned its superslab) in a superslab this heap owns, not
    /// used afterwards.
    #[cold]
    pub unsafe fn free_local(&mut self, p: *mut u8, class: usize) {
        // SAFETY: p is a live block (≥ 16 bytes) of ours being freed
        // (caller's contract).
        unsafe { (*p.cast::<Block>()).mark.store(self.mark) };
        let cap = self.bins[class].cap();
        if cap == 0 {
            let _m = self.lock_owner();
            self.return_block(p.cast());
            return;
        }
        // SAFETY: p is a free block of this class that we own.
        if unsafe { self.bins[class].try_push(p) } {
            if self.pending.has_pending() {
                let _m = self.lock_owner();
                self.process_pending();
            }
            return;
        }
        let _m = self.lock_owner();
        self.check_hook();
        let chain = if self.draining {
            self.bins[class].take_all()
        } else {
            self.bins[class].take((cap / 2).max(1))
        };
        if class < TINY_CLASSES && !self.draining {
            // (a drain's spills are the heap winding down, not churn)
            self.churn |= 1 << class;
        }
        let st = &self.stats.classes[class];
        st.spills.inc();
        st.spill_blocks.add(chain.len as u64);
        self.spilled = self
            .spilled
            .saturating_add(chain.len as usize * class_size(class));
        self.give_back(chain);
        if !self.draining && self.spilled >= DRAIN_AFTER_BYTES {
            self.start_drain();
        }
        // SAFETY: p is a free block of this class that we own.
        if !unsafe { self.bins[class].try_push(p) } {
            // the heap started draining and this class keeps no block
            self.return_block(p.cast());
        }
        if self.pending.has_pending() {
            self.process_pending();
        }
    }

    /// The heap has spilled [`DRAIN_AFTER_BYTES`] since its last refill:
    /// every bin gives back all but [`drain_cap`] blocks and holds no more
    /// until the next refill ([`Heap::end_drain`]); meanwhile a full bin
    /// spills all it holds. So a thread that frees a lot and then goes
    /// quiet leaves its slabs empty (the background thread's visits give
    /// them back after the decay time) instead of pinned by its bins, which
    /// only the owner may touch. The owner's slow path, under its own
    /// maintenance lock; the fast paths see smaller bins, nothing else.
    #[cold]
    fn start_drain(&mut self) {
        self.draining = true;
        self.drains += 1;
        // a heap winding down keeps no grown bins
        self.growth = [0; TINY_CLASSES];
        self.churn = 0;
        self.growth_bytes = 0;
        for c in 0..NCLASSES {
            let excess = self.bins[c].set_cap(drain_cap(self.bins[c].cap(), c));
            self.give_back(excess);
        }
    }

    /// The first refill after [`Heap::start_drain`]: the bins get their
    /// policy's capacities back.
    #[cold]
    fn end_drain(&mut self) {
        self.draining = false;
        let p = E::policy().load();
        for c in 0..NCLASSES {
            let excess = self.bins[c].set_cap(self.grown_cap(p, c));
            debug_assert!(excess.len == 0);
            self.give_back(excess);
        }
    }

    /// Class `class`'s bin ran empty after it spilled since its last refill:
    /// it churns, sending blocks to its slabs only to fetch them back, and
    /// the blocks it fetches are the ones it sent longest ago, no longer in
    /// the cache. Its capacity doubles (up to [`MAX_GROWTH`] times, and
    /// [`GROWTH_BYTES`] over all classes), so that a thread that frees and
    /// reallocates more blocks of a class than its policy's capacity (a
    /// request's object tree) reuses them from its bin, most recent first,
    /// as tcmalloc's per-thread lists grow on underflow. Draining gives the
    /// growth back.
    #[cold]
    fn grow_bin(&mut self, class: usize) {
        self.churn &= !(1 << class);
        if self.draining || self.growth[class] >= MAX_GROWTH {
            return;
        }
        let p = E::policy().load();
        let old = self.grown_cap(p, class);
        let new = (old as usize * 2).min(hakmem_policy_rcu::MAX_CAP as usize) as u32;
        let extra = (new - old) as usize * class_size(class);
        if new <= old || self.growth_bytes + extra > GROWTH_BYTES {
            return;
        }
        self.growth[class] += 1;
        self.growth_bytes += extra;
        let excess = self.bins[class].set_cap(new);
        debug_assert!(excess.len == 0);
        self.give_back(excess);
    }

    /// The capacity of `class`'s bin: the policy's, doubled as many times
    /// as the class grew.
    fn grown_cap(&self, p: &FrozenPolicy, class: usize) -> u32 {
        let cap = p.cap(class);
        match self.growth.get(class) {
            Some(&g) if g > 0 => {
                ((cap as usize) << g).min(hakmem_policy_rcu::MAX_CAP as usize) as u32
            }
            _ => cap,
        }
    }

    /// Capacity doublings of `class`'s bin above its policy's (for tests
    /// and the report).
    pub fn growth(&self, class: usize) -> u8 {
        self.growth.get(class).copied().unwrap_or(0)
    }

    /// Whether the bins are cut down until the next refill
    /// ([`Heap::start_drain`]; for tests and the report).
    pub fn draining(&self) -> bool {
        self.draining
    }

    /// Times the heap started draining (for tests and the report).
    pub fn drains(&self) -> u64 {
        self.drains
    }

    /// Returns every block of a chain to its slab.
    fn give_back(&mut self, mut chain: Chain) {
        // SAFETY: chains from our bins are valid lists of our blocks.
        while let Some(b) = unsafe { chain.pop() } {
            self.return_block(b);
        }
    }

    /// Returns one own block to its slab's free list.
    fn return_block(&mut self, b: *mut Block) {
        // SAFETY: b is a block of a superslab we own.
        let ss = unsafe { &*Superslab::of(b.cast()) };
        let Some(slab) = ss.slab_of(b.cast()) else {
            hakmem_platform::fatal_at("internal error: block outside any slab", b as usize);
        };
        // SAFETY: we own the superslab, and hold no other handle to it.
        let mut h = unsafe { SlabRef::from_raw(slab as *const Slab as *mut Slab).handle() };
        // SAFETY: the block is ours, counted as used, and unreferenced.
        match unsafe { h.put(b) } {
            Put::Normal => {}
            Put::WasFull => {
                if h.state() == S_FULL {
                    h.set_state(S_PARTIAL);
                    let class = h.class() as usize;
                    self.partial[class].push_front(&mut h);
                }
            }
            Put::Empty => self.slab_empty(h),
        }
    }

    /// A slab has no live block. It stays where it is (a current slab) or
    /// joins the back of its class's partial list, so that fuller slabs are
    /// refilled from first and this one can age: `maintain` gives slabs that
    /// stayed empty for the decay time back to their superslab. Keeping them
    /// a while makes alloc-all/free-all patterns reuse slabs as they are.
    fn slab_empty(&mut self, mut h: SlabHandle<'_>) {
        if !h.is_releasable() {
            return;
        }
        let now = E::Pal::now_ms();
        h.set_idle_since((now as u32).max(1));
        let class = h.class() as usize;
        let state = h.state();
        if state != S_FULL && state != S_PARTIAL {
            return; // the current slab, or already retained
        }
        if state == S_PARTIAL {
            self.partial[class].remove(&mut h);
        }
        let bytes = h.span() as usize * SLOT_SIZE;
        if self.empty_bytes + bytes > E::policy().load().heap_empty_budget {
            self.release_slab(h, now);
            return;
        }
        self.empty_bytes += bytes;
        h.set_state(S_PARTIAL | F_RETAINED);
        self.partial[class].push_back(&mut h);
    }

    /// Gives every retained empty slab back to its superslab now; false if
    /// there was none it could release (one waiting in a pending list
    /// stays).
    #[cold]
    fn release_retained(&mut self) -> bool {
        let now = E::Pal::now_ms();
        let mut any = false;
        for c in 0..NCLASSES {
            let mut next = self.partial[c].first();
            while let Some(s) = next {
                next = self.partial[c].next_after(s);
                // SAFETY: listed slabs are ours.
                let mut h = unsafe { s.handle() };
                if h.state() & F_RETAINED != 0 && h.is_releasable() {
                    self.partial[c].remove(&mut h);
                    self.unretain(&h);
                    self.release_slab(h, now);
                    any = true;
                }
            }
        }
        any
    }

    /// Stops counting a slab as retained-empty (it is being reused or
    /// released).
    fn unretain(&mut self, h: &SlabHandle<'_>) {
        if h.state() & F_RETAINED != 0 {
            self.empty_bytes -= h.span() as usize * SLOT_SIZE;
        }
    }

    /// Gives an empty, unlisted slab's slots back to its superslab (stamping
    /// them with the time the slab became idle, for the slot purge), and the
    /// superslab to the pool when it empties, keeping `heap_keep_empty` per
    /// heap.
    fn release_slab(&mut self, h: SlabHandle<'_>, now: u64) {
        let class = h.class() as usize;
        // the idle stamp as a full-width time (stamps are kept as u32 ms)
        let idle = match h.idle_since() {
            0 => now,
            t => now.saturating_sub((now as u32).wrapping_sub(t) as u64),
        };
        let s = h.slab_ref();
        // SAFETY: we own the superslab.
        let mut ss = unsafe { OwnedSuperslab::assume_owned(s.superslab()) };
        let was_full = ss.free_slots() == 0;
        // SAFETY: the caller checked the slab is releasable and unlinked it.
        unsafe { ss.release_slab(s) };
        ss.stamp_free_slots(idle);
        self.stats.classes[class].slabs_released.inc();
        if was_full {
            self.fulls.remove(&mut ss);
            self.spaces.push_front(&mut ss, SS_SPACE);
        }
        if ss.is_empty() {
            let p = E::policy().load();
            if self.empties < p.heap_keep_empty {
                self.empties += 1;
            } else {
                self.spaces.remove(&mut ss);
                self.stats.superslabs_released.inc();
                let _e = hakmem_platform::ErrnoGuard::new();
                // stamped with its idle time, so the pool purges an old one
                E::pool().release(E::page_map(), ss, idle, now, &pool_limits(p));
            }
        }
    }

    /// Gives everything back: bins to slabs, empty superslabs to the pool,
    /// the rest to the orphanage. The heap is empty and disabled afterwards.
    pub fn release_all(&mut self) {
        let m = self.lock_owner();
        self.check_hook();
        // Blocks this thread freed into other heaps' slabs go first (the
        // heap may be reused by another thread; a batch is this thread's).
        self.flush_remote();
        for c in 0..NCLASSES {
            let chain = self.bins[c].take_all();
            self.give_back(chain);
            self.bins[c].set_cap(0);
        }
        self.process_pending();
        self.current = [ptr::null_mut(); NCLASSES];
        self.partial = [const { SlabList::new() }; NCLASSES];
        let _e = hakmem_platform::ErrnoGuard::new();
        while let Some(ss) = self.spaces.pop_front().or_else(|| self.fulls.pop_front()) {
            self.release_superslab(ss);
        }
        self.empties = 0;
        self.empty_bytes = 0;
        self.policy_gen = 0;
        self.spilled = 0;
        self.draining = false;
        // closed to visitors until the registry hands the heap out again
        core::mem::forget(m);
        self.maint.store(M_RELEASED, Ordering::Release);
    }

    fn release_superslab(&mut self, mut ss: OwnedSuperslab) {
        let slabs = collect_slabs(&ss);
        for s in slabs.iter().flatten() {
            // SAFETY: the superslab came off our own lists, so we own its
            // slabs.
            let mut h = unsafe { s.handle() };
            h.drain_remote();
            if h.is_releasable() {
                // SAFETY: the slab is releasable (no live block, no remote
                // block, not queued) and on no list of ours any more.
                unsafe { ss.release_slab(*s) };
            }
        }
        if ss.is_empty() {
            self.stats.superslabs_released.inc();
            let now = E::Pal::now_ms();
            let limits = pool_limits(E::policy().load());
            E::pool().release(E::page_map(), ss, now, now, &limits);
        } else {
            E::orphanage().abandon(ss);
        }
    }
}

/// A bin's capacity while its heap drains: at most [`DRAIN_BIN_BYTES`] of
/// blocks of `class` (none of classes above it), never more than `cap`.
pub fn drain_cap(cap: u32, class: usize) -> u32 {
    cap.min((DRAIN_BIN_BYTES / class_size(class)) as u32)
}

fn collect_slabs(ss: &OwnedSuperslab) -> [Option<SlabRef>; SLOTS] {
    let mut out = [None; SLOTS];
    for (i, s) in ss.slabs().enumerate() {
        out[i] = Some(s);
    }
    out
}

/// The span of a new slab of blocks of `block_size` (class span `span`) in
/// a superslab whose longest free run is `room` slots: `span` if it fits,
/// else `room` when that still holds at least half the blocks (the run
/// would otherwise stay unused, and with huge pages it is resident anyway),
/// else 0 (look elsewhere).
fn fitting_span(block_size: u32, span: usize, room: usize) -> usize {
    if room >= span {
        return span;
    }
    let full = hakmem_superslab::slab_capacity(block_size as usize, span);
    let short = if room == 0 {
        0
    } else {
        hakmem_superslab::slab_capacity(block_size as usize, room)
    };
    if short > 0 && 2 * short >= full {
        room
    } else {
        0
    }
}

#[cfg(test)]
mod fit_tests {
    use super::fitting_span;

    #[test]
    fn short_runs_take_shorter_slabs_of_at_least_half_the_blocks() {
        let k = 1024;
        assert_eq!(fitting_span(64 * k, 8, 31), 8);
        assert_eq!(fitting_span(64 * k, 8, 8), 8);
        assert_eq!(fitting_span(64 * k, 8, 7), 7, "7 of 8 blocks");
        assert_eq!(fitting_span(64 * k, 8, 4), 4, "half the blocks");
        assert_eq!(fitting_span(64 * k, 8, 3), 0);
        assert_eq!(fitting_span(256 * k, 16, 15), 15, "3 of 4 blocks");
        assert_eq!(fitting_span(256 * k, 16, 7), 0, "1 of 4 blocks");
        assert_eq!(fitting_span(256 * k, 16, 0), 0);
        assert_eq!(fitting_span(48, 1, 0), 0);
        assert_eq!(fitting_span(48, 1, 1), 1);
    }
}
