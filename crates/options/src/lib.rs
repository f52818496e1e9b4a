//! The options table: every `HAKMEM_*` environment variable hakmem reads,
//! in one place.
//!
//! [`TABLE`] lists each variable with its type, default and meaning;
//! [`Options::from_env`] reads them all with `getenv` and
//! [`Options::from_lookup`] from any source (tests, a config file). Parsing
//! never allocates and never fails: a bad value leaves the default in place
//! and adds a [`Warning`] to a fixed-size list, which renders as one line,
//! `hakmem: HAKMEM_X=value: <problem>, using <default>`, without allocating
//! ([`Warning::line`]). So the allocator can read its options inside its
//! first `malloc`.
//!
//! Rules every variable follows:
//!
//! * unset or empty (`HAKMEM_X=`): the default, no warning;
//! * numbers are unsigned decimal, names and booleans are case-insensitive,
//!   and blanks around them are ignored (paths are taken as they are);
//! * a bad value: the default and a warning;
//! * a `HAKMEM_*` variable not in the table is reported as unknown (by
//!   [`Options::from_env`] and [`Options::check_names`]), except names
//!   starting with one of [`RESERVED_PREFIXES`] (the benchmark harness's).
//!
//! The Markdown version of the table ([`write_markdown`]) is kept in
//! `crates/options/OPTIONS.md` (a test checks it is current).
#![cfg_attr(not(test), no_std)]

use core::ffi::CStr;
use core::fmt;

use hakmem_policy_rcu::{FrozenPolicy, Key, FIELDS};

/// Bytes of a path buffer, its terminating NUL included: a path may be at
/// most `PATH_MAX - 1` bytes.
pub const PATH_MAX: usize = 256;

/// Most warnings kept; further ones are only counted
/// ([`Warnings::dropped`]).
pub const MAX_WARNINGS: usize = 16;

/// `HAKMEM_*` names with these prefixes belong to other tools and are never
/// reported as unknown.
pub const RESERVED_PREFIXES: [&str; 1] = ["HAKMEM_BENCH"];

/// `HAKMEM_MODE`: which features are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every optimisation off: no bins, no caches, no pool retention.
    Minimal,
    /// Bins and caches, on the built-in policy.
    Fast,
    /// Bins and caches on a frozen policy (`HAKMEM_POLICY`, else the
    /// built-in one). The default.
    Balanced,
    /// Balanced plus the online learner.
    Learning,
    /// Learning plus verbose tracing of the learner.
    Research,
}

bitflags::bitflags! {
    /// What a [`Mode`] turns on. Modes are nested: each one's set contains
    /// the previous one's.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct Features: u8 {
        /// Per-thread bins, the large cache and superslab pool retention
        /// (off: [`Mode::shape_policy`] zeroes them).
        const CACHES = 1;
        /// `HAKMEM_POLICY` is loaded.
        const POLICY_FILE = 1 << 1;
        /// The learner thread runs.
        const LEARNER = 1 << 2;
        /// The learner prints every decision on stderr (it emits `tracing`
        /// events in every learning mode).
        const VERBOSE = 1 << 3;
    }
}

impl Mode {
    /// Every mode, from the fewest features to the most.
    pub const ALL: [Mode; 5] = [
        Mode::Minimal,
        Mode::Fast,
        Mode::Balanced,
        Mode::Learning,
        Mode::Research,
    ];

    /// The mode's name in `HAKMEM_MODE`.
    pub const fn name(self) -> &'static str {
        MODE_NAMES[self as usize]
    }

    /// The feature matrix.
    pub const fn features(self) -> Features {
        match self {
            Mode::Minimal => Features::empty(),
            Mode::Fast => Features::CACHES,
            Mode::Balanced => Features::CACHES.union(Features::POLICY_FILE),
            Mode::Learning => Features::CACHES
                .union(Features::POLICY_FILE)
                .union(Features::LEARNER),
            Mode::Research => Features::all(),
        }
    }

    /// The policy this mode runs on, given the one it would otherwise use:
    /// `base` itself, except that [`Mode::Minimal`] zeroes every cache: the
    /// per-class fields (bin caps and refills) and every scalar field the
    /// policy's field table marks as retaining memory
    /// ([`FieldInfo::retains`](hakmem_policy_rcu::FieldInfo::retains): the large cache's budgets, the superslab
    /// pool and the heaps' empty-slab retention). The result passes
    /// [`FrozenPolicy::validate`] when `base` does.
    pub fn shape_policy(self, base: &FrozenPolicy) -> FrozenPolicy {
        let mut p = *base;
        if !self.features().contains(Features::CACHES) {
            for key in Key::ALL {
                if let Some(values) = p.class_values_mut(key) {
                    values.fill(0);
                }
            }
            for f in FIELDS.iter().filter(|f| f.retains) {
                (f.set)(&mut p, 0);
            }
        }
        p
    }
}

