//! Secure mode (`HAKMEM_SECURE=1`): catches what the default mode cannot
//! afford to, at the price of a checked fast path.
//!
//! * **Overflow**: every tiny and mid block gives up its last 8 bytes to a
//!   canary (`CANARY ^ address`); the usable size is the block size minus 8.
//!   `free` checks the canary: a write past the usable size (even one byte)
//!   is reported as a heap overflow.
//! * **Write after free**: `free` fills the block (past its two list words,
//!   up to the canary) with a poison byte and tags the canary slot (the
//!   canary's complement); when the block is handed out again the poison is
//!   checked: any byte written to the free block is reported.
//!
//! Secure mode keeps the thread bins (the mid bins stay off: their blocks
//! take the checked slow paths). The free mark still catches double frees:
//! set when a block enters a bin, cleared when it leaves one. What differs
//! is that the default fast paths never serve a call while secure mode or
//! the debug ring is on ([`checked`]): `malloc`'s size limit is 0
//! (`observe::TINY_LIMIT`) and the heaps' block-start tests always fail
//! (`HeapEnv::secure`), so both leave their fast paths at an exit they
//! already have. There the hand-written C `malloc`/`free` take their
//! *secure fast path* (the same bins, with the canary and poison checks and
//! the ring's event inline, from [`SECURE_BINS`], [`TINY_INFO`] and
//! [`CANARY`]); the rest, and the compiled `malloc`/`free`, take the
//! *checked fast paths* (`api::malloc_checked`, `api::free_checked_fast`),
//! which do the same in Rust. Anything else goes on to the slow paths.
//! Large blocks (their own mappings) get a tail canary after the size asked
//! for ([`set_large_canary`], checked by [`check_large`] at `free` and
//! `realloc`). Its cost is measured with callgrind (README, "Misuse").

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use crate::report::{misuse, Misuse};

/// True in secure mode (read by the hand-written C `free`: its secure fast
/// path). Read-only outside this module.
pub static SECURE_ON: Flag = Flag(AtomicBool::new(false));
static ON: &Flag = &SECURE_ON;

/// The process's canary key (a block's canary is this XOR its address).
/// Read-only outside this module; set once, at start-up, before any block
/// exists.
#[repr(transparent)]
#[derive(Debug)]
pub struct Canary(AtomicU64);

/// The canary key, read by the hand-written C `malloc` and `free`.
pub static CANARY: Canary = Canary(AtomicU64::new(0));

const POISON_BYTE: u8 = 0xDF;
/// A word of poison (what a freed block's body holds).
pub const POISON_WORD: u64 = u64::from_ne_bytes([POISON_BYTE; 8]);

/// Bytes at the end of each small block that secure mode keeps for itself.
pub(crate) const TAIL: usize = 8;

/// A flag the hand-written C `malloc` reads (`hakmem-preload`): true while
/// the checked fast paths serve (secure mode or the debug ring is on).
/// Read-only outside this module; whatever it says, every path stays
/// correct (the checked fast path serves any mode, and the default fast
/// paths are closed by `TINY_LIMIT` and the block tests, not by it).
#[repr(transparent)]
#[derive(Debug)]
pub struct Flag(AtomicBool);

