//! The header of a large mapping and the mapping's geometry.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use hakmem_pagemap::{Entry, GRANULE};
use hakmem_platform::PAGE_SIZE;

const MAGIC: u64 = 0x6861_6b6d_4c41_5247; // "hakmLARG"

/// The header at the start of every large mapping.
///
/// Invariant: `user` is the pointer handed out (0 while the mapping sits in
/// the cache), `offset = user - base`, `map_len` the mapping's current
/// length; the page-map entry of `user`'s slot is `large(offset / PAGE)`.
#[repr(C)]
#[derive(Debug)]
pub struct LargeHeader {
    magic: u64,
    pub(crate) user: AtomicUsize,
    pub(crate) map_len: AtomicUsize,
    pub(crate) offset: usize,
    /// Three words for the owner of the block (the facade keeps a call-site
    /// stamp here); zero when the block is handed out.
    aux: [AtomicU64; 3],
    /// The mapping's *family*: blocks carved from one `mmap` (and never
    /// grown or moved since) share it, and only they lie in one kernel
    /// mapping (VMA), so only adjacent cached pieces of one family may be
    /// merged again (a merged range must stay `mremap`-able).
    pub(crate) family: AtomicU64,
}

impl LargeHeader {
    /// Writes a header at `base`.
    ///
    /// # Safety
    /// `base` must start a mapping of at least one page that the caller owns.
    pub(crate) unsafe fn write(base: usize, len: usize, offset: usize, family: u64) {
        // SAFETY: per the contract.
        unsafe {
            (base as *mut LargeHeader).write(LargeHeader {
                magic: MAGIC,
                user: AtomicUsize::new(base + offset),
                map_len: AtomicUsize::new(len),
                offset,
                aux: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
                family: AtomicU64::new(family),
            })
        };
    }

    /// Writes the header of a cached piece at `base`: a one-page offset and
    /// no user pointer (a `free` of its pointer is a double free).
    ///
    /// # Safety
    /// `base` must start a mapping of at least one page that the cache owns.
    pub(crate) unsafe fn write_cached(base: usize, len: usize, family: u64) {
        // SAFETY: per the contract.
        unsafe { Self::write(base, len, PAGE_SIZE, family) };
        // SAFETY: just written, in memory the cache owns.
        unsafe { &*(base as *const LargeHeader) }
            .user
            .store(0, Ordering::Release);
    }

    /// The mapping's family (see the field).
    #[inline]
    pub fn family(&self) -> u64 {
        self.family.load(Ordering::Relaxed)
    }

    /// The header of the mapping whose user pointer is `p`, if `entry` (the
    /// page-map entry of `p`'s slot) says `p` is one and the header agrees.
    #[inline]
    pub(crate) fn find(entry: Entry, p: *const u8) -> Option<&'static LargeHeader> {
        if !entry.is_large() || !entry.large_matches(p as usize) {
            return None;
        }
        let base = (p as usize).checked_sub(entry.large_offset() * PAGE_SIZE)?;
        // SAFETY: the entry says a live (or cached) large mapping has the
        // pointer on exactly this page of this slot, `k` pages after its
        // header: `p` is that pointer, so `base` is the mapping's first page.
        let h = unsafe { &*(base as *const LargeHeader) };
        (h.magic == MAGIC && h.user.load(Ordering::Acquire) == p as usize).then_some(h)
    }

    /// True if `entry`/`p` name a large block that was freed and whose
    /// mapping sits in the cache (so a `free` of `p` is a double free).
    pub(crate) fn is_cached_user(entry: Entry, p: *const u8) -> bool {
        if !entry.is_large() || !entry.large_matches(p as usize) {
            return false;
        }
        let Some(base) = (p as usize).checked_sub(entry.large_offset() * PAGE_SIZE) else {
            return false;
        };
        // SAFETY: as in `find`: the entry was made for exactly this pointer,
        // so `base` is the first page of a mapping the cache still holds.
        let h = unsafe { &*(base as *const LargeHeader) };
        h.magic == MAGIC && h.user.load(Ordering::Acquire) == 0
    }

    /// Checks the header of a dirty cached mapping: the magic, no user
    /// pointer (it was freed), the cache's length and the one-page offset
    /// every cached mapping has.
    ///
    /// # Safety
    /// `base` must start a mapping of at least one page that stays mapped
    /// for the call (one the cache holds, with its lock held).
    pub(crate) unsafe fn check_cached(
        base: usize,
        len: usize,
        family: u64,
    ) -> Result<(), &'static str> {
        // SAFETY: per the contract, `base` is the first page of a live
        // mapping, which is where a header lives; its fields are read only
        // (atomically where other threads may read them too).
        let h = unsafe { &*(base as *const LargeHeader) };
        if h.magic != MAGIC {
            return Err("a dirty cached mapping has no large header");
        }
        if h.user.load(Ordering::Acquire) != 0 {
            return Err("a cached mapping's header still names a user pointer");
        }
        if h.map_len() != len {
            return Err("a cached mapping's header has another length");
        }
        if h.offset != PAGE_SIZE {
            return Err("a cached mapping's header has an offset other than one page");
        }
        if h.family() != family {
            return Err("a cached mapping's header names another family");
        }
        Ok(())
    }

    /// The mapping's start.
    #[inline]
    pub fn base(&self) -> usize {
        self as *const Self as usize
    }

    /// Bytes the user may use: up to the end of the mapping.
    #[inline]
    pub fn usable(&self) -> usize {
        self.map_len() - self.offset
    }

    /// The alignment of the user pointer.
    #[inline]
    pub fn alignment(&self) -> usize {
        1 << (self.base() + self.offset).trailing_zeros()
    }

    /// Mapping length.
    #[inline]
    pub fn map_len(&self) -> usize {
        self.map_len.load(Ordering::Relaxed)
    }

    /// Owner-defined word `i` (0 to 2) of a live block.
    #[inline]
    pub fn aux(&self, i: usize) -> u64 {
        self.aux[i].load(Ordering::Relaxed)
    }

    /// Sets owner-defined word `i` (0 to 2) of a live block.
    #[inline]
    pub fn set_aux(&self, i: usize, v: u64) {
        self.aux[i].store(v, Ordering::Relaxed)
    }

    /// Offset of the user pointer from the mapping's start.
    #[inline]
    pub fn offset(&self) -> usize {
        self.offset
    }
}

