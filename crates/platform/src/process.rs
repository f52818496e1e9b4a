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

/// The process id (`getpid(2)`; after `fork`, the child's own).
pub fn id() -> u32 {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() as u32 }
}

/// The executable's file name (the last component of `/proc/self/exe`,
/// else of `argv[0]` from `/proc/self/cmdline`) copied into `buf`; the
/// number of bytes (0 if neither could be read). Never allocates. A name
/// longer than `buf` is cut short.
pub fn exe_name(buf: &mut [u8]) -> usize {
    let mut full = [0u8; 512];
    let mut n = crate::file::read_link(c"/proc/self/exe", &mut full).unwrap_or(0);
    if n == 0 {
        if let Some(f) = crate::file::Fd::open_read(c"/proc/self/cmdline") {
            let got = f.read_all_into(&mut full);
            n = full[..got].iter().position(|&b| b == 0).unwrap_or(got);
        }
    }
    let path = &full[..n];
    let name = match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[i + 1..],
        None => path,
    };
    let len = name.len().min(buf.len());
    buf[..len].copy_from_slice(&name[..len]);
    len
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

    #[test]
    fn id_and_exe_name() {
        assert_eq!(id(), std::process::id());
        let mut buf = [0u8; 256];
        let n = exe_name(&mut buf);
        let exe = std::env::current_exe().unwrap();
        let want = exe.file_name().unwrap().as_encoded_bytes();
        assert_eq!(&buf[..n], want);
        let mut short = [0u8; 3];
        assert_eq!(exe_name(&mut short), 3);
        assert_eq!(&short[..], &want[..3]);
    }
}
