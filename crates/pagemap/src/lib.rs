//! The page map: hakmem's registry of the address space it owns.
//!
//! Every byte hakmem hands out lies in a 2 MiB *chunk* that belongs to one
//! owner: a superslab (tiny and mid blocks) or a large mapping. The map keeps
//! one 32-bit [`Entry`] per chunk of the 47-bit user address space in a
//! two-level radix tree: a static top level of 8192 pointers and 32 KiB
//! leaves created on demand (each covers 16 GiB), so an idle process pays
//! 64 KiB of zeroed `.bss` and one leaf per 16 GiB region it touches.
//!
//! `free`, `realloc` and `malloc_usable_size` consult the map before they
//! touch a pointer's metadata: a pointer whose chunk has no entry was not
//! handed out by hakmem, and is reported rather than followed.
//!
//! The entry of a superslab is its owner's *tag* (a heap id), so the free
//! fast path checks "is this pointer mine, and do I own it?" with one load and
//! one compare.
#![cfg_attr(not(test), no_std)]

use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use hakmem_platform::{Pal, SpinLock, CHUNK_SIZE, PAGE_SIZE};

/// log2 of [`CHUNK_SIZE`].
pub const CHUNK_SHIFT: u32 = 21;
const LEAF_BITS: u32 = 13;
const LEAF_LEN: usize = 1 << LEAF_BITS;
const TOP_LEN: usize = 1 << (47 - CHUNK_SHIFT - LEAF_BITS);
const TOP_SHIFT: u32 = CHUNK_SHIFT + LEAF_BITS;

/// One chunk's registry entry.
///
/// | value | meaning |
/// |---|---|
/// | `0` | not hakmem's |
/// | [`Entry::FREE_SUPERSLAB`] | a superslab kept empty in the pool: nothing in it is live |
/// | [`Entry::ORPHANED`] | a superslab whose thread exited, waiting to be adopted |
/// | `FIRST_TAG..LARGE_BIT` | a superslab owned by the heap with this tag |
/// | `LARGE_BIT \| k` | the `k`-th chunk of a large mapping (its header is `k` chunks back) |
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(transparent)]
pub struct Entry(pub u32);

impl Entry {
    /// Not hakmem's memory.
    pub const NONE: Entry = Entry(0);
    /// An empty superslab parked in the pool.
    pub const FREE_SUPERSLAB: Entry = Entry(1);
    /// A superslab with no owning thread.
    pub const ORPHANED: Entry = Entry(2);
    /// The first tag a heap may carry.
    pub const FIRST_TAG: u32 = 16;
    /// Set on every chunk of a large mapping.
    pub const LARGE_BIT: u32 = 1 << 31;
    /// Large mappings span fewer chunks than this (2^30 chunks = 2 PiB), so
    /// a large entry is never [`Entry::NEVER`].
    pub const MAX_LARGE_CHUNKS: u32 = 1 << 30;
    /// A value no entry ever holds: the tag of a thread that has no heap.
    pub const NEVER: u32 = u32::MAX;

    /// The entry of a superslab owned by the heap with `tag`.
    #[inline]
    pub const fn owned(tag: u32) -> Entry {
        debug_assert!(tag >= Self::FIRST_TAG && tag < Self::LARGE_BIT);
        Entry(tag)
    }

    /// The entry of the `k`-th chunk of a large mapping.
    #[inline]
    pub const fn large(k: u32) -> Entry {
        debug_assert!(k < Self::MAX_LARGE_CHUNKS);
        Entry(Self::LARGE_BIT | k)
    }

    /// True for any chunk of a large mapping.
    #[inline]
    pub const fn is_large(self) -> bool {
        self.0 & Self::LARGE_BIT != 0
    }

    /// For a large entry, how many chunks back the mapping's header lies.
    #[inline]
    pub const fn large_offset(self) -> usize {
        (self.0 & !Self::LARGE_BIT) as usize
    }

    /// True for a superslab that some heap, or the orphanage, owns.
    #[inline]
    pub const fn is_live_superslab(self) -> bool {
        self.0 == Self::ORPHANED.0 || (self.0 >= Self::FIRST_TAG && !self.is_large())
    }
}