impl Flag {
    /// The flag's value.
    #[inline(always)]
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// True while secure mode or the debug ring is on: the calls the default
/// fast paths would serve are served by the checked fast paths.
pub static CHECKED: Flag = Flag(AtomicBool::new(false));

/// True while the checked fast paths serve (see [`CHECKED`]).
#[inline(always)]
pub(crate) fn checked() -> bool {
    CHECKED.get()
}

/// What the checked fast paths need of a tiny class, 32 bytes (a bin's
/// size) per class, so that a bin offset indexes it: the block-start test
/// (`Bin::block_test` of the class's size and blocks per slot, which the
/// heaps' bins carry in the default mode but not in the checked modes) and
/// the block size.
#[repr(C, align(32))]
#[derive(Debug, Clone, Copy)]
pub struct TinyInfo {
    /// The block-start test: an offset `x` in a slot is a block start when
    /// `mul.wrapping_mul(x) < limit`.
    pub mul: u64,
    /// See [`TinyInfo::mul`].
    pub limit: u64,
    /// The block size.
    pub size: usize,
}

const _: () = assert!(core::mem::size_of::<TinyInfo>() == crate::classes::BIN_BYTES);

/// Byte offset of [`TinyInfo::mul`] (the hand-written C `free` reads it).
pub const INFO_MUL_OFFSET: usize = core::mem::offset_of!(TinyInfo, mul);
/// Byte offset of [`TinyInfo::limit`].
pub const INFO_LIMIT_OFFSET: usize = core::mem::offset_of!(TinyInfo, limit);
/// Byte offset of [`TinyInfo::size`].
pub const INFO_SIZE_OFFSET: usize = core::mem::offset_of!(TinyInfo, size);

/// [`TinyInfo`] of every tiny class, by class.
pub static TINY_INFO: [TinyInfo; hakmem_tiny_sll::TINY_CLASSES] = {
    let sizes = hakmem_tiny_sll::classes::TINY_SIZES;
    let mut t = [TinyInfo {
        mul: 0,
        limit: 0,
        size: 0,
    }; hakmem_tiny_sll::TINY_CLASSES];
    let mut c = 0;
    while c < t.len() {
        let size = sizes[c] as usize;
        let per_slot = hakmem_superslab::blocks_per_slot(size);
        let (mul, limit) = hakmem_tiny_sll::Bin::block_test(size as u64, per_slot as u64);
        t[c] = TinyInfo { mul, limit, size };
        c += 1;
    }
    t
};

/// The largest request the checked fast path serves in secure mode (its
/// block, with the canary, is a tiny one).
pub const SECURE_TINY_MAX: usize = hakmem_tiny_sll::TINY_MAX - TAIL;
const _: () = assert!(crate::observe::SECURE_BOUND == SECURE_TINY_MAX + 1);

/// The bin offset (`class * BIN_BYTES`) of the tiny class that serves a
/// request of `size` bytes in secure mode (`max(size + 8, 32)`), by size up
/// to [`SECURE_TINY_MAX`]: one load on the checked fast path.
pub static SECURE_BINS: [u16; SECURE_TINY_MAX + 1] = {
    let sizes = hakmem_tiny_sll::classes::TINY_SIZES;
    let mut t = [0u16; SECURE_TINY_MAX + 1];
    let mut size = 0;
    while size < t.len() {
        let req = if size + TAIL < 32 { 32 } else { size + TAIL };
        let mut c = 0;
        while (sizes[c] as usize) < req {
            c += 1;
        }
        t[size] = (c * crate::classes::BIN_BYTES) as u16;
        size += 1;
    }
    t
};

/// The bin offset of the tiny class serving a secure-mode request of
/// `size` bytes (at most [`SECURE_TINY_MAX`]).
#[inline(always)]
pub(crate) fn secure_bin(size: usize) -> usize {
    debug_assert!(size <= SECURE_TINY_MAX);
    SECURE_BINS[size.min(SECURE_TINY_MAX)] as usize
}

/// The bin offsets of the tiny classes are below this.
pub const TINY_BIN_BYTES: usize = hakmem_tiny_sll::TINY_CLASSES * crate::classes::BIN_BYTES;
const _: () = assert!(hakmem_tiny_sll::TINY_CLASSES.is_power_of_two());

/// [`tiny_info`] of an offset known to be a tiny class's bin offset (below
/// [`TINY_BIN_BYTES`]): no bounds test (the class number is masked).
#[inline(always)]
pub(crate) fn tiny_info_of(off: usize) -> &'static TinyInfo {
    debug_assert!(off < TINY_BIN_BYTES);
    &TINY_INFO[(off / crate::classes::BIN_BYTES) & (hakmem_tiny_sll::TINY_CLASSES - 1)]
}

/// Turns secure mode on (at start-up, before any block exists).
pub(crate) fn enable(seed: u64) {
    CANARY.0.store(
        seed.rotate_left(17) ^ 0x5EC0_5EC0_5EC0_5EC0,
        Ordering::Relaxed,
    );
    ON.0.store(true, Ordering::Release);
    refresh_special();
    crate::observe::set_secure(true);
}

/// Recomputes [`CHECKED`] after secure mode or the ring was switched (at
/// start-up, before any block exists), and the fast paths' limit with it.
pub(crate) fn refresh_checked() {
    let on = on() || crate::ring::on();
    CHECKED.0.store(on, Ordering::Release);
    crate::observe::set_checked(on);
}

/// True in secure mode.
#[inline(always)]
pub(crate) fn on() -> bool {
    ON.get()
}

