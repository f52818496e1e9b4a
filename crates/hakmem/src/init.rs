//! Process-wide initialisation, done once by the first thread that needs a
//! heap: the free mark and the options that change behaviour.

use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use hakmem_platform::SpinLock;
use hakmem_policy_rcu::{FrozenPolicy, DEFAULT_POLICY};

/// The policy of secure mode: the default with every bin switched off, so
/// that all calls reach the checked slow paths.
static SECURE_POLICY: FrozenPolicy = {
    let mut p = DEFAULT_POLICY;
    let mut c = 0;
    while c < p.tiny_cap.len() {
        p.tiny_cap[c] = 0;
        c += 1;
    }
    let mut m = 0;
    while m < p.mid_cap.len() {
        p.mid_cap[m] = 0;
        m += 1;
    }
    p
};

static STATE: AtomicU8 = AtomicU8::new(0); // 0 fresh, 2 done
static LOCK: SpinLock<()> = SpinLock::new(());
static FREE_MARK: AtomicU64 = AtomicU64::new(0);

/// Runs the one-time set-up if it has not run yet.
#[inline]
pub(crate) fn ensure() {
    if STATE.load(Ordering::Acquire) != 2 {
        init_slow();
    }
}

#[cold]
fn init_slow() {
    let _g = LOCK.lock();
    if STATE.load(Ordering::Acquire) == 2 {
        return;
    }
    let mark = new_mark();
    FREE_MARK.store(mark, Ordering::Relaxed);
    crate::report::set_warn_only(env_is(b"HAKMEM_ON_ERROR\0", b"warn"));
    if env_is(b"HAKMEM_SITES\0", b"1") {
        crate::sites::enable_sampling(env_u32(b"HAKMEM_SITES_SAMPLE\0").unwrap_or(12));
    }
    if env_is(b"HAKMEM_SECURE\0", b"1") {
        crate::secure::enable(mark);
        crate::state::POLICY.publish(&SECURE_POLICY);
    }
    STATE.store(2, Ordering::Release);
}

/// The process's free mark (valid after [`ensure`]).
#[inline]
pub(crate) fn free_mark() -> u64 {
    FREE_MARK.load(Ordering::Relaxed)
}

/// A random 64-bit value that no plausible pointer or small integer equals:
/// from the kernel's random source, mixed with the clock and addresses.
fn new_mark() -> u64 {
    let mut r: u64 = 0;
    // SAFETY: writes at most 8 bytes into `r`; GRND_NONBLOCK never blocks.
    let n = unsafe { libc::getrandom((&mut r as *mut u64).cast(), 8, libc::GRND_NONBLOCK) };
    if n != 8 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: writing into our own timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        r = (ts.tv_nsec as u64)
            ^ (ts.tv_sec as u64).rotate_left(32)
            ^ (&r as *const u64 as u64).rotate_left(29)
            ^ (new_mark as *const () as u64);
    }
    // never 0, never a canonical user pointer, never a small number
    (r | 0x8000_0000_0000_0001).wrapping_mul(0x9E37_79B9_7F4A_7C15) | (1 << 63) | 1
}

/// The decimal value of the environment variable `name`, if it parses.
fn env_u32(name: &[u8]) -> Option<u32> {
    // SAFETY: `name` is NUL-terminated; getenv returns null or a C string.
    let p = unsafe { libc::getenv(name.as_ptr().cast()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: a valid C string from the environment.
    let s = unsafe { core::ffi::CStr::from_ptr(p) }.to_bytes();
    if s.is_empty() || s.len() > 9 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u32, |n, &d| n * 10 + (d - b'0') as u32))
}

/// True if the environment variable `name` (NUL-terminated) equals `value`.
/// Reads through `getenv`, which does not allocate.
fn env_is(name: &[u8], value: &[u8]) -> bool {
    // SAFETY: `name` is NUL-terminated; getenv returns null or a C string.
    let p = unsafe { libc::getenv(name.as_ptr().cast()) };
    if p.is_null() {
        return false;
    }
    // SAFETY: a valid C string from the environment.
    let s = unsafe { core::ffi::CStr::from_ptr(p) };
    s.to_bytes() == value
}
