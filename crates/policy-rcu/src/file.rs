//! Policy files: a documented, versioned text format for a [`FrozenPolicy`].
//!
//! `HAKMEM_POLICY=path` starts hakmem on a saved policy and
//! `HAKMEM_POLICY_SAVE=path` writes the learned one; this module is the
//! format both use. Neither direction allocates: [`FrozenPolicy::serialize`]
//! writes into a caller's buffer (at most [`POLICY_FILE_MAX`] bytes) and
//! [`FrozenPolicy::parse`] reads a byte slice and reports a problem as fixed-size
//! data ([`ParseError`]: a line number and a [`Problem`]), so both can run in
//! the allocator's initialisation.
//!
//! # Format, version 1
//!
//! ```text
//! hakmem-policy v1
//! # Comments start with '#' (anywhere on a line); blank lines are ignored.
//! mid_wmax_permille = 1250
//! large_cache_budget = 67108864
//! tiny_cap = 512 512 512 ...      # one value per tiny class
//! ```
//!
//! * The first line is the header, exactly `hakmem-policy v1` (trailing
//!   blanks and a CR are allowed). A header with another version is
//!   [`Problem::UnsupportedVersion`]; anything else is
//!   [`Problem::MissingHeader`].
//! * Every other non-blank, non-comment line is `key = value`. Keys are the
//!   field names of [`FrozenPolicy`] (see [`Key`], generated with the
//!   struct from one table in `fields.rs`); values are unsigned
//!   decimal integers (digits only: no sign, no suffix, no separators).
//! * Per-class keys (`tiny_cap`, `tiny_refill`, `mid_cap`, `mid_refill`)
//!   take exactly one value per class, in class order, separated by spaces
//!   or tabs, on one line.
//! * **Unknown keys are errors** ([`Problem::UnknownKey`]): a typo must not
//!   silently leave a knob at its default. A key given twice is an error too.
//! * **Missing keys keep the base policy's value** (the built-in
//!   [`DEFAULT_POLICY`] for [`FrozenPolicy::parse`]),
//!   with no error, so files written by an older hakmem keep working when
//!   knobs are added.
//! * Every value is range-checked as it is read ([`Key::range`]); after the
//!   last line the whole policy is validated ([`FrozenPolicy::validate`]:
//!   `refill ≤ cap` per class, `large_cache_max_block ≤ large_cache_budget`).
//!   A cross-field error is reported on the line of the key named in it
//!   (the refill or `large_cache_max_block` line; the other key's line when
//!   that one is missing from the file; line 0 when both are).
//! * Lines end with LF or CRLF.
//!
//! Ranges (defined once, with every key, in the field table of
//! `fields.rs`: [`Key::range`], [`FIELDS`](crate::FIELDS); restated here):
//!
//! | key | range |
//! |---|---|
//! | `tiny_cap`, `mid_cap` (per class) | 0 ..= 8192 |
//! | `tiny_refill`, `mid_refill` (per class) | 0 ..= that class's cap |
//! | `mid_wmax_permille`, `large_wmax_permille` | 1000 ..= 8000 |
//! | `large_cache_budget`, `heap_empty_budget` | 0 ..= 2^40 |
//! | `large_cache_max_block` | 0 ..= `large_cache_budget` |
//! | `large_clean_budget`, `thp_threshold` | 0 ..= 2^47 |
//! | `decay_ms` | 1 ..= 3 600 000 |
//! | `madvise_batch` | 1 ..= 4096 |
//! | `pool_dirty`, `pool_clean`, `heap_keep_empty` | 0 ..= 4096 |

use core::fmt;

use hakmem_mid_mt::{mid_size, MID_CLASSES};
use hakmem_tiny_sll::{tiny_size, TINY_CLASSES};

use crate::{FrozenPolicy, Key, DEFAULT_POLICY};

/// The header line of a version 1 policy file.
pub const POLICY_HEADER: &str = "hakmem-policy v1";

/// The largest number of bytes [`FrozenPolicy::serialize`] writes for any
/// policy that passes [`FrozenPolicy::validate`]. A buffer this big always
/// suffices.
pub const POLICY_FILE_MAX: usize = 8192;

/// The per-class array a key names.
fn array(p: &FrozenPolicy, k: Key) -> Option<&[u16]> {
    p.class_values(k)
}

/// The value of a scalar key (0 for a per-class key).
fn scalar(p: &FrozenPolicy, k: Key) -> u64 {
    p.get(k).unwrap_or(0)
}

