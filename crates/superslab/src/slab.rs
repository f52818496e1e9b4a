//! Slabs: runs of slots holding blocks of one class.

use core::cell::UnsafeCell;
use core::ptr::{self, NonNull};
use hakmem_tiny_sll::{Block, Chain};

use crate::remote::{remote_parts, MAX_SLAB_BLOCKS, QUEUED};
use crate::superslab::Superslab;
use crate::sync::{AtomicPtr, AtomicUsize, Ordering};
use crate::SLOT_SIZE;

/// A slab's metadata, inside its superslab's header.
///
/// Invariants:
/// * `remote` is a null-terminated stack of blocks freed by non-owner
///   threads, tagged with [`QUEUED`] in bit 0 while the slab sits in (or is
///   being put on) a pending list, with the stack's length in its top 16
///   bits (`remote::COUNT_SHIFT`). Anyone may push; only the owner pops.
/// * `pending_next` links the slab in at most one pending list, and only
///   while `QUEUED` is set.
/// * `local` is the owner's: `used` counts blocks outside the local free
///   list — in a thread's bin, in the program's hands, or on `remote`; so a
///   slab with `used == 0` has no live block anywhere.
#[repr(C, align(64))]
pub struct Slab {
    pub(crate) remote: AtomicUsize,
    pub(crate) pending_next: AtomicPtr<Slab>,
    local: UnsafeCell<SlabLocal>,
}

/// The most fresh blocks one take carves from a slab that has carved
/// `carved` blocks of `block_size` bytes: as many bytes as it carved so far
/// (at least a page's worth, at least two blocks: a refill leaves one in
/// the bin). A slab's carving doubles
/// from take to take, so a thread that uses a few blocks of a class touches
/// a page or two of its slab instead of a whole refill's worth (64 blocks:
/// 64 KiB of 1 KiB blocks), and a growing one needs a few more takes per
/// slab, not one per page.
#[inline]
pub const fn carve_limit(carved: u32, block_size: u32) -> u32 {
    let bytes = carved as u64 * block_size as u64;
    let bytes = if bytes > hakmem_platform::PAGE_SIZE as u64 {
        bytes
    } else {
        hakmem_platform::PAGE_SIZE as u64
    };
    let n = bytes / block_size as u64;
    if n < 2 {
        2
    } else if n > u32::MAX as u64 {
        u32::MAX
    } else {
        n as u32
    }
}

impl core::fmt::Debug for Slab {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Slab")
            .field(
                "remote",
                &(self.remote.load(Ordering::Relaxed) as *const u8),
            )
            .finish_non_exhaustive()
    }
}

struct SlabLocal {
    /// Local free list (null-terminated) and its length.
    free: *mut Block,
    free_count: u32,
    /// Blocks not on the local free list.
    used: u32,
    /// Blocks carved so far; blocks `carved..capacity` were never touched.
    carved: u32,
    capacity: u32,
    block_size: u32,
    class: u8,
    span: u8,
    first_slot: u8,
    /// Owner-defined state byte (which list the slab is on).
    state: u8,
    /// Owner-defined time stamp (when the slab last became empty).
    idle_since: u32,
    data: *mut u8,
    /// Owner's per-class list links.
    next: *mut Slab,
    prev: *mut Slab,
}

impl Slab {
    /// Writes an idle slab record in place.
    ///
    /// # Safety
    /// `p` must be valid for writes and not referenced by anyone.
    pub(crate) unsafe fn format(p: *mut Slab) {
        // SAFETY: per the contract, we may initialise the record in place.
        unsafe {
            ptr::addr_of_mut!((*p).remote).write(AtomicUsize::new(0));
            ptr::addr_of_mut!((*p).pending_next).write(AtomicPtr::new(ptr::null_mut()));
            ptr::addr_of_mut!((*p).local).write(UnsafeCell::new(SlabLocal {
                free: ptr::null_mut(),
                free_count: 0,
                used: 0,
                carved: 0,
                capacity: 0,
                block_size: 0,
                class: crate::NO_CLASS,
                span: 0,
                first_slot: 0,
                state: 0,
                idle_since: 0,
                data: ptr::null_mut(),
                next: ptr::null_mut(),
                prev: ptr::null_mut(),
            }));
        }
    }

