//! soak: a long mixed run for `cargo xtask soak` (issue 17), not a benchmark.
//!
//! `--threads` workers run at once, each for a random number of operations
//! (thread churn: a finished worker is replaced by a new thread). A worker
//! keeps up to `--slots` blocks and, at random, allocates through every C
//! entry point (`malloc`, `calloc`, `realloc` from null, `aligned_alloc`,
//! `posix_memalign`, `memalign`) with sizes of every tier (tiny, mid, large
//! up to `--large-max`), grows or shrinks a block with `realloc` (chains),
//! frees, hands blocks to other threads through a shared exchange (they free
//! them: cross-thread frees, and blocks outliving the heap of the thread
//! that allocated them), and now and then forks: the child checks and frees
//! some of the blocks it inherited, allocates and frees some, and exits;
//! the parent checks its exit status. Every block carries a pattern derived
//! from an id (first and last 64 bytes and one word per page) that is
//! checked before every free and after every realloc; `calloc` memory is
//! checked to be zero and results to be aligned.
//!
//! The main thread prints one `SOAK_SAMPLE` line every `--sample-ms`
//! (elapsed ms, operations, RSS, the bytes the workers hold) and a final
//! `SOAK_DONE` line; `SOAK_ERROR` lines report failed checks (the run goes
//! on, and exits with status 1 at the end). The live set is bounded by
//! `threads * live-max` plus the exchange (`SOAK_BOUND live_bound_kb=...`),
//! which `cargo xtask soak` compares RSS against.
//!
//! It allocates through the C functions (libc's names), so it runs on
//! whatever `LD_PRELOAD` provides.
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bench_workloads::{current_rss_kb, malloc_provider, Args, Rng};

const PAGE: usize = 4096;
/// Blocks waiting in the exchange at most.
const EXCHANGE_MAX: usize = 256;
/// Bytes checked at each end of a block.
const EDGE: usize = 64;

static OPS: AtomicU64 = AtomicU64::new(0);
static ERRORS: AtomicU64 = AtomicU64::new(0);
static FORKS: AtomicU64 = AtomicU64::new(0);
static THREADS: AtomicU64 = AtomicU64::new(0);
static LIVE: AtomicUsize = AtomicUsize::new(0);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// Milliseconds since the start at which the last fork ran.
static LAST_FORK_MS: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone, Copy)]
struct Params {
    slots: usize,
    live_max: usize,
    large_max: usize,
    churn_ops: u64,
    fork_every_ms: u64,
}

/// A live block: its address, size and id (which the pattern derives from).
#[derive(Debug, Clone, Copy)]
struct Blk {
    addr: usize,
    size: usize,
    id: u64,
}

/// Set in a forked child: it reports with a bare `write(2)` (another
/// thread of the parent may have held the stderr lock at the fork).
static IN_CHILD: AtomicBool = AtomicBool::new(false);

fn error(msg: &str) {
    ERRORS.fetch_add(1, Relaxed);
    if IN_CHILD.load(Relaxed) {
        let line = format!("SOAK_ERROR (child) {msg}\n");
        // SAFETY: writes a valid buffer to stderr.
        unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
    } else {
        eprintln!("SOAK_ERROR {msg}");
    }
}