const MODE_NAMES: [&str; 5] = ["minimal", "fast", "balanced", "learning", "research"];
const SELECTOR_NAMES: [&str; 2] = ["ucb1", "elo"];
const ON_ERROR_NAMES: [&str; 2] = ["abort", "warn"];
const THP_NAMES: [&str; 3] = ["auto", "1", "0"];

/// `HAKMEM_THP_SUPERSLABS`: huge pages for superslabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThpSuperslabs {
    /// Chosen from the system's THP settings so that no allocating thread
    /// stalls in compaction (the default).
    Auto,
    /// Every fresh superslab advised huge (`1`).
    On,
    /// None advised (`0`).
    Off,
}

/// `HAKMEM_SELECTOR`: the learner's bandit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectorKind {
    /// UCB1 (the default).
    Ucb1,
    /// ELO ratings from pairwise comparisons, softmax selection.
    Elo,
}

/// `HAKMEM_ON_ERROR`: what a detected heap misuse does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Report in one line and abort (the default).
    Abort,
    /// Report in one line and carry on where that is safe.
    Warn,
}

/// A path from the environment, NUL-terminated in a fixed buffer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Path {
    bytes: [u8; PATH_MAX],
    len: u16,
}

impl Path {
    /// `bytes` as a path; `None` if it is empty, has a NUL byte or is
    /// longer than `PATH_MAX - 1` bytes.
    pub fn new(bytes: &[u8]) -> Option<Path> {
        if bytes.is_empty() || bytes.len() >= PATH_MAX || bytes.contains(&0) {
            return None;
        }
        let mut p = Path {
            bytes: [0; PATH_MAX],
            len: bytes.len() as u16,
        };
        p.bytes[..bytes.len()].copy_from_slice(bytes);
        Some(p)
    }

    /// The path's bytes, without the NUL.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The path as a C string (for `open`).
    pub fn as_c_str(&self) -> &CStr {
        match CStr::from_bytes_until_nul(&self.bytes) {
            Ok(c) => c,
            // `new` keeps a NUL after the path and none inside it.
            Err(_) => c"",
        }
    }
}

impl Path {
    /// The path with its placeholders replaced, for an output file written
    /// by one process of many: `%p` becomes `pid` in decimal, `%e` the
    /// executable's name `exe`, `%%` one `%`; any other `%` is kept as it
    /// is. Written NUL-terminated into `out` (no allocation); `None` if the
    /// result, NUL included, does not fit `out` or `exe` contains a NUL.
    pub fn expand<'b>(&self, pid: u32, exe: &[u8], out: &'b mut [u8]) -> Option<&'b CStr> {
        if exe.contains(&0) {
            return None;
        }
        let mut digits = [0u8; 10];
        let mut at = digits.len();
        let mut n = pid;
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let pid = &digits[at..];
        let src = self.as_bytes();
        let mut len = 0;
        let mut i = 0;
        while i < src.len() {
            let (piece, step): (&[u8], usize) = match (src[i], src.get(i + 1)) {
                (b'%', Some(b'p')) => (pid, 2),
                (b'%', Some(b'e')) => (exe, 2),
                (b'%', Some(b'%')) => (b"%", 2),
                _ => (&src[i..=i], 1),
            };
            i += step;
            let end = len + piece.len();
            if end >= out.len() {
                return None;
            }
            out[len..end].copy_from_slice(piece);
            len = end;
        }
        out[len] = 0;
        CStr::from_bytes_with_nul(&out[..=len]).ok()
    }
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Path(\"{}\")", Lossy(self.as_bytes()))
    }
}

