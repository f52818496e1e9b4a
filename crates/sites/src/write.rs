//! Byte sinks that never allocate: a file descriptor behind a stack buffer,
//! and a caller's byte slice.

use core::ffi::c_int;
use core::fmt;

/// A [`fmt::Write`] that buffers on the stack and writes to a file
/// descriptor with `write(2)` (retrying short writes and `EINTR`). Flushed
/// on [`flush`](Self::flush) and on drop.
pub struct FdWriter {
    fd: c_int,
    len: usize,
    failed: bool,
    buf: [u8; 2048],
}

impl fmt::Debug for FdWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FdWriter")
            .field("fd", &self.fd)
            .field("buffered", &self.len)
            .field("failed", &self.failed)
            .finish()
    }
}

impl FdWriter {
    /// A writer to `fd` (not closed on drop).
    pub const fn new(fd: c_int) -> Self {
        FdWriter {
            fd,
            len: 0,
            failed: false,
            buf: [0; 2048],
        }
    }

    /// Whether a `write(2)` failed (the rest of the output was dropped).
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Writes out the buffer.
    pub fn flush(&mut self) -> fmt::Result {
        if self.len != 0 && !self.failed {
            self.failed = !hakmem_platform::file::write_all(self.fd, &self.buf[..self.len]);
        }
        self.len = 0;
        if self.failed {
            Err(fmt::Error)
        } else {
            Ok(())
        }
    }
}

impl fmt::Write for FdWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.failed {
            return Err(fmt::Error);
        }
        let mut bytes = s.as_bytes();
        while !bytes.is_empty() {
            if self.len == self.buf.len() {
                self.flush()?;
            }
            let n = bytes.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
            self.len += n;
            bytes = &bytes[n..];
        }
        Ok(())
    }
}

impl Drop for FdWriter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// A [`fmt::Write`] into a caller's buffer. Output that does not fit is
/// cut at a character boundary, [`truncated`](Self::truncated) is set and
/// the write fails (so a report stops early).
#[derive(Debug)]
pub struct SliceWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
    truncated: bool,
}

impl<'a> SliceWriter<'a> {
    /// A writer filling `buf` from the start.
    pub fn new(buf: &'a mut [u8]) -> Self {
        SliceWriter {
            buf,
            len: 0,
            truncated: false,
        }
    }

    /// Bytes written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether output was cut.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The text written.
    pub fn as_str(&self) -> &str {
        // Only whole `str`s or prefixes cut at a char boundary were copied.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl fmt::Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - self.len;
        if s.len() <= room {
            self.buf[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
            self.len += s.len();
            return Ok(());
        }
        let mut cut = room;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        self.buf[self.len..self.len + cut].copy_from_slice(&s.as_bytes()[..cut]);
        self.len += cut;
        self.truncated = true;
        Err(fmt::Error)
    }
}

/// A short string built on the stack (for padding formatted cells).
pub(crate) struct StackStr<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackStr<N> {
    pub(crate) const fn new() -> Self {
        StackStr {
            buf: [0; N],
            len: 0,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl<const N: usize> fmt::Write for StackStr<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut w = SliceWriter {
            len: self.len,
            buf: &mut self.buf,
            truncated: false,
        };
        let r = w.write_str(s);
        self.len = w.len;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn slice_writer_cuts_at_char_boundary() {
        let mut buf = [0u8; 5];
        let mut w = SliceWriter::new(&mut buf);
        assert!(w.write_str("ab").is_ok());
        assert!(w.write_str("cé€").is_err());
        assert_eq!(w.as_str(), "abcé");
        assert!(w.truncated());
    }

    #[test]
    fn fd_writer_writes_through_a_pipe() {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let (mut rx, tx) = std::io::pipe().unwrap();
        let text: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            rx.read_to_end(&mut out).unwrap();
            out
        });
        {
            let mut w = FdWriter::new(tx.as_raw_fd());
            w.write_str(&text).unwrap();
            write!(w, "{}", 42).unwrap();
        }
        drop(tx);
        let got = reader.join().unwrap();
        assert_eq!(got, format!("{text}42").into_bytes());
    }

    #[test]
    fn fd_writer_reports_failure() {
        let mut w = FdWriter::new(-1);
        w.write_str("x").unwrap();
        assert!(w.flush().is_err());
        assert!(w.failed());
    }
}
