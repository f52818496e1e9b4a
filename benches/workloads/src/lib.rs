//! Shared plumbing for the allocator benchmark workloads run by
//! `cargo xtask bench-matrix`.
//!
//! Every workload is a small program (`src/bin/*.rs`) that takes its
//! parameters on the command line and prints exactly one result line on
//! stdout:
//!
//! ```text
//! HAKMEM_BENCH workload=tiny-hot threads=1 ops=2000000 secs=0.031 ops_per_sec=64516129 p50_ns=9.1 ...
//! ```
//!
//! * Allocation goes through `std::alloc`, i.e. Rust's `System` allocator,
//!   i.e. the C `malloc` family, so `LD_PRELOAD` swaps the allocator. Built
//!   with the `global-hakmem` feature, `hakmem::HakMem` is the
//!   `#[global_allocator]` instead (the in-process hakmem column).
//! * `ops` counts allocator calls (allocations, frees and reallocations) made
//!   inside the timed region; `ops_per_sec` is `ops / secs`.
//! * Every block is written when it is allocated (a tag in its first word,
//!   one byte in each 4 KiB page, its last byte) and the tag and last byte are
//!   checked when it is freed, so an allocator can neither skip faulting the
//!   memory in nor hand out overlapping blocks unnoticed: a mismatch aborts
//!   the workload, which the matrix shows as a failed cell.
//! * One allocator call in `N` is timed (`rdtsc` on x86-64) for the P50/P95/P99
//!   latencies, reported net of the clock's own cost (`clock_ns`, the median
//!   of timing nothing); peak RSS and minor faults come from `getrusage`.
//! * Random choices come from a fixed-seed generator, so runs are comparable.

pub mod big;
pub mod services;

use std::alloc::{self, Layout};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::{c_void, CStr};
use std::fmt::Write as _;
use std::ptr::NonNull;
use std::str::FromStr;
use std::time::{Duration, Instant};

#[cfg(feature = "global-hakmem")]
#[global_allocator]
static GLOBAL: hakmem::HakMem = hakmem::HakMem;

/// Which Rust global allocator this build uses: `system` (the C `malloc`,
/// replaceable by `LD_PRELOAD`) or `hakmem` (in-process `#[global_allocator]`).
pub const GLOBAL_ALLOCATOR: &str = if cfg!(feature = "global-hakmem") {
    "hakmem"
} else {
    "system"
};

/// The prefix of the result line.
pub const RESULT_PREFIX: &str = "HAKMEM_BENCH";

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

/// A tiny `--key value` / `--key=value` / `--flag` parser that also produces
/// the `--help` text from the options a workload asks for.
#[derive(Debug)]
pub struct Args {
    program: &'static str,
    about: &'static str,
    values: BTreeMap<String, String>,
    used: RefCell<Vec<(String, String, String)>>,
    help: bool,
}

impl Args {
    /// Parses the process arguments.
    pub fn from_env(program: &'static str, about: &'static str) -> Self {
        let argv: Vec<String> = std::env::args().skip(1).collect();
        match Self::parse(program, about, &argv) {
            Ok(a) => a,
            Err(e) => die(program, &e),
        }
    }