#[inline]
fn byte(id: u64, off: usize) -> u8 {
    (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8 ^ off as u8 ^ (off >> 8) as u8
}

/// Calls `f` on each offset the pattern covers for `size` bytes.
fn offsets(size: usize, mut f: impl FnMut(usize)) {
    for off in 0..size.min(EDGE) {
        f(off);
    }
    let mut off = PAGE;
    while off + EDGE < size {
        f(off);
        off += PAGE;
    }
    for off in size.saturating_sub(EDGE).max(EDGE)..size {
        f(off);
    }
}

impl Blk {
    fn fill(&self) {
        offsets(self.size, |o| {
            // SAFETY: `o < size`, inside this live block.
            unsafe { *((self.addr + o) as *mut u8) = byte(self.id, o) };
        });
    }

    /// Checks the pattern up to `upto` bytes; false (and an error line) if
    /// it changed.
    fn check(&self, upto: usize, what: &str) -> bool {
        let mut bad = None;
        offsets(self.size, |o| {
            if o < upto && bad.is_none() {
                // SAFETY: `o < upto <= size`, inside the live block.
                let got = unsafe { *((self.addr + o) as *const u8) };
                if got != byte(self.id, o) {
                    bad = Some(o);
                }
            }
        });
        if let Some(o) = bad {
            error(&format!(
                "{what}: block {} of {} bytes at {:#x} changed at offset {o}",
                self.id, self.size, self.addr
            ));
        }
        bad.is_none()
    }
}

fn new_id() -> u64 {
    NEXT_ID.fetch_add(1, Relaxed)
}

/// A random size: mostly tiny, some mid, a few large.
fn size(rng: &mut Rng, large_max: usize) -> usize {
    match rng.below(100) {
        0..=59 => rng.range(1, 1024),
        60..=89 => rng.range(1025, 64 << 10),
        90..=97 => rng.range(64 << 10, 1 << 20),
        _ => rng.range(1 << 20, large_max.max(1 << 20)),
    }
}

/// Allocates `size` bytes through a random C entry point; checks the
/// result (alignment, zeroing) and fills it.
fn alloc(rng: &mut Rng, size: usize) -> Option<Blk> {
    let align = 1usize << rng.range(4, 16);
    let natural = if size >= 16 { 16 } else { 8 };
    let (p, need_align, zero): (*mut c_void, usize, bool) = match rng.below(8) {
        // SAFETY: a plain C allocation call with valid arguments.
        0 => (unsafe { libc::calloc(1, size) }, natural, true),
        // SAFETY: realloc of null is malloc.
        1 => (
            unsafe { libc::realloc(std::ptr::null_mut(), size) },
            natural,
            false,
        ),
        // SAFETY: `align` is a power of two.
        2 => (unsafe { libc::aligned_alloc(align, size) }, align, false),
        3 => {
            let mut p = std::ptr::null_mut();
            // SAFETY: `p` is a valid out-pointer; `align` a power of two >= 16.
            let rc = unsafe { libc::posix_memalign(&mut p, align, size) };
            if rc != 0 {
                error(&format!("posix_memalign({align}, {size}) returned {rc}"));
                return None;
            }
            (p, align, false)
        }
        // SAFETY: `align` is a power of two.
        4 => (unsafe { libc::memalign(align, size) }, align, false),
        // SAFETY: a plain C allocation call.
        _ => (unsafe { libc::malloc(size) }, natural, false),
    };
    if p.is_null() {
        error(&format!("allocation of {size} bytes failed"));
        return None;
    }
    let addr = p as usize;
    if !addr.is_multiple_of(need_align) {
        error(&format!(
            "block of {size} bytes at {addr:#x} not aligned to {need_align}"
        ));
    }
    // SAFETY: a live block just allocated.
    let usable = unsafe { libc::malloc_usable_size(p) };
    if usable < size {
        error(&format!("usable size {usable} < {size}"));
    }
    if zero {
        let mut nonzero = false;
        offsets(size, |o| {
            // SAFETY: inside the block.
            nonzero |= unsafe { *((addr + o) as *const u8) } != 0;
        });
        if nonzero {
            error(&format!("calloc({size}) memory is not zero"));
        }
    }
    let b = Blk {
        addr,
        size,
        id: new_id(),
    };
    b.fill();
    LIVE.fetch_add(size, Relaxed);
    Some(b)
}

fn free(b: Blk, what: &str) {
    b.check(b.size, what);
    LIVE.fetch_sub(b.size, Relaxed);
    // SAFETY: a live block, freed once.
    unsafe { libc::free(b.addr as *mut c_void) };
}

/// Grows or shrinks `b`; checks the preserved prefix and refills.
fn realloc(b: Blk, new_size: usize) -> Option<Blk> {
    if !b.check(b.size, "before realloc") {
        // leave it alone: freeing a corrupted block could crash the run
        return None;
    }
    // SAFETY: a live block; on success the old address is dead.
    let q = unsafe { libc::realloc(b.addr as *mut c_void, new_size) };
    if q.is_null() {
        error(&format!("realloc({}, {new_size}) failed", b.size));
        return Some(b);
    }
    let moved = Blk {
        addr: q as usize,
        ..b
    };
    moved.check(b.size.min(new_size), "after realloc");
    LIVE.fetch_sub(b.size, Relaxed);
    LIVE.fetch_add(new_size, Relaxed);
    let nb = Blk {
        addr: q as usize,
        size: new_size,
        id: new_id(),
    };
    nb.fill();
    Some(nb)
}

/// In the child of a fork: checks and frees some inherited blocks,
/// allocates and frees some; returns the exit status (0: all good).
fn child(slots: &mut [Option<Blk>], rng: &mut Rng, large_max: usize) -> i32 {
    let mut ok = true;
    for s in slots.iter_mut().step_by(3) {
        if let Some(b) = s.take() {
            ok &= b.check(b.size, "inherited block");
            // SAFETY: inherited live block, freed once.
            unsafe { libc::free(b.addr as *mut c_void) };
        }
    }
    let mut mine = Vec::with_capacity(64);
    for _ in 0..64 {
        let n = size(rng, large_max.min(4 << 20));
        // SAFETY: plain malloc.
        let p = unsafe { libc::malloc(n) };
        if p.is_null() {
            ok = false;
            break;
        }
        let b = Blk {
            addr: p as usize,
            size: n,
            id: rng.next_u64(),
        };
        b.fill();
        mine.push(b);
    }
    for b in mine {
        ok &= b.check(b.size, "child block");
        // SAFETY: allocated above, freed once.
        unsafe { libc::free(b.addr as *mut c_void) };
    }
    if ok {
        0
    } else {
        3
    }
}

fn fork_now(slots: &mut [Option<Blk>], rng: &mut Rng, large_max: usize) {
    // SAFETY: fork; the child only runs `child` (allocation calls, which
    // the allocator's fork handlers make safe, no locks of ours: it takes
    // no mutex and prints nothing) and `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        IN_CHILD.store(true, Relaxed);
        let code = child(slots, rng, large_max);
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    if pid < 0 {
        error("fork failed");
        return;
    }
    FORKS.fetch_add(1, Relaxed);
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a valid out-pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    if r != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        error(&format!(
            "forked child failed: waitpid {r}, status {status:#x}"
        ));
    }
}

