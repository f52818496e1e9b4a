//! The learning modes (`HAKMEM_MODE=learning|research`): a background thread
//! that measures the program a window at a time and tunes the policy with
//! `hakmem-ace-learner`.
//!
//! What it measures, and what that costs the allocation path:
//!
//! * **Slow-path counters** (refills per class, large allocations): always
//!   kept, free to read. They give the workload's size signature in every
//!   phase, which is how a FROZEN policy notices a phase change.
//! * **Calls and their latency**: only in the LEARN and CANARY phases, and
//!   only during an *observation* slice at the start of each window (a
//!   sixteenth of it). The slices are an observer (`observe.rs`): small
//!   calls are counted down on the fast paths, and the call that ends a
//!   period (48-72 calls for a busy program, fewer for one that calls less
//!   often) is shown to [`Slices`], which adds the whole period to the
//!   heap's count and has it timed (fed to a P² estimator on the learner
//!   thread). Calls above the small sizes take the slow path anyway and are
//!   shown one by one, one in 64 timed. Outside the slices, and in FROZEN,
//!   the allocation path does no learner work, nor does it in the
//!   learner's warm-up (its first second).
//! * **Page faults and RSS**: `getrusage` and `/proc/self/statm`, on the
//!   learner thread.
//!
//! Each new policy is published through `PolicyCell` (interned: every
//! distinct policy is kept once, so slow paths may hold a snapshot forever);
//! the accepted one is also kept in an `arc_swap::ArcSwapOption` for
//! [`learned_policy`] and `HAKMEM_POLICY_SAVE` (arc-swap's loads allocate
//! thread-local debt nodes, so it is only used off the allocation path).
//!
//! The thread starts lazily, from a slow path that holds no lock, after the
//! first allocation of a learning-mode process; after `fork` it is started
//! again in the child.

use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use hakmem_ace_learner::driver::Interner;
use hakmem_ace_learner::learner::{Event, Learner, LearnerConfig};
use hakmem_ace_learner::lifecycle::Phase;
use hakmem_ace_learner::p2::P2;
use hakmem_ace_learner::reward::Window;
use hakmem_ace_learner::signature::{class_bin, size_bin, SIG_BINS};
use hakmem_policy_rcu::FrozenPolicy;

use crate::classes::NCLASSES;
use crate::lazy_thread::LazyThread;
use crate::observe::{self, Call, Observer, Take};
use crate::state::{PLACEHOLDER, REGISTRY};
use crate::tls;

// The heaps' observation counters have one size bin per signature bin.
const _: () = assert!(hakmem_heap::OBS_SIZE_BINS == SIG_BINS);

static THREAD: LazyThread = LazyThread::new("hakmem-learner", 0);
/// The observation slice under way (bumped as each begins): a countdown set
/// in an earlier slice ran partly outside this one and counts nothing.
static SLICE: AtomicU32 = AtomicU32::new(0);
static PHASE: AtomicU8 = AtomicU8::new(0);
static ACCEPTED: ArcSwapOption<FrozenPolicy> = ArcSwapOption::const_empty();

/// Latency samples: one observed call in this many is timed.
const TIME_ONE_IN: u32 = 64;

/// The countdown period of counted small calls: this plus up to half of
/// it (jittered so that a program's loops do not alias with it). The
/// learner thread sets it from the last slice's calls, so that a slice
/// samples about `SAMPLES` calls: 1 (every call) for a program that calls
/// rarely, up to `PERIOD_MAX` for a busy one.
static PERIOD_BASE: AtomicU32 = AtomicU32::new(PERIOD_MAX);
const PERIOD_MAX: u32 = 48;
/// Timed calls a slice aims for.
const SAMPLES: u64 = 256;
/// An observed window's call sizes tell the workload's signature only
/// with at least this many sampled calls.
const MIN_SIGNATURE_SAMPLES: u64 = 64;

/// Asks for the learner (at start-up, in the learning modes).
pub(crate) fn want() {
    THREAD.want();
}

fn set_observing(on: bool) {
    if on {
        SLICE.fetch_add(1, Ordering::Relaxed);
    }
    observe::set_active(observe::LEARNER, on);
}

/// Starts the learner thread if it is wanted and not running. Called from
/// slow paths that hold no lock (the spawn allocates).
#[inline]
pub(crate) fn maybe_start() {
    if THREAD.wanted() {
        THREAD.start(run);
    }
}

/// In a forked child: the thread did not survive; start it again lazily.
pub(crate) fn after_fork_in_child() {
    observe::set_active(observe::LEARNER, false);
    THREAD.after_fork_in_child();
}

/// The policy the learner accepted last (`None` outside the learning modes
/// or before its first window).
pub fn learned_policy() -> Option<Arc<FrozenPolicy>> {
    ACCEPTED.load_full()
}

