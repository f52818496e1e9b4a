//! Reporting without allocating: one line on stderr, then (for fatal
//! errors) abort.
//!
//! Inside `malloc` nothing may allocate, so messages are assembled in a stack
//! buffer and written with one `write(2)` call.

/// A fixed-capacity line buffer (messages longer than it are cut).
#[derive(Debug)]
pub struct Line {
    buf: [u8; 256],
    len: usize,
}

impl Default for Line {
    fn default() -> Self {
        Self::new()
    }
}

impl Line {
    /// An empty line.
    pub const fn new() -> Self {
        Line {
            buf: [0; 256],
            len: 0,
        }
    }

    /// Appends text.
    pub fn str(&mut self, s: &str) -> &mut Self {
        for &b in s.as_bytes() {
            if self.len < self.buf.len() - 1 {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
        self
    }

    /// Appends `0x…` hexadecimal.
    pub fn hex(&mut self, v: usize) -> &mut Self {
        let mut tmp = [0u8; 18];
        let mut i = tmp.len();
        let mut x = v;
        loop {
            i -= 1;
            tmp[i] = b"0123456789abcdef"[x & 15];
            x >>= 4;
            if x == 0 {
                break;
            }
        }
        i -= 1;
        tmp[i] = b'x';
        i -= 1;
        tmp[i] = b'0';
        // SAFETY: only ASCII digits were written.
        self.str(unsafe { core::str::from_utf8_unchecked(&tmp[i..]) })
    }

    /// Appends a decimal number.
    pub fn dec(&mut self, v: u64) -> &mut Self {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        let mut x = v;
        loop {
            i -= 1;
            tmp[i] = b'0' + (x % 10) as u8;
            x /= 10;
            if x == 0 {
                break;
            }
        }
        // SAFETY: only ASCII digits were written.
        self.str(unsafe { core::str::from_utf8_unchecked(&tmp[i..]) })
    }

    /// The text so far.
    pub fn as_str(&self) -> &str {
        // Only whole UTF-8 strings and ASCII were appended, but a cut can
        // split a multi-byte character: fall back to the valid prefix.
        match core::str::from_utf8(&self.buf[..self.len]) {
            Ok(s) => s,
            Err(e) => {
                // SAFETY: `valid_up_to` bounds the prefix that is valid UTF-8.
                unsafe { core::str::from_utf8_unchecked(&self.buf[..e.valid_up_to()]) }
            }
        }
    }

    /// Writes the line and a newline to stderr.
    pub fn emit(&mut self) {
        self.buf[self.len] = b'\n';
        crate::file::write_all(crate::file::STDERR, &self.buf[..=self.len]);
    }
}

impl core::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.str(s);
        Ok(())
    }
}

/// Prints `hakmem: <msg>` and aborts the process.
#[cold]
#[inline(never)]
pub fn fatal(msg: &str) -> ! {
    Line::new().str("hakmem: ").str(msg).emit();
    crate::process::abort()
}

/// Prints `hakmem: <msg> <addr>` and aborts the process.
#[cold]
#[inline(never)]
pub fn fatal_at(msg: &str, addr: usize) -> ! {
    Line::new()
        .str("hakmem: ")
        .str(msg)
        .str(" ")
        .hex(addr)
        .emit();
    crate::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        let mut l = Line::new();
        l.str("x=")
            .hex(0)
            .str(" y=")
            .hex(0xdead_beef)
            .str(" z=")
            .dec(0)
            .str(",")
            .dec(18446744073709551615);
        assert_eq!(l.as_str(), "x=0x0 y=0xdeadbeef z=0,18446744073709551615");
    }

    #[test]
    fn long_lines_are_cut_not_overflowed() {
        let mut l = Line::new();
        for _ in 0..100 {
            l.str("abcdef");
        }
        assert_eq!(l.as_str().len(), 255);
    }
}
