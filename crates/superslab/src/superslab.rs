//! The superslab header and the ownership token for a whole superslab.

use core::cell::UnsafeCell;
use core::ptr::{self, NonNull};

use hakmem_pagemap::{Entry, PageMap, GRANULE};

use crate::remote::PendingList;
use crate::slab::{Slab, SlabRef};
use crate::sync::{AtomicPtr, AtomicU32, AtomicU8, Ordering};
use crate::{NO_CLASS, SLOTS, SLOT_SHIFT, SLOT_SIZE, SUPERSLAB_SIZE};

const MAGIC: u64 = 0x6861_6b6d_5353_3031; // "hakmSS01"

/// The header at the start of every superslab.
///
/// Invariants:
/// * `class_of_slot[s]` is the class of the slab covering slot `s`, or
///   [`NO_CLASS`] when slot `s` is free or is the header slot 0. It changes only
///   while no block of the slot is live, so any thread holding a live block
///   may read its class.
/// * `first_slot[s]` is the first slot of the slab covering `s` (meaningful
///   when the class is not `NO_CLASS`); that slab's metadata is `slabs[first]`.
/// * `owner` points at the owner's pending list (a heap's, or the orphanage's)
///   while the superslab is live, and `tag` is the owner's page-map tag.
///   Only the owner changes them.
/// * The page map mirrors the header: the entry of slot `s` is
///   `Entry::slot(tag, class_of_slot[s])` while the superslab is live. The
///   free fast path reads the map, so the two change together, in the
///   owner-only methods of [`OwnedSuperslab`].
/// * Everything in `local` belongs to the owner.
#[repr(C, align(64))]
pub struct Superslab {
    // Offset 0: read by every free fast path.
    class_of_slot: [AtomicU8; SLOTS],
    first_slot: [AtomicU8; SLOTS],
    magic: u64,
    owner: AtomicPtr<PendingList>,
    tag: AtomicU32,
    map: *const PageMap,
    local: UnsafeCell<SsLocal>,
    slabs: [Slab; SLOTS],
}

/// Owner-only state.
struct SsLocal {
    /// Bit `s` set: slot `s` is free. Slot 0 is never free.
    free_slots: u32,
    /// The longest run of consecutive free slots (the biggest slab that fits).
    max_run: u8,
    /// Bit `s` set: slot `s` is free but its pages may still be resident
    /// (it held a slab since it was last purged).
    dirty_slots: u32,
    /// When [`OwnedSuperslab::purge_idle`] first saw each dirty slot
    /// (coarse milliseconds, 0: not seen yet).
    seen: [u32; SLOTS],
    /// Links in the owner's superslab list.
    next: *mut Superslab,
    prev: *mut Superslab,
    /// Which list of the owner this superslab is on (owner-defined).
    list_tag: u8,
    /// Handed out with 4 KiB pages by the pool (a heap's first superslab, a
    /// clean one, one beyond the grant), so its owner may collapse it into
    /// one huge page once it is densely used
    /// ([`crate::SuperslabPool::densify`]). Cleared by a collapse, and by a
    /// purge of idle slots (a purged superslab keeps small pages).
    small: bool,
}

const ALL_BLOCK_SLOTS: u32 = !1u32;

// The header must fit in slot 0.
const _: () = assert!(core::mem::size_of::<Superslab>() <= SLOT_SIZE);

/// Where the header's pages end: the rest of slot 0 holds nothing, so a
/// purge that starts at slot 1 starts here instead (with huge pages, the
/// whole slot was faulted in with the superslab and stays resident after a
/// split unless purged).
pub const HEADER_END: usize =
    core::mem::size_of::<Superslab>().next_multiple_of(hakmem_platform::PAGE_SIZE);
const _: () = assert!(SLOTS == 32);
const _: () = assert!(SLOT_SIZE == GRANULE);

impl core::fmt::Debug for Superslab {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Superslab")
            .field("base", &(self as *const _))
            .finish_non_exhaustive()
    }
}

impl Superslab {
    /// The superslab header of the chunk holding `p`. Pure arithmetic: the
    /// result is only meaningful if the page map says the chunk is a superslab.
    #[inline(always)]
    pub fn of(p: *const u8) -> *const Superslab {
        ((p as usize) & !(SUPERSLAB_SIZE - 1)) as *const Superslab
    }

