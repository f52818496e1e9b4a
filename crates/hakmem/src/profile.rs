//! The profile of hakmem's own paths (`HAKMEM_PROF`): where the
//! allocator's time goes, per path category.
//!
//! This module is the storage (core layer): one row per [`Cat`] with the
//! sampled calls, the estimated calls they stand for, the estimated time,
//! and P² estimates of the median and 99th percentile. What is timed and
//! how a timed call is put in a category is decided by the observer
//! (`prof.rs`, for `malloc`), by the entry points (`api.rs`, for `free`,
//! `realloc` and `calloc`), and by the platform wrapper (`state::Os`, for
//! `mmap`, `munmap` and `madvise`, each of which is timed while the
//! profiler is on).
//!
//! Off, nothing here runs: the fast paths do not know the profiler (it is an
//! observer of the seam, `observe.rs`), and the slow paths test one relaxed
//! flag. On, a sampled call costs two clock reads and a few relaxed atomic
//! adds; its quantile estimators are updated under a try-lock (a sample
//! that finds the lock taken is counted but left out of the quantiles), so
//! nothing here waits and nothing allocates.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use hakmem_ace_learner::p2::P2;
use hakmem_platform::SpinLock;

/// A path category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Cat {
    /// A small `malloc` served from the thread's bin.
    TinyPop,
    /// A small `malloc` whose bin was empty: refilled from a slab.
    TinyRefill,
    /// A small `free` whose bin was full: blocks spilled back to slabs.
    TinySpill,
    /// A mid `malloc` (1 KiB – 1 MiB) served from the thread's bin.
    MidHit,
    /// A mid `malloc` whose bin was empty.
    MidRefill,
    /// A mid `free` whose bin was full.
    MidSpill,
    /// A large `malloc` served by the BigCache (no system call).
    LargeHit,
    /// A large `malloc` that mapped memory.
    LargeMap,
    /// A large `free` (cached, purged or unmapped).
    LargeFree,
    /// One `mmap` (any tier, any thread).
    Map,
    /// One purge (`madvise`).
    Purge,
    /// One `munmap`.
    Unmap,
    /// A `free` of another thread's block.
    RemoteFree,
    /// A `malloc` whose refill drained blocks other threads freed.
    RemoteDrain,
    /// A `malloc` whose refill adopted an exited thread's superslab.
    Adopt,
    /// A `realloc` that kept the block where it was (or resized a large
    /// mapping in place).
    ReallocInPlace,
    /// A `realloc` that moved the block (allocate, copy, free).
    ReallocMove,
    /// The zeroing of a `calloc` (the `memset`; fresh mappings need none).
    CallocZero,
}

/// How many categories there are.
pub const CATS: usize = 18;

impl Cat {
    /// Every category, in table order.
    pub const ALL: [Cat; CATS] = [
        Cat::TinyPop,
        Cat::TinyRefill,
        Cat::TinySpill,
        Cat::MidHit,
        Cat::MidRefill,
        Cat::MidSpill,
        Cat::LargeHit,
        Cat::LargeMap,
        Cat::LargeFree,
        Cat::Map,
        Cat::Purge,
        Cat::Unmap,
        Cat::RemoteFree,
        Cat::RemoteDrain,
        Cat::Adopt,
        Cat::ReallocInPlace,
        Cat::ReallocMove,
        Cat::CallocZero,
    ];

    /// The category's name in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Cat::TinyPop => "tiny pop",
            Cat::TinyRefill => "tiny refill",
            Cat::TinySpill => "tiny spill",
            Cat::MidHit => "mid hit",
            Cat::MidRefill => "mid refill",
            Cat::MidSpill => "mid spill",
            Cat::LargeHit => "large cache hit",
            Cat::LargeMap => "large map",
            Cat::LargeFree => "large free",
            Cat::Map => "mmap",
            Cat::Purge => "purge (madvise)",
            Cat::Unmap => "munmap",
            Cat::RemoteFree => "remote free",
            Cat::RemoteDrain => "remote drain",
            Cat::Adopt => "adopt",
            Cat::ReallocInPlace => "realloc in place",
            Cat::ReallocMove => "realloc move",
            Cat::CallocZero => "calloc zeroing",
        }
    }
}

