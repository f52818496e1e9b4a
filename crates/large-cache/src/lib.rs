//! The large box: blocks above the mid tier, each in its own mapping.
//!
//! A large mapping starts on a chunk (2 MiB) boundary and is a whole number
//! of chunks long. Its [`LargeHeader`] sits at the start and the user pointer
//! one page (or one alignment) after it; the page-map entry of the user
//! pointer's slot is `large(k)`, pointing back `k` slots to the header. Only
//! that one slot is registered: a pointer anywhere else in the mapping is not
//! a block start and is reported as invalid.
//!
//! Freed mappings are kept in a small cache, bounded in bytes and in entries
//! (the policy sets both), and reused for later requests of a similar size;
//! the rest go straight back to the OS, so RSS falls when a program frees its
//! large blocks.
#![cfg_attr(not(test), no_std)]

use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use hakmem_pagemap::{Entry, PageMap, GRANULE, GRANULE_SHIFT};
use hakmem_platform::{Pal, SpinLock, CHUNK_SIZE, PAGE_SIZE};

const MAGIC: u64 = 0x6861_6b6d_4c41_5247; // "hakmLARG"
const CACHE_SLOTS: usize = 16;

/// The header at the start of every large mapping.
#[repr(C)]
#[derive(Debug)]
pub struct LargeHeader {
    magic: u64,
    /// The pointer handed out, or 0 while the mapping sits in the cache.
    user: AtomicUsize,
    /// Mapping length (a chunk multiple); grows with in-place reallocation.
    map_len: AtomicUsize,
    /// Offset of the user pointer from the mapping start.
    offset: usize,
}

impl LargeHeader {
    /// Bytes the user may use: up to the end of the mapping.
    #[inline]
    pub fn usable(&self) -> usize {
        self.map_len() - self.offset
    }

    /// The user pointer's alignment guarantee (the offset's alignment within
    /// a chunk-aligned mapping).
    #[inline]
    pub fn alignment(&self) -> usize {
        1 << self
            .offset
            .trailing_zeros()
            .min(CHUNK_SIZE.trailing_zeros())
    }

    /// Mapping length.
    #[inline]
    pub fn map_len(&self) -> usize {
        self.map_len.load(Ordering::Relaxed)
    }
}

/// What an allocation produced.
#[derive(Debug, Clone, Copy)]
pub struct LargeAlloc {
    /// The user pointer.
    pub ptr: NonNull<u8>,
    /// True if the memory comes straight from the OS (already zero).
    pub fresh: bool,
    /// The mapping length.
    pub map_len: usize,
}

#[derive(Clone, Copy)]
struct Cached {
    base: usize,
    len: usize,
}

struct Cache {
    slots: [Cached; CACHE_SLOTS],
    n: usize,
    bytes: usize,
}

/// Limits of the cache of freed mappings (from the policy).
#[derive(Debug, Clone, Copy)]
pub struct CacheLimits {
    /// Total bytes kept.
    pub budget: usize,
    /// Largest mapping kept.
    pub max_block: usize,
}

/// The large tier.
pub struct Large<P: Pal> {
    cache: SpinLock<Cache>,
    _pal: PhantomData<P>,
}

// SAFETY: the cache is only touched under its lock; cached mappings belong
// to the cache alone.
unsafe impl<P: Pal> Sync for Large<P> {}

impl<P: Pal> core::fmt::Debug for Large<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let g = self.cache.lock();
        f.debug_struct("Large")
            .field("cached", &g.n)
            .field("cached_bytes", &g.bytes)
            .finish()
    }
}

impl<P: Pal> Default for Large<P> {
    fn default() -> Self {
        Self::new()
    }
}