    /// Parses `argv` (without the program name).
    pub fn parse(
        program: &'static str,
        about: &'static str,
        argv: &[String],
    ) -> Result<Self, String> {
        let mut values = BTreeMap::new();
        let mut help = false;
        let mut i = 0;
        while i < argv.len() {
            let a = &argv[i];
            i += 1;
            if a == "--help" || a == "-h" {
                help = true;
                continue;
            }
            let Some(body) = a.strip_prefix("--") else {
                return Err(format!(
                    "unexpected argument `{a}` (options are `--name value`)"
                ));
            };
            let (key, value) = match body.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => match argv.get(i) {
                    Some(next) if !next.starts_with("--") => {
                        i += 1;
                        (body.to_string(), next.clone())
                    }
                    _ => (body.to_string(), "true".to_string()),
                },
            };
            if key.is_empty() {
                return Err(format!("empty option name in `{a}`"));
            }
            if values.insert(key.clone(), value).is_some() {
                return Err(format!("option --{key} given twice"));
            }
        }
        Ok(Self {
            program,
            about,
            values,
            used: RefCell::new(Vec::new()),
            help,
        })
    }

    fn take<T>(&self, key: &str, default: T, help: &str, parse: impl Fn(&str) -> Option<T>) -> T
    where
        T: std::fmt::Debug,
    {
        self.used
            .borrow_mut()
            .push((key.to_string(), format!("{default:?}"), help.to_string()));
        match self.values.get(key) {
            None => default,
            Some(v) => parse(v)
                .unwrap_or_else(|| die(self.program, &format!("bad value `{v}` for --{key}"))),
        }
    }

    /// A count: a plain number, `_` separators allowed, with an optional
    /// decimal suffix `k` (10^3), `M` (10^6) or `G` (10^9).
    pub fn count(&self, key: &str, default: u64, help: &str) -> u64 {
        self.take(key, default, help, parse_count)
    }

    /// A byte size: a plain number with an optional binary suffix `K`
    /// (2^10), `M` (2^20) or `G` (2^30).
    pub fn size(&self, key: &str, default: usize, help: &str) -> usize {
        self.take(key, default, help, parse_size)
    }

    /// Any `FromStr` value.
    pub fn value<T: FromStr + std::fmt::Debug>(&self, key: &str, default: T, help: &str) -> T {
        self.take(key, default, help, |v| v.parse().ok())
    }

    /// A boolean flag (`--flag` or `--flag=true|false`).
    pub fn flag(&self, key: &str, help: &str) -> bool {
        self.take(key, false, help, |v| match v {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => None,
        })
    }

    /// The options every workload understands.
    pub fn common(&self, default_threads: usize) -> Common {
        Common {
            threads: self
                .value("threads", default_threads, "worker threads")
                .max(1),
            seed: self.count("seed", 0x5eed, "random seed"),
            latency: !self.flag(
                "no-latency",
                "do not time individual calls (deterministic instruction counts)",
            ),
            sample_every: self.count(
                "sample-every",
                0,
                "time one call in N (0: about 20000 samples per thread)",
            ),
        }
    }

    /// Ends parsing: prints `--help` and exits, or rejects unknown options.
    pub fn finish(self) {
        let used = self.used.into_inner();
        if self.help {
            let mut s = format!("{}: {}\n\nOptions:\n", self.program, self.about);
            for (k, d, h) in &used {
                let _ = writeln!(s, "  --{k:<14} {h} (default {d})");
            }
            s.push_str("\nCounts take k/M/G (10^3/10^6/10^9), sizes K/M/G (2^10/2^20/2^30).\n");
            s.push_str("Prints one line: HAKMEM_BENCH workload=... ops=... ops_per_sec=... p50_ns=... peak_rss_kb=... minflt=...\n");
            print!("{s}");
            std::process::exit(0);
        }
        for key in self.values.keys() {
            if !used.iter().any(|(k, _, _)| k == key) {
                die(
                    self.program,
                    &format!("unknown option --{key} (see --help)"),
                );
            }
        }
    }
}

/// Options shared by all workloads.
#[derive(Debug, Clone, Copy)]
pub struct Common {
    /// Worker threads (or thread pairs, as the workload defines).
    pub threads: usize,
    /// Seed of the random generators.
    pub seed: u64,
    /// Whether calls are sampled for latency.
    pub latency: bool,
    /// Time one call in this many (0: automatic).
    pub sample_every: u64,
}

impl Common {
    /// A sampler for one thread expected to make about `expected_calls` calls.
    pub fn sampler(&self, expected_calls: u64) -> Sampler {
        Sampler::new(expected_calls, self.latency, self.sample_every)
    }

    /// A random generator for stream `stream` (e.g. a thread index).
    pub fn rng(&self, stream: u64) -> Rng {
        Rng::new(self.seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }
}

/// Parses a count with an optional decimal suffix (`k`, `M`, `G`).
pub fn parse_count(s: &str) -> Option<u64> {
    let s = s.replace('_', "");
    let (num, mul) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1_000),
        b'm' | b'M' => (&s[..s.len() - 1], 1_000_000),
        b'g' | b'G' => (&s[..s.len() - 1], 1_000_000_000),
        _ => (&s[..], 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mul)
}

/// Parses a byte size with an optional binary suffix (`K`, `M`, `G`, and an
/// optional trailing `B`/`iB`).
pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.replace('_', "");
    let t = s.trim_end_matches("iB").trim_end_matches('B');
    let (num, shift) = match t.as_bytes().last()? {
        b'k' | b'K' => (&t[..t.len() - 1], 10),
        b'm' | b'M' => (&t[..t.len() - 1], 20),
        b'g' | b'G' => (&t[..t.len() - 1], 30),
        _ => (t, 0),
    };
    num.parse::<usize>().ok()?.checked_mul(1usize << shift)
}

