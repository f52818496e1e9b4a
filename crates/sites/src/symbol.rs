//! Naming sites for the report: `file:line:column` for Rust sites,
//! `dladdr(3)` (function + offset, object file) for return addresses.
//!
//! Report time only: `dladdr` takes the dynamic loader's lock (it does not
//! allocate in glibc, but a loader lock must never be taken inside
//! `malloc`).

use core::fmt;

use crate::id::{SiteId, SiteKind};

/// What a site resolves to.
#[derive(Debug, Clone, Copy)]
pub enum Symbol<'a> {
    /// A Rust site.
    Location {
        /// Source file.
        file: &'a str,
        /// Line.
        line: u32,
        /// Column.
        column: u32,
    },
    /// A return address.
    Code {
        /// The address.
        addr: usize,
        /// Whether it was sampled.
        sampled: bool,
        /// The nearest exported symbol at or below it, if any.
        symbol: Option<&'a [u8]>,
        /// `addr` minus the symbol's address (or minus the object's base
        /// when there is no symbol).
        offset: usize,
        /// Path of the object (executable or shared library), if known.
        object: Option<&'a [u8]>,
    },
    /// The "other" bucket.
    Other,
}

/// Resolves `site` and hands the result to `f`. The names of a code site
/// point into the loader's tables; they are valid while the object stays
/// loaded, which `f` must not outlive (hence the closure).
pub fn with_symbol<R>(site: SiteId, f: impl FnOnce(&Symbol<'_>) -> R) -> R {
    match site.kind() {
        SiteKind::Location => match site.as_location() {
            Some(l) => f(&Symbol::Location {
                file: l.file(),
                line: l.line(),
                column: l.column(),
            }),
            None => f(&Symbol::Other),
        },
        SiteKind::Code | SiteKind::SampledCode => {
            let addr = site.addr();
            // A return address is the instruction after the call; look up
            // the byte before it so a call ending a function is attributed
            // to that function.
            // SAFETY: the names are used only within `f` (this closure's
            // extent), while the object of a recorded return address stays
            // loaded (the contract of `with_symbol`).
            let info = unsafe { hakmem_platform::symbol::dladdr(addr.wrapping_sub(1)) };
            let symbol = info.and_then(|i| i.symbol);
            let object = info.and_then(|i| i.object);
            let offset = match info {
                Some(i) if symbol.is_some() && i.symbol_addr != 0 => {
                    addr.wrapping_sub(i.symbol_addr)
                }
                Some(i) if i.object_base != 0 => addr.wrapping_sub(i.object_base),
                _ => 0,
            };
            f(&Symbol::Code {
                addr,
                sampled: site.kind() == SiteKind::SampledCode,
                symbol,
                offset,
                object: object.filter(|o| !o.is_empty()),
            })
        }
        SiteKind::Other => f(&Symbol::Other),
    }
}

/// Writes bytes as text, replacing invalid UTF-8.
pub(crate) fn write_lossy<W: fmt::Write + ?Sized>(w: &mut W, bytes: &[u8]) -> fmt::Result {
    for chunk in bytes.utf8_chunks() {
        w.write_str(chunk.valid())?;
        if !chunk.invalid().is_empty() {
            w.write_char(char::REPLACEMENT_CHARACTER)?;
        }
    }
    Ok(())
}

fn basename(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// The one-cell form used by the text report: `file:line:col`,
/// `symbol+0xoff (object)`, `object+0xoff`, or the bare address.
impl fmt::Display for Symbol<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Symbol::Location { file, line, column } => write!(f, "{file}:{line}:{column}"),
            Symbol::Code {
                addr,
                sampled,
                symbol,
                offset,
                object,
            } => {
                match (symbol, object) {
                    (Some(s), o) => {
                        write_lossy(f, s)?;
                        write!(f, "+{offset:#x}")?;
                        if let Some(o) = o {
                            f.write_str(" (")?;
                            write_lossy(f, basename(o))?;
                            f.write_str(")")?;
                        }
                    }
                    (None, Some(o)) => {
                        write_lossy(f, basename(o))?;
                        write!(f, "+{offset:#x}")?;
                    }
                    (None, None) => write!(f, "{addr:#x}")?,
                }
                if sampled {
                    f.write_str(" [sampled]")?;
                }
                Ok(())
            }
            Symbol::Other => f.write_str("(other sites)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_sites_are_file_line_column() {
        let site = SiteId::caller();
        let s = with_symbol(site, |s| s.to_string());
        assert_eq!(s, format!("{}:{}:20", file!(), line!() - 2));
    }

    #[test]
    fn code_sites_resolve_with_dladdr() {
        // An address inside libc's exported `write`.
        let addr = libc::write as *const () as usize + 4;
        let s = with_symbol(SiteId::code(addr), |s| {
            match s {
                Symbol::Code {
                    symbol,
                    offset,
                    object,
                    ..
                } => {
                    assert!(object.is_some());
                    // glibc may export it under an alias (`__write`).
                    assert!(symbol.is_some_and(|n| n.ends_with(b"write")), "{s:?}");
                    assert_eq!(*offset, 4);
                }
                _ => panic!("{s:?}"),
            }
            s.to_string()
        });
        assert!(s.contains("write+0x4 (libc"), "{s}");
        let s = with_symbol(SiteId::sampled(addr), |s| s.to_string());
        assert!(s.ends_with(" [sampled]"), "{s}");
    }

    #[test]
    fn unknown_addresses_print_bare() {
        let s = with_symbol(SiteId::code(0x10), |s| s.to_string());
        assert_eq!(s, "0x10");
        assert_eq!(
            with_symbol(SiteId::OTHER, |s| s.to_string()),
            "(other sites)"
        );
    }

    #[test]
    fn lossy_bytes() {
        let mut s = String::new();
        write_lossy(&mut s, b"a\xffb").unwrap();
        assert_eq!(s, "a\u{fffd}b");
    }
}
