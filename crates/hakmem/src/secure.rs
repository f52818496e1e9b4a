//! Secure mode (`HAKMEM_SECURE=1`): catches what the default mode cannot
//! afford to, at the price of every call taking the slow path.
//!
//! * **Overflow**: every tiny and mid block gives up its last 8 bytes to a
//!   canary (`CANARY ^ address`); the usable size is the block size minus 8.
//!   `free` checks the canary: a write past the usable size (even one byte)
//!   is reported as a heap overflow.
//! * **Write after free**: `free` fills the block (past its two list words,
//!   up to the canary) with a poison byte and tags the canary slot
//!   (`POISON ^ address`); when the block is handed out again the poison is
//!   checked: any byte written to the free block is reported.
//!
//! Secure mode switches the bins off (capacity 0), so that every `malloc`
//! and `free` reaches the slow paths, where these checks live. Large blocks
//! (their own mappings) are not given canaries: writing past their end
//! faults in the guard-less unmapped space or lands in another mapping.
//! Its cost is measured in the bench matrix (README).

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use crate::report::{misuse, Misuse};

static ON: AtomicBool = AtomicBool::new(false);
static CANARY: AtomicU64 = AtomicU64::new(0);
const POISON_BYTE: u8 = 0xDF;

/// Bytes at the end of each small block that secure mode keeps for itself.
pub(crate) const TAIL: usize = 8;

/// Turns secure mode on (at start-up, before any block exists).
pub(crate) fn enable(seed: u64) {
    CANARY.store(
        seed.rotate_left(17) ^ 0x5EC0_5EC0_5EC0_5EC0,
        Ordering::Relaxed,
    );
    ON.store(true, Ordering::Release);
    refresh_special();
}

/// True in secure mode.
#[inline(always)]
pub(crate) fn on() -> bool {
    ON.load(Ordering::Relaxed)
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

fn canary(p: *const u8) -> u64 {
    CANARY.load(Ordering::Relaxed) ^ p as u64
}

fn poison_tag(p: *const u8) -> u64 {
    !CANARY.load(Ordering::Relaxed) ^ (p as u64).rotate_left(7)
}

/// True if the `len` bytes at `body` all hold the poison byte. Word by word
/// with no early exit (an OR of differences), which compiles to vector code:
/// block bodies are multiples of 8 bytes (blocks are multiples of 16, less
/// the 16 list bytes and the 8-byte tag).
///
/// # Safety
/// `body..body + len` must be readable.
unsafe fn still_poisoned(body: *const u8, len: usize) -> bool {
    const WORD: u64 = u64::from_ne_bytes([POISON_BYTE; 8]);
    let words = len / 8;
    let mut diff = 0u64;
    for i in 0..words {
        // SAFETY: inside the body (caller's contract).
        diff |= unsafe { body.add(i * 8).cast::<u64>().read_unaligned() } ^ WORD;
    }
    for i in words * 8..len {
        // SAFETY: `i < len`, so inside the body (caller's contract).
        diff |= u64::from(unsafe { body.add(i).read() } ^ POISON_BYTE);
    }
    diff == 0
}

/// A block of `block_size` bytes at `p` is being handed out: if it was
/// poisoned by a free, check that nobody wrote to it; then set its canary.
///
/// # Safety
/// `p` must be a block of `block_size` bytes (≥ 32) that is being allocated.
pub(crate) unsafe fn on_alloc(p: *mut u8, block_size: usize) {
    let tail = p.wrapping_add(block_size - TAIL).cast::<u64>();
    // SAFETY: the block is ours and `block_size` long.
    unsafe {
        if tail.read_unaligned() == poison_tag(p)
            && !still_poisoned(p.add(16), block_size - TAIL - 16)
        {
            misuse(Misuse::WriteAfterFree, "malloc", p, block_size);
        }
        tail.write_unaligned(canary(p));
    }
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
    let tail = p.wrapping_add(block_size - TAIL).cast::<u64>();
    // SAFETY: the block is ours and `block_size` long.
    unsafe {
        let ok = tail.read_unaligned() == canary(p);
        if !ok {
            misuse(Misuse::Overflow, "free", p, block_size);
        }
        core::ptr::write_bytes(p.add(16), POISON_BYTE, block_size - TAIL - 16);
        tail.write_unaligned(poison_tag(p));
        ok
    }
}