const _: () = assert!(Cat::CallocZero as usize == CATS - 1);

/// The default sampling shift: one call in 2^12 (the timed calls add well
/// under 1 % of instructions on larson, beside the countdowns themselves).
pub const DEFAULT_SHIFT: u32 = 12;
/// The largest sampling shift.
pub const MAX_SHIFT: u32 = 24;

static ON: AtomicBool = AtomicBool::new(false);
static SHIFT: AtomicU32 = AtomicU32::new(DEFAULT_SHIFT);

/// One category's accumulators.
struct Row {
    samples: AtomicU64,
    /// Calls the samples stand for (each sample's weight).
    calls: AtomicU64,
    /// Sum of weight × ns.
    weighted_ns: AtomicU64,
    /// The median and 99th-percentile estimators (`None` until the first
    /// sample: `P2::new` is not `const`).
    quantiles: SpinLock<Option<(P2, P2)>>,
}

impl Row {
    const fn new() -> Row {
        Row {
            samples: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            weighted_ns: AtomicU64::new(0),
            quantiles: SpinLock::new(None),
        }
    }
}

static ROWS: [Row; CATS] = [const { Row::new() }; CATS];

/// True while the profiler is on.
#[inline(always)]
pub(crate) fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// The sampling shift: one call in 2^shift is timed.
#[inline]
pub(crate) fn shift() -> u32 {
    SHIFT.load(Ordering::Relaxed)
}

/// Turns the profiler's storage on or off and sets its rate (the observer
/// is switched by `prof::set`).
pub(crate) fn set(on: bool, shift: u32) {
    SHIFT.store(shift.min(MAX_SHIFT), Ordering::Relaxed);
    ON.store(on, Ordering::Release);
}

/// The weight of a call sampled by `prof::sampled`: the calls it stands
/// for.
#[inline]
pub(crate) fn weight() -> u64 {
    1u64 << shift()
}

/// The clock the profiler times with (ns).
#[inline]
pub(crate) fn now_ns() -> u64 {
    hakmem_platform::clock::monotonic_ns()
}

/// `mmap` calls timed so far (every one while the profiler is on): a
/// large allocation during which this moved mapped.
#[inline]
pub(crate) fn maps() -> u64 {
    ROWS[Cat::Map as usize].samples.load(Ordering::Relaxed)
}

/// Records one timed call of `cat` that took `ns` and stands for `weight`
/// calls.
pub(crate) fn record(cat: Cat, ns: u64, weight: u64) {
    let row = &ROWS[cat as usize];
    row.samples.fetch_add(1, Ordering::Relaxed);
    row.calls.fetch_add(weight, Ordering::Relaxed);
    row.weighted_ns
        .fetch_add(weight.saturating_mul(ns), Ordering::Relaxed);
    if let Some(mut q) = row.quantiles.try_lock() {
        let (p50, p99) = q.get_or_insert_with(|| (P2::new(0.5), P2::new(0.99)));
        p50.observe(ns as f64);
        p99.observe(ns as f64);
    }
}

/// Forgets every sample (the profile starts again from zero).
pub fn reset_profile() {
    for row in &ROWS {
        let mut q = row.quantiles.lock();
        *q = None;
        row.samples.store(0, Ordering::Relaxed);
        row.calls.store(0, Ordering::Relaxed);
        row.weighted_ns.store(0, Ordering::Relaxed);
    }
}

/// One category of a [`Profile`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProfileRow {
    /// The category's name ("tiny pop", "large map", ...).
    pub name: &'static str,
    /// Calls timed.
    pub samples: u64,
    /// Estimated calls of this category (the samples' weights summed).
    pub calls: u64,
    /// Estimated time spent in them, ns.
    pub total_ns: u64,
    /// Average ns per call (0 without samples).
    pub avg_ns: f64,
    /// Estimated median ns (0 without samples).
    pub p50_ns: f64,
    /// Estimated 99th percentile ns (0 without samples).
    pub p99_ns: f64,
}