    /// The slot index of `p` within its superslab.
    #[inline(always)]
    pub fn slot_of(p: *const u8) -> usize {
        ((p as usize) >> SLOT_SHIFT) & (SLOTS - 1)
    }

    /// The class of the slab holding `p`, or [`NO_CLASS`].
    #[inline]
    pub fn class_of(&self, p: *const u8) -> u8 {
        self.class_of_slot[Self::slot_of(p)].load(Ordering::Relaxed)
    }

    /// True if the header carries the superslab magic (a sanity check).
    pub fn magic_ok(&self) -> bool {
        self.magic == MAGIC
    }

    /// The slab holding `p`, if `p` lies in a slot that belongs to one.
    #[inline]
    pub fn slab_of(&self, p: *const u8) -> Option<&Slab> {
        let s = Self::slot_of(p);
        if self.class_of_slot[s].load(Ordering::Relaxed) == NO_CLASS {
            return None;
        }
        let first = self.first_slot[s].load(Ordering::Relaxed) as usize;
        Some(&self.slabs[first])
    }

    /// The number (address >> [`crate::SLOT_SHIFT`]) of the first slot of
    /// the slab covering `p`'s slot: one key for all the blocks of a slab
    /// that spans several slots. Reads only the atomic slot map, so any
    /// thread may ask about a block it holds (the map does not change while
    /// the slab has a live block).
    #[inline]
    pub fn first_slot_number(&self, p: *const u8) -> usize {
        let s = Self::slot_of(p);
        let first = self.first_slot[s].load(Ordering::Relaxed) as usize;
        (self.base() >> SLOT_SHIFT) + first
    }

    /// True if `p` is the start of a block of `block_size` bytes in the slab
    /// covering its slot (not an interior pointer). Reads only the atomic
    /// slot map, so any thread may ask about a block it holds.
    #[inline]
    pub fn is_block_start(&self, p: *const u8, block_size: usize) -> bool {
        let s = Self::slot_of(p);
        if self.class_of_slot[s].load(Ordering::Relaxed) == NO_CLASS {
            return false;
        }
        match crate::blocks_per_slot(block_size) {
            0 => {
                let first = self.first_slot[s].load(Ordering::Relaxed) as usize;
                let data = self.base() + first * SLOT_SIZE;
                (p as usize - data).is_multiple_of(block_size)
            }
            n => {
                let in_slot = (p as usize) & (SLOT_SIZE - 1);
                in_slot.is_multiple_of(block_size) && in_slot / block_size < n
            }
        }
    }

    /// The owner's pending list.
    #[inline]
    pub fn owner(&self) -> *const PendingList {
        self.owner.load(Ordering::Acquire)
    }

    /// The base address.
    #[inline]
    pub fn base(&self) -> usize {
        self as *const Self as usize
    }

    /// The owner's page-map tag.
    #[inline]
    pub fn tag(&self) -> u32 {
        self.tag.load(Ordering::Relaxed)
    }

    pub(crate) fn slab(&self, first: usize) -> &Slab {
        &self.slabs[first]
    }

    /// Whether the former superslab at `base` was small-paged
    /// ([`OwnedSuperslab::is_small`]) when it was given up.
    ///
    /// # Safety
    /// `base` must be a former superslab whose header is intact (a dirty
    /// pooled one) that the caller owns alone.
    pub(crate) unsafe fn was_small(base: NonNull<u8>) -> bool {
        // SAFETY: per the contract the header is intact and ours alone.
        unsafe { (*(*base.cast::<Superslab>().as_ptr()).local.get()).small }
    }
}

/// Exclusive ownership of one live superslab.
///
/// Holding it means: this thread (or the lock holder of the orphanage) is
/// the superslab's owner, and may touch all owner-only state of it and its
/// slabs. It is not `Clone`; it moves between owners at abandonment and
/// adoption.
#[derive(Debug)]
pub struct OwnedSuperslab(NonNull<Superslab>);

// SAFETY: ownership of a superslab may move between threads; the token is
// the only way to touch owner state, and it is unique.
unsafe impl Send for OwnedSuperslab {}