fn die(program: &str, msg: &str) -> ! {
    eprintln!("{program}: {msg}");
    std::process::exit(2)
}

// ---------------------------------------------------------------------------
// Random numbers
// ---------------------------------------------------------------------------

/// SplitMix64: small, fast, and good enough for choosing sizes and victims.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in `lo..=hi`.
    #[inline]
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
}

// ---------------------------------------------------------------------------
// Latency sampling
// ---------------------------------------------------------------------------

/// A cheap timestamp: the TSC on x86-64, nanoseconds elsewhere.
#[inline(always)]
pub fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no preconditions on x86-64.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// Nanoseconds per [`ticks`] unit, measured against the monotonic clock.
pub fn ns_per_tick() -> f64 {
    if cfg!(not(target_arch = "x86_64")) {
        return 1.0;
    }
    let t0 = Instant::now();
    let c0 = ticks();
    while t0.elapsed() < Duration::from_millis(10) {
        std::hint::spin_loop();
    }
    let c1 = ticks();
    let ns = t0.elapsed().as_nanos() as f64;
    ns / (c1.saturating_sub(c0).max(1)) as f64
}

/// The median cost, in ticks, of timing nothing (two back-to-back
/// [`ticks`] reads); subtracted from the sampled latencies.
pub fn clock_overhead_ticks() -> u64 {
    let mut v: Vec<u64> = (0..2001)
        .map(|_| {
            let t0 = ticks();
            let t1 = std::hint::black_box(ticks());
            t1.saturating_sub(t0)
        })
        .collect();
    v.sort_unstable();
    v[v.len() / 2]
}

/// Counts the allocator calls of one thread and times one in `every`.
#[derive(Debug)]
pub struct Sampler {
    samples: Vec<u32>,
    every: u64,
    countdown: u64,
    calls: u64,
}

impl Sampler {
    const TARGET_SAMPLES: u64 = 20_000;
    const MAX_SAMPLES: u64 = 1 << 20;

    /// A sampler for about `expected_calls` calls; `every == 0` picks a rate
    /// giving about 20000 samples.
    pub fn new(expected_calls: u64, enabled: bool, every: u64) -> Self {
        if !enabled {
            return Self::disabled();
        }
        let every = if every == 0 {
            (expected_calls / Self::TARGET_SAMPLES).max(1)
        } else {
            every
        };
        let cap = (expected_calls / every + 64).min(Self::MAX_SAMPLES);
        Self {
            samples: Vec::with_capacity(cap as usize),
            every,
            countdown: every,
            calls: 0,
        }
    }

    /// A sampler that only counts calls.
    pub fn disabled() -> Self {
        Self {
            samples: Vec::new(),
            every: u64::MAX,
            countdown: u64::MAX,
            calls: 0,
        }
    }

    /// Runs one allocator call `f`, counting it and maybe timing it.
    #[inline(always)]
    pub fn call<R>(&mut self, f: impl FnOnce() -> R) -> R {
        self.calls += 1;
        self.countdown -= 1;
        if self.countdown != 0 {
            return f();
        }
        self.countdown = self.every;
        let t0 = ticks();
        let r = f();
        let t1 = ticks();
        if self.samples.len() < self.samples.capacity() {
            self.samples
                .push(t1.saturating_sub(t0).min(u64::from(u32::MAX)) as u32);
        }
        r
    }

    /// Allocator calls made through this sampler.
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// Forgets the calls and samples so far (after an untimed warm-up).
    pub fn reset(&mut self) {
        self.calls = 0;
        self.samples.clear();
        self.countdown = self.every;
    }
}

// ---------------------------------------------------------------------------
// Blocks
// ---------------------------------------------------------------------------

const TAG_MAGIC: u64 = 0xA110_C8ED_B10C_0000;
const LAST_BYTE: u8 = 0xA5;
const PAGE: usize = 4096;

/// A heap block of a known size, allocated through the global allocator.
/// A plain handle: freeing it twice is the caller's bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    ptr: NonNull<u8>,
    size: usize,
}

