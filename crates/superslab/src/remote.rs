//! Cross-thread frees: the per-slab remote stack and the owner's pending list.

use core::ptr;
use hakmem_tiny_sll::Block;

use crate::slab::{Slab, SlabRef};
use crate::superslab::Superslab;
use crate::sync::{const_fn_unless_loom, AtomicPtr, Ordering};

/// Bit 0 of a slab's remote word: the slab is on (or being put on) a
/// pending list. Blocks are 8-aligned, so the bit is free.
pub(crate) const QUEUED: usize = 1;

/// The remote word's top 16 bits count the blocks on the stack (blocks lie
/// below 2^47, so the bits are free; a slab holds fewer than 2^16 blocks,
/// checked when it is set up), so that the owner takes the stack and its
/// length with one swap, without walking it.
pub(crate) const COUNT_SHIFT: u32 = 48;
/// The stack's head in a remote word.
pub(crate) const HEAD_MASK: usize = ((1 << COUNT_SHIFT) - 1) & !QUEUED;
/// Most blocks a slab may hold (the remote count's limit).
pub const MAX_SLAB_BLOCKS: usize = 1 << (usize::BITS - COUNT_SHIFT);

/// The stack's head and length in a remote word.
#[inline]
pub(crate) fn remote_parts(w: usize) -> (*mut Block, u32) {
    ((w & HEAD_MASK) as *mut Block, (w >> COUNT_SHIFT) as u32)
}

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
/// superslab. (A one-block [`RemoteBatch`], flushed at once.)
///
/// # Safety
/// `p` must be a block (at least 16 bytes) handed out from a slab of the live
/// superslab `ss`, and it must not be used again by the caller.
pub unsafe fn remote_free(ss: &Superslab, p: *mut u8, mark: u64) -> bool {
    let Some(slab) = ss.slab_of(p) else {
        debug_assert!(false, "remote_free of a pointer outside any slab");
        return false;
    };
    // SAFETY: forwarded contract.
    if !unsafe { remote_claim(p, mark) } {
        return false;
    }
    let b = p.cast::<Block>();
    // SAFETY: we claimed `b`, a block of `slab` in the live `ss`; the chain
    // of one block is terminated by the splice itself.
    unsafe { push_chain(ss, slab, b, b, 1) };
    true
}

/// Claims a block being freed by a thread that does not own its superslab:
/// swaps `mark` into its free mark atomically and returns `false` if the
/// mark was there already (the block is free already: a double free, maybe
/// by two threads at once, or a block waiting in some thread's
/// [`RemoteBatch`]). After a `true` the caller is the only one who may
/// touch the block, until it hands it to the slab's remote stack.
///
/// # Safety
/// `p` must be a block (at least 16 bytes) handed out from a slab of a live
/// superslab.
#[inline]
pub unsafe fn remote_claim(p: *mut u8, mark: u64) -> bool {
    let b = p.cast::<Block>();
    // SAFETY: `p` is a block handed out from a slab (the caller's
    // contract): at least 16 bytes, 16-aligned, so its mark word is an
    // aligned atomic inside memory that stays mapped while the block lives.
    // Every other access to the mark is atomic too (`Mark`).
    let m = unsafe { &(*b).mark };
    m.swap(mark, Ordering::AcqRel) != mark
}

