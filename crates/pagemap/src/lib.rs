//! The page map: hakmem's registry of the address space it owns.
//!
//! Every byte hakmem hands out lies in a 64 KiB *slot* (the unit slabs are
//! made of) that belongs to one owner: a superslab (tiny and mid blocks) or
//! a large mapping. The map keeps one 32-bit [`Entry`] per slot of the 47-bit
//! user address space in a two-level radix tree: a static top level of 8192
//! pointers (64 KiB, all pointing at one shared zero leaf at first) and 1 MiB
//! leaves mapped on demand, each
//! covering 16 GiB. Leaves are only address space until touched: a page of a
//! leaf covers 64 MiB.
//!
//! `free`, `realloc` and `malloc_usable_size` consult the map before they
//! touch a pointer's metadata: a pointer whose slot has no entry was not
//! handed out by hakmem, and is reported rather than followed.
//!
//! A superslab slot's entry carries the owner's *tag* (a heap id) and the
//! slot's size class, so the free fast path learns "is this pointer in
//! memory I own, and which bin does it go to?" from one load.
#![cfg_attr(not(test), no_std)]

use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use hakmem_platform::{Pal, SpinLock, PAGE_SIZE};

/// log2 of the granule, a 64 KiB slot.
pub const GRANULE_SHIFT: u32 = 16;
/// The granule: one entry per this many bytes.
pub const GRANULE: usize = 1 << GRANULE_SHIFT;
const LEAF_BITS: u32 = 18;
const LEAF_LEN: usize = 1 << LEAF_BITS;
const TOP_SHIFT: u32 = GRANULE_SHIFT + LEAF_BITS;
const TOP_LEN: usize = 1 << (47 - TOP_SHIFT);

/// One slot's registry entry.
///
/// | bits | meaning |
/// |---|---|
/// | `0` | not hakmem's |
/// | `tag << 13 \| class << 5` | a superslab slot: owner tag and class (`NO_CLASS`: no block here); `entry ^ key(tag)` is then the class's bin offset in the owner's heap |
/// | `LARGE_BIT \| k` | the slot of a large block's user pointer, which lies `k` pages after its header |
///
/// Tags: [`Entry::FREE_TAG`] for a superslab parked in the pool,
/// [`Entry::ORPHAN_TAG`] for one whose thread exited, and from
/// [`Entry::FIRST_TAG`] up for heaps.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(transparent)]
pub struct Entry(pub u32);

impl Entry {
    /// Not hakmem's memory.
    pub const NONE: Entry = Entry(0);
    /// The tag of an empty superslab parked in the pool.
    pub const FREE_TAG: u32 = 1;
    /// The tag of a superslab with no owning thread.
    pub const ORPHAN_TAG: u32 = 2;
    /// The first tag a heap may carry.
    pub const FIRST_TAG: u32 = 16;
    /// Tags are below this.
    pub const MAX_TAG: u32 = 1 << 18;
    /// The class byte of a slot that holds no blocks.
    pub const NO_CLASS: u8 = 0xFF;
    /// Set on the entry of a large block.
    pub const LARGE_BIT: u32 = 1 << 31;
    /// Large offsets (in pages) are below this (2^24 pages = 64 GiB).
    pub const MAX_LARGE_OFFSET: u32 = 1 << 24;
    /// The key of a thread without a heap: `entry ^ key` is never below
    /// [`Entry::KEY_HIT`], because no tag and no large offset reaches these
    /// upper bits.
    pub const NEVER_KEY: u32 = 0xFFFF_E000;
    /// `entry ^ key(tag) < KEY_HIT` exactly when the entry is a superslab
    /// slot owned by `tag`.
    pub const KEY_HIT: u32 = 1 << 13;

    /// The fast-path key of a heap: when `entry ^ key(tag)` is below
    /// [`Entry::KEY_HIT`] it equals `class * 32`, the byte offset of the
    /// class's bin in an array of 32-byte bins.
    #[inline]
    pub const fn key(tag: u32) -> u32 {
        tag << 13
    }

    /// The entry of a superslab slot owned by `tag` holding `class`.
    #[inline]
    pub const fn slot(tag: u32, class: u8) -> Entry {
        debug_assert!(tag > 0 && tag < Self::MAX_TAG);
        Entry(tag << 13 | (class as u32) << 5)
    }

    /// The entry of the slot holding a large block's user pointer `user`,
    /// which lies `k` pages after the mapping's header. The entry also records
    /// which page of the slot `user` is on, so that only `user` itself (not
    /// another address in its slot) is taken for the block.
    #[inline]
    pub const fn large(user: usize, k: u32) -> Entry {
        debug_assert!(k < Self::MAX_LARGE_OFFSET);
        let page = ((user >> 12) & 15) as u32;
        Entry(Self::LARGE_BIT | page << 24 | k)
    }