/// Mapping geometry for a request: (offset of the user pointer, mapping
/// length, mapping alignment), or None if it cannot be represented.
fn geometry(size: usize, align: usize) -> Option<(usize, usize, usize)> {
    debug_assert!(align.is_power_of_two());
    let (offset, map_align) = if align > CHUNK_SIZE {
        (align, align)
    } else {
        (align.max(PAGE_SIZE), CHUNK_SIZE)
    };
    let need = offset.checked_add(size)?;
    let len = need.checked_add(CHUNK_SIZE - 1)? & !(CHUNK_SIZE - 1);
    if len > isize::MAX as usize || (offset >> GRANULE_SHIFT) >= Entry::MAX_LARGE_OFFSET as usize {
        return None;
    }
    Some((offset, len, map_align))
}

impl<P: Pal> Large<P> {
    /// An empty large tier.
    pub const fn new() -> Self {
        Large {
            cache: SpinLock::new(Cache {
                slots: [Cached { base: 0, len: 0 }; CACHE_SLOTS],
                n: 0,
                bytes: 0,
            }),
            _pal: PhantomData,
        }
    }

    /// Allocates `size` bytes aligned to `align` (a power of two).
    /// `None` means out of memory (or an impossible size).
    pub fn alloc(&self, map: &PageMap, size: usize, align: usize) -> Option<LargeAlloc> {
        let (offset, len, map_align) = geometry(size, align)?;
        if offset == PAGE_SIZE {
            if let Some(a) = self.take_cached(len, offset) {
                return Some(a);
            }
        }
        let base = P::map(len, map_align)?;
        let b = base.as_ptr() as usize;
        if !map.reserve::<P>(b + offset, 1) {
            // SAFETY: just mapped, unknown to anyone.
            unsafe { P::unmap(base, len) };
            return None;
        }
        // SAFETY: the mapping is ours and at least one page long.
        unsafe { Self::write_header(b, len, offset) };
        map.set(b + offset, Entry::large((offset >> GRANULE_SHIFT) as u32));
        Some(LargeAlloc {
            // SAFETY: base + offset lies inside the mapping, non-null.
            ptr: unsafe { NonNull::new_unchecked((b + offset) as *mut u8) },
            fresh: true,
            map_len: len,
        })
    }

    unsafe fn write_header(base: usize, len: usize, offset: usize) {
        // SAFETY: the caller owns the mapping at base.
        unsafe {
            (base as *mut LargeHeader).write(LargeHeader {
                magic: MAGIC,
                user: AtomicUsize::new(base + offset),
                map_len: AtomicUsize::new(len),
                offset,
            })
        };
    }

    fn take_cached(&self, len: usize, offset: usize) -> Option<LargeAlloc> {
        let mut g = self.cache.lock();
        let mut best: Option<usize> = None;
        for i in 0..g.n {
            let c = g.slots[i];
            // reuse a mapping at most 25% larger than needed
            if c.len >= len && c.len - len <= len / 4 && best.is_none_or(|b| g.slots[b].len > c.len)
            {
                best = Some(i);
            }
        }
        let i = best?;
        let c = g.slots[i];
        let last = g.n - 1;
        g.slots[i] = g.slots[last];
        g.n -= 1;
        g.bytes -= c.len;
        drop(g);
        // SAFETY: the cached mapping is ours now; only page-offset mappings
        // are cached, so its page-map entry is still right and only the
        // header needs rewriting.
        unsafe { Self::write_header(c.base, c.len, offset) };
        Some(LargeAlloc {
            // SAFETY: inside the mapping.
            ptr: unsafe { NonNull::new_unchecked((c.base + offset) as *mut u8) },
            fresh: false,
            map_len: c.len,
        })
    }