// SAFETY: a Block is an owned heap allocation; any thread may free it.
unsafe impl Send for Block {}

#[inline]
fn layout(size: usize) -> Layout {
    let align = if size >= 8 { 8 } else { 1 };
    // Sizes come from workload parameters far below isize::MAX.
    match Layout::from_size_align(size.max(1), align) {
        Ok(l) => l,
        Err(_) => fail("block size too large"),
    }
}

#[cold]
fn fail(msg: &str) -> ! {
    eprintln!("HAKMEM_BENCH_ERROR {msg}");
    std::process::abort()
}

#[inline]
fn tag(size: usize) -> u64 {
    TAG_MAGIC ^ size as u64
}

impl Block {
    /// Allocates `size` bytes (at least 1) and writes the block.
    #[inline]
    pub fn alloc(size: usize, s: &mut Sampler) -> Self {
        let l = layout(size);
        // SAFETY: the layout has a non-zero size.
        let p = s.call(|| unsafe { alloc::alloc(l) });
        let Some(ptr) = NonNull::new(p) else {
            alloc::handle_alloc_error(l)
        };
        let b = Self {
            ptr,
            size: l.size(),
        };
        b.touch(0);
        b
    }

    /// Frees the block after checking what [`Block::alloc`] wrote.
    #[inline]
    pub fn free(self, s: &mut Sampler) {
        self.check();
        let l = layout(self.size);
        // SAFETY: the block was allocated with this layout and is freed once.
        s.call(|| unsafe { alloc::dealloc(self.ptr.as_ptr(), l) });
    }

    /// Grows or shrinks the block, checking that its contents moved along and
    /// writing the new part.
    #[inline]
    pub fn realloc(self, new_size: usize, s: &mut Sampler) -> Self {
        self.check();
        let old = layout(self.size);
        let new = layout(new_size);
        if old.align() != new.align() {
            fail("realloc across alignment classes is not supported by the workloads");
        }
        // SAFETY: the block was allocated with `old`; `new.size()` is non-zero.
        let p = s.call(|| unsafe { alloc::realloc(self.ptr.as_ptr(), old, new.size()) });
        let Some(ptr) = NonNull::new(p) else {
            alloc::handle_alloc_error(new)
        };
        Self {
            ptr,
            size: self.size,
        }
        .check_prefix(new.size());
        let b = Self {
            ptr,
            size: new.size(),
        };
        b.touch(self.size.min(new.size()));
        b
    }

    /// The block's size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The block's address.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Rebuilds the handle of a block (of at least 8 bytes) from its address,
    /// reading the size from the tag that [`Block::alloc`] wrote.
    ///
    /// # Safety
    /// `p` is a live block of at least 8 bytes allocated by [`Block::alloc`],
    /// whose writes are visible to this thread.
    pub unsafe fn from_raw(p: *mut u8) -> Self {
        let Some(ptr) = NonNull::new(p) else {
            fail("null block")
        };
        // SAFETY: the caller guarantees a live block of at least 8 bytes.
        let t = unsafe { ptr.as_ptr().cast::<u64>().read() };
        let size = (t ^ TAG_MAGIC) as usize;
        if !(8..1 << 40).contains(&size) {
            fail("block tag overwritten: heap corruption");
        }
        Self { ptr, size }
    }

    /// Writes the tag (first word), one byte in each page from `from` on,
    /// and the last byte.
    #[inline]
    pub fn touch(&self, from: usize) {
        let p = self.ptr.as_ptr();
        let n = self.size;
        // SAFETY: all offsets are below `n`, the block's size; the block is
        // 8-aligned when it has at least 8 bytes.
        unsafe {
            if n >= 8 {
                p.cast::<u64>().write(tag(n));
            } else {
                p.write(n as u8);
            }
            let mut off = (from / PAGE + 1) * PAGE;
            while off < n {
                p.add(off).write(off as u8);
                off += PAGE;
            }
            if n > 8 {
                p.add(n - 1).write(LAST_BYTE);
            }
        }
    }

    /// Writes every byte of the block `passes` times with volatile stores
    /// (the cache-line traffic of the false-sharing workloads), then
    /// restores what [`Block::touch`] wrote.
    #[inline(never)]
    pub fn hammer(&self, passes: u64) {
        let p = self.ptr.as_ptr();
        for j in 0..passes {
            for k in 0..self.size {
                // SAFETY: k is within the live block.
                unsafe { p.add(k).write_volatile(j as u8) };
            }
        }
        self.touch(0);
    }