impl OwnedSuperslab {
    /// Formats freshly mapped (zeroed) or recycled memory as an empty
    /// superslab owned by `tag`/`owner`, and registers its slots in `map`.
    ///
    /// # Safety
    /// `base` must be a mapped, `SUPERSLAB_SIZE`-aligned chunk of
    /// `SUPERSLAB_SIZE` bytes holding no live blocks and no slab waiting in a
    /// pending list, not otherwise referenced, and either zeroed or a former
    /// superslab; its slots must be reserved in `map`, which must outlive it.
    pub unsafe fn format(
        base: NonNull<u8>,
        map: &PageMap,
        tag: u32,
        owner: &PendingList,
    ) -> OwnedSuperslab {
        let ss = base.cast::<Superslab>();
        let p = ss.as_ptr();
        // SAFETY: the caller hands us exclusive use of the chunk; we write the
        // header fields in place through raw pointers (no references to
        // uninitialised memory are formed).
        unsafe {
            for s in 0..SLOTS {
                ptr::addr_of_mut!((*p).class_of_slot[s]).write(AtomicU8::new(NO_CLASS));
                ptr::addr_of_mut!((*p).first_slot[s]).write(AtomicU8::new(0));
                Slab::format(ptr::addr_of_mut!((*p).slabs[s]));
            }
            ptr::addr_of_mut!((*p).magic).write(MAGIC);
            ptr::addr_of_mut!((*p).owner).write(AtomicPtr::new(owner as *const _ as *mut _));
            ptr::addr_of_mut!((*p).tag).write(AtomicU32::new(tag));
            ptr::addr_of_mut!((*p).map).write(map);
            ptr::addr_of_mut!((*p).local).write(UnsafeCell::new(SsLocal {
                free_slots: ALL_BLOCK_SLOTS,
                max_run: (SLOTS - 1) as u8,
                dirty_slots: 0,
                seen: [0; SLOTS],
                next: ptr::null_mut(),
                prev: ptr::null_mut(),
                list_tag: 0,
                small: false,
            }));
        }
        let ss = OwnedSuperslab(ss);
        ss.publish_entries();
        ss
    }

    /// Writes the page-map entries of all slots from the header.
    fn publish_entries(&self) {
        let h = self.header();
        let tag = h.tag();
        // SAFETY: the map outlives every superslab registered in it.
        let map = unsafe { &*h.map };
        map.set_slots(self.base(), SLOTS, |s| {
            Entry::slot(tag, h.class_of_slot[s].load(Ordering::Relaxed))
        });
    }

    /// Re-creates the token for a superslab the caller owns.
    ///
    /// # Safety
    /// The calling context must own the superslab at `ss` (for example it is
    /// on the caller's heap's superslab list) and must not hold another token
    /// for it at the same time.
    #[inline]
    pub unsafe fn assume_owned(ss: NonNull<Superslab>) -> OwnedSuperslab {
        OwnedSuperslab(ss)
    }

    /// Gives up the token without changing anything (the owner keeps the
    /// superslab on its lists and re-creates the token with
    /// [`OwnedSuperslab::assume_owned`]).
    #[inline]
    pub fn into_raw(self) -> NonNull<Superslab> {
        self.0
    }

    /// The header.
    #[inline]
    pub fn header(&self) -> &Superslab {
        // SAFETY: a token refers to a live superslab.
        unsafe { self.0.as_ref() }
    }

    #[inline]
    fn local(&mut self) -> &mut SsLocal {
        // SAFETY: the token grants exclusive access to owner-only state.
        unsafe { &mut *self.header().local.get() }
    }

    #[inline]
    fn local_ref(&self) -> &SsLocal {
        // SAFETY: owner-only state belongs to the token's holder; shared
        // access lasts while the token is borrowed, so no `&mut` from
        // `local` can coexist.
        unsafe { &*self.header().local.get() }
    }

    /// The base address.
    #[inline]
    pub fn base(&self) -> usize {
        self.0.as_ptr() as usize
    }

    /// Changes the owner (abandonment, adoption) and re-tags the superslab's
    /// page-map entries.
    pub fn set_owner(&mut self, tag: u32, owner: &PendingList) {
        let h = self.header();
        h.owner
            .store(owner as *const _ as *mut _, Ordering::Release);
        h.tag.store(tag, Ordering::Relaxed);
        self.publish_entries();
    }

