//! Monotonic clocks (vDSO calls: no system call, no allocation).

#[inline]
fn read(clock: libc::clockid_t) -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec of our own, and both
    // clocks passed here exist on every Linux hakmem supports.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts
}

/// `CLOCK_MONOTONIC` in nanoseconds (~20 ns per call).
#[inline]
pub fn monotonic_ns() -> u64 {
    let ts = read(libc::CLOCK_MONOTONIC);
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// `CLOCK_MONOTONIC_COARSE` in milliseconds (a few ms of resolution,
/// cheaper than [`monotonic_ns`]): what [`Linux::now_ms`](crate::Pal::now_ms)
/// returns.
#[inline]
pub fn coarse_ms() -> u64 {
    let ts = read(libc::CLOCK_MONOTONIC_COARSE);
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_move_forward() {
        let a = monotonic_ns();
        let c = coarse_ms();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let b = monotonic_ns();
        let d = coarse_ms();
        assert!(b >= a + 30_000_000, "{a} {b}");
        assert!(d >= c + 20, "{c} {d}");
    }
}
