//! Reporting misuse: one line on stderr naming the call and the pointer,
//! then abort. Never allocates.

use hakmem_platform::Line;

/// The pointer passed to `op` was not handed out by hakmem (or was already
/// given back).
#[cold]
#[inline(never)]
pub(crate) fn invalid_pointer(op: &str, p: *const u8, why: &str) -> ! {
    Line::new()
        .str("hakmem: ")
        .str(op)
        .str("(")
        .hex(p as usize)
        .str("): ")
        .str(why)
        .emit();
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}
