//! Files without allocating: paths are `CStr`s the caller already holds,
//! data goes through the caller's buffers, and descriptors are closed by
//! [`Fd`]'s drop.
//!
//! Descriptors are plain `c_int`s at the edges ([`write_all`],
//! [`Fd::raw`]): writing to a descriptor touches no memory of the
//! process, so a wrong descriptor is a logic error, never memory
//! unsafety.

use core::ffi::{c_int, CStr};

/// The standard error descriptor.
pub const STDERR: c_int = 2;

/// An open file descriptor, closed on drop.
#[derive(Debug)]
pub struct Fd(c_int);

/// Whether the last failed call was interrupted by a signal.
fn interrupted() -> bool {
    crate::errno() == libc::EINTR
}

impl Fd {
    /// Opens an existing file for reading (`O_RDONLY | O_CLOEXEC`);
    /// `None` if it cannot be opened (`errno` says why).
    pub fn open_read(path: &CStr) -> Option<Fd> {
        // SAFETY: `path` is a valid NUL-terminated string for the call.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        // `then`, not `then_some`: an `Fd(-1)` built eagerly would be
        // dropped, and its close(-1) would overwrite errno.
        (fd >= 0).then(|| Fd(fd))
    }

    /// Creates a file for writing, or truncates an existing one
    /// (`O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC`, mode `0644` before the
    /// umask); `None` if that fails (`errno` says why).
    pub fn create(path: &CStr) -> Option<Fd> {
        // SAFETY: `path` is a valid NUL-terminated string for the call; the
        // mode argument is the one O_CREAT reads.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                0o644 as libc::c_uint,
            )
        };
        (fd >= 0).then(|| Fd(fd))
    }

    /// Reads into `buf` until end of file, an error or a full buffer
    /// (retrying `EINTR`); the number of bytes read. A caller that needs
    /// to know whether the file was longer passes a buffer one byte longer
    /// than it accepts.
    pub fn read_all_into(&self, buf: &mut [u8]) -> usize {
        let mut got = 0;
        while got < buf.len() {
            let rest = &mut buf[got..];
            // SAFETY: `rest` is a valid, writable region of `rest.len()`
            // bytes that read(2) may fill.
            let r = unsafe { libc::read(self.0, rest.as_mut_ptr().cast(), rest.len()) };
            if r > 0 {
                got += r as usize;
            } else if r < 0 && interrupted() {
                continue;
            } else {
                break;
            }
        }
        got
    }

    /// [`write_all`] to this file.
    pub fn write_all(&self, bytes: &[u8]) -> bool {
        write_all(self.0, bytes)
    }

    /// The descriptor number (still owned by `self`).
    pub fn raw(&self) -> c_int {
        self.0
    }

    /// Closes the descriptor now (what dropping it does).
    pub fn close(self) {}
}

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: `self.0` is a descriptor this `Fd` opened and owns; it is
        // closed exactly once, here.
        unsafe { libc::close(self.0) };
    }
}

/// Writes all of `bytes` to descriptor `fd` with `write(2)`, retrying
/// short writes and `EINTR`. Returns false (the rest dropped) when a
/// write fails or writes nothing; `errno` then says why.
pub fn write_all(fd: c_int, bytes: &[u8]) -> bool {
    let mut off = 0;
    while off < bytes.len() {
        let rest = &bytes[off..];
        // SAFETY: `rest` is valid, initialised memory of `rest.len()`
        // bytes, only read by write(2).
        let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
        if n > 0 {
            off += n as usize;
        } else if n < 0 && interrupted() {
            continue;
        } else {
            return false;
        }
    }
    true
}

/// Renames `from` to `to` (`rename(2)`), replacing `to` atomically if it
/// exists; false on failure (`errno` says why). Both must be on one file
/// system.
pub fn rename(from: &CStr, to: &CStr) -> bool {
    // SAFETY: both are valid NUL-terminated strings for the call.
    unsafe { libc::rename(from.as_ptr(), to.as_ptr()) == 0 }
}

/// Removes the file `path` (`unlink(2)`); false on failure.
pub fn unlink(path: &CStr) -> bool {
    // SAFETY: `path` is a valid NUL-terminated string for the call.
    unsafe { libc::unlink(path.as_ptr()) == 0 }
}

