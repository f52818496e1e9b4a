//! The process as a whole: ending it, and hooks around `fork`.

/// Aborts the process (`abort(3)`: `SIGABRT`, core dump where enabled).
/// Never allocates.
#[cold]
#[inline(never)]
pub fn abort() -> ! {
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

/// Registers fork handlers (`pthread_atfork`): `prepare` runs in the
/// forking thread before `fork`, `parent` in the parent and `child` in the
/// child after it. Returns false if registration failed (out of memory).
///
/// glibc allocates the registration: call it outside the allocator's own
/// paths (hakmem does at the end of its one-time set-up).
pub fn at_fork(prepare: extern "C" fn(), parent: extern "C" fn(), child: extern "C" fn()) -> bool {
    // SAFETY: the handlers are plain `extern "C" fn()`s, valid for the life
    // of the process, which is what pthread_atfork stores and calls.
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) == 0 }
}

/// The process id (`getpid(2)`).
pub fn id() -> u32 {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() as u32 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::{AtomicU32, Ordering};

    static CALLS: AtomicU32 = AtomicU32::new(0);

    extern "C" fn prepare() {
        CALLS.fetch_add(1, Ordering::SeqCst);
    }
    extern "C" fn parent() {
        CALLS.fetch_add(10, Ordering::SeqCst);
    }
    extern "C" fn child() {
        CALLS.fetch_add(100, Ordering::SeqCst);
    }

    #[test]
    fn fork_handlers_run() {
        assert!(at_fork(prepare, parent, child));
        // SAFETY: the child only reads an atomic and calls _exit, both
        // async-signal-safe.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let ok = CALLS.load(Ordering::SeqCst) == 101;
            // SAFETY: _exit ends the child without running the test
            // harness's destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child, status into our variable.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert_eq!(CALLS.load(Ordering::SeqCst), 11);
    }
}
