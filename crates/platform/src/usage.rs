//! Resource usage of the process (`getrusage(2)`).

/// Minor page faults of the whole process so far (`ru_minflt` of
/// `RUSAGE_SELF`); 0 if the call fails.
pub fn minor_faults() -> u64 {
    // SAFETY: an all-zero `rusage` is a valid value of that plain C struct.
    let mut ru: libc::rusage = unsafe { core::mem::zeroed() };
    // SAFETY: getrusage writes only into `ru`, a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_minflt as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touching_fresh_pages_faults() {
        let before = minor_faults();
        let v = vec![1u8; 8 << 20];
        std::hint::black_box(&v);
        assert!(minor_faults() > before + 100);
    }
}