/// Every option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// `HAKMEM_MODE`.
    pub mode: Mode,
    /// `HAKMEM_LEARN_WINDOW_MS`.
    pub learn_window_ms: u32,
    /// `HAKMEM_POLICY` (cleared, with a warning, in modes that load no
    /// policy file).
    pub policy: Option<Path>,
    /// `HAKMEM_POLICY_SAVE`.
    pub policy_save: Option<Path>,
    /// `HAKMEM_STATS`.
    pub stats: bool,
    /// `HAKMEM_SELECTOR`.
    pub selector: SelectorKind,
    /// `HAKMEM_CANARY_PERMILLE`.
    pub canary_permille: u16,
    /// `HAKMEM_SITES`.
    pub sites: bool,
    /// `HAKMEM_SITES_SAMPLE`: one call in 2^this is sampled.
    pub sites_sample: u8,
    /// `HAKMEM_SITES_JSON`.
    pub sites_json: Option<Path>,
    /// `HAKMEM_SITE_PLACEMENT`: lifetime lanes for recorded allocations.
    pub site_placement: bool,
    /// `HAKMEM_THP_SUPERSLABS`.
    pub thp_superslabs: ThpSuperslabs,
    /// `HAKMEM_SECURE`.
    pub secure: bool,
    /// `HAKMEM_ON_ERROR`.
    pub on_error: OnError,
    /// `HAKMEM_CHECK`: validate whole heaps on slow paths; `None` (unset or
    /// bad): the build's default (on with the facade's `check` feature).
    pub check: Option<bool>,
    /// `HAKMEM_DECAY_MS`; `None`: the policy's `decay_ms`.
    pub decay_ms: Option<u64>,
    /// `HAKMEM_MEM_BUDGET_MB`: the learner's RSS budget in MiB (0: none).
    pub mem_budget_mb: u32,
    /// `HAKMEM_PROF`: the profiler of hakmem's own paths.
    pub prof: bool,
    /// `HAKMEM_PROF_SAMPLE`: one call in 2^this is timed.
    pub prof_sample: u8,
    /// `HAKMEM_PROF_JSON`.
    pub prof_json: Option<Path>,
    /// `HAKMEM_POLICY_DIR`: where learned policies are kept per executable.
    pub policy_dir: Option<Path>,
    /// `HAKMEM_TRACE`: events each thread keeps in the debug ring (0: off;
    /// secure mode keeps 2048 when unset).
    pub trace: Option<u32>,
    /// `HAKMEM_BACKGROUND`: the background maintenance thread (time-driven
    /// decay).
    pub background: bool,
}

/// One variable of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    /// `HAKMEM_MODE`.
    Mode,
    /// `HAKMEM_LEARN_WINDOW_MS`.
    LearnWindowMs,
    /// `HAKMEM_POLICY`.
    Policy,
    /// `HAKMEM_POLICY_SAVE`.
    PolicySave,
    /// `HAKMEM_STATS`.
    Stats,
    /// `HAKMEM_SELECTOR`.
    Selector,
    /// `HAKMEM_CANARY_PERMILLE`.
    CanaryPermille,
    /// `HAKMEM_SITES`.
    Sites,
    /// `HAKMEM_SITES_SAMPLE`.
    SitesSample,
    /// `HAKMEM_SITES_JSON`.
    SitesJson,
    /// `HAKMEM_SITE_PLACEMENT`.
    SitePlacement,
    /// `HAKMEM_THP_SUPERSLABS`.
    ThpSuperslabs,
    /// `HAKMEM_SECURE`.
    Secure,
    /// `HAKMEM_ON_ERROR`.
    OnError,
    /// `HAKMEM_CHECK`.
    Check,
    /// `HAKMEM_DECAY_MS`.
    DecayMs,
    /// `HAKMEM_MEM_BUDGET_MB`.
    MemBudgetMb,
    /// `HAKMEM_PROF`.
    Prof,
    /// `HAKMEM_PROF_SAMPLE`.
    ProfSample,
    /// `HAKMEM_PROF_JSON`.
    ProfJson,
    /// `HAKMEM_POLICY_DIR`.
    PolicyDir,
    /// `HAKMEM_TRACE`.
    Trace,
    /// `HAKMEM_BACKGROUND`.
    Background,
}