    /// Sets the slab up for a class.
    ///
    /// # Safety
    /// The caller owns the superslab and the slab is idle (no live blocks, not
    /// queued).
    pub(crate) unsafe fn init(
        &self,
        class: u8,
        block_size: u32,
        span: u8,
        first: u8,
        data: *mut u8,
    ) {
        debug_assert_eq!(self.remote.load(Ordering::Relaxed), 0);
        let capacity = crate::slab_capacity(block_size as usize, span as usize);
        if capacity >= MAX_SLAB_BLOCKS {
            // the remote word could not count its blocks
            hakmem_platform::fatal_at("internal error: a slab of too many blocks", capacity);
        }
        // SAFETY: the caller owns the slab.
        let l = unsafe { &mut *self.local.get() };
        *l = SlabLocal {
            free: ptr::null_mut(),
            free_count: 0,
            used: 0,
            carved: 0,
            capacity: capacity as u32,
            block_size,
            class,
            span,
            first_slot: first,
            state: 0,
            idle_since: 0,
            data,
            next: ptr::null_mut(),
            prev: ptr::null_mut(),
        };
    }
}

/// A plain reference to a slab, for the owner's lists. It grants nothing by
/// itself: turning it into a [`SlabHandle`] asserts ownership.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SlabRef(NonNull<Slab>);

impl SlabRef {
    pub(crate) fn new(s: &Slab) -> SlabRef {
        SlabRef(NonNull::from(s))
    }

    /// From a raw pointer kept in an owner's list.
    ///
    /// # Safety
    /// `p` must point at a slab record inside a live superslab.
    #[inline]
    pub unsafe fn from_raw(p: *mut Slab) -> SlabRef {
        // SAFETY: non-null per the contract.
        SlabRef(unsafe { NonNull::new_unchecked(p) })
    }

    /// The raw pointer.
    #[inline]
    pub fn as_ptr(self) -> *mut Slab {
        self.0.as_ptr()
    }

    /// The superslab this slab lives in.
    #[inline]
    pub fn superslab(self) -> NonNull<Superslab> {
        // SAFETY: a slab record lies inside its superslab's header, so
        // masking its address gives the (non-null) superslab base.
        unsafe { NonNull::new_unchecked(Superslab::of(self.0.as_ptr().cast()) as *mut Superslab) }
    }

    /// The shared (atomic) side of the slab.
    ///
    /// A `SlabRef` is a `Copy` handle that does not keep its superslab alive,
    /// so the reference it gives out is only as good as the caller's
    /// knowledge that the superslab stays mapped.
    ///
    /// # Safety
    /// The slab's superslab must stay live (mapped, not returned to the
    /// pool) for as long as the returned reference is used: for example the
    /// caller owns it, holds a live block of this slab, or took the slab
    /// from a pending list (a queued slab's superslab is never released).
    #[inline]
    pub unsafe fn slab(&self) -> &Slab {
        // SAFETY: the pointer was made from a slab record (`new`,
        // `from_raw`), and the caller guarantees its superslab stays mapped
        // for the reference's lifetime.
        unsafe { self.0.as_ref() }
    }

    /// Asserts ownership and returns the handle through which the owner acts.
    ///
    /// # Safety
    /// The calling thread must own the slab's superslab (hold, or be entitled
    /// to re-create, its [`crate::OwnedSuperslab`]), and no other handle to
    /// this slab may be alive.
    #[inline]
    pub unsafe fn handle<'a>(self) -> SlabHandle<'a> {
        // SAFETY: the caller owns the slab, so its local state is ours alone.
        let local = unsafe { &mut *(*self.0.as_ptr()).local.get() };
        SlabHandle { r: self, local }
    }
}

/// The owner's view of a slab: the only way to move blocks in or out of it
/// ("bind" it to a thread's bins) or to drain its remote frees.
pub struct SlabHandle<'a> {
    r: SlabRef,
    local: &'a mut SlabLocal,
}

impl core::fmt::Debug for SlabHandle<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SlabHandle")
            .field("class", &self.local.class)
            .field("used", &self.local.used)
            .field("free", &self.local.free_count)
            .field("carved", &self.local.carved)
            .field("capacity", &self.local.capacity)
            .finish()
    }
}

