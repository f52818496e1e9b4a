//! Ending the process.

/// Aborts the process (`abort(3)`: `SIGABRT`, core dump where enabled).
/// Never allocates.
#[cold]
#[inline(never)]
pub fn abort() -> ! {
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}