/// The type of a variable's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `0`/`1`, also `false`/`true`, `no`/`yes`, `off`/`on`.
    Bool,
    /// An unsigned decimal number in `min..=max`.
    Int {
        /// Smallest value.
        min: u64,
        /// Largest value.
        max: u64,
    },
    /// One of these names.
    Choice(&'static [&'static str]),
    /// A file path of at most `PATH_MAX - 1` bytes.
    Path,
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// Which variable.
    pub var: Var,
    /// Its name.
    pub name: &'static str,
    c_name: &'static CStr,
    /// Its type.
    pub kind: Kind,
    /// The policy field it overrides, if it overrides one: its range is the
    /// field's ([`Key::range`]) and [`Options::initial_policy`] sets it.
    pub policy_field: Option<Key>,
    /// The default, as documented.
    pub default: &'static str,
    /// What a warning says is done instead of a bad value ("using 1000").
    pub fallback: &'static str,
    /// What it does.
    pub description: &'static str,
}

/// Number of variables.
pub const VARS: usize = 23;

pub use table::TABLE;

impl Var {
    /// The variable's row of [`TABLE`].
    pub fn spec(self) -> &'static Spec {
        &TABLE[self as usize]
    }
}

/// What is wrong with a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issue {
    /// A boolean variable with another value.
    NotBool,
    /// A choice variable with a name not among its choices.
    NotAChoice,
    /// A number variable with something other than digits.
    NotANumber,
    /// A number outside the variable's range.
    OutOfRange,
    /// A path of `PATH_MAX` bytes or more.
    TooLong,
    /// A path containing a NUL byte.
    NulByte,
    /// A `HAKMEM_*` variable hakmem does not know.
    Unknown,
    /// A variable the mode does not use (`HAKMEM_POLICY` in `minimal` or
    /// `fast`).
    Unused(Mode),
}

/// At most `N` bytes of a name or value, and whether there were more.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Text<const N: usize> {
    bytes: [u8; N],
    len: u8,
    truncated: bool,
}

impl<const N: usize> Text<N> {
    const EMPTY: Self = Text {
        bytes: [0; N],
        len: 0,
        truncated: false,
    };

    fn new(b: &[u8]) -> Self {
        let mut t = Self::EMPTY;
        let n = b.len().min(N);
        t.bytes[..n].copy_from_slice(&b[..n]);
        t.len = n as u8;
        t.truncated = b.len() > N;
        t
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// Shows printable ASCII as is and every other byte as `?`.
struct Lossy<'a>(&'a [u8]);

impl fmt::Display for Lossy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.0 {
            let c = if b == b' ' || b.is_ascii_graphic() {
                b as char
            } else {
                '?'
            };
            fmt::Write::write_char(f, c)?;
        }
        Ok(())
    }
}

/// One bad variable: which, its value (the first 64 bytes), and what is
/// wrong. Its [`Display`](fmt::Display) is the whole warning line, without
/// a newline: `hakmem: HAKMEM_X=value: <problem>, using <default>`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Warning {
    var: Option<Var>,
    name: Text<48>,
    value: Text<64>,
    issue: Issue,
}

impl Warning {
    const EMPTY: Warning = Warning {
        var: None,
        name: Text::EMPTY,
        value: Text::EMPTY,
        issue: Issue::Unknown,
    };

    /// The variable, `None` for an unknown one.
    pub fn var(&self) -> Option<Var> {
        self.var
    }

    /// The variable's name (the first 48 bytes of an unknown one's).
    pub fn name(&self) -> &[u8] {
        match self.var {
            Some(v) => v.spec().name.as_bytes(),
            None => self.name.as_bytes(),
        }
    }

    /// The value's first 64 bytes.
    pub fn value(&self) -> &[u8] {
        self.value.as_bytes()
    }

    /// What is wrong.
    pub fn issue(&self) -> Issue {
        self.issue
    }

    /// The warning line with a final newline, in a fixed buffer (cut at
    /// 255 bytes), ready for `write(2, ...)`.
    pub fn line(&self) -> WarningLine {
        let mut l = WarningLine {
            bytes: [0; 256],
            len: 0,
        };
        let _ = fmt::write(&mut l, format_args!("{self}"));
        l.len = l.len.min(255);
        l.bytes[l.len] = b'\n';
        l.len += 1;
        l
    }
}