/// What giving a block back did to its slab.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Put {
    /// Nothing notable.
    Normal,
    /// The slab had no free block before: it may rejoin the partial list.
    WasFull,
    /// The slab has no live block left.
    Empty,
}

impl SlabHandle<'_> {
    /// The shared (atomic) side of the slab.
    #[inline]
    fn shared(&self) -> &Slab {
        // SAFETY: a handle exists only while its creator owns the slab's
        // superslab (`SlabRef::handle`'s contract), and an owned superslab
        // stays mapped until its owner releases it, which needs `&mut` on
        // the owner's token and so cannot overlap this borrow of the handle.
        unsafe { self.r.slab() }
    }

    /// The slab reference.
    #[inline]
    pub fn slab_ref(&self) -> SlabRef {
        self.r
    }
    /// Class byte.
    #[inline]
    pub fn class(&self) -> u8 {
        self.local.class
    }
    /// Block size in bytes.
    #[inline]
    pub fn block_size(&self) -> u32 {
        self.local.block_size
    }
    /// Blocks outside the local free list.
    #[inline]
    pub fn used(&self) -> u32 {
        self.local.used
    }
    /// Blocks on the local free list.
    #[inline]
    pub fn free_count(&self) -> u32 {
        self.local.free_count
    }
    /// Total blocks the slab can hold.
    #[inline]
    pub fn capacity(&self) -> u32 {
        self.local.capacity
    }
    /// Blocks carved so far.
    #[inline]
    pub fn carved(&self) -> u32 {
        self.local.carved
    }
    /// First slot.
    #[inline]
    pub fn first_slot(&self) -> u8 {
        self.local.first_slot
    }
    /// Slots spanned.
    #[inline]
    pub fn span(&self) -> u8 {
        self.local.span
    }
    /// Start of the block area.
    #[inline]
    pub fn data(&self) -> *mut u8 {
        self.local.data
    }
    /// Blocks that can be handed out without draining remote frees.
    #[inline]
    pub fn available(&self) -> u32 {
        self.local.free_count + (self.local.capacity - self.local.carved)
    }
    /// True when every block is out (none free, none left to carve).
    #[inline]
    pub fn is_full(&self) -> bool {
        self.available() == 0
    }
    /// Owner-defined state byte.
    #[inline]
    pub fn state(&self) -> u8 {
        self.local.state
    }
    /// Sets the owner-defined state byte.
    #[inline]
    pub fn set_state(&mut self, s: u8) {
        self.local.state = s;
    }
    /// Owner-defined time stamp.
    #[inline]
    pub fn idle_since(&self) -> u32 {
        self.local.idle_since
    }
    /// Sets the owner-defined time stamp.
    #[inline]
    pub fn set_idle_since(&mut self, t: u32) {
        self.local.idle_since = t;
    }
    pub(crate) fn links(&mut self) -> (&mut *mut Slab, &mut *mut Slab) {
        (&mut self.local.next, &mut self.local.prev)
    }

    /// True if `p` is the start of a block of this slab (not an interior
    /// pointer, not beyond the carved area).
    pub fn is_block_start(&self, p: *const u8) -> bool {
        let bs = self.local.block_size as usize;
        let data = self.local.data as usize;
        if (p as usize) < data {
            return false;
        }
        let i = match crate::blocks_per_slot(bs) {
            0 => {
                let off = p as usize - data;
                if !off.is_multiple_of(bs) {
                    return false;
                }
                off / bs
            }
            n => {
                let in_slot = (p as usize) & (SLOT_SIZE - 1);
                let slot = ((p as usize) - data) / SLOT_SIZE;
                if !in_slot.is_multiple_of(bs) || in_slot / bs >= n {
                    return false;
                }
                slot * n + in_slot / bs
            }
        };
        i < self.local.carved as usize
    }

    /// True when the slab may be returned to its superslab: no live block,
    /// and not waiting in a pending list.
    #[inline]
    pub fn is_releasable(&self) -> bool {
        self.local.used == 0 && self.shared().remote.load(Ordering::Acquire) == 0
    }

    /// True while the slab waits in a pending list.
    #[inline]
    pub fn is_queued(&self) -> bool {
        self.shared().remote.load(Ordering::Acquire) & QUEUED != 0
    }

    /// Checks the slab's invariants (mimalloc's "expensive assertions"
    /// style; allocates nothing, usable in any build):
    /// * `carved <= capacity` and `used + free_count == carved`;
    /// * the local free list holds exactly `free_count` blocks, each the
    ///   start of a carved block of this slab, and ends with null — walked
    ///   at most `free_count + 1` links, so a cycle (which any block listed
    ///   twice would make) is reported, not followed;
    /// * every block on the remote stack is a carved block of this slab, and
    ///   the stack holds at most `used` of them (remote blocks count as
    ///   used).
    ///
    /// The remote stack is read from one snapshot of its head: pushers only
    /// prepend, and only the owner (the caller) takes blocks off.
    pub fn check(&self) -> Result<(), &'static str> {
        let l = &*self.local;
        if l.carved > l.capacity {
            return Err("slab: carved > capacity");
        }
        if l.used.checked_add(l.free_count) != Some(l.carved) {
            return Err("slab: used + free != carved");
        }
        let mut n = 0u32;
        let mut b = l.free;
        while !b.is_null() {
            if n == l.free_count {
                return Err("slab: free list longer than free_count (cyclic?)");
            }
            if !self.is_block_start(b as *const u8) {
                return Err("slab: free list holds a pointer that is no carved block start");
            }
            // SAFETY: `b` is the start of a carved block of this slab (just
            // checked), at least 16 bytes inside the live slab, and the
            // owner (us) alone touches blocks on the local free list.
            b = unsafe { (*b).next };
            n += 1;
        }
        if n != l.free_count {
            return Err("slab: free list shorter than free_count");
        }
        let mut n = 0u32;
        let (mut b, count) = remote_parts(self.shared().remote.load(Ordering::Acquire));
        if count > l.used {
            return Err("slab: remote count above used");
        }
        while !b.is_null() {
            if n == l.used {
                return Err("slab: remote stack longer than used (cyclic?)");
            }
            if !self.is_block_start(b as *const u8) {
                return Err("slab: remote stack holds a block of another slab");
            }
            // SAFETY: `b` is a carved block of this slab (just checked) that
            // a pusher published with a release CAS after writing its link,
            // which our acquire load of the head synchronises with; pushers
            // never touch a block again once it is on the stack.
            b = unsafe { (*b).next };
            n += 1;
        }
        if n != count {
            return Err("slab: remote count differs from the remote stack's length");
        }
        Ok(())
    }

    /// Takes up to `n` blocks (at least one if any is available): first from
    /// the local free list, then carved from fresh memory, at most
    /// [`carve_limit`] blocks a call (a slab's untouched pages stay
    /// untouched until the blocks already carved are in use). The blocks
    /// count as used from now on.
    pub fn take(&mut self, n: u32) -> Chain {
        self.take_up_to(n, n)
    }

    /// Like [`SlabHandle::take`]`(n)`, but a local free list of at most
    /// `whole` blocks (`whole >= n`) is taken whole, however many more than
    /// `n` it holds: the list (often a remote stack just drained) becomes
    /// the returned chain as it is, with no walk to split `n` blocks off
    /// it. The chain's tail is then unknown (null).
    pub fn take_up_to(&mut self, n: u32, whole: u32) -> Chain {
        let l = &mut *self.local;
        let mut chain = if l.free_count > 0 {
            if l.free_count <= n.max(whole) {
                // The whole free list: no walk needed for the length.
                let c = Chain {
                    head: l.free,
                    tail: ptr::null_mut(),
                    len: l.free_count,
                };
                l.free = ptr::null_mut();
                l.free_count = 0;
                c
            } else {
                // SAFETY: the local free list is a valid list of free_count blocks.
                let (c, rest) = unsafe { Chain::split_list(l.free, n) };
                l.free = rest;
                l.free_count -= c.len;
                c
            }
        } else {
            Chain::EMPTY
        };
        let want = n.saturating_sub(chain.len);
        let fresh = want
            .min(l.capacity - l.carved)
            .min(carve_limit(l.carved, l.block_size));
        if fresh > 0 {
            let bs = l.block_size as usize;
            let data = l.data as usize;
            let at = |i: u32| crate::block_addr(data, bs, i as usize) as *mut Block;
            // Link the fresh blocks in address order and put them behind
            // whatever came from the free list.
            let mut prev: *mut Block = ptr::null_mut();
            for i in (l.carved..l.carved + fresh).rev() {
                let b = at(i);
                // SAFETY: blocks carved..carved+fresh lie inside the slab,
                // are unused, and are at least 16 bytes, 16-aligned.
                unsafe { (*b).next = prev };
                prev = b;
            }
            let first = at(l.carved);
            let last = at(l.carved + fresh - 1);
            if chain.len == 0 {
                chain = Chain {
                    head: first,
                    tail: last,
                    len: fresh,
                };
            } else {
                // The free-list part is null-terminated; find its end unless
                // we know it.
                let mut t = chain.tail;
                if t.is_null() {
                    t = chain.head;
                    // SAFETY: walking a valid null-terminated list.
                    unsafe {
                        while !(*t).next.is_null() {
                            t = (*t).next;
                        }
                    }
                }
                // SAFETY: t is the last block of the chain.
                unsafe { (*t).next = first };
                chain.tail = last;
                chain.len += fresh;
            }
            l.carved += fresh;
        }
        l.used += chain.len;
        chain
    }

    /// Gives one block back to the local free list.
    ///
    /// # Safety
    /// `b` must be a block of this slab that counts as used and is no longer
    /// referenced.
    #[inline]
    pub unsafe fn put(&mut self, b: *mut Block) -> Put {
        let l = &mut *self.local;
        debug_assert!(l.used > 0);
        let was_full = l.free_count == 0 && l.carved == l.capacity;
        // SAFETY: the caller gives us an unreferenced block of this slab.
        unsafe { (*b).next = l.free };
        l.free = b;
        l.free_count += 1;
        l.used -= 1;
        if l.used == 0 {
            Put::Empty
        } else if was_full {
            Put::WasFull
        } else {
            Put::Normal
        }
    }

    /// Moves every block on the remote stack to the local free list without
    /// touching the queued mark: used by an owner that drains a slab it holds
    /// anyway (its current slab, or every slab at adoption).
    /// Returns the number of blocks moved.
    pub fn drain_remote(&mut self) -> u32 {
        let remote = &self.shared().remote;
        let mut w = remote.load(Ordering::Acquire);
        loop {
            if w & !QUEUED == 0 {
                return 0;
            }
            match remote.compare_exchange_weak(w, w & QUEUED, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(x) => w = x,
            }
        }
        let (list, n) = remote_parts(w);
        self.absorb(list, n)
    }

    /// Takes the remote stack *and* clears the queued mark: only for the
    /// owner that has just taken this slab off its pending list.
    pub fn drain_pending(&mut self) -> u32 {
        let (list, n) = remote_parts(self.shared().remote.swap(0, Ordering::AcqRel));
        self.absorb(list, n)
    }

    /// Puts the remote stack `list` of `n` blocks (its count, taken with it)
    /// on the local free list. An empty free list becomes the stack as it
    /// is, without a walk; otherwise the shorter of the two lists is walked
    /// to its end to splice the other behind it.
    fn absorb(&mut self, list: *mut Block, n: u32) -> u32 {
        if list.is_null() {
            debug_assert_eq!(n, 0);
            return 0;
        }
        let l = &mut *self.local;
        if l.used < n {
            hakmem_platform::fatal_at("internal error: remote count above used", n as usize);
        }
        if !l.free.is_null() {
            let (first, second) = if l.free_count <= n {
                (l.free, list)
            } else {
                (list, l.free)
            };
            let mut t = first;
            // SAFETY: both are valid null-terminated lists of blocks of this
            // slab (the local list is the owner's; remote pushers wrote each
            // link before publishing), which the owner alone touches now.
            unsafe {
                while !(*t).next.is_null() {
                    t = (*t).next;
                }
                (*t).next = second;
            }
            l.free = first;
        } else {
            l.free = list;
        }
        l.free_count += n;
        l.used -= n;
        n
    }
}
