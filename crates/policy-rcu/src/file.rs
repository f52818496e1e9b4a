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
//!   field names of [`FrozenPolicy`] (see [`Key`]); values are unsigned
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
//! Ranges:
//!
//! | key | range |
//! |---|---|
//! | `tiny_cap`, `mid_cap` (per class) | 0 ..= 4096 |
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

use crate::{FrozenPolicy, DEFAULT_POLICY};

/// The header line of a version 1 policy file.
pub const POLICY_HEADER: &str = "hakmem-policy v1";

/// The largest number of bytes [`FrozenPolicy::serialize`] writes for any
/// policy that passes [`FrozenPolicy::validate`]. A buffer this big always
/// suffices.
pub const POLICY_FILE_MAX: usize = 8192;

/// The largest per-class capacity a policy may hold.
pub const MAX_CAP: u16 = 4096;

/// A key of the policy file: one field of [`FrozenPolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// `tiny_cap`: per tiny class.
    TinyCap,
    /// `tiny_refill`: per tiny class.
    TinyRefill,
    /// `mid_cap`: per mid class.
    MidCap,
    /// `mid_refill`: per mid class.
    MidRefill,
    /// `mid_wmax_permille`.
    MidWmaxPermille,
    /// `large_cache_budget`.
    LargeCacheBudget,
    /// `large_cache_max_block`.
    LargeCacheMaxBlock,
    /// `large_wmax_permille`.
    LargeWmaxPermille,
    /// `large_clean_budget`.
    LargeCleanBudget,
    /// `decay_ms`.
    DecayMs,
    /// `madvise_batch`.
    MadviseBatch,
    /// `thp_threshold`.
    ThpThreshold,
    /// `pool_dirty`.
    PoolDirty,
    /// `pool_clean`.
    PoolClean,
    /// `heap_keep_empty`.
    HeapKeepEmpty,
    /// `heap_empty_budget`.
    HeapEmptyBudget,
}

impl Key {
    /// Number of keys.
    pub const COUNT: usize = 16;

    /// Every key, in the order [`FrozenPolicy::serialize`] writes them.
    pub const ALL: [Key; Key::COUNT] = [
        Key::TinyCap,
        Key::TinyRefill,
        Key::MidCap,
        Key::MidRefill,
        Key::MidWmaxPermille,
        Key::LargeCacheBudget,
        Key::LargeCacheMaxBlock,
        Key::LargeWmaxPermille,
        Key::LargeCleanBudget,
        Key::DecayMs,
        Key::MadviseBatch,
        Key::ThpThreshold,
        Key::PoolDirty,
        Key::PoolClean,
        Key::HeapKeepEmpty,
        Key::HeapEmptyBudget,
    ];