impl fmt::Debug for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Warning(\"{self}\")")
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ellipsis = if self.value.truncated { "..." } else { "" };
        write!(
            f,
            "hakmem: {}={}{ellipsis}: ",
            Lossy(self.name()),
            Lossy(self.value.as_bytes())
        )?;
        let spec = self.var.map(Var::spec);
        match (self.issue, spec.map(|s| s.kind)) {
            (Issue::NotBool, _) => {
                f.write_str("expected 0 or 1 (or true/false, yes/no, on/off)")?
            }
            (Issue::NotAChoice, Some(Kind::Choice(names))) => {
                f.write_str("expected one of ")?;
                for (i, n) in names.iter().enumerate() {
                    if i > 0 {
                        f.write_str("|")?;
                    }
                    f.write_str(n)?;
                }
            }
            (Issue::NotANumber, Some(Kind::Int { min, max })) => {
                write!(f, "expected a number in {min}..={max}")?
            }
            (Issue::OutOfRange, Some(Kind::Int { min, max })) => {
                write!(f, "out of range {min}..={max}")?
            }
            (Issue::TooLong, _) => write!(f, "longer than {} bytes", PATH_MAX - 1)?,
            (Issue::NulByte, _) => f.write_str("contains a NUL byte")?,
            (Issue::Unused(mode), _) => write!(f, "not used in mode {}", mode.name())?,
            _ => f.write_str("unknown variable")?,
        }
        let fallback = match (self.issue, spec) {
            (Issue::Unknown | Issue::Unused(_), _) | (_, None) => "ignored",
            (_, Some(s)) => s.fallback,
        };
        write!(f, ", {fallback}")
    }
}

/// A warning line in a fixed buffer (see [`Warning::line`]).
#[derive(Clone, Copy)]
pub struct WarningLine {
    bytes: [u8; 256],
    len: usize,
}

impl WarningLine {
    /// The line, newline included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl fmt::Debug for WarningLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WarningLine(\"{}\")", Lossy(self.as_bytes()))
    }
}

impl fmt::Write for WarningLine {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = 255usize.saturating_sub(self.len);
        let n = s.len().min(room);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// The warnings of one parse, in a fixed array.
#[derive(Clone, Copy)]
pub struct Warnings {
    items: [Warning; MAX_WARNINGS],
    len: usize,
    dropped: usize,
}

impl Warnings {
    /// No warnings.
    pub const fn new() -> Self {
        Warnings {
            items: [Warning::EMPTY; MAX_WARNINGS],
            len: 0,
            dropped: 0,
        }
    }

    /// The warnings kept, in table order, unknown variables last.
    pub fn iter(&self) -> core::slice::Iter<'_, Warning> {
        self.items[..self.len].iter()
    }

    /// Number of warnings kept.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none (kept or dropped).
    pub fn is_empty(&self) -> bool {
        self.len == 0 && self.dropped == 0
    }

    /// Warnings beyond [`MAX_WARNINGS`], counted but not kept.
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    fn push(&mut self, w: Warning) {
        if self.len < MAX_WARNINGS {
            self.items[self.len] = w;
            self.len += 1;
        } else {
            self.dropped += 1;
        }
    }
}

impl Default for Warnings {
    fn default() -> Self {
        Warnings::new()
    }
}

impl fmt::Debug for Warnings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()?;
        if self.dropped > 0 {
            write!(f, " (+{} dropped)", self.dropped)?;
        }
        Ok(())
    }
}

/// A parsed value.
enum Value<'a> {
    Bool(bool),
    Int(u64),
    Choice(usize),
    Path(&'a [u8]),
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !first.is_ascii_whitespace() {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !last.is_ascii_whitespace() {
            break;
        }
        s = rest;
    }
    s
}

/// Parses `raw` as `kind`: `Ok(None)` when it is empty (unset).
fn parse_value(kind: Kind, raw: &[u8]) -> Result<Option<Value<'_>>, Issue> {
    if let Kind::Path = kind {
        if raw.is_empty() {
            return Ok(None);
        }
        if raw.contains(&0) {
            return Err(Issue::NulByte);
        }
        if raw.len() >= PATH_MAX {
            return Err(Issue::TooLong);
        }
        return Ok(Some(Value::Path(raw)));
    }
    let s = trim(raw);
    if s.is_empty() {
        return Ok(None);
    }
    match kind {
        Kind::Bool => {
            const TRUE: [&str; 4] = ["1", "true", "yes", "on"];
            const FALSE: [&str; 4] = ["0", "false", "no", "off"];
            if TRUE.iter().any(|t| t.as_bytes().eq_ignore_ascii_case(s)) {
                Ok(Some(Value::Bool(true)))
            } else if FALSE.iter().any(|t| t.as_bytes().eq_ignore_ascii_case(s)) {
                Ok(Some(Value::Bool(false)))
            } else {
                Err(Issue::NotBool)
            }
        }
        Kind::Int { min, max } => {
            if !s.iter().all(u8::is_ascii_digit) {
                return Err(Issue::NotANumber);
            }
            let mut v: u64 = 0;
            for &b in s {
                v = v
                    .checked_mul(10)
                    .and_then(|v| v.checked_add((b - b'0') as u64))
                    .ok_or(Issue::OutOfRange)?;
            }
            if v < min || v > max {
                return Err(Issue::OutOfRange);
            }
            Ok(Some(Value::Int(v)))
        }
        Kind::Choice(names) => names
            .iter()
            .position(|n| n.as_bytes().eq_ignore_ascii_case(s))
            .map(|i| Some(Value::Choice(i)))
            .ok_or(Issue::NotAChoice),
        Kind::Path => Ok(None),
    }
}