/// Sets a scalar key; `v` must be within [`Key::range`] (so it fits).
fn set_scalar(p: &mut FrozenPolicy, k: Key, v: u64) {
    p.set(k, v);
}

/// An unknown key's name, kept (truncated to 32 bytes) for the message.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyName {
    bytes: [u8; 32],
    len: u8,
}

impl KeyName {
    fn new(name: &[u8]) -> Self {
        let mut bytes = [0u8; 32];
        let n = name.len().min(32);
        bytes[..n].copy_from_slice(&name[..n]);
        KeyName {
            bytes,
            len: n as u8,
        }
    }

    /// The name's bytes (at most 32).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl fmt::Debug for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

impl fmt::Display for KeyName {
    /// Printable ASCII as is, anything else as `?`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.as_bytes() {
            let c = if b.is_ascii_graphic() { b as char } else { '?' };
            fmt::Write::write_char(f, c)?;
        }
        Ok(())
    }
}

/// What is wrong with a policy file or a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The first line is not a `hakmem-policy v<N>` header.
    MissingHeader,
    /// The header names a version other than 1.
    UnsupportedVersion,
    /// A line that is neither blank, a comment nor `key = value`.
    MissingEquals,
    /// A key that is not a field of the policy.
    UnknownKey(KeyName),
    /// A key given a second time.
    DuplicateKey(Key),
    /// A value that is not an unsigned decimal number fitting 64 bits.
    BadNumber {
        /// The key.
        key: Key,
        /// Which of its values (0 for a scalar key).
        index: u16,
    },
    /// A number of values other than [`Key::values`].
    WrongCount {
        /// The key.
        key: Key,
        /// How many values the line has.
        found: u16,
    },
    /// A value outside [`Key::range`].
    OutOfRange {
        /// The key.
        key: Key,
        /// Which of its values (0 for a scalar key).
        index: u16,
        /// The value.
        value: u64,
    },
    /// A class whose refill count exceeds its cap.
    RefillAboveCap {
        /// `TinyRefill` or `MidRefill`.
        key: Key,
        /// The class (within its tier).
        class: u16,
        /// Its refill count.
        refill: u16,
        /// Its cap.
        cap: u16,
    },
    /// `large_cache_max_block` exceeds `large_cache_budget`.
    MaxBlockAboveBudget {
        /// `large_cache_max_block`.
        max_block: u64,
        /// `large_cache_budget`.
        budget: u64,
    },
}

impl Problem {
    /// The key the problem is about, if it is about one.
    pub fn key(&self) -> Option<Key> {
        match *self {
            Problem::MissingHeader
            | Problem::UnsupportedVersion
            | Problem::MissingEquals
            | Problem::UnknownKey(_) => None,
            Problem::DuplicateKey(key)
            | Problem::BadNumber { key, .. }
            | Problem::WrongCount { key, .. }
            | Problem::OutOfRange { key, .. }
            | Problem::RefillAboveCap { key, .. } => Some(key),
            Problem::MaxBlockAboveBudget { .. } => Some(Key::LargeCacheMaxBlock),
        }
    }
}

/// `key` for a scalar, `key[index]` for a per-class key.
struct Indexed(Key, u16);

impl fmt::Display for Indexed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.per_class() {
            write!(f, "{}[{}]", self.0, self.1)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Problem::MissingHeader => write!(f, "expected the header `{POLICY_HEADER}`"),
            Problem::UnsupportedVersion => {
                write!(f, "unsupported policy version (this hakmem reads v1)")
            }
            Problem::MissingEquals => write!(f, "expected `key = value`"),
            Problem::UnknownKey(name) => write!(f, "unknown key `{name}`"),
            Problem::DuplicateKey(key) => write!(f, "`{key}` is given twice"),
            Problem::BadNumber { key, index } => write!(
                f,
                "{} is not an unsigned decimal number",
                Indexed(key, index)
            ),
            Problem::WrongCount { key, found } => write!(
                f,
                "`{key}` takes {} value{}, found {found}",
                key.values(),
                if key.values() == 1 { "" } else { "s" }
            ),
            Problem::OutOfRange { key, index, value } => {
                let (lo, hi) = key.range();
                write!(
                    f,
                    "{} = {value} is outside {lo}..={hi}",
                    Indexed(key, index)
                )
            }
            Problem::RefillAboveCap {
                key,
                class,
                refill,
                cap,
            } => {
                let cap_key = if key == Key::TinyRefill {
                    Key::TinyCap
                } else {
                    Key::MidCap
                };
                write!(
                    f,
                    "{} = {refill} exceeds {} = {cap}",
                    Indexed(key, class),
                    Indexed(cap_key, class)
                )
            }
            Problem::MaxBlockAboveBudget { max_block, budget } => write!(
                f,
                "large_cache_max_block = {max_block} exceeds large_cache_budget = {budget}"
            ),
        }
    }
}