/// Why the cross-thread `free` path leaves its short cut, one bit each
/// (0: it keeps it): secure mode, the debug ring ([`CHECK`]: every such free
/// goes to `api::free_general`, which checks or records it) and the
/// profiler ([`PROF`]: one in 2^shift is timed). One word, read once: the
/// short cut tests it and, only when it is not 0, which bits are set.
static SPECIAL: AtomicU8 = AtomicU8::new(0);

/// [`special`]'s bit for secure mode or the debug ring.
pub(crate) const CHECK: u8 = 1;
/// [`special`]'s bit for the profiler.
pub(crate) const PROF: u8 = 2;

/// Why frees must leave the short cut: a mask of [`CHECK`] and [`PROF`]
/// (see [`SPECIAL`]), 0 while none is on.
#[inline(always)]
pub(crate) fn special() -> u8 {
    SPECIAL.load(Ordering::Relaxed)
}

/// Recomputes [`special`] after secure mode, the ring or the profiler was
/// switched.
pub(crate) fn refresh_special() {
    let check = on() || crate::ring::on();
    let bits = if check { CHECK } else { 0 } | if crate::profile::on() { PROF } else { 0 };
    SPECIAL.store(bits, Ordering::Release);
}

/// Bytes of a small block of `block_size` the user may use.
#[inline]
pub(crate) fn usable(block_size: usize) -> usize {
    if on() {
        block_size - TAIL
    } else {
        block_size
    }
}

/// The request size to look a class up for, making room for the canary
/// (and at least 32 bytes, so the canary never shares a word with the free
/// list's two words).
#[inline]
pub(crate) fn request(size: usize) -> usize {
    if on() {
        size.saturating_add(TAIL).max(32)
    } else {
        size
    }
}

#[inline(always)]
fn canary(p: *const u8) -> u64 {
    CANARY.0.load(Ordering::Relaxed) ^ p as u64
}

/// The tag of a block poisoned by a free: the complement of its canary
/// (one instruction from the canary both paths compute anyway).
#[inline(always)]
fn poison_tag(canary: u64) -> u64 {
    !canary
}

/// True if the `len` bytes at `body` all hold the poison byte. `len` is a
/// multiple of 8 (block bodies are multiples of 16 bytes, less the 16 list
/// bytes and the 8-byte tag): word by word, stopping at the first
/// difference.
///
/// # Safety
/// `body..body + len` must be readable and 8-aligned.
#[inline(always)]
unsafe fn still_poisoned(body: *const u8, len: usize) -> bool {
    debug_assert!(len.is_multiple_of(8));
    let words = body.cast::<u64>();
    let mut i = 0;
    while i < len / 8 {
        // SAFETY: inside the body (caller's contract).
        if unsafe { words.add(i).read() } != POISON_WORD {
            return false;
        }
        i += 1;
    }
    true
}

/// A block of `block_size` bytes at `p` is being handed out: if it was
/// poisoned by a free, check that nobody wrote to it; then set its canary.
///
/// # Safety
/// `p` must be a block of `block_size` bytes (≥ 32) that is being allocated.
#[inline(always)]
pub(crate) unsafe fn on_alloc(p: *mut u8, block_size: usize) {
    // SAFETY: forwarded contract.
    if !unsafe { alloc_ok(p, block_size) } {
        misuse(Misuse::WriteAfterFree, "malloc", p, block_size);
        // SAFETY: forwarded contract.
        unsafe { set_canary(p, block_size) };
    }
}

/// [`on_alloc`] without the report: false (the canary not set) if the
/// block was written to since a free poisoned it; else sets the canary.
///
/// # Safety
/// As for [`on_alloc`].
#[inline(always)]
pub(crate) unsafe fn alloc_ok(p: *mut u8, block_size: usize) -> bool {
    let tail = p.wrapping_add(block_size - TAIL).cast::<u64>();
    let c = canary(p);
    // SAFETY: the block is ours and `block_size` long (16-aligned, so its
    // words are aligned).
    unsafe {
        if tail.read() == poison_tag(c) && !still_poisoned(p.add(16), block_size - TAIL - 16) {
            return false;
        }
        tail.write(c);
    }
    true
}

/// Sets the canary of the block of `block_size` bytes at `p`.
///
/// # Safety
/// As for [`on_alloc`].
#[inline(always)]
pub(crate) unsafe fn set_canary(p: *mut u8, block_size: usize) {
    // SAFETY: the block is ours and `block_size` long.
    unsafe { p.add(block_size - TAIL).cast::<u64>().write(canary(p)) };
}