impl Options {
    /// Every default.
    pub const DEFAULT: Options = Options {
        mode: Mode::Balanced,
        learn_window_ms: 50,
        policy: None,
        policy_save: None,
        stats: false,
        selector: SelectorKind::Ucb1,
        canary_permille: 50,
        sites: false,
        sites_sample: 12,
        sites_json: None,
        site_placement: true,
        thp_superslabs: ThpSuperslabs::Auto,
        secure: false,
        on_error: OnError::Abort,
        check: None,
        decay_ms: None,
        mem_budget_mb: 0,
        prof: false,
        prof_sample: 12,
        prof_json: None,
        policy_dir: None,
        trace: None,
        background: true,
    };

    /// Reads every variable of [`TABLE`] through `lookup` (which returns a
    /// variable's value, or `None` when it is unset). Unknown variables are
    /// not looked for (see [`Options::check_names`]).
    pub fn from_lookup<'a, F>(mut lookup: F) -> (Options, Warnings)
    where
        F: FnMut(&str) -> Option<&'a [u8]>,
    {
        Options::parse_with(|spec| lookup(spec.name))
    }

    /// Reads every variable from the process environment with `getenv`
    /// (which does not allocate), then reports every `HAKMEM_*` variable of
    /// the environment that is not in the table.
    ///
    /// hakmem reads it once, in the one-time set-up of its first
    /// allocation (`hakmem::init`); later changes to the environment are
    /// not seen.
    ///
    /// # Safety
    /// No other thread may change the environment (`setenv`, `putenv`,
    /// `unsetenv`, `clearenv`, or Rust's `std::env::set_var`) while this
    /// runs: like `getenv`, it reads the strings and the `environ` array in
    /// place.
    pub unsafe fn from_env() -> (Options, Warnings) {
        let (options, mut warnings) = Options::parse_with(|spec| {
            // SAFETY: per the contract nobody changes the environment while
            // this runs, and the value is used (parsed) at once, within it.
            unsafe { hakmem_platform::env::get(spec.c_name) }
        });
        // SAFETY: per the contract no other thread changes the environment
        // while this runs; the entries are checked at once, within it.
        for entry in unsafe { hakmem_platform::env::entries() } {
            Options::check_entry(entry, &mut warnings);
        }
        (options, warnings)
    }

