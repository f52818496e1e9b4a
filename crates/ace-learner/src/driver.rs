//! Runs a [`Learner`] on a background thread (feature `std`).
//!
//! Every `window` the thread asks `sample` for the window's measurements
//! (given the time since the last call: the closure turns counter deltas
//! into a [`Window`]), feeds the learner, and hands any new policy to
//! `publish` as a `&'static FrozenPolicy` (for `PolicyCell::publish`).
//! Published policies are interned: each distinct policy is leaked once and
//! reused, so memory stays bounded by the number of distinct policies the
//! learner visits (a few dozen in practice) and a reader can hold a
//! snapshot forever.
//!
//! The thread allocates (it is not on any allocation path). Stopping it
//! ([`Driver::stop`]) wakes it at once and returns the learner, whose
//! [`accepted_policy`](Learner::accepted_policy) is what
//! `HAKMEM_POLICY_SAVE` should write.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hakmem_policy_rcu::FrozenPolicy;

use crate::learner::{Event, Learner};
use crate::lifecycle::Phase;
use crate::reward::Window;

/// Keeps one `'static` copy of each distinct policy.
#[derive(Debug, Default)]
pub struct Interner {
    seen: Vec<&'static FrozenPolicy>,
}

impl Interner {
    /// An empty interner.
    pub const fn new() -> Self {
        Interner { seen: Vec::new() }
    }

    /// The `'static` copy of `p` (leaked the first time it is seen).
    pub fn intern(&mut self, p: &FrozenPolicy) -> &'static FrozenPolicy {
        if let Some(&q) = self.seen.iter().find(|&&q| q == p) {
            return q;
        }
        let q: &'static FrozenPolicy = Box::leak(Box::new(*p));
        self.seen.push(q);
        q
    }

    /// Distinct policies interned.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// What the driver shares with its owner.
#[derive(Debug)]
struct Shared {
    stop: AtomicBool,
    /// The accepted policy and the phase, updated every window.
    status: Mutex<(FrozenPolicy, Phase)>,
}

/// A learner running on its thread.
#[derive(Debug)]
pub struct Driver {
    shared: Arc<Shared>,
    handle: JoinHandle<Learner>,
}

/// Starts `learner` on a thread named `hakmem-learner`, one window every
/// `window`.
///
/// * `sample(elapsed)`: the measurements of the window that just ended;
/// * `publish(policy)`: called with each new policy to run;
/// * `on_event(event)`: every learner event (for `tracing` in `research`
///   mode; a no-op otherwise).
pub fn spawn<S, P, E>(
    learner: Learner,
    window: Duration,
    mut sample: S,
    mut publish: P,
    mut on_event: E,
) -> std::io::Result<Driver>
where
    S: FnMut(Duration) -> Window + Send + 'static,
    P: FnMut(&'static FrozenPolicy) + Send + 'static,
    E: FnMut(&Event) + Send + 'static,
{
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        status: Mutex::new((learner.accepted_policy(), learner.phase())),
    });
    let theirs = Arc::clone(&shared);
    let handle = thread::Builder::new()
        .name("hakmem-learner".into())
        .spawn(move || {
            let mut learner = learner;
            let mut interner = Interner::new();
            let mut last = Instant::now();
            loop {
                let deadline = last + window;
                loop {
                    if theirs.stop.load(Ordering::Acquire) {
                        return learner;
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    thread::park_timeout(deadline - now);
                }
                let now = Instant::now();
                let w = sample(now - last);
                last = now;
                let step = learner.on_window(&w);
                for e in step.events() {
                    on_event(e);
                }
                if let Some(p) = step.publish {
                    publish(interner.intern(&p));
                }
                if let Ok(mut s) = theirs.status.lock() {
                    *s = (learner.accepted_policy(), learner.phase());
                }
            }
        })?;
    Ok(Driver { shared, handle })
}

impl Driver {
    /// The learner's accepted policy as of its last window.
    pub fn accepted_policy(&self) -> FrozenPolicy {
        match self.shared.status.lock() {
            Ok(s) => s.0,
            Err(poisoned) => poisoned.into_inner().0,
        }
    }

    /// The learner's state as of its last window.
    pub fn phase(&self) -> Phase {
        match self.shared.status.lock() {
            Ok(s) => s.1,
            Err(poisoned) => poisoned.into_inner().1,
        }
    }

    /// Stops the thread (waking it at once) and returns the learner;
    /// `None` if the thread panicked.
    pub fn stop(self) -> Option<Learner> {
        self.shared.stop.store(true, Ordering::Release);
        self.handle.thread().unpark();
        self.handle.join().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learner::LearnerConfig;
    use crate::signature::{size_bin, SIG_BINS};
    use hakmem_policy_rcu::{PolicyCell, DEFAULT_POLICY};
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn interning_dedups() {
        let mut i = Interner::new();
        assert!(i.is_empty());
        let a = i.intern(&DEFAULT_POLICY);
        let b = i.intern(&DEFAULT_POLICY.clone());
        assert!(std::ptr::eq(a, b));
        let other = FrozenPolicy {
            decay_ms: 5,
            ..DEFAULT_POLICY
        };
        let c = i.intern(&other);
        assert!(!std::ptr::eq(a, c));
        assert_eq!((i.len(), c.decay_ms), (2, 5));
    }

    #[test]
    fn runs_windows_publishes_and_stops() {
        static CELL: PolicyCell = PolicyCell::new(&DEFAULT_POLICY);
        let events = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&events);
        let mut hist = [0u64; SIG_BINS];
        hist[size_bin(32)] = 1000;
        let gen = CELL.generation();
        let driver = spawn(
            Learner::new(&DEFAULT_POLICY, LearnerConfig::DEFAULT),
            Duration::from_millis(2),
            move |elapsed| {
                assert!(elapsed >= Duration::from_millis(2));
                // a program that is faster the bigger the 32-byte bins
                let p = CELL.load();
                let c = hakmem_tiny_sll::tiny_class(32);
                let gain = p.tiny_cap[c] as f64 / DEFAULT_POLICY.tiny_cap[c] as f64;
                Window {
                    elapsed_ms: 1000,
                    ops: (1e6 * gain.sqrt()) as u64,
                    size_hist: hist,
                    ..Window::idle(1000)
                }
            },
            |p| CELL.publish(p),
            move |_| {
                seen.fetch_add(1, Ordering::Relaxed);
            },
        )
        .unwrap();
        let t0 = Instant::now();
        while driver.phase() == Phase::Learn && t0.elapsed() < Duration::from_secs(20) {
            thread::sleep(Duration::from_millis(5));
        }
        assert_ne!(driver.phase(), Phase::Learn, "converged");
        let accepted = driver.accepted_policy();
        let stopped = Instant::now();
        let learner = driver.stop().expect("no panic");
        assert!(stopped.elapsed() < Duration::from_secs(1));
        assert!(CELL.generation() > gen);
        assert!(events.load(Ordering::Relaxed) > 10);
        let c = hakmem_tiny_sll::tiny_class(32);
        assert!(accepted.tiny_cap[c] > DEFAULT_POLICY.tiny_cap[c]);
        assert_eq!(learner.accepted_policy(), accepted);
    }
}