/// Why a policy file was rejected: where and what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number; 0 when the problem involves no line of the file
    /// (a cross-field check between two keys the file does not set).
    pub line: u32,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for ParseError {
    /// `line 7: tiny_refill[3] = 600 exceeds tiny_cap[3] = 512`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.problem)
        } else {
            write!(f, "line {}: {}", self.line, self.problem)
        }
    }
}

/// The buffer given to [`FrozenPolicy::serialize`] is too small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferTooSmall {
    /// Bytes the file needs.
    pub needed: usize,
}

impl fmt::Display for BufferTooSmall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the policy file needs {} bytes", self.needed)
    }
}

/// Writes into a byte buffer, counting what does not fit.
struct Out<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Out<'_> {
    fn bytes(&mut self, b: &[u8]) {
        if self.len < self.buf.len() {
            let n = b.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
        }
        self.len += b.len();
    }

    fn num(&mut self, mut v: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.bytes(&digits[i..]);
    }
}

/// Strips blanks (space, tab) from both ends.
fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// An unsigned decimal number, or `None` (empty, another character, or
/// more than 64 bits).
fn decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((b - b'0') as u64)?;
    }
    Some(v)
}

/// Reads one line's values for `key` into `p`.
fn read_values(p: &mut FrozenPolicy, key: Key, value: &[u8]) -> Result<(), Problem> {
    let (lo, hi) = key.range();
    let expected = key.values();
    let mut found = 0usize;
    let words = value
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|w| !w.is_empty());
    for word in words {
        if found == expected {
            let total = value
                .split(|&b| b == b' ' || b == b'\t')
                .filter(|w| !w.is_empty())
                .count();
            return Err(Problem::WrongCount {
                key,
                found: total.min(u16::MAX as usize) as u16,
            });
        }
        let index = found as u16;
        let v = decimal(word).ok_or(Problem::BadNumber { key, index })?;
        if v < lo || v > hi {
            return Err(Problem::OutOfRange {
                key,
                index,
                value: v,
            });
        }
        match p.class_values_mut(key) {
            Some(a) => a[found] = v as u16,
            None => set_scalar(p, key, v),
        }
        found += 1;
    }
    if found != expected {
        return Err(Problem::WrongCount {
            key,
            found: found as u16,
        });
    }
    Ok(())
}

impl FrozenPolicy {
    /// Checks every range of the file format ([`Key::range`]), `refill ≤
    /// cap` for every class and `large_cache_max_block ≤
    /// large_cache_budget`. The first problem found, in [`Key::ALL`] order.
    pub fn validate(&self) -> Result<(), Problem> {
        for key in Key::ALL {
            let (lo, hi) = key.range();
            match array(self, key) {
                Some(a) => {
                    for (i, &v) in a.iter().enumerate() {
                        if (v as u64) < lo || v as u64 > hi {
                            return Err(Problem::OutOfRange {
                                key,
                                index: i as u16,
                                value: v as u64,
                            });
                        }
                    }
                }
                None => {
                    let v = scalar(self, key);
                    if v < lo || v > hi {
                        return Err(Problem::OutOfRange {
                            key,
                            index: 0,
                            value: v,
                        });
                    }
                }
            }
        }
        self.check_relations().map_err(|(p, _)| p)
    }

    /// The cross-field checks, with the key whose line reports a failure
    /// first and the other key second.
    fn check_relations(&self) -> Result<(), (Problem, Key)> {
        for (refill_key, cap_key, refill, cap) in [
            (
                Key::TinyRefill,
                Key::TinyCap,
                &self.tiny_refill[..],
                &self.tiny_cap[..],
            ),
            (
                Key::MidRefill,
                Key::MidCap,
                &self.mid_refill[..],
                &self.mid_cap[..],
            ),
        ] {
            for (class, (&r, &c)) in refill.iter().zip(cap).enumerate() {
                if r > c {
                    let problem = Problem::RefillAboveCap {
                        key: refill_key,
                        class: class as u16,
                        refill: r,
                        cap: c,
                    };
                    return Err((problem, cap_key));
                }
            }
        }
        if self.large_cache_max_block > self.large_cache_budget {
            let problem = Problem::MaxBlockAboveBudget {
                max_block: self.large_cache_max_block as u64,
                budget: self.large_cache_budget as u64,
            };
            return Err((problem, Key::LargeCacheBudget));
        }
        Ok(())
    }

