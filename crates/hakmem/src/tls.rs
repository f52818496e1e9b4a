//! The thread's slot: which heap serves this thread.
//!
//! The slot is read on every `malloc` and `free`, so it must be as cheap as
//! a thread-local can be. Inside a `cdylib`, Rust's `thread_local!` uses the
//! general-dynamic TLS model: a call to `__tls_get_addr` per access. On
//! x86_64 Linux we instead declare the slot ourselves as a `.tdata` symbol
//! and read it with the initial-exec model (`symbol@GOTTPOFF` added to the
//! thread pointer in `%fs`): two instructions, no call. The library then
//! carries the STATIC_TLS flag, which is right for an LD_PRELOAD library
//! (and makes `dlopen` of it need static TLS space, 64 bytes here).
//!
//! The slot's initial value points at the shared placeholder heap, whose
//! bins are empty and full at once, so a thread's first `malloc` and `free`
//! fall through to the slow path without a separate "initialised?" test.
//!
//! Other targets use `thread_local!` with a `const` initialiser and a type
//! without `Drop`, which never allocates nor registers a destructor.

use crate::state::Heap;

/// A fresh thread: no heap yet (the initial value of every slot; the asm
/// image spells it as a literal 0).
#[allow(dead_code)]
pub(crate) const STATE_FRESH: usize = 0;
/// The thread has a heap of its own.
pub(crate) const STATE_LIVE: usize = 1;
/// The thread's heap was returned at thread exit; later calls (from other
/// thread-exit destructors) use the shared fallback heap.
pub(crate) const STATE_DEAD: usize = 2;

/// The per-thread slot.
///
/// `heap` and `state` belong to the thread lifecycle (`thread.rs`); the
/// other words to the observer seam (`observe.rs`, `api::malloc_observed`).
/// Only the thread itself reads or writes its slot.
#[repr(C)]
pub(crate) struct ThreadSlot {
    /// The thread's heap, or the placeholder.
    pub heap: *mut Heap,
    /// One of the `STATE_*` values.
    pub state: usize,
    /// The observers' countdown: small calls left until the next due call
    /// (0: not started). The hand-written C `malloc` decrements it.
    pub left: usize,
    /// The period `left` was last set to: what the due call stands for.
    pub period: usize,
    /// The countdown's jitter (xorshift64 state; 0: not seeded yet).
    pub rng: u64,
    /// Call-site sampling's count of small (counted-down) calls until its
    /// next sample (0: not started).
    pub site_left: usize,
    /// The same for calls shown one by one (above the small sizes).
    pub site_left_one: usize,
    /// The profiler's countdown of `free`, `realloc` and `calloc` slow
    /// paths until the next timed one (0: due, or not started).
    pub prof_left: usize,
    /// The thread's kernel id, for the debug ring (0: not read yet).
    pub tid: usize,
    /// The thread's debug ring, a `ring::Ring` (null: none claimed). The
    /// hand-written C `malloc`/`free` record into it.
    pub ring: *const (),
    _pad: [usize; 6],
}

