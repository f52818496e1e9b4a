//! The platform the facade assembles the boxes on: Linux, with the system
//! calls the profiler times (`HAKMEM_PROF`) timed while it is on.
//!
//! Every box reaches the OS through `Pal`; giving them this type instead
//! of `Linux` puts `mmap`, `munmap` and `madvise` in the profile without
//! the boxes knowing. Off, each call costs one relaxed load more, next to
//! a system call.

use core::ptr::NonNull;

use hakmem_platform::{Linux, Pal};

use crate::profile::{self, Cat};

/// Linux, with timed system calls while the profiler is on.
#[derive(Debug)]
pub(crate) struct ProfiledLinux;

/// Runs `f`, timing it as one `cat` call while the profiler is on.
#[inline]
fn timed<R>(cat: Cat, f: impl FnOnce() -> R) -> R {
    if !profile::on() {
        return f();
    }
    let t = profile::now_ns();
    let r = f();
    profile::record(cat, profile::now_ns().saturating_sub(t).max(1), 1);
    r
}

impl Pal for ProfiledLinux {
    fn map(len: usize, align: usize) -> Option<NonNull<u8>> {
        timed(Cat::Map, || Linux::map(len, align))
    }

    unsafe fn unmap(ptr: NonNull<u8>, len: usize) {
        // SAFETY: forwarded contract (the caller's range is mapped, page
        // aligned and unreferenced).
        timed(Cat::Unmap, || unsafe { Linux::unmap(ptr, len) })
    }

    unsafe fn purge(ptr: NonNull<u8>, len: usize) {
        // SAFETY: forwarded contract (the caller's range is mapped, page
        // aligned and holds nothing live).
        timed(Cat::Purge, || unsafe { Linux::purge(ptr, len) })
    }

    unsafe fn remap(
        ptr: NonNull<u8>,
        old_len: usize,
        new_len: usize,
        may_move: bool,
    ) -> Option<NonNull<u8>> {
        // SAFETY: forwarded contract (a mapping of this platform the caller
        // owns).
        unsafe { Linux::remap(ptr, old_len, new_len, may_move) }
    }

    unsafe fn remap_to(
        ptr: NonNull<u8>,
        old_len: usize,
        new_len: usize,
        target: NonNull<u8>,
    ) -> bool {
        // SAFETY: forwarded contract (both ranges the caller's, disjoint).
        unsafe { Linux::remap_to(ptr, old_len, new_len, target) }
    }

    unsafe fn advise_huge(ptr: NonNull<u8>, len: usize) {
        // SAFETY: forwarded contract (a mapping the caller owns).
        unsafe { Linux::advise_huge(ptr, len) }
    }

    unsafe fn advise_small(ptr: NonNull<u8>, len: usize) {
        // SAFETY: forwarded contract (a mapping the caller owns).
        unsafe { Linux::advise_small(ptr, len) }
    }

    unsafe fn populate(ptr: NonNull<u8>, len: usize) -> bool {
        // SAFETY: forwarded contract (a mapping the caller owns).
        unsafe { Linux::populate(ptr, len) }
    }

    unsafe fn collapse(ptr: NonNull<u8>, len: usize) -> bool {
        // SAFETY: forwarded contract (a mapping the caller owns).
        unsafe { Linux::collapse(ptr, len) }
    }

    unsafe fn resident(ptr: NonNull<u8>, len: usize) -> Option<usize> {
        // SAFETY: forwarded contract (a page-aligned mapping the caller owns).
        unsafe { Linux::resident(ptr, len) }
    }

    #[inline]
    fn now_ms() -> u64 {
        Linux::now_ms()
    }
}
