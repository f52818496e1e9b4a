//! The thread's slot: which heap serves this thread.
//!
//! The slot is read on every `malloc` and `free`, so it must be as cheap as
//! a thread-local can be. Inside a `cdylib`, Rust's `thread_local!` uses the
//! general-dynamic TLS model: a call to `__tls_get_addr` per access. On
//! x86_64 Linux we instead declare the slot ourselves as a `.tdata` symbol
//! and read it with the initial-exec model (`symbol@GOTTPOFF` added to the
//! thread pointer in `%fs`): two instructions, no call. The library then
//! carries the STATIC_TLS flag, which is right for an LD_PRELOAD library
//! (and makes `dlopen` of it need static TLS space, 24 bytes here).
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
#[repr(C)]
pub(crate) struct ThreadSlot {
    /// The thread's heap, or the placeholder.
    pub heap: *mut Heap,
    /// One of the `STATE_*` values.
    pub state: usize,
    /// Sampled `malloc` (call-site profiling): calls left until the next
    /// sample (0: not started).
    pub sample_left: usize,
}

/// Byte offset of [`ThreadSlot::sample_left`] in the slot (the hand-written
/// C `malloc` counts sampled calls down there).
pub const SAMPLE_LEFT_OFFSET: usize = core::mem::offset_of!(ThreadSlot, sample_left);
const _: () = assert!(SAMPLE_LEFT_OFFSET == 16);

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
        ".size hakmem_thread_slot, 24",
        "hakmem_thread_slot:",
        ".quad {placeholder}",
        ".quad 0",
        ".quad 0",
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
        let p: *mut ThreadSlot;
        // SAFETY: as above; `fs:0` holds the thread pointer itself.
        unsafe {
            core::arch::asm!(
                "mov {p}, qword ptr [rip + hakmem_thread_slot@GOTTPOFF]",
                "add {p}, qword ptr fs:0",
                p = out(reg) p,
                options(nostack, nomem, pure),
            );
        }
        p
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
                sample_left: 0,
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
