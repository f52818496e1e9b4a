//! The two things the box asks of the machine on its recording paths: a
//! per-thread value (to pick a counter stripe and tell local from remote
//! frees) and, for callers that want one, a clock.

/// A value that differs between live threads and is stable within one: the
/// thread pointer (`fs:0` on x86-64 Linux, `tpidr_el0` on AArch64 Linux),
/// otherwise the address of a stack slot with the low 16 bits dropped
/// (threads' stacks are separate mappings). One instruction; no TLS access,
/// no initialisation, nothing to destroy.
#[inline(always)]
pub fn thread_hint() -> usize {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        let tp: usize;
        // SAFETY: on x86-64 Linux (glibc and musl) `fs` points at the
        // thread control block, whose first word is its own address; the
        // load reads that word and nothing else.
        unsafe {
            core::arch::asm!(
                "mov {}, qword ptr fs:[0]",
                out(reg) tp,
                options(nostack, readonly, preserves_flags, pure)
            );
        }
        tp
    }
    #[cfg(all(target_arch = "aarch64", target_os = "linux"))]
    {
        let tp: usize;
        // SAFETY: reading the EL0 thread-pointer register has no side
        // effects.
        unsafe {
            core::arch::asm!(
                "mrs {}, tpidr_el0",
                out(reg) tp,
                options(nomem, nostack, preserves_flags, pure)
            );
        }
        tp
    }
    #[cfg(not(any(
        all(target_arch = "x86_64", target_os = "linux"),
        all(target_arch = "aarch64", target_os = "linux")
    )))]
    {
        let probe = 0u8;
        core::hint::black_box(&probe) as *const u8 as usize >> 16
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds (a vDSO call, ~20 ns). Any monotonic
/// `u64` clock works as the table's clock as long as the
/// [`Thresholds`](crate::Thresholds) are in its unit; nanoseconds are the
/// convention the defaults assume.
#[inline]
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_hint_is_per_thread() {
        let here = thread_hint();
        assert_eq!(here, thread_hint());
        let there = std::thread::spawn(thread_hint).join().unwrap();
        assert_ne!(here, there);
    }

    #[test]
    fn clock_moves_forward() {
        let a = monotonic_ns();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = monotonic_ns();
        assert!(b >= a + 2_000_000, "{a} {b}");
    }
}
