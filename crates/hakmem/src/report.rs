//! Reporting misuse: one line on stderr naming the error, the call, the
//! pointer and (where known) the size class, followed (while the debug
//! ring is on: secure mode, `HAKMEM_TRACE`) by where the block was last
//! allocated and freed, then — by default — abort.
//!
//! With `HAKMEM_ON_ERROR=warn` the line is printed and the offending call is
//! ignored instead (`free` does nothing, `realloc` returns NULL with
//! `errno = EINVAL`, `malloc_usable_size` returns 0), so a program can keep
//! running; nothing already allocated is touched either way. Never allocates.

use core::sync::atomic::{AtomicBool, Ordering};

use hakmem_platform::Line;

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Misuse {
    /// The block is already free.
    DoubleFree,
    /// The pointer is not in memory hakmem handed out.
    NotOurs,
    /// The pointer is inside a block, not at its start.
    Interior,
    /// The pointer is in hakmem's memory where no block lives.
    NoBlock,
    /// `realloc`/`malloc_usable_size` of a block that is free.
    UseOfFreed,
    /// The bytes after the usable size were overwritten (secure mode).
    Overflow,
    /// A freed block was written to (secure mode).
    WriteAfterFree,
}

impl Misuse {
    fn name(self) -> &'static str {
        match self {
            Misuse::DoubleFree => "double free",
            Misuse::NotOurs => "invalid pointer",
            Misuse::Interior => "interior pointer",
            Misuse::NoBlock => "invalid pointer",
            Misuse::UseOfFreed => "use of a freed block",
            Misuse::Overflow => "heap overflow",
            Misuse::WriteAfterFree => "write after free",
        }
    }

    fn detail(self) -> &'static str {
        match self {
            Misuse::DoubleFree => "the block is already free",
            Misuse::NotOurs => "not allocated by hakmem",
            Misuse::Interior => "not the start of a block",
            Misuse::NoBlock => "no block lives there",
            Misuse::UseOfFreed => "the block was freed",
            Misuse::Overflow => "bytes past the usable size were overwritten",
            Misuse::WriteAfterFree => "the freed block was written to",
        }
    }
}

static WARN_ONLY: AtomicBool = AtomicBool::new(false);

/// Chooses warn-and-ignore (`true`) or abort (`false`, the default).
pub(crate) fn set_warn_only(on: bool) {
    WARN_ONLY.store(on, Ordering::Relaxed);
}

/// Reports a misuse of `op` on `p`. `class_size` is the block size of the
/// size class involved, or 0. Aborts unless warn mode is on; returns
/// otherwise (the caller then ignores the call).
#[cold]
#[inline(never)]
pub(crate) fn misuse(kind: Misuse, op: &str, p: *const u8, class_size: usize) {
    let mut l = Line::new();
    l.str("hakmem: ")
        .str(kind.name())
        .str(" in ")
        .str(op)
        .str("(")
        .hex(p as usize)
        .str("): ")
        .str(kind.detail());
    if class_size != 0 {
        l.str(" (size class ").dec(class_size as u64).str(" B)");
    }
    l.emit();
    crate::ring::report(p);
    if !WARN_ONLY.load(Ordering::Relaxed) {
        hakmem_platform::process::abort()
    }
}