    /// True if `p` is the pointer a large entry was made for: page aligned
    /// and on the recorded page of its slot.
    #[inline]
    pub const fn large_matches(self, p: usize) -> bool {
        p & 4095 == 0 && ((p >> 12) & 15) as u32 == (self.0 >> 24) & 15
    }

    /// True for a large block's entry.
    #[inline]
    pub const fn is_large(self) -> bool {
        self.0 & Self::LARGE_BIT != 0
    }

    /// For a large entry, how many pages before the user pointer the
    /// mapping's header lies.
    #[inline]
    pub const fn large_offset(self) -> usize {
        (self.0 & (Self::MAX_LARGE_OFFSET - 1)) as usize
    }

    /// The owner tag of a superslab slot (0 for none, large entries excluded).
    #[inline]
    pub const fn tag(self) -> u32 {
        if self.is_large() {
            0
        } else {
            self.0 >> 13
        }
    }

    /// The class byte of a superslab slot.
    #[inline]
    pub const fn class(self) -> u8 {
        (self.0 >> 5) as u8
    }

    /// True for a slot of a superslab that some heap, or the orphanage, owns.
    #[inline]
    pub const fn is_live_superslab(self) -> bool {
        let t = self.tag();
        t == Self::ORPHAN_TAG || t >= Self::FIRST_TAG
    }
}

type Leaf = [AtomicU32; LEAF_LEN];

static ZERO_LEAF: Leaf = [const { AtomicU32::new(0) }; LEAF_LEN];

/// The first entry of the zero leaf.
#[inline(always)]
const fn zero_leaf() -> *mut AtomicU32 {
    core::ptr::addr_of!(ZERO_LEAF) as *mut AtomicU32
}

/// What `top[t]` holds for the leaf starting at `leaf`: the leaf's address
/// less `t * LEAF_LEN` entries, so that the entry of an address is
/// `top[addr >> TOP_SHIFT] + (addr >> GRANULE_SHIFT)` with no mask (the
/// free fast path saves an instruction). A wrapping offset: the biased
/// pointer is never dereferenced itself, only after adding the index back.
#[inline(always)]
const fn biased(leaf: *mut AtomicU32, t: usize) -> *mut AtomicU32 {
    leaf.wrapping_sub(t * LEAF_LEN)
}

/// The registry: one [`Entry`] per 64 KiB slot of the 47-bit address space.
///
/// Invariant: `top[t]` is always `biased(leaf, t)` for a live leaf of
/// `LEAF_LEN` entries (the shared zero leaf until [`PageMap::reserve`] maps
/// one), so any address below 2^47 finds a readable entry. Leaves are never
/// unmapped.
pub struct PageMap {
    top: [AtomicPtr<AtomicU32>; TOP_LEN],
    grow: SpinLock<()>,
}

/// Byte offset of the top table in a [`PageMap`], for a hand-written lookup
/// (`hakmem-preload`'s `free`): `top[addr >> 34]` plus `(addr >> 16) * 4`
/// bytes is the address's entry, for any `addr < 2^47`.
pub const TOP_OFFSET: usize = core::mem::offset_of!(PageMap, top);
/// The shift of the top index (`addr >> TOP_INDEX_SHIFT`), and the number
/// of top entries: addresses from `TOP_ENTRIES << TOP_INDEX_SHIFT` up are
/// not in the map.
pub const TOP_INDEX_SHIFT: u32 = TOP_SHIFT;
/// See [`TOP_INDEX_SHIFT`].
pub const TOP_ENTRIES: usize = TOP_LEN;

impl core::fmt::Debug for PageMap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PageMap")
            .field("leaves", &self.leaves())
            .finish()
    }
}

impl Default for PageMap {
    fn default() -> Self {
        Self::new()
    }
}

impl PageMap {
    /// An empty map: every address reads [`Entry::NONE`].
    pub const fn new() -> Self {
        let mut top = [const { AtomicPtr::new(core::ptr::null_mut()) }; TOP_LEN];
        let mut t = 0;
        while t < TOP_LEN {
            top[t] = AtomicPtr::new(biased(zero_leaf(), t));
            t += 1;
        }
        PageMap {
            top,
            grow: SpinLock::new(()),
        }
    }

    /// The first entry of leaf `t` (the zero leaf if none was mapped).
    #[inline(always)]
    fn leaf(&self, t: usize) -> *mut AtomicU32 {
        self.top[t]
            .load(Ordering::Acquire)
            .wrapping_add(t * LEAF_LEN)
    }

    /// The entry of the slot holding `addr`. Any address, mapped or not, may
    /// be asked about.
    #[inline(always)]
    pub fn get(&self, addr: usize) -> Entry {
        self.lookup(addr).unwrap_or(Entry::NONE)
    }