    /// Checks the tag and the last byte written by [`Block::touch`].
    #[inline]
    pub fn check(&self) {
        self.check_prefix(self.size);
    }

    /// Checks what [`Block::touch`] wrote within the first `limit` bytes
    /// (after a realloc to `limit` bytes).
    #[inline]
    fn check_prefix(&self, limit: usize) {
        let p = self.ptr.as_ptr();
        let n = self.size;
        // SAFETY: all offsets are below both the block's original size `n`
        // and `limit`, the size of the memory now behind `p`.
        let ok = unsafe {
            if n < 8 {
                p.read() == n as u8
            } else if limit < 8 {
                true // shrunk below the tag: nothing left to check
            } else {
                p.cast::<u64>().read() == tag(n)
                    && (n <= 8 || n > limit || p.add(n - 1).read() == LAST_BYTE)
            }
        };
        if !ok {
            fail("block contents changed while it was live: heap corruption");
        }
    }
}

// ---------------------------------------------------------------------------
// Process statistics and the result line
// ---------------------------------------------------------------------------

/// `getrusage(RUSAGE_SELF)`: (peak RSS in KiB, minor faults).
pub fn rusage() -> (u64, u64) {
    // SAFETY: an all-zero rusage is a valid value to be overwritten.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid out-pointer.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return (0, 0);
    }
    (ru.ru_maxrss as u64, ru.ru_minflt as u64)
}

/// Minor page faults so far.
pub fn minflt() -> u64 {
    rusage().1
}

/// Current resident set size in KiB (from `/proc/self/statm`).
pub fn current_rss_kb() -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    pages * page / 1024
}

/// The file name of the shared object that provides `name` to this process
/// (as the dynamic linker resolves it), e.g. `libc.so.6`.
fn provider(name: &CStr) -> String {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name.
    let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    if sym.is_null() {
        return "none".into();
    }
    // SAFETY: an all-zero Dl_info is a valid value to be overwritten.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: `sym` is an address; `info` is a valid out-pointer.
    if unsafe { libc::dladdr(sym as *const c_void, &mut info) } == 0 || info.dli_fname.is_null() {
        return "unknown".into();
    }
    // SAFETY: dladdr returned a NUL-terminated file name.
    let path = unsafe { CStr::from_ptr(info.dli_fname) }.to_string_lossy();
    path.rsplit('/').next().unwrap_or("unknown").to_string()
}

/// Which shared object provides the `malloc` family: one file name, or
/// `mixed(...)` when the family is split between objects.
pub fn malloc_provider() -> String {
    let names = [c"malloc", c"free", c"calloc", c"realloc"];
    let libs: Vec<String> = names.iter().map(|n| provider(n)).collect();
    if libs.iter().all(|l| *l == libs[0]) {
        libs[0].clone()
    } else {
        let parts: Vec<String> = names
            .iter()
            .zip(&libs)
            .map(|(n, l)| format!("{}:{l}", n.to_string_lossy()))
            .collect();
        format!("mixed({})", parts.join(","))
    }
}

/// The version of the allocator behind `malloc`, when it tells: the
/// benchmark's peer libraries export a version function, gperftools has
/// `tc_version`, and hakmem may export `hakmem_version` (a C string).
pub fn allocator_version() -> Option<String> {
    type IntFn = unsafe extern "C" fn() -> libc::c_int;
    type StrFn = unsafe extern "C" fn() -> *const libc::c_char;
    type TcFn = unsafe extern "C" fn(
        *mut libc::c_int,
        *mut libc::c_int,
        *mut *const libc::c_char,
    ) -> *const libc::c_char;
    let sym = |name: &CStr| {
        // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name.
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        (!p.is_null()).then_some(p)
    };
    let text = |p: *const libc::c_char| {
        (!p.is_null()).then(|| {
            // SAFETY: the version functions return NUL-terminated static strings.
            unsafe { CStr::from_ptr(p) }
                .to_string_lossy()
                .replace(char::is_whitespace, "_")
        })
    };
    if let Some(f) = sym(c"bench_peer_mimalloc_version") {
        // SAFETY: exported by the mimalloc peer with this signature.
        let v = unsafe { std::mem::transmute::<*mut c_void, IntFn>(f)() };
        return Some(format!(
            "mimalloc-{}.{}.{}",
            v / 10000,
            v / 100 % 100,
            v % 100
        ));
    }
    if let Some(f) = sym(c"bench_peer_jemalloc_version") {
        // SAFETY: exported by the jemalloc peer with this signature.
        return text(unsafe { std::mem::transmute::<*mut c_void, StrFn>(f)() })
            .map(|v| format!("jemalloc-{v}"));
    }
    if let Some(f) = sym(c"hakmem_version") {
        // SAFETY: hakmem's version function returns a static C string.
        return text(unsafe { std::mem::transmute::<*mut c_void, StrFn>(f)() })
            .map(|v| format!("hakmem-{v}"));
    }
    if let Some(f) = sym(c"tc_version") {
        let (mut major, mut minor, mut patch) = (0, 0, std::ptr::null());
        // SAFETY: gperftools' `const char* tc_version(int*, int*, const char**)`.
        return text(unsafe {
            std::mem::transmute::<*mut c_void, TcFn>(f)(&mut major, &mut minor, &mut patch)
        });
    }
    None
}

