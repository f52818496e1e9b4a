//! Shared by the integration tests (each uses part of it).
#![allow(dead_code)]

use std::io::Read;

/// RSS from /proc/self/statm, read into a stack buffer (reading it makes no
/// allocator call).
pub fn rss_bytes() -> usize {
    let mut f = std::fs::File::open("/proc/self/statm").unwrap();
    let mut buf = [0u8; 128];
    let n = f.read(&mut buf).unwrap();
    let s = core::str::from_utf8(&buf[..n]).unwrap();
    let pages: usize = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Writes one byte in every page of the live block `p` of `n` bytes, and
/// its last byte.
pub fn touch(p: *mut u8, n: usize) {
    let mut off = 0;
    while off < n {
        // SAFETY: the caller passes a live block of n bytes.
        unsafe { p.add(off).write(1) };
        off += 4096;
    }
    // SAFETY: `n - 1 < n`, inside the live block of n bytes the caller
    // passes.
    unsafe { p.add(n - 1).write(1) };
}

/// xorshift64*: a fixed-seed generator, so runs are repeatable.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Seconds a stress test runs: `HAKMEM_STRESS_SECS`, else `default`.
pub fn stress_secs(default: u64) -> u64 {
    std::env::var("HAKMEM_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