    /// Parses a policy file; missing keys take [`DEFAULT_POLICY`]'s values.
    /// See the [module documentation](crate::file) for the format.
    pub fn parse(input: &[u8]) -> Result<FrozenPolicy, ParseError> {
        FrozenPolicy::parse_onto(input, &DEFAULT_POLICY)
    }

    /// Parses a policy file; missing keys take `base`'s values. The result
    /// is validated as a whole, so `base` needs to be valid only where the
    /// file leaves it alone.
    pub fn parse_onto(input: &[u8], base: &FrozenPolicy) -> Result<FrozenPolicy, ParseError> {
        let mut p = *base;
        let mut seen = [0u32; Key::COUNT];
        let mut lines = input.split(|&b| b == b'\n');
        let header = lines.next().unwrap_or(&[]);
        let header = trim(header.strip_suffix(b"\r").unwrap_or(header));
        if header != POLICY_HEADER.as_bytes() {
            let problem = match header.strip_prefix(b"hakmem-policy v") {
                Some(v) if decimal(v).is_some() => Problem::UnsupportedVersion,
                _ => Problem::MissingHeader,
            };
            return Err(ParseError { line: 1, problem });
        }
        for (i, raw) in lines.enumerate() {
            let line = (i + 2).min(u32::MAX as usize) as u32;
            let err = |problem| ParseError { line, problem };
            let content = match raw.iter().position(|&b| b == b'#') {
                Some(hash) => &raw[..hash],
                None => raw,
            };
            let content = trim(content.strip_suffix(b"\r").unwrap_or(content));
            if content.is_empty() {
                continue;
            }
            let eq = content
                .iter()
                .position(|&b| b == b'=')
                .ok_or(err(Problem::MissingEquals))?;
            let name = trim(&content[..eq]);
            let key =
                Key::from_name(name).ok_or_else(|| err(Problem::UnknownKey(KeyName::new(name))))?;
            let slot = &mut seen[key as usize];
            if *slot != 0 {
                return Err(err(Problem::DuplicateKey(key)));
            }
            *slot = line;
            read_values(&mut p, key, &content[eq + 1..]).map_err(err)?;
        }
        if let Err((problem, other)) = p.check_relations() {
            let own = problem.key().map_or(0, |k| seen[k as usize]);
            let line = if own != 0 { own } else { seen[other as usize] };
            return Err(ParseError { line, problem });
        }
        Ok(p)
    }

    /// Writes the policy as a version 1 file into `buf` and returns the
    /// number of bytes written; if `buf` is too small, nothing useful is
    /// written and the error says how many bytes are needed (at most
    /// [`POLICY_FILE_MAX`] for a valid policy).
    pub fn serialize(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let mut out = Out { buf, len: 0 };
        self.write_to(&mut out);
        if out.len > out.buf.len() {
            Err(BufferTooSmall { needed: out.len })
        } else {
            Ok(out.len)
        }
    }

    /// The number of bytes [`serialize`](Self::serialize) writes.
    pub fn serialized_len(&self) -> usize {
        let mut out = Out {
            buf: &mut [],
            len: 0,
        };
        self.write_to(&mut out);
        out.len
    }

    fn write_to(&self, out: &mut Out<'_>) {
        out.bytes(POLICY_HEADER.as_bytes());
        out.bytes(b"\n# hakmem allocator policy (format: hakmem-policy-rcu, file.rs).\n");
        out.bytes(b"# Missing keys take the built-in defaults; unknown keys are errors.\n");
        out.bytes(b"# tiny class sizes (bytes):");
        for c in 0..TINY_CLASSES {
            out.bytes(b" ");
            out.num(tiny_size(c) as u64);
        }
        out.bytes(b"\n# mid class sizes (bytes):");
        for c in 0..MID_CLASSES {
            out.bytes(b" ");
            out.num(mid_size(c) as u64);
        }
        out.bytes(b"\n");
        for key in Key::ALL {
            out.bytes(b"\n# ");
            out.bytes(key.doc().as_bytes());
            out.bytes(b"\n");
            out.bytes(key.name().as_bytes());
            out.bytes(b" =");
            match array(self, key) {
                Some(a) => {
                    for &v in a {
                        out.bytes(b" ");
                        out.num(v as u64);
                    }
                }
                None => {
                    out.bytes(b" ");
                    out.num(scalar(self, key));
                }
            }
            out.bytes(b"\n");
        }
    }
}

#[cfg(test)]
mod tests;