    /// The entry of the slot holding `addr`, or `None` when `addr` lies
    /// beyond the 47-bit user address space (then the entry is
    /// [`Entry::NONE`]). The same lookup as [`PageMap::get`], shaped so that a
    /// caller can send that case straight to its slow path.
    #[inline(always)]
    pub fn lookup(&self, addr: usize) -> Option<Entry> {
        let top = addr >> TOP_SHIFT;
        if top >= TOP_LEN {
            return None;
        }
        // SAFETY: `top < TOP_LEN` was checked just above.
        let base = unsafe { self.top.get_unchecked(top) }.load(Ordering::Acquire);
        // SAFETY: `base` is `biased(leaf, top)` (the invariant) and
        // `addr >> GRANULE_SHIFT` is `top * LEAF_LEN + i` with `i < LEAF_LEN`,
        // so the sum is entry `i` of a live leaf (leaves are never unmapped).
        Some(Entry(
            unsafe { &*base.wrapping_add(addr >> GRANULE_SHIFT) }.load(Ordering::Acquire),
        ))
    }

    /// Makes sure every slot of `start..start+len` has a leaf, so that
    /// [`PageMap::set`] may be used on it. Returns false if a leaf could not
    /// be mapped or the range is beyond the 47-bit address space.
    pub fn reserve<P: Pal>(&self, start: usize, len: usize) -> bool {
        debug_assert!(len > 0);
        let first = start >> TOP_SHIFT;
        let Some(end) = start.checked_add(len - 1) else {
            return false;
        };
        let last = end >> TOP_SHIFT;
        if last >= TOP_LEN {
            return false;
        }
        for t in first..=last {
            if self.leaf(t) == zero_leaf() {
                let _g = self.grow.lock();
                if self.leaf(t) == zero_leaf() {
                    let bytes = core::mem::size_of::<Leaf>();
                    debug_assert!(bytes.is_multiple_of(PAGE_SIZE));
                    let Some(mem) = P::map(bytes, PAGE_SIZE) else {
                        return false;
                    };
                    // Zeroed memory is a valid array of AtomicU32 zeroes.
                    let leaf = mem.cast::<AtomicU32>().as_ptr();
                    self.top[t].store(biased(leaf, t), Ordering::Release);
                }
            }
        }
        true
    }

    /// Sets the entry of the slot holding `addr`, whose leaf must exist
    /// ([`PageMap::reserve`]d before).
    #[inline]
    pub fn set(&self, addr: usize, entry: Entry) {
        self.slot(addr).store(entry.0, Ordering::Release);
    }

    /// Sets the entries of `n` consecutive slots starting with the one at
    /// `start` (reserved before) to `entry(k)`, `k` counting from 0.
    pub fn set_slots(&self, start: usize, n: usize, entry: impl Fn(usize) -> Entry) {
        for k in 0..n {
            self.set(start + k * GRANULE, entry(k));
        }
    }