/// Reads the target of the symbolic link `path` into `buf`
/// (`readlink(2)`, not NUL-terminated); the number of bytes, or `None` on
/// failure. A target as long as `buf` may have been cut short.
pub fn read_link(path: &CStr, buf: &mut [u8]) -> Option<usize> {
    // SAFETY: `buf` is a valid, writable region of `buf.len()` bytes that
    // readlink may fill; `path` is NUL-terminated.
    let n = unsafe { libc::readlink(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n >= 0).then_some(n as usize)
}

/// What identifies a version of a file: its size and modification time
/// (`fstat(2)` on `path` opened for reading).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    /// Size in bytes.
    pub size: u64,
    /// Modification time: seconds and nanoseconds since the epoch.
    pub mtime: (i64, i64),
    /// Device and inode.
    pub id: (u64, u64),
}

/// The [`FileStamp`] of `path`, or `None` if it cannot be opened.
pub fn stamp(path: &CStr) -> Option<FileStamp> {
    let file = Fd::open_read(path)?;
    // SAFETY: all-zero bytes are a valid `stat` (plain integers).
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `file` is an open descriptor; `st` is writable and sized for
    // the call.
    if unsafe { libc::fstat(file.raw(), &mut st) } != 0 {
        return None;
    }
    Some(FileStamp {
        size: st.st_size as u64,
        mtime: (st.st_mtime as i64, st.st_mtime_nsec as i64),
        id: (st.st_dev as u64, st.st_ino as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> std::ffi::CString {
        let p = std::env::temp_dir().join(format!("hakmem-platform-{}-{name}", std::process::id()));
        std::ffi::CString::new(p.into_os_string().into_encoded_bytes()).unwrap()
    }

    #[test]
    fn create_write_read_back() {
        let path = temp_path("rw");
        let text: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let f = Fd::create(&path).expect("create");
        assert!(f.write_all(&text));
        f.close();
        // created again: truncated
        let f = Fd::create(&path).unwrap();
        assert!(f.write_all(&text[..5000]));
        drop(f);
        let f = Fd::open_read(&path).expect("open");
        let mut buf = vec![0u8; 5001];
        assert_eq!(f.read_all_into(&mut buf), 5000);
        assert_eq!(&buf[..5000], &text[..5000]);
        let f = Fd::open_read(&path).unwrap();
        let mut small = [0u8; 100];
        assert_eq!(f.read_all_into(&mut small), 100);
        assert_eq!(&small[..], &text[..100]);
        std::fs::remove_file(path.to_str().unwrap()).ok();
    }

    #[test]
    fn missing_files_and_bad_descriptors_fail() {
        assert!(Fd::open_read(c"/nonexistent/hakmem").is_none());
        assert_eq!(crate::errno(), libc::ENOENT);
        assert!(Fd::create(c"/nonexistent/hakmem").is_none());
        assert!(!write_all(-1, b"x"));
        assert_eq!(crate::errno(), libc::EBADF);
        assert!(write_all(-1, b""));
    }

    #[test]
    fn rename_replaces_and_unlink_removes() {
        let a = temp_path("ren-a");
        let b = temp_path("ren-b");
        Fd::create(&a).unwrap().write_all(b"new");
        Fd::create(&b).unwrap().write_all(b"old");
        assert!(rename(&a, &b));
        assert!(Fd::open_read(&a).is_none());
        let mut buf = [0u8; 8];
        assert_eq!(Fd::open_read(&b).unwrap().read_all_into(&mut buf), 3);
        assert_eq!(&buf[..3], b"new");
        assert!(!rename(&a, &b));
        assert_eq!(crate::errno(), libc::ENOENT);
        assert!(unlink(&b));
        assert!(!unlink(&b));
    }

    #[test]
    fn read_link_of_own_exe() {
        let mut buf = [0u8; 4096];
        let n = read_link(c"/proc/self/exe", &mut buf).expect("readlink");
        let exe = std::env::current_exe().unwrap();
        assert_eq!(&buf[..n], exe.as_os_str().as_encoded_bytes());
        assert!(read_link(c"/nonexistent/hakmem", &mut buf).is_none());
    }
}

#[cfg(test)]
mod identity_tests {
    use super::*;

    #[test]
    fn the_own_executable_has_a_stamp_and_a_path() {
        let mut buf = [0u8; 4096];
        let n = read_link(c"/proc/self/exe", &mut buf).unwrap();
        assert!(buf[..n].starts_with(b"/"));
        let s = stamp(c"/proc/self/exe").unwrap();
        assert!(s.size > 0);
        assert!(stamp(c"/nonexistent/hakmem").is_none());
        assert!(read_link(c"/nonexistent/hakmem", &mut buf).is_none());
    }
}