/// Blocks `range` of a slab at `data` were just carved from memory the slab
/// had not used in its present life: a tag left there by an earlier life of
/// the slot (the same address freed in a block of the same size, then the
/// slot reused for another class that wrote over the body) would read as a
/// write after free. Their tag slots are cleared.
///
/// # Safety
/// The blocks must be freshly carved blocks of `block_size` bytes of the slab
/// whose first block is at `data`, not yet handed out.
pub(crate) unsafe fn forget_fresh(
    data: *mut u8,
    block_size: usize,
    range: core::ops::Range<usize>,
) {
    if !on() {
        // (the heaps hand fresh blocks over while the ring alone is on too)
        return;
    }
    for i in range {
        let p = hakmem_superslab::block_addr(data as usize, block_size, i) as *mut u8;
        // SAFETY: inside block i (caller's contract), which nobody uses yet.
        unsafe { p.add(block_size - TAIL).cast::<u64>().write_unaligned(0) };
    }
}

/// A block is being freed: check its canary, then poison it. Returns false
/// if the canary was overwritten (reported; in warn mode the block is still
/// freed, after poisoning).
///
/// # Safety
/// `p` must be a live block of `block_size` bytes allocated in secure mode.
pub(crate) unsafe fn on_free(p: *mut u8, block_size: usize) -> bool {
    // SAFETY: forwarded contract.
    let ok = unsafe { free_ok(p, block_size) };
    if !ok {
        misuse(Misuse::Overflow, "free", p, block_size);
    }
    // SAFETY: forwarded contract.
    unsafe { poison(p, block_size) };
    ok
}

/// True if the canary of the block of `block_size` bytes at `p` is intact.
///
/// # Safety
/// As for [`on_free`].
#[inline(always)]
pub(crate) unsafe fn free_ok(p: *mut u8, block_size: usize) -> bool {
    // SAFETY: the block is ours and `block_size` long (16-aligned).
    unsafe { p.add(block_size - TAIL).cast::<u64>().read() == canary(p) }
}

/// Poisons the block of `block_size` bytes at `p` (past its two list words,
/// up to its tag) and tags it.
///
/// # Safety
/// As for [`on_free`].
#[inline(always)]
pub(crate) unsafe fn poison(p: *mut u8, block_size: usize) {
    // SAFETY: forwarded contract.
    unsafe { poison_with(p, block_size, canary(p)) }
}

/// [`poison`] given the block's canary `c` (which [`checked_free`] has at
/// hand).
///
/// # Safety
/// As for [`on_free`].
#[inline(always)]
unsafe fn poison_with(p: *mut u8, block_size: usize, c: u64) {
    // SAFETY: the block is ours and `block_size` long (16-aligned, so its
    // words are aligned).
    unsafe {
        let tail = p.add(block_size - TAIL).cast::<u64>();
        // word by word (volatile: a few stores, not a call to memset)
        let mut q = p.add(16).cast::<u64>();
        while q < tail {
            q.write_volatile(POISON_WORD);
            q = q.add(1);
        }
        tail.write(poison_tag(c));
    }
}

/// The checked `free` fast path's secure step: true if the canary of the
/// block of `block_size` bytes at `p` is intact, and then the block is
/// poisoned; false (nothing written) if it was overwritten.
///
/// # Safety
/// As for [`on_free`].
#[inline(always)]
pub(crate) unsafe fn checked_free(p: *mut u8, block_size: usize) -> bool {
    let c = canary(p);
    // SAFETY: the block is ours and `block_size` long (16-aligned).
    if unsafe { p.add(block_size - TAIL).cast::<u64>().read() } != c {
        return false;
    }
    // SAFETY: forwarded contract.
    unsafe { poison_with(p, block_size, c) };
    true
}

/// The mapping size to ask the large tier for a block of `size` bytes: in
/// secure mode 8 more, for the tail canary.
#[inline]
pub(crate) fn large_request(size: usize) -> usize {
    if on() {
        size.saturating_add(TAIL)
    } else {
        size
    }
}