    /// The key as written in the file (the field's name).
    pub const fn name(self) -> &'static str {
        match self {
            Key::TinyCap => "tiny_cap",
            Key::TinyRefill => "tiny_refill",
            Key::MidCap => "mid_cap",
            Key::MidRefill => "mid_refill",
            Key::MidWmaxPermille => "mid_wmax_permille",
            Key::LargeCacheBudget => "large_cache_budget",
            Key::LargeCacheMaxBlock => "large_cache_max_block",
            Key::LargeWmaxPermille => "large_wmax_permille",
            Key::LargeCleanBudget => "large_clean_budget",
            Key::DecayMs => "decay_ms",
            Key::MadviseBatch => "madvise_batch",
            Key::ThpThreshold => "thp_threshold",
            Key::PoolDirty => "pool_dirty",
            Key::PoolClean => "pool_clean",
            Key::HeapKeepEmpty => "heap_keep_empty",
            Key::HeapEmptyBudget => "heap_empty_budget",
        }
    }

    /// The key named `name`, if any.
    pub fn from_name(name: &[u8]) -> Option<Key> {
        Key::ALL
            .iter()
            .copied()
            .find(|k| k.name().as_bytes() == name)
    }

    /// How many values the key takes: one per class for the per-class keys,
    /// else 1.
    pub const fn values(self) -> usize {
        match self {
            Key::TinyCap | Key::TinyRefill => TINY_CLASSES,
            Key::MidCap | Key::MidRefill => MID_CLASSES,
            _ => 1,
        }
    }

    /// Whether the key takes one value per class.
    pub const fn per_class(self) -> bool {
        matches!(
            self,
            Key::TinyCap | Key::TinyRefill | Key::MidCap | Key::MidRefill
        )
    }

    /// The inclusive range each of the key's values must lie in. For the
    /// refill keys this is the outer bound; each refill must also be at most
    /// its class's cap, and `large_cache_max_block` at most
    /// `large_cache_budget` (checked by [`FrozenPolicy::validate`]).
    pub const fn range(self) -> (u64, u64) {
        const TIB: u64 = 1 << 40;
        const ADDRESS_SPACE: u64 = 1 << 47;
        let (lo, hi) = match self {
            Key::TinyCap | Key::TinyRefill | Key::MidCap | Key::MidRefill => (0, MAX_CAP as u64),
            Key::MidWmaxPermille | Key::LargeWmaxPermille => (1000, 8000),
            Key::LargeCacheBudget | Key::LargeCacheMaxBlock | Key::HeapEmptyBudget => (0, TIB),
            Key::LargeCleanBudget | Key::ThpThreshold => (0, ADDRESS_SPACE),
            Key::DecayMs => (1, 3_600_000),
            Key::MadviseBatch => (1, 4096),
            Key::PoolDirty | Key::PoolClean | Key::HeapKeepEmpty => (0, 4096),
        };
        let max = usize::MAX as u64;
        (lo, if hi > max { max } else { hi })
    }

    /// One line describing the key (written as a comment above it).
    pub const fn doc(self) -> &'static str {
        match self {
            Key::TinyCap => "per tiny class: free blocks a thread's bin may hold",
            Key::TinyRefill => "per tiny class: blocks one refill moves into the bin",
            Key::MidCap => "per mid class: free blocks a thread's bin may hold",
            Key::MidRefill => "per mid class: blocks one refill moves into the bin",
            Key::MidWmaxPermille => {
                "mid W_MAX (1/1000): an empty bin may take a block up to this multiple of the size"
            }
            Key::LargeCacheBudget => "bytes of freed large mappings kept with their pages",
            Key::LargeCacheMaxBlock => "largest mapping the large cache keeps (bytes)",
            Key::LargeWmaxPermille => {
                "large W_MAX (1/1000): a cached mapping serves requests down to 1/this of its size"
            }
            Key::LargeCleanBudget => {
                "address space of purged large mappings kept for reuse (bytes)"
            }
            Key::DecayMs => "cached memory unused this long (ms) is purged",
            Key::MadviseBatch => "mappings purged per madvise batch",
            Key::ThpThreshold => {
                "large mappings of at least this many bytes get transparent huge pages"
            }
            Key::PoolDirty => "empty superslabs the pool keeps with their pages",
            Key::PoolClean => "purged superslabs the pool keeps as address space",
            Key::HeapKeepEmpty => "empty superslabs a heap keeps for itself",
            Key::HeapEmptyBudget => "bytes of empty slabs a heap keeps until they decay",
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The per-class array a key names.
fn array(p: &FrozenPolicy, k: Key) -> Option<&[u16]> {
    match k {
        Key::TinyCap => Some(&p.tiny_cap),
        Key::TinyRefill => Some(&p.tiny_refill),
        Key::MidCap => Some(&p.mid_cap),
        Key::MidRefill => Some(&p.mid_refill),
        _ => None,
    }
}

fn array_mut(p: &mut FrozenPolicy, k: Key) -> Option<&mut [u16]> {
    match k {
        Key::TinyCap => Some(&mut p.tiny_cap),
        Key::TinyRefill => Some(&mut p.tiny_refill),
        Key::MidCap => Some(&mut p.mid_cap),
        Key::MidRefill => Some(&mut p.mid_refill),
        _ => None,
    }
}

/// The value of a scalar key (0 for a per-class key).
fn scalar(p: &FrozenPolicy, k: Key) -> u64 {
    match k {
        Key::MidWmaxPermille => p.mid_wmax_permille as u64,
        Key::LargeCacheBudget => p.large_cache_budget as u64,
        Key::LargeCacheMaxBlock => p.large_cache_max_block as u64,
        Key::LargeWmaxPermille => p.large_wmax_permille as u64,
        Key::LargeCleanBudget => p.large_clean_budget as u64,
        Key::DecayMs => p.decay_ms,
        Key::MadviseBatch => p.madvise_batch as u64,
        Key::ThpThreshold => p.thp_threshold as u64,
        Key::PoolDirty => p.pool_dirty as u64,
        Key::PoolClean => p.pool_clean as u64,
        Key::HeapKeepEmpty => p.heap_keep_empty as u64,
        Key::HeapEmptyBudget => p.heap_empty_budget as u64,
        Key::TinyCap | Key::TinyRefill | Key::MidCap | Key::MidRefill => 0,
    }
}

/// Sets a scalar key; `v` must be within [`Key::range`] (so it fits).
fn set_scalar(p: &mut FrozenPolicy, k: Key, v: u64) {
    match k {
        Key::MidWmaxPermille => p.mid_wmax_permille = v as u32,
        Key::LargeCacheBudget => p.large_cache_budget = v as usize,
        Key::LargeCacheMaxBlock => p.large_cache_max_block = v as usize,
        Key::LargeWmaxPermille => p.large_wmax_permille = v as u32,
        Key::LargeCleanBudget => p.large_clean_budget = v as usize,
        Key::DecayMs => p.decay_ms = v,
        Key::MadviseBatch => p.madvise_batch = v as u32,
        Key::ThpThreshold => p.thp_threshold = v as usize,
        Key::PoolDirty => p.pool_dirty = v as u32,
        Key::PoolClean => p.pool_clean = v as u32,
        Key::HeapKeepEmpty => p.heap_keep_empty = v as u32,
        Key::HeapEmptyBudget => p.heap_empty_budget = v as usize,
        Key::TinyCap | Key::TinyRefill | Key::MidCap | Key::MidRefill => {}
    }
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
        match array_mut(p, key) {
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn to_string(p: &FrozenPolicy) -> String {
        let mut buf = vec![0u8; POLICY_FILE_MAX];
        let n = p.serialize(&mut buf).expect("fits");
        buf.truncate(n);
        String::from_utf8(buf).expect("ascii")
    }

    fn parse_str(s: &str) -> Result<FrozenPolicy, ParseError> {
        FrozenPolicy::parse(s.as_bytes())
    }

    fn err_of(s: &str) -> ParseError {
        parse_str(s).expect_err("must be rejected")
    }

    #[test]
    fn key_names_are_unique_and_resolve() {
        for (i, k) in Key::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
            assert_eq!(Key::from_name(k.name().as_bytes()), Some(*k));
        }
        assert_eq!(Key::from_name(b"tiny_caps"), None);
        assert_eq!(Key::from_name(b""), None);
    }

    #[test]
    fn default_round_trips_and_is_valid() {
        DEFAULT_POLICY.validate().expect("default valid");
        let s = to_string(&DEFAULT_POLICY);
        assert!(s.starts_with("hakmem-policy v1\n"));
        assert_eq!(s.len(), DEFAULT_POLICY.serialized_len());
        assert_eq!(parse_str(&s), Ok(DEFAULT_POLICY));
    }

    #[test]
    fn sample_file_is_documented() {
        // The start of the default file, as the report and docs show it.
        let s = to_string(&DEFAULT_POLICY);
        let line = |k: Key| {
            s.lines()
                .find(|l| l.starts_with(&format!("{} =", k.name())))
                .unwrap()
                .to_string()
        };
        assert_eq!(line(Key::DecayMs), "decay_ms = 1000");
        assert_eq!(
            line(Key::TinyCap).split_whitespace().count(),
            2 + TINY_CLASSES
        );
        assert!(s.contains("# cached memory unused this long (ms) is purged\n"));
    }

    #[test]
    fn serialize_reports_needed_size() {
        let need = DEFAULT_POLICY.serialized_len();
        let mut small = vec![0u8; need - 1];
        assert_eq!(
            DEFAULT_POLICY.serialize(&mut small),
            Err(BufferTooSmall { needed: need })
        );
        let mut exact = vec![0u8; need];
        assert_eq!(DEFAULT_POLICY.serialize(&mut exact), Ok(need));
        assert_eq!(
            DEFAULT_POLICY.serialize(&mut []),
            Err(BufferTooSmall { needed: need })
        );
    }

    #[test]
    fn the_largest_policy_fits_the_bound() {
        let mut p = DEFAULT_POLICY;
        p.tiny_cap = [MAX_CAP; TINY_CLASSES];
        p.tiny_refill = [MAX_CAP; TINY_CLASSES];
        p.mid_cap = [MAX_CAP; MID_CLASSES];
        p.mid_refill = [MAX_CAP; MID_CLASSES];
        for key in Key::ALL {
            if !key.per_class() {
                set_scalar(&mut p, key, key.range().1);
            }
        }
        p.validate().expect("valid");
        assert!(
            p.serialized_len() <= POLICY_FILE_MAX,
            "{}",
            p.serialized_len()
        );
        assert_eq!(FrozenPolicy::parse(to_string(&p).as_bytes()), Ok(p));
    }

    #[test]
    fn missing_keys_take_the_base_values() {
        let p = parse_str("hakmem-policy v1\ndecay_ms = 250\n").unwrap();
        assert_eq!(p.decay_ms, 250);
        assert_eq!(
            FrozenPolicy {
                decay_ms: 1000,
                ..p
            },
            DEFAULT_POLICY
        );
        // only the header: the defaults
        assert_eq!(parse_str("hakmem-policy v1"), Ok(DEFAULT_POLICY));
        assert_eq!(parse_str("hakmem-policy v1\r\n\r\n"), Ok(DEFAULT_POLICY));
        // parse_onto uses another base
        let base = FrozenPolicy {
            pool_dirty: 3,
            ..DEFAULT_POLICY
        };
        let p = FrozenPolicy::parse_onto(b"hakmem-policy v1\ndecay_ms = 7\n", &base).unwrap();
        assert_eq!((p.pool_dirty, p.decay_ms), (3, 7));
    }

    #[test]
    fn comments_blanks_and_crlf() {
        let s = "hakmem-policy v1  \r\n# a comment\r\n\r\n   \t\n  decay_ms\t=  42 # trailing\r\npool_dirty=5\n#pool_clean = x\n";
        let p = parse_str(s).unwrap();
        assert_eq!((p.decay_ms, p.pool_dirty), (42, 5));
        assert_eq!(p.pool_clean, DEFAULT_POLICY.pool_clean);
    }

    #[test]
    fn header_problems() {
        assert_eq!(
            err_of(""),
            ParseError {
                line: 1,
                problem: Problem::MissingHeader
            }
        );
        assert_eq!(err_of("decay_ms = 5\n").problem, Problem::MissingHeader);
        assert_eq!(
            err_of("# c\nhakmem-policy v1\n").problem,
            Problem::MissingHeader
        );
        assert_eq!(
            err_of("hakmem-policy v1x\n").problem,
            Problem::MissingHeader
        );
        assert_eq!(
            err_of("hakmem-policy v2\ndecay_ms = 5\n"),
            ParseError {
                line: 1,
                problem: Problem::UnsupportedVersion
            }
        );
    }

    #[test]
    fn unknown_and_duplicate_keys_are_errors() {
        let e = err_of("hakmem-policy v1\n\ndecay = 5\n");
        assert_eq!(e.line, 3);
        assert_eq!(e.problem, Problem::UnknownKey(KeyName::new(b"decay")));
        assert_eq!(e.to_string(), "line 3: unknown key `decay`");
        let e = err_of("hakmem-policy v1\ndecay_ms = 5\npool_dirty = 1\ndecay_ms = 6\n");
        assert_eq!(
            e,
            ParseError {
                line: 4,
                problem: Problem::DuplicateKey(Key::DecayMs)
            }
        );
        // a long non-ASCII name is truncated and shown safely
        let mut s = b"hakmem-policy v1\n".to_vec();
        s.extend_from_slice(&[0xff; 40]);
        s.extend_from_slice(b" = 1\n");
        let e = FrozenPolicy::parse(&s).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("line 2: unknown key `{}`", "?".repeat(32))
        );
    }

    #[test]
    fn value_problems() {
        let h = "hakmem-policy v1\n";
        let cases: &[(&str, Problem, &str)] = &[
            (
                "decay_ms 5",
                Problem::MissingEquals,
                "expected `key = value`",
            ),
            (
                "decay_ms =",
                Problem::WrongCount {
                    key: Key::DecayMs,
                    found: 0,
                },
                "`decay_ms` takes 1 value, found 0",
            ),
            (
                "decay_ms = 5 6",
                Problem::WrongCount {
                    key: Key::DecayMs,
                    found: 2,
                },
                "`decay_ms` takes 1 value, found 2",
            ),
            (
                "decay_ms = -5",
                Problem::BadNumber {
                    key: Key::DecayMs,
                    index: 0,
                },
                "decay_ms is not an unsigned decimal number",
            ),
            (
                "decay_ms = 0x10",
                Problem::BadNumber {
                    key: Key::DecayMs,
                    index: 0,
                },
                "decay_ms is not an unsigned decimal number",
            ),
            (
                "decay_ms = 99999999999999999999999",
                Problem::BadNumber {
                    key: Key::DecayMs,
                    index: 0,
                },
                "decay_ms is not an unsigned decimal number",
            ),
            (
                "decay_ms = 0",
                Problem::OutOfRange {
                    key: Key::DecayMs,
                    index: 0,
                    value: 0,
                },
                "decay_ms = 0 is outside 1..=3600000",
            ),
            (
                "mid_wmax_permille = 999",
                Problem::OutOfRange {
                    key: Key::MidWmaxPermille,
                    index: 0,
                    value: 999,
                },
                "mid_wmax_permille = 999 is outside 1000..=8000",
            ),
            (
                "tiny_cap = 1 2 3",
                Problem::WrongCount {
                    key: Key::TinyCap,
                    found: 3,
                },
                "",
            ),
        ];
        for (line, problem, msg) in cases {
            let e = err_of(&format!("{h}# x\n{line}\n"));
            assert_eq!(e.line, 3, "{line}");
            assert_eq!(e.problem, *problem, "{line}");
            if !msg.is_empty() {
                assert_eq!(e.to_string(), format!("line 3: {msg}"));
            }
        }
    }

    #[test]
    fn per_class_values_are_checked_one_by_one() {
        let mut caps = vec!["4096".to_string(); TINY_CLASSES];
        caps[5] = "4097".into();
        let e = err_of(&format!(
            "hakmem-policy v1\ntiny_cap = {}\n",
            caps.join(" ")
        ));
        assert_eq!(
            e.problem,
            Problem::OutOfRange {
                key: Key::TinyCap,
                index: 5,
                value: 4097
            }
        );
        assert_eq!(
            e.to_string(),
            "line 2: tiny_cap[5] = 4097 is outside 0..=4096"
        );
        caps[5] = "x".into();
        let e = err_of(&format!(
            "hakmem-policy v1\ntiny_cap = {}\n",
            caps.join(" ")
        ));
        assert_eq!(
            e.problem,
            Problem::BadNumber {
                key: Key::TinyCap,
                index: 5
            }
        );
        caps[5] = "7".into();
        caps.push("8".into());
        let e = err_of(&format!(
            "hakmem-policy v1\ntiny_cap = {}\n",
            caps.join("\t")
        ));
        assert_eq!(
            e.problem,
            Problem::WrongCount {
                key: Key::TinyCap,
                found: TINY_CLASSES as u16 + 1
            }
        );
    }

    #[test]
    fn cross_field_problems_name_a_line() {
        // refill above cap: reported on the refill line when it is present
        let caps = vec!["4"; MID_CLASSES].join(" ");
        let refills = vec!["5"; MID_CLASSES].join(" ");
        let e = err_of(&format!(
            "hakmem-policy v1\nmid_cap = {caps}\n\nmid_refill = {refills}\n"
        ));
        assert_eq!(e.line, 4);
        assert_eq!(
            e.to_string(),
            "line 4: mid_refill[0] = 5 exceeds mid_cap[0] = 4"
        );
        // ... and on the cap line when the refill comes from the defaults
        let caps = vec!["0"; TINY_CLASSES].join(" ");
        let e = err_of(&format!(
            "hakmem-policy v1\ndecay_ms = 9\ntiny_cap = {caps}\n"
        ));
        assert_eq!(e.line, 3);
        assert!(matches!(
            e.problem,
            Problem::RefillAboveCap {
                key: Key::TinyRefill,
                class: 0,
                ..
            }
        ));
        // max block above budget
        let e = err_of("hakmem-policy v1\nlarge_cache_budget = 1048576\n");
        assert_eq!(e.line, 2);
        assert_eq!(
            e.problem,
            Problem::MaxBlockAboveBudget {
                max_block: DEFAULT_POLICY.large_cache_max_block as u64,
                budget: 1 << 20
            }
        );
        // with neither key in the file (an invalid base): line 0
        let base = FrozenPolicy {
            large_cache_budget: 0,
            ..DEFAULT_POLICY
        };
        let e = FrozenPolicy::parse_onto(b"hakmem-policy v1\n", &base).unwrap_err();
        assert_eq!(e.line, 0);
        assert!(e.to_string().starts_with("large_cache_max_block = "));
    }

    #[test]
    fn validate_reports_ranges() {
        let p = FrozenPolicy {
            madvise_batch: 0,
            ..DEFAULT_POLICY
        };
        assert_eq!(
            p.validate(),
            Err(Problem::OutOfRange {
                key: Key::MadviseBatch,
                index: 0,
                value: 0
            })
        );
        let mut p = DEFAULT_POLICY;
        p.mid_refill[3] = p.mid_cap[3] + 1;
        assert!(matches!(
            p.validate(),
            Err(Problem::RefillAboveCap {
                key: Key::MidRefill,
                class: 3,
                ..
            })
        ));
        // caps and refills of 0 are valid (the minimal mode's bins)
        let mut p = DEFAULT_POLICY;
        p.tiny_cap = [0; TINY_CLASSES];
        p.tiny_refill = [0; TINY_CLASSES];
        assert_eq!(p.validate(), Ok(()));
    }

    /// A valid policy: every value within its range, refills within caps.
    pub(crate) fn valid_policy() -> impl Strategy<Value = FrozenPolicy> {
        let class = (0..=MAX_CAP, 0u32..=1000);
        (
            prop::collection::vec(class.clone(), TINY_CLASSES),
            prop::collection::vec(class, MID_CLASSES),
            prop::collection::vec(any::<u64>(), Key::COUNT),
        )
            .prop_map(|(tiny, mid, scalars)| {
                let mut p = DEFAULT_POLICY;
                for (c, &(cap, frac)) in tiny.iter().enumerate() {
                    p.tiny_cap[c] = cap;
                    p.tiny_refill[c] = (cap as u32 * frac / 1000) as u16;
                }
                for (c, &(cap, frac)) in mid.iter().enumerate() {
                    p.mid_cap[c] = cap;
                    p.mid_refill[c] = (cap as u32 * frac / 1000) as u16;
                }
                for (key, r) in Key::ALL.into_iter().zip(scalars) {
                    if !key.per_class() {
                        let (lo, hi) = key.range();
                        // small values as often as large ones
                        let v = if r & 1 == 0 {
                            lo + (r >> 1) % (hi - lo + 1)
                        } else {
                            lo + (r >> 1) % 5000.min(hi - lo + 1)
                        };
                        set_scalar(&mut p, key, v);
                    }
                }
                if p.large_cache_max_block > p.large_cache_budget {
                    core::mem::swap(&mut p.large_cache_max_block, &mut p.large_cache_budget);
                }
                p
            })
    }

    /// Invalid lines, each rejected wherever it appears.
    fn bad_line() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z_]{1,12}",
            "[a-z_]{1,12} = [0-9]{1,3}".prop_filter("unknown key", |s| {
                Key::from_name(s.split(' ').next().unwrap().as_bytes()).is_none()
            }),
            "decay_ms = [a-z]{1,5}",
            "madvise_batch = (0|4097|99999)",
            "mid_wmax_permille = [0-9]{1,3}",
            "tiny_cap = [0-9 ]{0,20}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn valid_policies_round_trip(p in valid_policy()) {
            prop_assert_eq!(p.validate(), Ok(()));
            let s = to_string(&p);
            prop_assert!(s.len() <= POLICY_FILE_MAX);
            prop_assert_eq!(FrozenPolicy::parse(s.as_bytes()), Ok(p));
        }

        #[test]
        fn parser_never_panics(input in prop::collection::vec(any::<u8>(), 0..600)) {
            let lines = input.split(|&b| b == b'\n').count() as u32;
            if let Err(e) = FrozenPolicy::parse(&input) {
                prop_assert!(e.line <= lines);
                let _ = e.to_string();
            }
        }

        #[test]
        fn parser_never_panics_after_a_header(
            body in prop::collection::vec(
                prop_oneof![
                    any::<u8>(),
                    Just(b'\n'), Just(b'='), Just(b' '), Just(b'#'),
                    (b'0'..=b'9'),
                ],
                0..600,
            ),
            key in 0..Key::COUNT,
        ) {
            let mut input = format!("hakmem-policy v1\n{} =", Key::ALL[key].name()).into_bytes();
            input.extend_from_slice(&body);
            let lines = input.split(|&b| b == b'\n').count() as u32;
            match FrozenPolicy::parse(&input) {
                Ok(p) => prop_assert_eq!(p.validate(), Ok(())),
                Err(e) => {
                    prop_assert!(e.line <= lines);
                    let _ = e.to_string();
                }
            }
        }

        #[test]
        fn malformed_files_are_rejected_at_the_bad_line(
            p in valid_policy(),
            bad in bad_line(),
            at in any::<prop::sample::Index>(),
        ) {
            let s = to_string(&p);
            let mut lines: Vec<&str> = s.lines().collect();
            let at = 1 + at.index(lines.len()); // after the header
            lines.insert(at, &bad);
            let e = FrozenPolicy::parse(lines.join("\n").as_bytes()).unwrap_err();
            prop_assert_eq!(e.line as usize, at + 1, "{}", e);
        }
    }
}