/// Byte offset of [`ThreadSlot::left`] in the slot (the hand-written C
/// `malloc` counts small calls down there while observers are on).
pub const SAMPLE_LEFT_OFFSET: usize = core::mem::offset_of!(ThreadSlot, left);
const _: () = assert!(SAMPLE_LEFT_OFFSET == 16);
const _: () = assert!(core::mem::size_of::<ThreadSlot>() == 128);
/// Byte offset of [`ThreadSlot::ring`] in the slot.
pub const RING_OFFSET: usize = core::mem::offset_of!(ThreadSlot, ring);
const _: () = assert!(RING_OFFSET == crate::ring::SLOT_RING_OFFSET);

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod imp {
    use super::ThreadSlot;
    use crate::state::Heap;

    // The slot, in the TLS initialisation image: { &PLACEHOLDER, STATE_FRESH }.
    // The dynamic linker relocates the image before it copies it into any
    // thread's static TLS block.
    core::arch::global_asm!(
        ".pushsection .tdata.hakmem_thread_slot,\"awT\",@progbits",
        ".p2align 5",
        ".globl hakmem_thread_slot",
        ".hidden hakmem_thread_slot",
        ".type hakmem_thread_slot,@object",
        ".size hakmem_thread_slot, 128",
        "hakmem_thread_slot:",
        ".quad {placeholder}",
        ".quad 0",
        ".quad 0",
        ".quad 0",
        ".quad 0",
        ".quad 0",
        ".quad 0",
        ".quad 0",
        ".fill 8, 8, 0",
        ".popsection",
        placeholder = sym crate::state::PLACEHOLDER,
    );

    /// The current thread's heap pointer.
    #[inline(always)]
    pub(crate) fn heap() -> *mut Heap {
        let h: *mut Heap;
        // SAFETY: initial-exec access to our own TLS symbol: load its offset
        // from the GOT, then read through the thread pointer. Reads only
        // this thread's slot.
        unsafe {
            core::arch::asm!(
                "mov {h}, qword ptr [rip + hakmem_thread_slot@GOTTPOFF]",
                "mov {h}, qword ptr fs:[{h}]",
                h = out(reg) h,
                options(nostack, preserves_flags, readonly, pure),
            );
        }
        h
    }

    /// The address of the current thread's slot.
    #[inline(always)]
    pub(crate) fn slot() -> *mut ThreadSlot {
        crate::slot_addr::get().cast()
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod imp {
    use super::{ThreadSlot, STATE_FRESH};
    use crate::state::Heap;
    use core::cell::UnsafeCell;

    thread_local! {
        static SLOT: UnsafeCell<ThreadSlot> = const {
            UnsafeCell::new(ThreadSlot {
                heap: crate::state::PLACEHOLDER.get(),
                state: STATE_FRESH,
                left: 0,
                period: 0,
                rng: 0,
                site_left: 0,
                site_left_one: 0,
                prof_left: 0,
                tid: 0,
                ring: core::ptr::null(),
                _pad: [0; 6],
            })
        };
    }

    #[inline(always)]
    pub(crate) fn slot() -> *mut ThreadSlot {
        SLOT.with(|s| s.get())
    }

    #[inline(always)]
    pub(crate) fn heap() -> *mut Heap {
        // SAFETY: the slot is this thread's own.
        unsafe { (*slot()).heap }
    }
}

pub(crate) use imp::{heap, slot};

/// A random value from the thread's own generator (xorshift64 in the
/// slot, seeded from the slot's address): jitter for the observers'
/// periods, so that they do not alias with a program's loops.
#[inline]
pub(crate) fn random() -> u32 {
    let slot = slot();
    // SAFETY: the thread's own slot, touched by this thread alone.
    let mut x = unsafe { (*slot).rng };
    if x == 0 {
        x = (slot as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    // SAFETY: as for the read: the thread's own slot.
    unsafe { (*slot).rng = x };
    (x >> 32) as u32
}

/// Counts down the profiler's countdown of non-`malloc` slow paths: true
/// for the call that ends it (the caller then restarts it).
#[inline]
pub(crate) fn prof_due() -> bool {
    imp_prof_due()
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[inline(always)]
fn imp_prof_due() -> bool {
    let due: u8;
    // SAFETY: initial-exec access to our own TLS symbol (as `heap()`): a
    // read-modify-write of this thread's own `prof_left` word, which no
    // other thread touches. `sub 1` sets "below or equal" from 1 (-> 0)
    // and from 0 (-> wraps; restarted by the caller right after).
    unsafe {
        core::arch::asm!(
            "mov {t}, qword ptr [rip + hakmem_thread_slot@GOTTPOFF]",
            "sub qword ptr fs:[{t} + {off}], 1",
            "setbe {d}",
            t = out(reg) _,
            d = out(reg_byte) due,
            off = const PROF_LEFT_OFFSET,
            options(nostack),
        );
    }
    due != 0
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
#[inline(always)]
fn imp_prof_due() -> bool {
    let slot = slot();
    // SAFETY: the thread's own slot, touched by this thread alone.
    unsafe {
        let left = (*slot).prof_left;
        (*slot).prof_left = left.wrapping_sub(1);
        left <= 1
    }
}

/// Byte offset of [`ThreadSlot::prof_left`] in the slot.
const PROF_LEFT_OFFSET: usize = core::mem::offset_of!(ThreadSlot, prof_left);

/// Restarts the profiler's countdown at `period` calls (at least 1).
#[inline]
pub(crate) fn prof_restart(period: usize) {
    // SAFETY: the thread's own slot, touched by this thread alone.
    unsafe { (*slot()).prof_left = period.max(1) };
}

/// Forgets the cached kernel id (in a forked child, whose thread has a new
/// one).
pub(crate) fn forget_tid() {
    // SAFETY: the thread's own slot, touched by this thread alone.
    unsafe { (*slot()).tid = 0 };
}