/// The learner's phase: "off", "learn", "frozen" or "canary".
pub fn learner_phase() -> &'static str {
    match PHASE.load(Ordering::Relaxed) {
        1 => "learn",
        2 => "frozen",
        3 => "canary",
        _ => "off",
    }
}

/// The observation slices, as an observer of `malloc` calls.
#[derive(Debug)]
pub(crate) struct Slices;

/// The observer.
pub(crate) static SLICES: Slices = Slices;

impl Slices {
    /// This thread's observation counters, if it has a heap.
    fn counters(&self) -> Option<&'static hakmem_heap::Observation> {
        let heap = tls::heap();
        // SAFETY: the thread's own heap (registered heaps live forever);
        // its observation counters have one writer, this thread.
        (heap != PLACEHOLDER.get()).then(|| unsafe { &(*heap).obs })
    }
}

impl Observer for Slices {
    fn which(&self) -> u8 {
        observe::LEARNER
    }

    fn period(&self, rnd: u32) -> usize {
        let base = PERIOD_BASE.load(Ordering::Relaxed);
        (base + (((rnd >> 16) * (base / 2 + 1)) >> 16)) as usize
    }

    fn on_call(&self, call: &Call) -> Take {
        // the thread's first call: its heap comes with this one
        let Some(obs) = self.counters() else {
            return Take::Pass;
        };
        // A due call stands for a period counted down on the fast path,
        // credited only if the countdown was set in this slice (one set
        // earlier ran partly outside it); it is always timed. A call shown
        // one by one counts once, one in TIME_ONE_IN timed.
        let slice = SLICE.load(Ordering::Relaxed);
        let credit = !call.due || obs.slice.load(Ordering::Relaxed) == slice;
        if call.due {
            obs.slice.store(slice, Ordering::Relaxed);
        }
        let n = obs.calls.get();
        if credit {
            obs.calls.add(call.calls);
            // a due call stands for its period: a sample of the sizes
            obs.sizes[size_bin(call.size)].add(call.calls);
        }
        if call.due || n % TIME_ONE_IN as u64 == 0 {
            Take::Time
        } else {
            Take::Pass
        }
    }

    fn on_timed(&self, ns: u32) {
        if let Some(obs) = self.counters() {
            obs.push_latency(ns);
        }
    }
}

/// What the observation slices count, for tests: turn a slice on and off
/// by hand and read the counts (the learner thread must not be running).
#[doc(hidden)]
pub mod testing {
    use core::sync::atomic::Ordering;

    /// Starts (`true`) or ends an observation slice.
    pub fn observe(on: bool) {
        super::set_observing(on);
    }

    /// Calls counted so far, over every heap.
    pub fn calls() -> u64 {
        super::snapshot(None, &mut [0; 4096]).calls
    }

    /// Calls counted so far per size bin (`ace_learner::signature::size_bin`),
    /// over every heap.
    pub fn call_sizes() -> [u64; super::SIG_BINS] {
        super::snapshot(None, &mut [0; 4096]).call_sizes
    }

    /// Latency samples taken so far, over every heap.
    pub fn latency_samples() -> u64 {
        let mut n = 0u64;
        crate::state::REGISTRY.for_each(|h| n += h.obs.next.load(Ordering::Relaxed) as u64);
        n
    }
}

/// Sums of the counters the learner reads, over every heap.
#[derive(Clone, Copy)]
struct Snapshot {
    calls: u64,
    call_sizes: [u64; SIG_BINS],
    class_blocks: [u64; NCLASSES],
    large: u64,
}

fn snapshot(p2: Option<&mut P2>, seen: &mut [u32; 4096]) -> Snapshot {
    let mut s = Snapshot {
        calls: 0,
        call_sizes: [0; SIG_BINS],
        class_blocks: [0; NCLASSES],
        large: crate::state::LARGE_STATS.allocs.get(),
    };
    let mut p2 = p2;
    let mut hi = 0usize;
    REGISTRY.for_each(|h| {
        s.calls += h.obs.calls.get();
        for (b, n) in s.call_sizes.iter_mut().zip(&h.obs.sizes) {
            *b += n.get();
        }
        for (c, b) in s.class_blocks.iter_mut().enumerate() {
            *b += h.stats.classes[c].refill_blocks.get();
        }
        if let Some(p) = p2.as_deref_mut() {
            // new latency samples since the last read of this heap
            let next = h.obs.next.load(Ordering::Relaxed);
            let last = seen[hi % seen.len()];
            let fresh = next.wrapping_sub(last).min(64);
            for k in 0..fresh {
                let i = next.wrapping_sub(1 + k) % 64;
                p.observe(h.obs.lat[i as usize].load(Ordering::Relaxed) as f64);
            }
            seen[hi % seen.len()] = next;
        }
        hi += 1;
    });
    s
}