/// Splices the chain `head..=tail` of `n` blocks (linked through word 0;
/// `tail`'s link is overwritten) onto `slab`'s remote stack with one
/// successful CAS, which adds `n` to the stack's count. The
/// first push after the owner last drained the slab sets `QUEUED` and
/// queues the slab on the owner's pending list first (before any block of
/// the chain becomes visible, so the owner cannot release the superslab
/// under us). The splice is the last access to the superslab.
///
/// # Safety
/// The chain must be a list of blocks of `slab` (a slab of the live `ss`)
/// that the caller claimed ([`remote_claim`]) and still holds: they count
/// as used in the slab, so it and its superslab stay live until the splice.
unsafe fn push_chain(ss: &Superslab, slab: &Slab, head: *mut Block, tail: *mut Block, n: u32) {
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
                    // SAFETY: owners' pending lists live forever; our blocks
                    // are still live, so the superslab is too.
                    unsafe { (*owner).push(slab) };
                    old = remote.load(Ordering::Relaxed);
                }
                Err(x) => old = x,
            }
            continue;
        }
        // SAFETY: the caller holds the chain's blocks; we may write their
        // links.
        unsafe { (*tail).next = (old & HEAD_MASK) as *mut Block };
        // The count stays below 2^16: the stack's blocks count as used in
        // the slab, which holds fewer than MAX_SLAB_BLOCKS.
        debug_assert!(((old >> COUNT_SHIFT) + n as usize) < MAX_SLAB_BLOCKS);
        let new = (old & !HEAD_MASK) + ((n as usize) << COUNT_SHIFT);
        match remote.compare_exchange_weak(
            old,
            new | head as usize | QUEUED,
            Ordering::Release,
            Ordering::Relaxed,
        ) {
            Ok(_) => return,
            Err(x) => old = x,
        }
    }
}

/// Remote frees of one slot gathered by a freeing thread, to be handed to
/// its slab's remote stack in one splice ([`RemoteBatch::flush`]).
///
/// A batch is keyed by the slot its blocks lie in ([`RemoteBatch::key_of`]:
/// the address shifted right by [`crate::SLOT_SHIFT`], never 0 for a block),
/// or, for blocks of slabs that span several slots, by the slab's first
/// slot ([`RemoteBatch::slab_key_of`]): a slot belongs to one slab while
/// that slab has a live block, so all the blocks of a batch belong to one
/// slab, which the flush finds from its first block. An empty batch has
/// key 0 (no block lies in the first 64 KiB of the address space), so the
/// freeing thread's check of the key against the block's is its only test
/// for "this batch, and not empty".
///
/// Every block in a batch was claimed ([`remote_claim`]): its free mark is
/// set, so any other free of it is caught as a double free, and it still
/// counts as used in its slab, so neither the slab nor its superslab can be
/// released (by the owner, an adopter or a purge) while the batch holds it.
/// A batch is plain memory of the thread that fills it; nobody else reads
/// it. The batch must be flushed before its thread gives its heap up.
#[derive(Debug)]
#[repr(C)]
pub struct RemoteBatch {
    key: usize,
    head: *mut Block,
    tail: *mut Block,
    /// Blocks it may still take before it is full.
    room: u16,
    /// Blocks it takes in all (`len` is `limit - room`).
    limit: u16,
    /// The filler's own value, kept with the blocks (a heap keeps their
    /// class there, to count them when they are flushed).
    tag: u32,
}

impl Default for RemoteBatch {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl RemoteBatch {
    /// A batch holding nothing.
    pub const EMPTY: RemoteBatch = RemoteBatch {
        key: 0,
        head: ptr::null_mut(),
        tail: ptr::null_mut(),
        room: 0,
        limit: 0,
        tag: 0,
    };

    /// The key of the batch that may hold block `p`: its slot's number.
    #[inline(always)]
    pub fn key_of(p: *const u8) -> usize {
        p as usize >> crate::SLOT_SHIFT
    }

    /// The key of a batch that may hold block `p` and the other blocks of
    /// its slab, whichever slot of the slab they lie in: the number of the
    /// slab's first slot (what [`RemoteBatch::key_of`] gives for a block of
    /// that slot; a slot belongs to one slab while a block of it is live,
    /// so the two kinds of key never name different slabs).
    ///
    /// # Safety
    /// `p` must be a live block of a slab of a live superslab.
    #[inline]
    pub unsafe fn slab_key_of(p: *const u8) -> usize {
        // SAFETY: `p` is a live block (the caller's contract), so its
        // superslab's header is mapped and its slot map is fixed.
        unsafe { (*Superslab::of(p)).first_slot_number(p) }
    }

    /// The key of the blocks it holds (0 when empty).
    #[inline(always)]
    pub fn key(&self) -> usize {
        self.key
    }

    /// Blocks held.
    #[inline]
    pub fn len(&self) -> u32 {
        (self.limit - self.room) as u32
    }

    /// The value given to [`RemoteBatch::start_tagged`] (0 after
    /// [`RemoteBatch::start`]).
    #[inline]
    pub fn tag(&self) -> u32 {
        self.tag
    }

