//! `errno` access without going through std.

/// Returns the calling thread's `errno`.
#[inline]
pub fn errno() -> i32 {
    // SAFETY: `__errno_location` always returns a valid pointer to the calling
    // thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Sets the calling thread's `errno`.
#[inline]
pub fn set_errno(value: i32) {
    // SAFETY: as in `errno`; the slot is thread-local and writable.
    unsafe { *libc::__errno_location() = value }
}

/// Saves `errno` on creation and restores it on drop: `free` must preserve
/// `errno` even when it makes system calls (munmap, madvise).
#[derive(Debug)]
pub struct ErrnoGuard(i32);

impl ErrnoGuard {
    /// Captures the current `errno`.
    #[inline]
    pub fn new() -> Self {
        ErrnoGuard(errno())
    }
}

impl Default for ErrnoGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ErrnoGuard {
    #[inline]
    fn drop(&mut self) {
        set_errno(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_restores_errno() {
        set_errno(7);
        {
            let _g = ErrnoGuard::new();
            set_errno(libc::ENOMEM);
            assert_eq!(errno(), libc::ENOMEM);
        }
        assert_eq!(errno(), 7);
    }
}