/// Gives the large block `p` (header `h`, `size` bytes asked for) its tail
/// canary:
/// the size in the header's owner word 2, the canary (unaligned) in the 8
/// bytes right after it. A write past `size` (even one byte) is then
/// caught at `free` and `realloc`.
///
/// # Safety
/// `p` must be a live large block of at least `size + 8` bytes, not handed
/// out yet (or being resized by its owner).
pub(crate) unsafe fn set_large_canary(
    h: &hakmem_large_cache::LargeHeader,
    p: *mut u8,
    size: usize,
) {
    h.set_aux(2, size as u64);
    // SAFETY: inside the block (caller's contract).
    unsafe { p.add(size).cast::<u64>().write_unaligned(canary(p)) };
}

/// The size asked for of a live large block that carries a tail canary (in
/// secure mode; not a block recorded by call-site sampling, which keeps its
/// own words in the header); none otherwise.
#[inline]
pub(crate) fn large_size(h: &hakmem_large_cache::LargeHeader) -> Option<usize> {
    let size = h.aux(2) as usize;
    (on() && h.aux(1) == 0 && size != 0 && size + TAIL <= h.usable()).then_some(size)
}

/// The bytes the user may use of the live large block `h`: the size asked
/// for when it carries a canary, else up to the end of its mapping.
#[inline]
pub(crate) fn large_usable(h: &hakmem_large_cache::LargeHeader) -> usize {
    large_size(h).unwrap_or_else(|| h.usable())
}

/// Checks the tail canary of the live large block `p` (header `h`) before
/// `op` (`free` or `realloc`): a write past its size is reported as a heap
/// overflow (and in warn mode the call goes on). True if intact or if the
/// block has no canary.
///
/// # Safety
/// `p` must be the live large block whose header is `h`.
pub(crate) unsafe fn check_large(
    h: &hakmem_large_cache::LargeHeader,
    p: *const u8,
    op: &str,
) -> bool {
    let Some(size) = large_size(h) else {
        return true;
    };
    // SAFETY: the canary lies inside the block (`large_size` checked that
    // it fits in the usable bytes).
    let ok = unsafe { p.add(size).cast::<u64>().read_unaligned() } == canary(p);
    if !ok {
        // (the size asked for stands for the size class)
        misuse(Misuse::Overflow, op, p, size);
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_info_holds_each_class_block_test_and_size() {
        for (c, info) in TINY_INFO.iter().enumerate() {
            let size = crate::classes::class_size(c);
            let per_slot = hakmem_superslab::blocks_per_slot(size);
            let (mul, limit) = hakmem_tiny_sll::Bin::block_test(size as u64, per_slot as u64);
            assert_eq!(
                (info.mul, info.limit, info.size),
                (mul, limit, size),
                "class {c}"
            );
            let off = c * crate::classes::BIN_BYTES;
            assert!(core::ptr::eq(tiny_info_of(off), info));
        }
        assert_eq!(TINY_BIN_BYTES, TINY_INFO.len() * crate::classes::BIN_BYTES);
    }

    #[test]
    fn secure_bins_hold_the_class_of_each_request_with_its_canary() {
        for size in 0..=SECURE_TINY_MAX {
            let req = (size + TAIL).max(32);
            let c = crate::classes::class_of(req);
            assert_eq!(
                secure_bin(size),
                c * crate::classes::BIN_BYTES,
                "size {size}"
            );
            assert!(TINY_INFO[c].size >= req);
        }
        assert_eq!(SECURE_BINS.len(), SECURE_TINY_MAX + 1);
    }

    #[test]
    fn a_poisoned_block_passes_until_it_is_written_and_a_canary_until_overwritten() {
        let mut buf = [0u64; 8];
        let p = buf.as_mut_ptr().cast::<u8>();
        // SAFETY: `p` is 64 writable, 8-aligned bytes, used as one block.
        unsafe {
            // fresh (no tag): passes, and gets its canary
            assert!(alloc_ok(p, 64));
            assert!(free_ok(p, 64));
            poison(p, 64);
            assert!((16..56).all(|i| *p.add(i) == POISON_BYTE));
            // untouched since the free
            assert!(alloc_ok(p, 64));
            assert!(free_ok(p, 64));
            poison(p, 64);
            // one byte written after the free
            *p.add(30) ^= 0xA5;
            assert!(!alloc_ok(p, 64));
            // one byte written past the usable size
            set_canary(p, 64);
            assert!(free_ok(p, 64));
            *p.add(56) ^= 0xFF;
            assert!(!free_ok(p, 64));
        }
    }
}