    /// True if it holds no block.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.key == 0
    }

    /// Starts an empty batch with the claimed block `p`, to hold at most
    /// `limit` blocks (at least 1). Returns true if it is full already (a
    /// limit of 1): the caller flushes it.
    ///
    /// # Safety
    /// The batch must be empty; `p` must be a block of a slab of a live
    /// superslab that the caller claimed with [`remote_claim`] and gives up.
    #[inline]
    pub unsafe fn start(&mut self, p: *mut u8, limit: u32) -> bool {
        // SAFETY: forwarded contract.
        unsafe { self.start_tagged(p, Self::key_of(p), limit, 0) }
    }

    /// [`RemoteBatch::start`] with the key `key`, [`RemoteBatch::key_of`]`(p)`
    /// or [`RemoteBatch::slab_key_of`]`(p)`, keeping `tag` with the batch
    /// until it is flushed ([`RemoteBatch::tag`]).
    ///
    /// # Safety
    /// As for [`RemoteBatch::start`]; `key` is one of `p`'s two keys.
    #[inline]
    pub unsafe fn start_tagged(&mut self, p: *mut u8, key: usize, limit: u32, tag: u32) -> bool {
        debug_assert!(self.is_empty() && limit >= 1 && limit <= u16::MAX as u32);
        #[cfg(debug_assertions)]
        {
            // SAFETY: `p` is a live block (the caller's contract).
            let slab_key = unsafe { Self::slab_key_of(p) };
            debug_assert!(key == Self::key_of(p) || key == slab_key);
        }
        let limit = limit.clamp(1, u16::MAX as u32) as u16;
        let b = p.cast::<Block>();
        // SAFETY: the block is claimed and given up to us (caller's
        // contract); its link word is ours to write.
        unsafe { (*b).next = ptr::null_mut() };
        *self = RemoteBatch {
            key,
            head: b,
            tail: b,
            room: limit - 1,
            limit,
            tag,
        };
        self.room == 0
    }

    /// Adds a claimed block of this batch's slot (or slab). Returns true
    /// when the batch is full: the caller flushes it.
    ///
    /// # Safety
    /// `p` must be a block that the caller claimed with [`remote_claim`]
    /// and gives up, with [`RemoteBatch::key_of`]`(p)` or
    /// [`RemoteBatch::slab_key_of`]`(p)` equal to this (non-empty) batch's
    /// key.
    #[inline(always)]
    pub unsafe fn push(&mut self, p: *mut u8) -> bool {
        debug_assert!(!self.is_empty());
        #[cfg(debug_assertions)]
        {
            // SAFETY: `p` is a live block being freed (the caller's contract).
            let slab_key = unsafe { Self::slab_key_of(p) };
            debug_assert!(Self::key_of(p) == self.key || slab_key == self.key);
        }
        let b = p.cast::<Block>();
        // SAFETY: the block is claimed and given up to us (caller's
        // contract); its link word is ours to write.
        unsafe { (*b).next = self.head };
        self.head = b;
        self.room -= 1;
        self.room == 0
    }

    /// Hands every block to its slab's remote stack (one CAS, plus queueing
    /// the slab on its owner's pending list if it is not queued) and empties
    /// the batch; returns how many blocks went.
    pub fn flush(&mut self) -> u32 {
        if self.is_empty() {
            return 0;
        }
        let n = self.len();
        let p = self.head.cast::<u8>();
        // SAFETY: the batch holds `n` claimed blocks of one slot (the
        // `start`/`push` contracts), which count as used in the slab that
        // covers the slot: the slab record, its superslab header (the slab
        // records live in the header, at the start of the 2 MiB superslab)
        // and the slot-to-slab map are live and unchanged until the splice.
        unsafe {
            let ss = &*Superslab::of(p);
            let Some(slab) = ss.slab_of(p) else {
                hakmem_platform::fatal_at(
                    "internal error: batched block outside any slab",
                    p as usize,
                );
            };
            push_chain(ss, slab, self.head, self.tail, n);
        }
        *self = Self::EMPTY;
        n
    }
}