    /// Marks every slot of the superslab with `entry` (the pool parks
    /// superslabs as free, or unregisters them).
    pub fn set_all_entries(&mut self, entry: Entry) {
        // SAFETY: the map outlives every superslab registered in it.
        let map = unsafe { &*self.header().map };
        map.set_slots(self.base(), SLOTS, |_| entry);
    }

    /// True when no slab is allocated in it.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.local_ref().free_slots == ALL_BLOCK_SLOTS
    }

    /// Free slots (bit per slot).
    #[inline]
    pub fn free_slots(&self) -> u32 {
        self.local_ref().free_slots
    }

    /// The most slots a new slab could span here.
    #[inline]
    pub fn max_span(&self) -> usize {
        self.local_ref().max_run as usize
    }

    /// The owner's list links and tag (for [`crate::SuperslabList`]).
    pub(crate) fn links(&mut self) -> (&mut *mut Superslab, &mut *mut Superslab, &mut u8) {
        let l = self.local();
        (&mut l.next, &mut l.prev, &mut l.list_tag)
    }

    /// Which of the owner's lists the superslab is on.
    pub fn list_tag(&self) -> u8 {
        self.local_ref().list_tag
    }

    /// Whether the pool handed the superslab out with 4 KiB pages and it
    /// has been neither collapsed nor purged since, so
    /// [`crate::SuperslabPool::densify`] may collapse it into a huge page.
    #[inline]
    pub fn is_small(&self) -> bool {
        self.local_ref().small
    }

    /// Records whether the superslab is backed by 4 KiB pages (the pool,
    /// when it hands it out or collapses it).
    pub(crate) fn set_small(&mut self, small: bool) {
        self.local().small = small;
    }

    /// An upper estimate of the bytes of the superslab that have been
    /// touched (its pages resident with 4 KiB pages): the header's pages,
    /// every slab's carved blocks (a slab that carved nothing yet counts
    /// its first refill's worth: 64 blocks, at most its span), and every
    /// free slot that is still dirty.
    pub fn touched_bytes(&self) -> usize {
        let mut bytes = HEADER_END + self.local_ref().dirty_slots.count_ones() as usize * SLOT_SIZE;
        for s in self.slabs() {
            // SAFETY: the token makes us the owner; the handle lives only
            // for these reads and no other handle of the slab is alive
            // while the owner holds `&self` here.
            let h = unsafe { s.handle() };
            let size = h.block_size() as usize;
            let room = h.span() as usize * SLOT_SIZE;
            let carved = match h.carved() {
                0 => 64,
                n => n as usize,
            };
            bytes += (carved * size)
                .min(room)
                .next_multiple_of(hakmem_platform::PAGE_SIZE);
        }
        bytes
    }

    /// Finds `span` consecutive free slots, carves a slab for `class` with
    /// blocks of `block_size` bytes there, and returns it.
    pub fn alloc_slab(&mut self, class: u8, block_size: u32, span: usize) -> Option<SlabRef> {
        debug_assert!(class != NO_CLASS && (1..SLOTS).contains(&span));
        let free = self.local_ref().free_slots;
        let mut run = free;
        for k in 1..span {
            run &= free >> k;
        }
        if run == 0 {
            return None;
        }
        let first = run.trailing_zeros() as usize;
        let mask = (((1u64 << span) - 1) as u32) << first;
        let l = self.local();
        l.free_slots &= !mask;
        l.dirty_slots &= !mask;
        l.max_run = longest_run(l.free_slots);
        let hdr = self.header();
        // SAFETY: the map outlives every superslab registered in it.
        let map = unsafe { &*hdr.map };
        let tag = hdr.tag();
        for s in first..first + span {
            hdr.first_slot[s].store(first as u8, Ordering::Relaxed);
            hdr.class_of_slot[s].store(class, Ordering::Release);
            map.set(self.base() + s * SLOT_SIZE, Entry::slot(tag, class));
        }
        let data = (self.base() + first * SLOT_SIZE) as *mut u8;
        let slab = hdr.slab(first);
        // SAFETY: the slots were free, so no block or pending entry refers to
        // this slab; we own the superslab.
        unsafe { slab.init(class, block_size, span as u8, first as u8, data) };
        Some(SlabRef::new(slab))
    }

    /// Returns a slab's slots to the superslab.
    ///
    /// # Safety
    /// `slab` must belong to this superslab, hold no live block, and not be
    /// waiting in any pending list (see [`crate::SlabHandle::is_releasable`]);
    /// the caller must have removed it from all of its own lists.
    pub unsafe fn release_slab(&mut self, slab: SlabRef) {
        // SAFETY: the caller guarantees the slab is ours and idle.
        let h = unsafe { slab.handle() };
        debug_assert!(h.is_releasable());
        let first = h.first_slot() as usize;
        let span = h.span() as usize;
        let hdr = self.header();
        // SAFETY: the map outlives every superslab registered in it.
        let map = unsafe { &*hdr.map };
        let tag = hdr.tag();
        for s in first..first + span {
            hdr.class_of_slot[s].store(NO_CLASS, Ordering::Release);
            map.set(self.base() + s * SLOT_SIZE, Entry::slot(tag, NO_CLASS));
        }
        let mask = (((1u64 << span) - 1) as u32) << first;
        let l = self.local();
        l.free_slots |= mask;
        l.max_run = longest_run(l.free_slots);
        l.dirty_slots |= mask;
        for s in first..first + span {
            l.seen[s] = 0;
        }
    }

    /// Free slots whose pages may still be resident.
    #[inline]
    pub fn dirty_slots(&self) -> u32 {
        self.local_ref().dirty_slots
    }

    /// Starts the idle clock of dirty free slots that have none yet (the
    /// owner calls it with the time after releasing slabs, so that
    /// [`OwnedSuperslab::purge_idle`] measures idle time from the release).
    pub fn stamp_free_slots(&mut self, now_ms: u64) {
        let now = (now_ms as u32).max(1);
        let l = self.local();
        let mut d = l.dirty_slots;
        while d != 0 {
            let s = d.trailing_zeros() as usize;
            d &= d - 1;
            if l.seen[s] == 0 {
                l.seen[s] = now;
            }
        }
    }

    /// Gives back to the OS the pages of free slots that stayed free for at
    /// least `decay_ms` (a slot's idle time starts at
    /// [`OwnedSuperslab::stamp_free_slots`], or else when this method first
    /// sees it free). With
    /// `decay_ms == 0` every free slot is purged now. Returns the bytes
    /// purged.
    pub fn purge_idle<P: hakmem_platform::Pal>(&mut self, now_ms: u64, decay_ms: u64) -> usize {
        let now = (now_ms as u32).max(1);
        let base = self.base();
        let l = self.local();
        let mut purge = 0u32;
        let mut d = l.dirty_slots;
        while d != 0 {
            let s = d.trailing_zeros() as usize;
            d &= d - 1;
            if decay_ms == 0 || (l.seen[s] != 0 && now.wrapping_sub(l.seen[s]) as u64 >= decay_ms) {
                purge |= 1 << s;
            } else if l.seen[s] == 0 {
                l.seen[s] = now;
            }
        }
        l.dirty_slots &= !purge;
        let mut bytes = 0;
        // purge maximal runs of consecutive slots with one call each
        while purge != 0 {
            let first = purge.trailing_zeros();
            let run = (!(purge >> first)).trailing_zeros();
            let len = run as usize * SLOT_SIZE;
            // a run from slot 1 takes the unused tail of slot 0 with it
            let start = if first == 1 {
                base + HEADER_END
            } else {
                base + first as usize * SLOT_SIZE
            };
            // SAFETY: the slots are free: no block, no slab record in use,
            // and slot 0 past the header's pages holds nothing; we own the
            // superslab.
            unsafe {
                P::purge(
                    NonNull::new_unchecked(start as *mut u8),
                    base + (first + run) as usize * SLOT_SIZE - start,
                )
            };
            bytes += len;
            purge &= !((((1u64 << run) - 1) as u32) << first);
        }
        if bytes != 0 {
            // khugepaged would collapse the purged slots back into a
            // resident huge page around the header and the slots in use:
            // the superslab keeps small pages from now on (the pool advises
            // it huge again when it hands it out clean)
            // SAFETY: we own the superslab's whole mapping.
            unsafe { P::advise_small(NonNull::new_unchecked(base as *mut u8), SUPERSLAB_SIZE) };
            // and no collapse either (`SuperslabPool::densify` would bring
            // the huge page back as soon as it is used again)
            self.local().small = false;
        }
        bytes
    }

    /// Checks the header's invariants against itself and the page map
    /// (allocates nothing, usable in any build):
    /// * `map` is the map the superslab was registered in, and the magic is
    ///   intact;
    /// * slot 0 (the header) is never free and has no class;
    /// * a block slot is free (its bit in the free-slot mask) exactly when
    ///   its class is [`NO_CLASS`];
    /// * for a slot in use, `first_slot` names a slot at or before it whose
    ///   slab record has the same class, starts there and spans it, and
    ///   every slot of that span agrees on class and first slot;
    /// * the longest-free-run cache matches the mask;
    /// * the page-map entry of every slot is `Entry::slot(tag, class)`.
    ///
    /// The caller must not hold a [`crate::SlabHandle`] of this superslab
    /// across the call (it reads each slab record through a short-lived
    /// handle, as [`OwnedSuperslab::slabs`]' users do).
    pub fn check(&self, map: &PageMap) -> Result<(), &'static str> {
        let h = self.header();
        if !core::ptr::eq(h.map, map) {
            return Err("superslab: registered in another page map");
        }
        if !h.magic_ok() {
            return Err("superslab: bad magic");
        }
        let l = self.local_ref();
        if l.free_slots & 1 != 0 || h.class_of_slot[0].load(Ordering::Relaxed) != NO_CLASS {
            return Err("superslab: header slot marked free or classed");
        }
        if l.max_run != longest_run(l.free_slots) {
            return Err("superslab: max_run out of step with the free-slot mask");
        }
        for s in 1..SLOTS {
            let class = h.class_of_slot[s].load(Ordering::Relaxed);
            let free = l.free_slots & (1 << s) != 0;
            if free != (class == NO_CLASS) {
                return Err("superslab: free-slot mask disagrees with class_of_slot");
            }
            if free {
                continue;
            }
            let first = h.first_slot[s].load(Ordering::Relaxed) as usize;
            if first == 0 || first > s {
                return Err("superslab: first_slot out of range");
            }
            if h.class_of_slot[first].load(Ordering::Relaxed) != class
                || h.first_slot[first].load(Ordering::Relaxed) as usize != first
            {
                return Err("superslab: a slab's slots disagree on class or first slot");
            }
            // SAFETY: the token makes us the owner, and per this method's
            // contract no other handle to the slab is alive; the handle
            // lives only for these reads.
            let sh = unsafe { SlabRef::new(h.slab(first)).handle() };
            if sh.class() != class
                || sh.first_slot() as usize != first
                || first + sh.span() as usize <= s
            {
                return Err("superslab: slab record disagrees with class_of_slot/first_slot");
            }
        }
        let tag = h.tag();
        for (s, e) in map.slot_entries(self.base(), SLOTS) {
            if e != Entry::slot(tag, h.class_of_slot[s].load(Ordering::Relaxed)) {
                return Err("superslab: page-map entry disagrees with the header");
            }
        }
        Ok(())
    }

    /// Every allocated slab of the superslab (first slots), for abandonment,
    /// adoption and accounting.
    pub fn slabs(&self) -> impl Iterator<Item = SlabRef> + '_ {
        let hdr = self.header();
        let free = self.local_ref().free_slots;
        (1..SLOTS).filter_map(move |s| {
            if free & (1 << s) != 0 {
                return None;
            }
            let first = hdr.first_slot[s].load(Ordering::Relaxed) as usize;
            if first != s {
                return None;
            }
            Some(SlabRef::new(hdr.slab(s)))
        })
    }
}

/// Length of the longest run of set bits.
fn longest_run(mut m: u32) -> u8 {
    let mut n = 0;
    while m != 0 {
        m &= m >> 1;
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::longest_run;

    #[test]
    fn longest_runs() {
        assert_eq!(longest_run(0), 0);
        assert_eq!(longest_run(!1), 31);
        assert_eq!(longest_run(0b1011_1100), 4);
        assert_eq!(longest_run(0b1010_1010), 1);
        assert_eq!(longest_run(u32::MAX), 32);
    }
}