/// Percentile `q` (0..=1) of sorted `v` (nearest rank).
pub fn percentile(sorted: &[u32], q: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// The result of one workload run.
#[derive(Debug)]
pub struct Report {
    workload: &'static str,
    threads: usize,
    ops: u64,
    secs: f64,
    samples: Vec<u32>,
    extra: Vec<(String, String)>,
}

impl Report {
    /// A report of `ops` allocator calls in `elapsed` by `threads` threads.
    pub fn new(workload: &'static str, threads: usize, ops: u64, elapsed: Duration) -> Self {
        Self {
            workload,
            threads,
            ops,
            secs: elapsed.as_secs_f64(),
            samples: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// Adds the latency samples of a sampler.
    pub fn samples(mut self, s: &Sampler) -> Self {
        self.samples.extend_from_slice(&s.samples);
        self
    }

    /// Adds a workload-specific field.
    pub fn extra(mut self, key: &str, value: impl std::fmt::Display) -> Self {
        self.extra.push((key.to_string(), value.to_string()));
        self
    }

    /// The result line (statistics of the process so far).
    pub fn line(mut self) -> String {
        let (peak_rss_kb, minflt) = rusage();
        let mut s = format!(
            "{RESULT_PREFIX} workload={} threads={} ops={} secs={:.6} ops_per_sec={:.0}",
            self.workload,
            self.threads,
            self.ops,
            self.secs,
            self.ops as f64 / self.secs.max(1e-9)
        );
        self.samples.sort_unstable();
        let (scale, overhead) = if self.samples.is_empty() {
            (1.0, 0)
        } else {
            (ns_per_tick(), clock_overhead_ticks())
        };
        for (name, q) in [("p50_ns", 0.50), ("p95_ns", 0.95), ("p99_ns", 0.99)] {
            match percentile(&self.samples, q) {
                Some(t) => {
                    let net = u64::from(t).saturating_sub(overhead);
                    let _ = write!(s, " {name}={:.1}", net as f64 * scale);
                }
                None => {
                    let _ = write!(s, " {name}=NA");
                }
            }
        }
        let _ = write!(
            s,
            " clock_ns={:.1} samples={} peak_rss_kb={peak_rss_kb} minflt={minflt} malloc_lib={} global={GLOBAL_ALLOCATOR}",
            overhead as f64 * scale,
            self.samples.len(),
            malloc_provider()
        );
        if let Some(v) = allocator_version() {
            let _ = write!(s, " alloc_version={v}");
        }
        for (k, v) in &self.extra {
            let _ = write!(s, " {k}={v}");
        }
        s
    }

    /// Prints the result line on stdout.
    pub fn print(self) {
        println!("{}", self.line());
    }
}

/// Runs `f` on `n` threads (index passed in) and returns their results in
/// index order.
pub fn run_threads<T: Send + 'static>(
    n: usize,
    f: impl Fn(usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let f = std::sync::Arc::new(f);
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let f = f.clone();
            std::thread::spawn(move || f(i))
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().unwrap_or_else(|_| fail("worker thread panicked")))
        .collect()
}

/// Merges the samplers of several threads into a report.
pub fn merge(report: Report, samplers: &[Sampler]) -> Report {
    samplers.iter().fold(report, |r, s| r.samples(s))
}

#[cfg(test)]
mod tests;