    /// Finds the header of the large block `p`, if `p` is exactly a pointer
    /// this tier handed out and has not been freed.
    ///
    /// `entry` must be `map.get(p)` (the entry of `p`'s own chunk).
    #[inline]
    pub fn lookup(entry: Entry, p: *const u8) -> Option<&'static LargeHeader> {
        if !entry.is_large() {
            return None;
        }
        let slot = (p as usize) & !(GRANULE - 1);
        let base = slot.checked_sub(entry.large_offset() * GRANULE)?;
        // SAFETY: the page map says `base` starts a live large mapping whose
        // first page holds a header.
        let h = unsafe { &*(base as *const LargeHeader) };
        (h.magic == MAGIC && h.user.load(Ordering::Acquire) == p as usize).then_some(h)
    }

    /// Frees a large block whose header [`Large::lookup`] returned.
    ///
    /// # Safety
    /// `h` must come from `lookup` for a block the caller may free, and
    /// must not be used afterwards.
    pub unsafe fn free(&self, map: &PageMap, h: &LargeHeader, limits: CacheLimits) {
        let base = h as *const LargeHeader as usize;
        let len = h.map_len();
        // Only page-offset mappings are cached: those are the ones
        // `from_cache` serves, and their page-map entry stays valid.
        if h.offset == PAGE_SIZE && len <= limits.max_block && len <= limits.budget {
            // Marking the header unused makes a second free of the same
            // pointer detectable.
            h.user.store(0, Ordering::Release);
            let evicted = {
                let mut g = self.cache.lock();
                let mut out = [Cached { base: 0, len: 0 }; CACHE_SLOTS];
                let mut k = 0;
                // make room: evict oldest entries until the new one fits
                while g.n > 0 && (g.n == CACHE_SLOTS || g.bytes + len > limits.budget) {
                    out[k] = g.slots[0];
                    k += 1;
                    g.bytes -= g.slots[0].len;
                    let n = g.n;
                    g.slots.copy_within(1..n, 0);
                    g.n -= 1;
                }
                let n = g.n;
                g.slots[n] = Cached { base, len };
                g.n += 1;
                g.bytes += len;
                (out, k)
            };
            for c in &evicted.0[..evicted.1] {
                Self::unmap(map, c.base, c.len);
            }
        } else {
            Self::unmap(map, base, len);
        }
    }

    fn unmap(map: &PageMap, base: usize, len: usize) {
        // SAFETY: the mapping is live until we unmap it below.
        let offset = unsafe { (*(base as *const LargeHeader)).offset };
        map.set(base + offset, Entry::NONE);
        // SAFETY: the mapping is unreferenced and unregistered.
        unsafe { P::unmap(NonNull::new_unchecked(base as *mut u8), len) };
    }

    /// Tries to grow a large block in place so that it can hold `new_size`
    /// bytes (extending its mapping where the address space after it is
    /// free). Returns true on success.
    ///
    /// # Safety
    /// `h` must be the live header of a block the caller owns.
    pub unsafe fn grow_in_place(h: &LargeHeader, new_size: usize) -> bool {
        let Some(need) = h.offset.checked_add(new_size) else {
            return false;
        };
        let Some(new_len) = need
            .checked_add(CHUNK_SIZE - 1)
            .map(|v| v & !(CHUNK_SIZE - 1))
        else {
            return false;
        };
        let old_len = h.map_len();
        if new_len <= old_len {
            return true;
        }
        if new_len > isize::MAX as usize {
            return false;
        }
        let base = h as *const LargeHeader as usize;
        // SAFETY: the mapping is the caller's; mremap without MAYMOVE only
        // extends it if the following range is free.
        let ok = unsafe {
            P::remap(
                NonNull::new_unchecked(base as *mut u8),
                old_len,
                new_len,
                false,
            )
            .is_some()
        };
        if !ok {
            return false;
        }
        h.map_len.store(new_len, Ordering::Relaxed);
        true
    }

    /// Unmaps every cached mapping.
    pub fn trim(&self, map: &PageMap) {
        loop {
            let c = {
                let mut g = self.cache.lock();
                if g.n == 0 {
                    return;
                }
                g.n -= 1;
                let c = g.slots[g.n];
                g.bytes -= c.len;
                c
            };
            Self::unmap(map, c.base, c.len);
        }
    }

    /// (entries, bytes) held in the cache now.
    pub fn cached(&self) -> (usize, usize) {
        let g = self.cache.lock();
        (g.n, g.bytes)
    }

    /// The cache lock, for the fork handlers.
    pub fn fork_lock(&self) -> &SpinLock<impl Sized> {
        &self.cache
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hakmem_platform::Linux;
    use proptest::prelude::*;

    const LIMITS: CacheLimits = CacheLimits {
        budget: 16 << 20,
        max_block: 8 << 20,
    };

    fn setup() -> (&'static PageMap, Large<Linux>) {
        (Box::leak(Box::new(PageMap::new())), Large::new())
    }

    #[test]
    fn blocks_are_registered_aligned_and_writable() {
        let (map, large) = setup();
        for &(size, align) in &[
            (1 << 20, 16),
            (3 << 20, 4096),
            (5 << 20, 1 << 16),
            (1 << 20, 4 << 20),
            (100, 64 << 20),
        ] {
            let a = large.alloc(map, size, align).unwrap();
            let p = a.ptr.as_ptr();
            assert_eq!(p as usize % align, 0, "size {size} align {align}");
            assert!(a.fresh);
            // SAFETY: size bytes are ours.
            unsafe { core::ptr::write_bytes(p, 0xcd, size) };
            let e = map.get(p as usize);
            let h = Large::<Linux>::lookup(e, p).expect("registered");
            assert!(h.usable() >= size);
            assert!(h.alignment() >= align.min(CHUNK_SIZE));
            // only the user pointer's slot is registered
            let last = p as usize + size - 1;
            if last >> GRANULE_SHIFT != p as usize >> GRANULE_SHIFT {
                assert_eq!(map.get(last), Entry::NONE);
            }
            assert!(
                Large::<Linux>::lookup(e, p.wrapping_add(16)).is_none(),
                "interior pointer"
            );
            // SAFETY: freeing our block once.
            unsafe {
                large.free(
                    map,
                    h,
                    CacheLimits {
                        budget: 0,
                        max_block: 0,
                    },
                )
            };
            assert_eq!(map.get(p as usize), Entry::NONE);
        }
    }

    #[test]
    fn cache_reuses_and_stays_within_budget() {
        let (map, large) = setup();
        let a = large.alloc(map, 3 << 20, 16).unwrap();
        let p = a.ptr.as_ptr();
        let h = Large::<Linux>::lookup(map.get(p as usize), p).unwrap();
        // SAFETY: freeing once.
        unsafe { large.free(map, h, LIMITS) };
        assert!(
            Large::<Linux>::lookup(map.get(p as usize), p).is_none(),
            "freed block no longer valid"
        );
        assert_eq!(large.cached(), (1, 4 << 20));
        let b = large.alloc(map, 3 << 20, 16).unwrap();
        assert_eq!(b.ptr, a.ptr);
        assert!(!b.fresh);
        assert_eq!(large.cached(), (0, 0));
        // fill beyond the budget: the cache never exceeds it
        let blocks: Vec<_> = (0..10)
            .map(|_| large.alloc(map, 3 << 20, 16).unwrap())
            .collect();
        for x in blocks.iter().chain(std::iter::once(&b)) {
            let p = x.ptr.as_ptr();
            let h = Large::<Linux>::lookup(map.get(p as usize), p).unwrap();
            // SAFETY: each freed once.
            unsafe { large.free(map, h, LIMITS) };
            assert!(large.cached().1 <= LIMITS.budget);
        }
        assert_eq!(large.cached(), (4, 16 << 20));
        // too-large blocks bypass the cache
        let big = large.alloc(map, 9 << 20, 16).unwrap();
        let bp = big.ptr.as_ptr();
        // SAFETY: freeing once.
        unsafe {
            large.free(
                map,
                Large::<Linux>::lookup(map.get(bp as usize), bp).unwrap(),
                LIMITS,
            )
        };
        assert_eq!(large.cached(), (4, 16 << 20));
        assert_eq!(map.get(bp as usize), Entry::NONE);
        large.trim(map);
        assert_eq!(large.cached(), (0, 0));
    }

    #[test]
    fn grows_in_place_when_the_space_after_is_free() {
        let (map, large) = setup();
        // reserve a hole after a block by mapping and unmapping a bigger range
        let a = large.alloc(map, 1 << 20, 16).unwrap();
        let p = a.ptr.as_ptr();
        let h = Large::<Linux>::lookup(map.get(p as usize), p).unwrap();
        let old = h.map_len();
        // SAFETY: our live block.
        let grown = unsafe { Large::<Linux>::grow_in_place(h, 7 << 20) };
        if grown {
            assert!(h.usable() >= 7 << 20);
            // SAFETY: usable bytes are ours.
            unsafe { core::ptr::write_bytes(p, 1, 7 << 20) };
            assert!(Large::<Linux>::lookup(map.get(p as usize), p).is_some());
        } else {
            assert_eq!(h.map_len(), old);
        }
        // SAFETY: freeing once.
        unsafe { large.free(map, h, LIMITS) };
    }

    #[test]
    fn aligned_blocks_are_not_recycled_under_another_offset() {
        let (map, large) = setup();
        let a = large.alloc(map, 3 << 20, 1 << 16).unwrap();
        let p = a.ptr.as_ptr();
        // SAFETY: freeing once.
        unsafe {
            large.free(
                map,
                Large::<Linux>::lookup(map.get(p as usize), p).unwrap(),
                LIMITS,
            )
        };
        assert_eq!(map.get(p as usize), Entry::NONE);
        let b = large.alloc(map, 3 << 20, 16).unwrap();
        let q = b.ptr.as_ptr();
        assert!(Large::<Linux>::lookup(map.get(q as usize), q).is_some());
    }

    #[test]
    fn impossible_sizes_fail() {
        let (map, large) = setup();
        assert!(large.alloc(map, usize::MAX - 10, 16).is_none());
        assert!(large.alloc(map, isize::MAX as usize, 16).is_none());
        assert!(
            large.alloc(map, 1 << 50, 16).is_none(),
            "more than the address space"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// Model test: live blocks never overlap, keep their contents, and the
        /// cache stays within its limits.
        #[test]
        fn large_matches_model(ops in proptest::collection::vec((any::<bool>(), 1usize..(6 << 20), 0usize..8), 1..40)) {
            let (map, large) = setup();
            let mut live: Vec<(usize, usize, u8)> = Vec::new();
            for (i, (alloc, size, pick)) in ops.into_iter().enumerate() {
                if alloc || live.is_empty() {
                    let a = large.alloc(map, size, 16).unwrap();
                    let p = a.ptr.as_ptr() as usize;
                    for &(q, n, _) in &live {
                        prop_assert!(p + size <= q || q + n <= p, "overlap");
                    }
                    let tag = i as u8;
                    // SAFETY: size bytes are ours.
                    unsafe { core::ptr::write_bytes(p as *mut u8, tag, size) };
                    live.push((p, size, tag));
                } else {
                    let (p, n, tag) = live.swap_remove(pick % live.len());
                    // SAFETY: reading our own live block.
                    let s = unsafe { core::slice::from_raw_parts(p as *const u8, n) };
                    prop_assert!(s.iter().all(|&b| b == tag));
                    let h = Large::<Linux>::lookup(map.get(p), p as *const u8).unwrap();
                    // SAFETY: freeing once.
                    unsafe { large.free(map, h, LIMITS) };
                }
                prop_assert!(large.cached().1 <= LIMITS.budget);
            }
            for (p, _, _) in live {
                let h = Large::<Linux>::lookup(map.get(p), p as *const u8).unwrap();
                // SAFETY: freeing once.
                unsafe { large.free(map, h, LIMITS) };
            }
            large.trim(map);
        }
    }
}
