//! Which thread is running, and whether the process ever had a second one:
//! what the fork handlers need to know without allocating, from inside a
//! signal handler.

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

#[cfg(test)]
mod tests {
    use super::*;

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
