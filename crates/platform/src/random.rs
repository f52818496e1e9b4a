//! The kernel's random source.

/// Fills `buf` from the kernel's random source (`getrandom(2)` with
/// `GRND_NONBLOCK`, one call). Returns true when every byte was filled;
/// false when the call failed or returned fewer bytes (early in boot the
/// pool may not be ready: the call fails with `EAGAIN` instead of
/// blocking), in which case `buf` holds whatever was written and `errno`
/// says why.
///
/// Never blocks and never allocates.
pub fn fill(buf: &mut [u8]) -> bool {
    // SAFETY: `buf` is a valid, writable region of exactly `buf.len()`
    // bytes; getrandom writes at most that many and has no other effect.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), libc::GRND_NONBLOCK) };
    n >= 0 && n as usize == buf.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_and_differs() {
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        assert!(fill(&mut a));
        assert!(fill(&mut b));
        assert_ne!(a, b);
        assert!(fill(&mut []));
    }
}
