//! Threads: thread-specific keys (for a destructor at thread exit), the
//! thread pointer, which thread is running and whether the process ever had
//! a second one (what the fork handlers need to know without allocating,
//! from inside a signal handler).

use core::ffi::c_void;

/// A thread-specific data key (`pthread_key_t`) made by [`key_create`].
///
/// Keys are never deleted, so a `Key` stays valid for the life of the
/// process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key(libc::pthread_key_t);

impl Key {
    /// The key as a number, for keeping it in an atomic
    /// ([`Key::from_raw`] turns it back).
    pub fn into_raw(self) -> u32 {
        self.0
    }

    /// The key [`Key::into_raw`] returned.
    ///
    /// # Safety
    /// `raw` must come from [`Key::into_raw`] of a key made by
    /// [`key_create`] in this process: another number may name a key
    /// that belongs to someone else, whose destructor would then receive
    /// our values.
    pub unsafe fn from_raw(raw: u32) -> Key {
        Key(raw)
    }
}

/// Creates a key whose `destructor` runs at the exit of every thread that
/// set a non-null value for it, with that value (`pthread_key_create`).
/// `None` if the process is out of keys.
///
/// The destructor runs on the exiting thread, after its value was reset to
/// null; it only ever receives values given to [`set_specific`].
pub fn key_create(destructor: unsafe extern "C" fn(*mut c_void)) -> Option<Key> {
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: `key` is a valid, writable pthread_key_t; the destructor is
    // a function of the signature pthread expects. pthread_key_create
    // reports failure by its return value and leaves errno alone.
    let rc = unsafe { libc::pthread_key_create(&mut key, Some(destructor)) };
    (rc == 0).then_some(Key(key))
}

/// Sets the calling thread's value for `key` (`pthread_setspecific`);
/// false if that failed (glibc may allocate the second level of its key
/// table here, and that can fail).
///
/// # Safety
/// At thread exit `value`, unless null, is passed to the destructor given
/// to [`key_create`] for `key`: it must be a value that destructor accepts.
pub unsafe fn set_specific(key: Key, value: *mut c_void) -> bool {
    // SAFETY: `key` was made by key_create (its only constructor, or
    // from_raw whose contract says so); the value's fitness for the
    // destructor is the caller's promise.
    unsafe { libc::pthread_setspecific(key.0, value) == 0 }
}

/// A value that differs between live threads and is stable within one: the
/// thread pointer (`fs:0` on x86-64 Linux, `tpidr_el0` on AArch64 Linux),
/// otherwise the address of a stack slot with the low 16 bits dropped
/// (threads' stacks are separate mappings). One instruction; no TLS access,
/// no initialisation, nothing to destroy.
#[inline(always)]
pub fn hint() -> usize {
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

/// The kernel's id of the calling thread (`gettid(2)`), as `ps -L`, `top -H`
/// and debuggers show it.
#[inline]
pub fn os_tid() -> u32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() as u32 }
}

/// An identifier of the calling thread, never 0: its `pthread_self`. The
/// child of `fork` sees the same value as the parent thread that forked.
/// Async-signal-safe in practice (glibc reads the thread pointer).
#[inline]
pub fn thread_id() -> usize {
    // SAFETY: pthread_self has no preconditions and cannot fail; glibc
    // returns the thread's descriptor address, never 0.
    unsafe { libc::pthread_self() as usize }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
extern "C" {
    /// glibc (2.32+, `<sys/single_threaded.h>`): true until the process
    /// creates its first thread; never set back while other threads could
    /// exist.
    static __libc_single_threaded: core::ffi::c_char;
}

/// True while the process has never created a second thread (glibc's
/// `__libc_single_threaded`, the flag glibc's own `fork` uses to skip its
/// malloc locks). Conservative: false once any thread was created, even if
/// it has exited, and always false where the C library has no such flag.
/// A plain load of a byte: async-signal-safe, no allocation.
#[inline]
pub fn single_threaded() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: glibc defines the byte for the life of the process and
        // only writes it with plain stores; a volatile read of it is what
        // <sys/single_threaded.h> documents callers may do.
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!(__libc_single_threaded)) != 0 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Lets another thread run (`sched_yield`): for spin loops that wait for
/// another thread. No allocation, async-signal-safe.
#[inline]
pub fn yield_now() {
    // SAFETY: sched_yield has no preconditions and cannot fail on Linux.
    unsafe { libc::sched_yield() };
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn hint_is_per_thread() {
        let here = hint();
        assert_eq!(here, hint());
        let there = std::thread::spawn(hint).join().unwrap();
        assert_ne!(here, there);
    }

    static SEEN: AtomicUsize = AtomicUsize::new(0);

    /// Adds the value, as a number, to `SEEN`.
    ///
    /// # Safety
    /// None beyond the signature: any value is accepted (it is never
    /// dereferenced); `unsafe` only because `key_create` takes that type.
    unsafe extern "C" fn record(v: *mut c_void) {
        SEEN.fetch_add(v as usize, Ordering::SeqCst);
    }

    #[test]
    fn key_destructor_runs_at_thread_exit_with_the_value() {
        let key = key_create(record).expect("a key");
        // SAFETY: the raw number came from into_raw of our key.
        let again = unsafe { Key::from_raw(key.into_raw()) };
        assert_eq!(again, key);
        std::thread::spawn(move || {
            // SAFETY: `record` accepts any value.
            assert!(unsafe { set_specific(key, 40 as *mut c_void) });
        })
        .join()
        .unwrap();
        std::thread::spawn(move || {
            // SAFETY: `record` accepts any value.
            assert!(unsafe { set_specific(key, 2 as *mut c_void) });
        })
        .join()
        .unwrap();
        assert_eq!(SEEN.load(Ordering::SeqCst), 42);
    }

    #[test]
    fn thread_ids_differ_between_threads() {
        let here = thread_id();
        let there = std::thread::spawn(thread_id).join().unwrap();
        assert_ne!(here, 0);
        assert_ne!(here, there);
        assert_eq!(here, thread_id());
    }

    #[test]
    fn a_test_process_with_threads_is_not_single_threaded() {
        // the test harness runs tests on threads of its own, and this one
        // starts another: the flag must be down
        std::thread::spawn(|| ()).join().unwrap();
        assert!(!single_threaded());
    }
}