    /// The entries of `n` consecutive slots starting with the one at
    /// `start`, as `(k, entry)` with `k` counting from 0: the reading side of
    /// [`PageMap::set_slots`], for invariant checks that compare the map with
    /// a superslab's header. Unreserved slots read [`Entry::NONE`].
    pub fn slot_entries(
        &self,
        start: usize,
        n: usize,
    ) -> impl Iterator<Item = (usize, Entry)> + '_ {
        (0..n).map(move |k| (k, self.get(start + k * GRANULE)))
    }

    /// The atomic slot of an address whose leaf exists.
    fn slot(&self, addr: usize) -> &AtomicU32 {
        let top = addr >> TOP_SHIFT;
        let leaf = if top < TOP_LEN {
            self.leaf(top)
        } else {
            zero_leaf()
        };
        if leaf == zero_leaf() {
            hakmem_platform::fatal_at("internal error: page map has no leaf for", addr);
        }
        // SAFETY: the leaf is live forever (never unmapped) and LEAF_LEN
        // long; the index is masked to it.
        unsafe { &*leaf.add((addr >> GRANULE_SHIFT) & (LEAF_LEN - 1)) }
    }

    /// The number of leaves in use (diagnostics).
    pub fn leaves(&self) -> usize {
        (0..TOP_LEN)
            .filter(|&t| self.leaf(t) != zero_leaf())
            .count()
    }

    /// The lock that serialises leaf creation, for the fork handlers.
    pub fn fork_lock(&self) -> &SpinLock<()> {
        &self.grow
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hakmem_platform::Linux;
    use proptest::prelude::*;

    fn boxed_map() -> Box<PageMap> {
        // 64 KiB top level: keep it off the test thread's stack.
        Box::new(PageMap::new())
    }

    #[test]
    fn unknown_addresses_read_none() {
        let m = boxed_map();
        for a in [
            0usize,
            1,
            0x1000,
            0x7fff_ffff_f000,
            1 << 47,
            usize::MAX,
            0xdead_beef_dead_beef,
        ] {
            assert_eq!(m.get(a), Entry::NONE);
        }
        assert_eq!(m.leaves(), 0);
    }

    #[test]
    fn entries_cover_exactly_their_slot() {
        let m = boxed_map();
        let base = 0x7f00_0000_0000usize;
        assert!(m.reserve::<Linux>(base, 3 * GRANULE));
        m.set_slots(base, 3, |k| Entry::slot(20, k as u8));
        for k in 0..3 {
            let e = m.get(base + k * GRANULE + 12345);
            assert_eq!((e.tag(), e.class()), (20, k as u8));
            assert!(e.is_live_superslab());
        }
        assert_eq!(m.get(base + 3 * GRANULE), Entry::NONE);
        assert_eq!(m.get(base - 1), Entry::NONE);
        let user = base + 3 * 4096;
        m.set(user, Entry::large(user, 5));
        let e = m.get(base);
        assert!(e.is_large());
        assert_eq!(e.large_offset(), 5);
        assert_eq!(e.tag(), 0);
        assert!(e.large_matches(user));
        assert!(!e.large_matches(user + 4096), "another page of the slot");
        assert!(!e.large_matches(user + 16), "not page aligned");
        assert!(!e.large_matches(base));
    }

    #[test]
    fn ranges_may_straddle_leaves() {
        let m = boxed_map();
        let leaf_span = GRANULE << LEAF_BITS;
        let base = 5 * leaf_span - GRANULE;
        assert!(m.reserve::<Linux>(base, 2 * GRANULE));
        m.set_slots(base, 2, |_| Entry::slot(99, 3));
        assert_eq!(m.get(base).tag(), 99);
        assert_eq!(m.get(base + GRANULE).tag(), 99);
        assert_eq!(m.leaves(), 2);
    }

    #[test]
    fn beyond_47_bits_is_refused() {
        let m = boxed_map();
        assert!(!m.reserve::<Linux>(1 << 47, GRANULE));
        assert!(!m.reserve::<Linux>(usize::MAX - 10, GRANULE));
    }

    #[test]
    fn keys_select_exactly_their_owner() {
        let tags = [
            Entry::FREE_TAG,
            Entry::ORPHAN_TAG,
            Entry::FIRST_TAG,
            12345,
            Entry::MAX_TAG - 1,
        ];
        let mut entries = vec![
            Entry::NONE,
            Entry::large(0, 0),
            Entry::large(0xf000, Entry::MAX_LARGE_OFFSET - 1),
        ];
        for &t in &tags {
            for c in [0u8, 7, 200, Entry::NO_CLASS] {
                entries.push(Entry::slot(t, c));
            }
        }
        for e in &entries {
            assert!(
                e.0 ^ Entry::NEVER_KEY >= Entry::KEY_HIT,
                "{e:?} matched the no-heap key"
            );
            for &t in &tags {
                let hit = e.0 ^ Entry::key(t) < Entry::KEY_HIT;
                assert_eq!(
                    hit,
                    !e.is_large() && e.0 != 0 && e.tag() == t,
                    "{e:?} vs tag {t}"
                );
                if hit {
                    assert_eq!(e.0 ^ Entry::key(t), e.class() as u32 * 32, "the bin offset");
                }
            }
        }
        assert!(!Entry::NONE.is_live_superslab());
        assert!(!Entry::slot(Entry::FREE_TAG, 0xFF).is_live_superslab());
        assert!(Entry::slot(Entry::ORPHAN_TAG, 3).is_live_superslab());
        assert!(!Entry::large(0, 1).is_live_superslab());
    }

    proptest! {
        /// Model test: the map agrees with a plain map of slot -> entry.
        #[test]
        fn agrees_with_model(ops in proptest::collection::vec((0usize..64, 1usize..4, 16u32..1000, any::<u8>()), 1..40)) {
            let m = boxed_map();
            let mut model = std::collections::HashMap::new();
            let base = 0x5500_0000_0000usize;
            prop_assert!(m.reserve::<Linux>(base, 70 * GRANULE));
            for (slot, n, tag, class) in ops {
                m.set_slots(base + slot * GRANULE, n, |k| Entry::slot(tag, class.wrapping_add(k as u8)));
                for k in 0..n { model.insert(slot + k, Entry::slot(tag, class.wrapping_add(k as u8))); }
            }
            for c in 0..70usize {
                let want = model.get(&c).copied().unwrap_or(Entry::NONE);
                prop_assert_eq!(m.get(base + c * GRANULE + 777), want);
            }
        }
    }
}