/// What the profiler measured so far (`hakmem::profile()`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    /// Whether the profiler is on.
    pub on: bool,
    /// One call in 2^`sample_shift` is timed.
    pub sample_shift: u32,
    /// One row per category, in a fixed order.
    pub rows: [ProfileRow; CATS],
}

impl Profile {
    /// The row of the category named `name`.
    pub fn row(&self, name: &str) -> Option<&ProfileRow> {
        self.rows.iter().find(|r| r.name == name)
    }
}

/// The profile so far.
pub fn profile() -> Profile {
    let rows = Cat::ALL.map(|cat| {
        let row = &ROWS[cat as usize];
        let samples = row.samples.load(Ordering::Relaxed);
        let calls = row.calls.load(Ordering::Relaxed);
        let total_ns = row.weighted_ns.load(Ordering::Relaxed);
        let (p50_ns, p99_ns) = match &*row.quantiles.lock() {
            Some((a, b)) => (a.quantile().unwrap_or(0.0), b.quantile().unwrap_or(0.0)),
            None => (0.0, 0.0),
        };
        ProfileRow {
            name: cat.name(),
            samples,
            calls,
            total_ns,
            avg_ns: if calls == 0 {
                0.0
            } else {
                total_ns as f64 / calls as f64
            },
            p50_ns,
            p99_ns,
        }
    });
    Profile {
        on: on(),
        sample_shift: shift(),
        rows,
    }
}

/// Writes the profile as a table to `fd` (the exit report of
/// `HAKMEM_PROF=1`). Nothing allocates: each line is built on the stack.
pub(crate) fn write_table(fd: i32) {
    use core::fmt::Write;
    use hakmem_platform::file::write_all;
    use hakmem_platform::Line;
    let p = profile();
    let mut line = Line::new();
    let _ = writeln!(
        line,
        "hakmem profile (HAKMEM_PROF): one call in 2^{} timed; estimated calls and time",
        p.sample_shift
    );
    write_all(fd, line.as_str().as_bytes());
    let mut line = Line::new();
    let _ = writeln!(
        line,
        "{:<18} {:>9} {:>13} {:>11} {:>9} {:>9} {:>9}",
        "category", "samples", "calls", "total ms", "avg ns", "p50 ns", "p99 ns"
    );
    write_all(fd, line.as_str().as_bytes());
    for r in p.rows.iter().filter(|r| r.samples > 0) {
        let mut line = Line::new();
        let _ = writeln!(
            line,
            "{:<18} {:>9} {:>13} {:>11.3} {:>9.0} {:>9.0} {:>9.0}",
            r.name,
            r.samples,
            r.calls,
            r.total_ns as f64 / 1e6,
            r.avg_ns,
            r.p50_ns,
            r.p99_ns
        );
        write_all(fd, line.as_str().as_bytes());
    }
}

/// Writes the profile as JSON to `fd` (`HAKMEM_PROF_JSON`): `{"sample_shift":
/// N, "categories": [{"name", "samples", "calls", "total_ns", "avg_ns",
/// "p50_ns", "p99_ns"}, ...]}`, every category, in table order.
pub(crate) fn write_json(fd: i32) -> bool {
    use core::fmt::Write;
    use hakmem_platform::file::write_all;
    use hakmem_platform::Line;
    let p = profile();
    let mut ok = true;
    let mut line = Line::new();
    let _ = writeln!(
        line,
        "{{\"sample_shift\": {}, \"categories\": [",
        p.sample_shift
    );
    ok &= write_all(fd, line.as_str().as_bytes());
    for (i, r) in p.rows.iter().enumerate() {
        let mut line = Line::new();
        let _ = writeln!(
            line,
            "  {{\"name\": \"{}\", \"samples\": {}, \"calls\": {}, \"total_ns\": {}, \
             \"avg_ns\": {:.1}, \"p50_ns\": {:.1}, \"p99_ns\": {:.1}}}{}",
            r.name,
            r.samples,
            r.calls,
            r.total_ns,
            r.avg_ns,
            r.p50_ns,
            r.p99_ns,
            if i + 1 < CATS { "," } else { "" }
        );
        ok &= write_all(fd, line.as_str().as_bytes());
    }
    ok & write_all(fd, b"]}\n")
}