fn worker(
    stream: u64,
    seed: u64,
    p: Params,
    start: Instant,
    stop: &AtomicBool,
    exchange: &Mutex<Vec<Blk>>,
) {
    THREADS.fetch_add(1, Relaxed);
    let mut rng = Rng::new(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut slots: Vec<Option<Blk>> = vec![None; p.slots];
    let mut held = 0usize;
    let ops = p.churn_ops / 2 + rng.below(p.churn_ops as usize) as u64;
    let mut done = 0u64;
    while done < ops && !stop.load(Relaxed) {
        done += 1;
        if done.is_multiple_of(1024) {
            OPS.fetch_add(1024, Relaxed);
        }
        let i = rng.below(p.slots);
        match (slots[i], rng.below(100)) {
            (None, _) => {
                let n = size(&mut rng, p.large_max);
                if held + n <= p.live_max {
                    if let Some(b) = alloc(&mut rng, n) {
                        held += n;
                        slots[i] = Some(b);
                    }
                }
            }
            (Some(b), 0..=49) => {
                held -= b.size;
                free(b, "before free");
                slots[i] = None;
            }
            (Some(b), 50..=69) => {
                // realloc chain step: mostly grow, sometimes shrink
                let n = if rng.below(4) == 0 {
                    (b.size / 2).max(1)
                } else {
                    (b.size + b.size / 2 + 1).min(p.large_max)
                };
                if held + n <= p.live_max + b.size {
                    slots[i] = realloc(b, n);
                    held = held - b.size + slots[i].map_or(0, |nb| nb.size);
                }
            }
            (Some(b), 70..=84) => {
                // hand it to another thread
                let mut x = exchange.lock().unwrap_or_else(|e| e.into_inner());
                if x.len() < EXCHANGE_MAX && b.size <= 1 << 20 {
                    x.push(b);
                    held -= b.size;
                    slots[i] = None;
                }
            }
            (Some(_), 85..=98) => {
                // free a block another thread allocated
                let got = exchange.lock().unwrap_or_else(|e| e.into_inner()).pop();
                if let Some(o) = got {
                    free(o, "before remote free");
                }
            }
            (Some(_), _) => {
                let now = start.elapsed().as_millis() as u64;
                let last = LAST_FORK_MS.load(Relaxed);
                if p.fork_every_ms > 0
                    && now >= last + p.fork_every_ms
                    && LAST_FORK_MS
                        .compare_exchange(last, now, Relaxed, Relaxed)
                        .is_ok()
                {
                    fork_now(&mut slots, &mut rng, p.large_max);
                }
            }
        }
    }
    OPS.fetch_add(done % 1024, Relaxed);
    // Half the time leave the blocks to the others (they outlive this
    // thread's heap), else free them here.
    let leave = rng.below(2) == 0;
    for b in slots.into_iter().flatten() {
        if leave {
            let mut x = exchange.lock().unwrap_or_else(|e| e.into_inner());
            if x.len() < EXCHANGE_MAX * 4 && b.size <= 1 << 20 {
                x.push(b);
                continue;
            }
        }
        free(b, "at thread exit");
    }
}

fn main() {
    let args = Args::from_env(
        "soak",
        "long mixed run with contents checks, RSS samples and thread churn (cargo xtask soak)",
    );
    let seconds = args.count("seconds", 10, "how long to run");
    let threads = args
        .value("threads", 6usize, "worker threads at once")
        .max(1);
    let seed = args.count("seed", 0x50a4, "random seed");
    let sample_ms = args
        .count("sample-ms", 1000, "RSS sample interval in ms")
        .max(10);
    let p = Params {
        slots: args
            .value("slots", 512usize, "blocks a worker keeps at most")
            .max(1),
        live_max: args.size("live-max", 16 << 20, "bytes a worker keeps at most"),
        large_max: args.size("large-max", 8 << 20, "largest block"),
        churn_ops: args
            .count(
                "churn-ops",
                200_000,
                "operations of a worker thread (on average)",
            )
            .max(2),
        fork_every_ms: args.count("fork-every-ms", 2000, "fork at most this often (0: never)"),
    };
    args.finish();
    // what the workers hold plus the exchange (blocks of at most 1 MiB)
    let live_bound = threads * p.live_max + EXCHANGE_MAX * 4 * (1 << 20);
    println!(
        "SOAK_BOUND live_bound_kb={} threads={threads} provider={}",
        live_bound / 1024,
        malloc_provider()
    );
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let stop = Arc::new(AtomicBool::new(false));
    let exchange = Arc::new(Mutex::new(Vec::<Blk>::new()));
    let mut stream = 0u64;
    let spawn = |stream: u64| {
        let (stop, exchange) = (Arc::clone(&stop), Arc::clone(&exchange));
        std::thread::spawn(move || worker(stream, seed, p, start, &stop, &exchange))
    };
    let mut workers: Vec<_> = (0..threads)
        .map(|_| {
            stream += 1;
            spawn(stream)
        })
        .collect();
    let mut next_sample = start;
    loop {
        let now = Instant::now();
        if now >= next_sample {
            println!(
                "SOAK_SAMPLE t_ms={} ops={} rss_kb={} live_kb={} threads={} forks={} errors={}",
                start.elapsed().as_millis(),
                OPS.load(Relaxed),
                current_rss_kb(),
                LIVE.load(Relaxed) / 1024,
                THREADS.load(Relaxed),
                FORKS.load(Relaxed),
                ERRORS.load(Relaxed)
            );
            next_sample += Duration::from_millis(sample_ms);
        }
        if now >= deadline {
            break;
        }
        // thread churn: replace the workers that finished
        for w in workers.iter_mut() {
            if w.is_finished() {
                stream += 1;
                let old = std::mem::replace(w, spawn(stream));
                if old.join().is_err() {
                    error("a worker panicked");
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Relaxed);
    for w in workers {
        if w.join().is_err() {
            error("a worker panicked");
        }
    }
    let left: Vec<Blk> = std::mem::take(&mut *exchange.lock().unwrap_or_else(|e| e.into_inner()));
    for b in left {
        free(b, "at the end");
    }
    let errors = ERRORS.load(Relaxed);
    println!(
        "SOAK_DONE t_ms={} ops={} threads={} forks={} errors={errors} rss_kb={} live_kb={}",
        start.elapsed().as_millis(),
        OPS.load(Relaxed),
        THREADS.load(Relaxed),
        FORKS.load(Relaxed),
        current_rss_kb(),
        LIVE.load(Relaxed) / 1024
    );
    std::process::exit(i32::from(errors > 0));
}