/// What an allocation produced.
#[derive(Debug, Clone, Copy)]
pub struct LargeAlloc {
    /// The user pointer.
    pub ptr: NonNull<u8>,
    /// True if the memory reads zero (fresh from the OS, or purged).
    pub zeroed: bool,
    /// The mapping length.
    pub map_len: usize,
}

/// Mapping geometry of a request: the user pointer's offset, the mapping's
/// length and its alignment; `None` if it cannot be represented.
///
/// The offset is one page (the header's) for alignments up to a page, and
/// the alignment itself above (so a mapping aligned to it puts the user
/// pointer on it); the address space spent on alignment is thus below one
/// alignment. A length within an eighth of a huge page (256 KiB) below a
/// multiple of one that reaches `huge_from` is rounded up to it.
///
/// Every mapping leaves at least [`GRANULE`] bytes after the user pointer.
/// That keeps the user pointers of two live mappings at least a slot apart
/// (the next mapping starts after this one's usable bytes and puts its own
/// pointer at least a page further), so no two share a page-map entry.
pub(crate) fn geometry(
    size: usize,
    align: usize,
    huge_from: usize,
) -> Option<(usize, usize, usize)> {
    debug_assert!(align.is_power_of_two());
    let offset = align.max(PAGE_SIZE);
    let need = offset.checked_add(size.max(GRANULE))?;
    let mut len = need.checked_add(PAGE_SIZE - 1)? & !(PAGE_SIZE - 1);
    if len > isize::MAX as usize || offset / PAGE_SIZE >= Entry::MAX_LARGE_OFFSET as usize {
        return None;
    }
    // A mapping a little short of a huge-page multiple is rounded up to it:
    // its last 2 MiB then fault in as one huge page instead of up to 512
    // small ones, for at most an eighth of a huge page more.
    let chunk = hakmem_platform::CHUNK_SIZE;
    if let Some(rounded) = len.checked_next_multiple_of(chunk) {
        if rounded >= huge_from && rounded - len <= chunk / 8 && rounded <= isize::MAX as usize {
            len = rounded;
        }
    }
    let map_align = if len >= huge_from {
        offset.max(hakmem_platform::CHUNK_SIZE)
    } else {
        offset
    };
    Some((offset, len, map_align))
}

/// The mapping length a block whose mapping starts at `base` gets when it
/// grows to `need` bytes (page multiple, header and offset included): its
/// end rounded up to a huge-page boundary ([`CHUNK_SIZE`]) once the
/// rounded length reaches `huge_from`, else `need`. A block that grows by
/// `realloc` is likely to grow again; ending on a boundary lets every 2 MiB
/// range it grows into fault in as one huge page (and move as one with
/// `mremap`) instead of 512 small ones. A mapping about to be made passes
/// `base` 0 (it is mapped huge-page aligned then).
///
/// [`CHUNK_SIZE`]: hakmem_platform::CHUNK_SIZE
pub(crate) fn grown_len(base: usize, need: usize, huge_from: usize) -> usize {
    let chunk = hakmem_platform::CHUNK_SIZE;
    match base
        .checked_add(need)
        .and_then(|end| end.checked_next_multiple_of(chunk))
    {
        Some(end) if end - base >= huge_from && end - base <= isize::MAX as usize => end - base,
        _ => need,
    }
}