    /// Adds an [`Issue::Unknown`] warning for every `NAME=value` entry whose
    /// name starts with `HAKMEM_` but is neither in [`TABLE`] nor reserved
    /// ([`RESERVED_PREFIXES`]). [`Options::from_env`] does this for the
    /// process environment.
    pub fn check_names<'a, I>(entries: I, warnings: &mut Warnings)
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        for entry in entries {
            Options::check_entry(entry, warnings);
        }
    }

    fn check_entry(entry: &[u8], warnings: &mut Warnings) {
        let eq = entry.iter().position(|&b| b == b'=').unwrap_or(entry.len());
        let (name, value) = (&entry[..eq], entry.get(eq + 1..).unwrap_or(&[]));
        if !name.starts_with(b"HAKMEM_")
            || RESERVED_PREFIXES
                .iter()
                .any(|p| name.starts_with(p.as_bytes()))
            || TABLE.iter().any(|s| s.name.as_bytes() == name)
        {
            return;
        }
        warnings.push(Warning {
            var: None,
            name: Text::new(name),
            value: Text::new(value),
            issue: Issue::Unknown,
        });
    }

    fn parse_with<'a, F>(mut lookup: F) -> (Options, Warnings)
    where
        F: FnMut(&Spec) -> Option<&'a [u8]>,
    {
        let mut o = Options::DEFAULT;
        let mut warnings = Warnings::new();
        for spec in &TABLE {
            let Some(raw) = lookup(spec) else { continue };
            match parse_value(spec.kind, raw) {
                Ok(None) => {}
                Ok(Some(v)) => o.set(spec.var, v),
                Err(issue) => warnings.push(Warning {
                    var: Some(spec.var),
                    name: Text::EMPTY,
                    value: Text::new(raw),
                    issue,
                }),
            }
        }
        if let Some(p) = o.policy {
            if !o.mode.features().contains(Features::POLICY_FILE) {
                warnings.push(Warning {
                    var: Some(Var::Policy),
                    name: Text::EMPTY,
                    value: Text::new(p.as_bytes()),
                    issue: Issue::Unused(o.mode),
                });
                o.policy = None;
            }
        }
        (o, warnings)
    }

    fn set(&mut self, var: Var, v: Value<'_>) {
        match (var, v) {
            (Var::Mode, Value::Choice(i)) => self.mode = Mode::ALL[i],
            (Var::LearnWindowMs, Value::Int(n)) => self.learn_window_ms = n as u32,
            (Var::Policy, Value::Path(p)) => self.policy = Path::new(p),
            (Var::PolicySave, Value::Path(p)) => self.policy_save = Path::new(p),
            (Var::Stats, Value::Bool(b)) => self.stats = b,
            (Var::Selector, Value::Choice(i)) => {
                self.selector = [SelectorKind::Ucb1, SelectorKind::Elo][i]
            }
            (Var::CanaryPermille, Value::Int(n)) => self.canary_permille = n as u16,
            (Var::Sites, Value::Bool(b)) => self.sites = b,
            (Var::SitePlacement, Value::Bool(b)) => self.site_placement = b,
            (Var::ThpSuperslabs, Value::Choice(i)) => {
                self.thp_superslabs =
                    [ThpSuperslabs::Auto, ThpSuperslabs::On, ThpSuperslabs::Off][i]
            }
            (Var::SitesSample, Value::Int(n)) => self.sites_sample = n as u8,
            (Var::SitesJson, Value::Path(p)) => self.sites_json = Path::new(p),
            (Var::Secure, Value::Bool(b)) => self.secure = b,
            (Var::OnError, Value::Choice(i)) => self.on_error = [OnError::Abort, OnError::Warn][i],
            (Var::Check, Value::Bool(b)) => self.check = Some(b),
            (Var::DecayMs, Value::Int(n)) => self.decay_ms = Some(n),
            (Var::MemBudgetMb, Value::Int(n)) => self.mem_budget_mb = n as u32,
            (Var::Prof, Value::Bool(b)) => self.prof = b,
            (Var::ProfSample, Value::Int(n)) => self.prof_sample = n as u8,
            (Var::ProfJson, Value::Path(p)) => self.prof_json = Path::new(p),
            (Var::PolicyDir, Value::Path(p)) => self.policy_dir = Path::new(p),
            (Var::Trace, Value::Int(n)) => self.trace = Some(n as u32),
            (Var::Background, Value::Bool(b)) => self.background = b,
            // The table's kinds match the fields (a test checks every row).
            _ => {}
        }
    }

    /// The value a variable that overrides a policy field
    /// ([`Spec::policy_field`]) was given; `None` when it is unset (or
    /// overrides no field).
    pub fn policy_override(&self, var: Var) -> Option<u64> {
        match var {
            Var::DecayMs => self.decay_ms,
            _ => None,
        }
    }

    /// The policy to start on, given the one loaded from `HAKMEM_POLICY`
    /// (or the built-in one): shaped by the mode ([`Mode::shape_policy`])
    /// with every variable that overrides a policy field applied
    /// (`HAKMEM_DECAY_MS`).
    pub fn initial_policy(&self, base: &FrozenPolicy) -> FrozenPolicy {
        let mut p = self.mode.shape_policy(base);
        for spec in &TABLE {
            if let (Some(key), Some(v)) = (spec.policy_field, self.policy_override(spec.var)) {
                p.set(key, v);
            }
        }
        p
    }
}

impl Default for Options {
    fn default() -> Self {
        Options::DEFAULT
    }
}

pub use table::write_markdown;

mod table;
#[cfg(test)]
mod tests;
