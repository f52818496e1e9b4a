//! Secure mode (`HAKMEM_SECURE=1`): catches what the default mode cannot
//! afford to, at the price of a checked fast path.
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
//! Secure mode keeps the thread bins (the mid bins stay off: their blocks
//! take the checked slow paths). The free mark still catches double frees:
//! set when a block enters a bin, cleared when it leaves one. What differs
//! is that the default fast paths never serve a call while secure mode or
//! the debug ring is on ([`checked`]): `malloc`'s size limit is 0
//! (`observe::TINY_LIMIT`) and the heaps' block-start tests always fail
//! (`HeapEnv::secure`), so both leave their fast paths at an exit they
//! already have, for the *checked fast paths* (`api::malloc_checked`,
//! `api::free_checked_fast`): the same bins, with the canary and poison
//! checks and the ring's events inline, the block-start test taken from
//! [`TINY_TESTS`]. Anything else goes on to the slow paths as before.
//! Large blocks (their own mappings) are not given canaries: writing past
//! their end faults in the guard-less unmapped space or lands in another
//! mapping. Its cost is measured with callgrind (README).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::report::{misuse, Misuse};

static ON: AtomicBool = AtomicBool::new(false);
static CANARY: AtomicU64 = AtomicU64::new(0);
const POISON_BYTE: u8 = 0xDF;

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

/// Block-start tests of the tiny classes (`Bin::block_test` of each
/// class's size and blocks per slot): what the heaps' bins carry in the
/// default mode, kept here for the checked free fast path while the bins'
/// own tests are off.
pub(crate) static TINY_TESTS: [(u64, u64); hakmem_tiny_sll::TINY_CLASSES] = {
    let sizes = hakmem_tiny_sll::classes::TINY_SIZES;
    let mut t = [(0u64, 0u64); hakmem_tiny_sll::TINY_CLASSES];
    let mut c = 0;
    while c < t.len() {
        let size = sizes[c] as usize;
        let per_slot = hakmem_superslab::blocks_per_slot(size);
        t[c] = hakmem_tiny_sll::Bin::block_test(size as u64, per_slot as u64);
        c += 1;
    }
    t
};

/// Turns secure mode on (at start-up, before any block exists).
pub(crate) fn enable(seed: u64) {
    CANARY.store(
        seed.rotate_left(17) ^ 0x5EC0_5EC0_5EC0_5EC0,
        Ordering::Relaxed,
    );
    ON.store(true, Ordering::Release);
    refresh_special();
}

/// Recomputes [`CHECKED`] after secure mode or the ring was switched (at
/// start-up, before any block exists), and the fast paths' limit with it.
pub(crate) fn refresh_checked() {
    let on = on() || crate::ring::on();
    CHECKED.0.store(on, Ordering::Release);
    crate::observe::refresh_limits();
}

/// True in secure mode.
#[inline(always)]
pub(crate) fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Secure mode, the debug ring or the profiler is on: the cross-thread
/// `free` path leaves its short cut for `api::free_general`, which checks,
/// records or times (one flag, so the short cut tests one word).
static SPECIAL: AtomicBool = AtomicBool::new(false);

/// True while frees must take the general path (see [`SPECIAL`]).
#[inline(always)]
pub(crate) fn special() -> bool {
    SPECIAL.load(Ordering::Relaxed)
}

/// Recomputes [`special`] after secure mode, the ring or the profiler was
/// switched.
pub(crate) fn refresh_special() {
    let on = on() || crate::ring::on() || crate::profile::on();
    SPECIAL.store(on, Ordering::Release);
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