type Leaf = [AtomicU32; LEAF_LEN];

/// The registry. One static instance serves a process; tests create their own.
pub struct PageMap {
    top: [AtomicPtr<Leaf>; TOP_LEN],
    grow: SpinLock<()>,
}

impl core::fmt::Debug for PageMap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let leaves = self
            .top
            .iter()
            .filter(|p| !p.load(Ordering::Relaxed).is_null())
            .count();
        f.debug_struct("PageMap").field("leaves", &leaves).finish()
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
        PageMap {
            top: [const { AtomicPtr::new(core::ptr::null_mut()) }; TOP_LEN],
            grow: SpinLock::new(()),
        }
    }

    /// The entry of the chunk holding `addr`. Any address, mapped or not, may
    /// be asked about.
    #[inline(always)]
    pub fn get(&self, addr: usize) -> Entry {
        let top = addr >> TOP_SHIFT;
        if top >= TOP_LEN {
            return Entry::NONE;
        }
        // SAFETY: `top < TOP_LEN` was checked just above.
        let leaf = unsafe { self.top.get_unchecked(top) }.load(Ordering::Acquire);
        if leaf.is_null() {
            return Entry::NONE;
        }
        let idx = (addr >> CHUNK_SHIFT) & (LEAF_LEN - 1);
        // SAFETY: non-null leaves are never freed and always LEAF_LEN long;
        // `idx` is masked to the leaf length.
        Entry(unsafe { (*leaf).get_unchecked(idx) }.load(Ordering::Acquire))
    }

    /// Sets the entry of every chunk in `start..start+len` to `entry(k)`,
    /// where `k` counts chunks from `start`. Creates leaves as needed.
    ///
    /// Returns false (and changes nothing) if a leaf could not be mapped.
    /// `start` must be chunk aligned and `len` a positive chunk multiple.
    pub fn set_range<P: Pal>(
        &self,
        start: usize,
        len: usize,
        entry: impl Fn(u32) -> Entry,
    ) -> bool {
        debug_assert!(start % CHUNK_SIZE == 0 && len % CHUNK_SIZE == 0 && len > 0);
        let n = len / CHUNK_SIZE;
        if !self.ensure_leaves::<P>(start, n) {
            return false;
        }
        for k in 0..n {
            let addr = start + k * CHUNK_SIZE;
            self.slot(addr).store(entry(k as u32).0, Ordering::Release);
        }
        true
    }

    /// Sets the entry of the one chunk at `chunk`, which must already have a
    /// leaf (it was registered before). Used for ownership changes.
    #[inline]
    pub fn set(&self, chunk: usize, entry: Entry) {
        debug_assert!(chunk % CHUNK_SIZE == 0);
        self.slot(chunk).store(entry.0, Ordering::Release);
    }

    /// Clears the entries of `start..start+len` (the range was registered).
    pub fn clear_range(&self, start: usize, len: usize) {
        let n = len / CHUNK_SIZE;
        for k in 0..n {
            self.slot(start + k * CHUNK_SIZE)
                .store(0, Ordering::Release);
        }
    }

    /// The atomic slot of a chunk whose leaf exists.
    fn slot(&self, addr: usize) -> &AtomicU32 {
        let top = addr >> TOP_SHIFT;
        assert!(
            top < TOP_LEN,
            "hakmem: address {addr:#x} beyond the page map"
        );
        let leaf = self.top[top].load(Ordering::Acquire);
        assert!(
            !leaf.is_null(),
            "hakmem: page map leaf missing for {addr:#x}"
        );
        // SAFETY: the leaf is live forever and the index is masked.
        unsafe { &(*leaf)[(addr >> CHUNK_SHIFT) & (LEAF_LEN - 1)] }
    }

    fn ensure_leaves<P: Pal>(&self, start: usize, n: usize) -> bool {
        let first = start >> TOP_SHIFT;
        let last = (start + (n - 1) * CHUNK_SIZE) >> TOP_SHIFT;
        if last >= TOP_LEN {
            return false;
        }
        for t in first..=last {
            if self.top[t].load(Ordering::Acquire).is_null() {
                let _g = self.grow.lock();
                if self.top[t].load(Ordering::Acquire).is_null() {
                    let bytes = core::mem::size_of::<Leaf>();
                    debug_assert!(bytes % PAGE_SIZE == 0);
                    let Some(mem) = P::map(bytes, PAGE_SIZE) else {
                        return false;
                    };
                    // Zeroed memory is a valid array of AtomicU32 zeroes.
                    self.top[t].store(mem.cast::<Leaf>().as_ptr(), Ordering::Release);
                }
            }
        }
        true
    }

    /// The number of leaves in use (diagnostics).
    pub fn leaves(&self) -> usize {
        self.top
            .iter()
            .filter(|p| !p.load(Ordering::Relaxed).is_null())
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
    fn large_ranges_record_offsets() {
        let m = boxed_map();
        let base = 0x7f00_0000_0000usize;
        assert!(m.set_range::<Linux>(base, 3 * CHUNK_SIZE, Entry::large));
        for k in 0..3 {
            let e = m.get(base + k * CHUNK_SIZE + 12345);
            assert!(e.is_large());
            assert_eq!(e.large_offset(), k);
        }
        assert_eq!(m.get(base + 3 * CHUNK_SIZE), Entry::NONE);
        assert_eq!(m.get(base - 1), Entry::NONE);
        m.clear_range(base, 3 * CHUNK_SIZE);
        assert_eq!(m.get(base), Entry::NONE);
    }

    #[test]
    fn ranges_may_straddle_leaves() {
        let m = boxed_map();
        let leaf_span = CHUNK_SIZE << LEAF_BITS;
        let base = 5 * leaf_span - CHUNK_SIZE;
        assert!(m.set_range::<Linux>(base, 2 * CHUNK_SIZE, |_| Entry::owned(99)));
        assert_eq!(m.get(base), Entry(99));
        assert_eq!(m.get(base + CHUNK_SIZE), Entry(99));
        assert_eq!(m.leaves(), 2);
    }

    #[test]
    fn beyond_47_bits_is_refused() {
        let m = boxed_map();
        assert!(!m.set_range::<Linux>(1 << 47, CHUNK_SIZE, |_| Entry::owned(20)));
    }

    #[test]
    fn entry_kinds_are_disjoint() {
        assert!(!Entry::NONE.is_live_superslab());
        assert!(!Entry::FREE_SUPERSLAB.is_live_superslab());
        assert!(Entry::ORPHANED.is_live_superslab());
        assert!(Entry::owned(Entry::FIRST_TAG).is_live_superslab());
        assert!(!Entry::large(0).is_live_superslab());
        assert_ne!(Entry::NEVER, Entry::large(Entry::MAX_LARGE_CHUNKS - 1).0);
    }

    proptest! {
        /// Model test: the map agrees with a plain map of chunk -> entry.
        #[test]
        fn agrees_with_model(ops in proptest::collection::vec((0usize..64, 1usize..4, 16u32..1000, any::<bool>()), 1..40)) {
            let m = boxed_map();
            let mut model = std::collections::HashMap::new();
            let base = 0x5500_0000_0000usize;
            for (chunk, n, tag, clear) in ops {
                let start = base + chunk * CHUNK_SIZE;
                if clear {
                    // only clear what was set, as callers do
                    if (0..n).all(|k| model.contains_key(&(chunk + k))) {
                        m.clear_range(start, n * CHUNK_SIZE);
                        for k in 0..n { model.remove(&(chunk + k)); }
                    }
                } else {
                    prop_assert!(m.set_range::<Linux>(start, n * CHUNK_SIZE, |_| Entry::owned(tag)));
                    for k in 0..n { model.insert(chunk + k, tag); }
                }
            }
            for c in 0..70usize {
                let want = model.get(&c).copied().unwrap_or(0);
                prop_assert_eq!(m.get(base + c * CHUNK_SIZE + 777).0, want);
            }
        }
    }
}