fn minor_faults() -> u64 {
    hakmem_platform::usage::minor_faults()
}

fn rss_bytes() -> u64 {
    hakmem_platform::resident_bytes().unwrap_or(0)
}

fn config() -> (LearnerConfig, bool) {
    let opts = crate::config::options();
    let mut cfg = LearnerConfig::DEFAULT;
    cfg.selector = match opts.selector {
        hakmem_options::SelectorKind::Ucb1 => hakmem_ace_learner::bandit::SelectorKind::Ucb1,
        hakmem_options::SelectorKind::Elo => hakmem_ace_learner::bandit::SelectorKind::Elo,
    };
    cfg.canary_permille = opts.canary_permille as u32;
    cfg.memory_budget = (opts.mem_budget_mb as u64) << 20;
    if opts.policy.is_some() {
        cfg.start = Phase::Frozen;
    }
    let verbose = opts
        .mode
        .features()
        .contains(hakmem_options::Features::VERBOSE);
    (cfg, verbose)
}

fn phase_code(p: Phase) -> u8 {
    match p {
        Phase::Learn => 1,
        Phase::Frozen => 2,
        Phase::Canary => 3,
    }
}

/// The learner thread.
fn run() {
    let (cfg, verbose) = config();
    let window = Duration::from_millis(crate::config::options().learn_window_ms as u64);
    let slice = (window / 16).max(Duration::from_millis(2));
    let mut learner = Learner::new(crate::config::start_policy(), cfg);
    let mut interner = Interner::new();
    let mut seen = [0u32; 4096];
    let mut last = snapshot(None, &mut seen);
    let mut faults = minor_faults();
    let birth = Instant::now();
    loop {
        let phase = learner.phase();
        PHASE.store(phase_code(phase), Ordering::Relaxed);
        let started = Instant::now();
        let mut calls = 0u64;
        let mut call_hist = None;
        let mut p2 = P2::new(0.99);
        if learner.wants_observation(window.as_millis() as u64) {
            let before = snapshot(None, &mut seen);
            set_observing(true);
            std::thread::sleep(slice);
            set_observing(false);
            let after = snapshot(Some(&mut p2), &mut seen);
            let dt = started.elapsed().as_secs_f64().max(1e-6);
            // calls per second in the slice, as calls in a window
            let scale = |n: u64| (n as f64 / dt * window.as_secs_f64()) as u64;
            let counted = after.calls - before.calls;
            calls = scale(counted);
            let base = PERIOD_BASE.load(Ordering::Relaxed) as u64;
            let mut h = [0u64; SIG_BINS];
            if counted / base.max(1) >= MIN_SIGNATURE_SAMPLES {
                for (b, h) in h.iter_mut().enumerate() {
                    *h = scale(after.call_sizes[b] - before.call_sizes[b]);
                }
            }
            call_hist = Some(h);
            let next = (counted / SAMPLES).clamp(1, PERIOD_MAX as u64);
            PERIOD_BASE.store(next as u32, Ordering::Relaxed);
        }
        std::thread::sleep(window.saturating_sub(started.elapsed()));
        let now = snapshot(None, &mut seen);
        let mut hist = [0u64; SIG_BINS];
        for c in 0..NCLASSES {
            hist[class_bin(c)] += now.class_blocks[c] - last.class_blocks[c];
        }
        hist[SIG_BINS - 1] += now.large - last.large;
        let f = minor_faults();
        let w = Window {
            elapsed_ms: started.elapsed().as_millis() as u64,
            ops: calls,
            latency_p99_ns: p2.quantile().unwrap_or(0.0),
            minor_faults: f - faults,
            rss_bytes: rss_bytes(),
            size_hist: hist,
            call_hist,
        };
        faults = f;
        last = now;
        let step = learner.on_window(&w);
        if let Some(p) = step.publish {
            crate::budget::publish(interner.intern(&p));
        }
        ACCEPTED.store(Some(Arc::new(learner.accepted_policy())));
        for e in step.events() {
            tracing::info!(target: "hakmem::learner", event = ?e, "learner");
            if verbose {
                let mut l = hakmem_platform::Line::new();
                use core::fmt::Write as _;
                let _ = write!(
                    l,
                    "hakmem: learner: {e:?} (t={} ms ops {} p99 {:.0} ns rss {} MiB)",
                    birth.elapsed().as_millis(),
                    w.ops,
                    w.latency_p99_ns,
                    w.rss_bytes >> 20
                );
                l.emit();
            }
        }
        if verbose && matches!(step.events().next(), Some(Event::Phase(_))) {
            // phase changes are already printed above
        }
    }
}
