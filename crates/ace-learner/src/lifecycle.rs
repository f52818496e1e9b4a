//! The lifecycle: LEARN → FROZEN → CANARY, and back to LEARN on a phase
//! change.
//!
//! * **LEARN**: the learner explores. When no change has been accepted for
//!   `converge_ms` and at least `min_sweeps` full sweeps over the knobs
//!   ended since the last one, the policy is converged: → FROZEN.
//! * **FROZEN**: the policy stays; the learner does no exploration at all
//!   (it still reads the window's size histogram, from counters the
//!   allocator keeps anyway: nothing on the allocation path). After
//!   `frozen_ms`: → CANARY.
//! * **CANARY**: a sampled share of windows (`canary_permille`, 5%) runs
//!   an alternative; if one wins (the learner reports it): → LEARN.
//!   After `canary_ms` without a win: → FROZEN.
//! * **Phase change**, in every state: the L1 distance between a window's
//!   signature and the reference signature exceeds `shift_threshold` for
//!   `shift_windows` windows in a row. In FROZEN and CANARY: → LEARN. In
//!   LEARN: learning restarts (the reported transition tells the learner to
//!   drop what it measured under the old phase). The reference is a moving
//!   average of the signatures while learning, fixed while frozen; it is
//!   reset to the new signature after a shift.
//!
//! Windows with no allocations carry no signature and never count as a
//! shift.

use crate::signature::Signature;

/// The three states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Exploring.
    Learn,
    /// Converged: no learner work.
    Frozen,
    /// Frozen, with a sampled share of windows trying alternatives.
    Canary,
}

/// Why the state changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// LEARN → FROZEN: converged.
    Converged,
    /// FROZEN → CANARY.
    CanaryStarted,
    /// CANARY → FROZEN: no alternative won.
    CanaryEnded,
    /// CANARY → LEARN: an alternative won.
    CanaryWon,
    /// FROZEN or CANARY → LEARN: the size distribution shifted.
    Shifted,
    /// LEARN → LEARN: the size distribution shifted while learning;
    /// learning restarts.
    Relearn,
}

/// Lifecycle parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LifecycleConfig {
    /// Converged after this long without an accepted change (ms).
    pub converge_ms: u64,
    /// ... and this many complete sweeps over the knobs since the last
    /// change.
    pub min_sweeps: u32,
    /// FROZEN lasts this long before a CANARY (ms).
    pub frozen_ms: u64,
    /// A CANARY lasts this long (ms).
    pub canary_ms: u64,
    /// An L1 distance above this is a shift (0..2; 0.5 = a quarter of the
    /// allocations moved to other size bins).
    pub shift_threshold: f64,
    /// Consecutive shifted windows needed.
    pub shift_windows: u32,
    /// Weight of a new window in the learning reference signature.
    pub signature_alpha: f64,
    /// During the first this many windows with a signature the reference is
    /// the latest window and shifts are not looked for: a program's
    /// start-up is a transient, not the workload to compare with.
    pub warmup_windows: u32,
}

impl LifecycleConfig {
    /// Defaults: converged after 1 s and one sweep without a change (the
    /// sweep, about 1 s per relevant knob with 50 ms windows, is what
    /// takes time); FROZEN 30 s, CANARY 30 s; shift at L1 > 0.5 for 2
    /// windows, looked for after a warm-up of 4 windows.
    pub const DEFAULT: LifecycleConfig = LifecycleConfig {
        converge_ms: 1000,
        min_sweeps: 1,
        frozen_ms: 30_000,
        canary_ms: 30_000,
        shift_threshold: 0.5,
        shift_windows: 2,
        signature_alpha: 0.2,
        warmup_windows: 4,
    };
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig::DEFAULT
    }
}

/// The lifecycle state machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Lifecycle {
    cfg: LifecycleConfig,
    phase: Phase,
    /// When the current phase began (ms).
    since_ms: u64,
    /// When the last change was accepted (or learning (re)started).
    last_change_ms: u64,
    /// Full sweeps since then.
    sweeps: u32,
    reference: Option<Signature>,
    shifted: u32,
    /// Windows with a signature seen so far (up to the warm-up).
    seen: u32,
}

impl Lifecycle {
    /// A lifecycle in `phase` at `now_ms` (LEARN normally; FROZEN when
    /// starting from a saved policy).
    pub fn new(cfg: LifecycleConfig, phase: Phase, now_ms: u64) -> Self {
        Lifecycle {
            cfg,
            phase,
            since_ms: now_ms,
            last_change_ms: now_ms,
            sweeps: 0,
            reference: None,
            shifted: 0,
            seen: 0,
        }
    }

    /// The current state.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// When the current state began (ms).
    pub fn since_ms(&self) -> u64 {
        self.since_ms
    }

    /// The parameters.
    pub fn config(&self) -> &LifecycleConfig {
        &self.cfg
    }

    /// The reference signature, once a window had allocations.
    pub fn reference(&self) -> Option<&Signature> {
        self.reference.as_ref()
    }

    fn enter(&mut self, phase: Phase, now_ms: u64) {
        self.phase = phase;
        self.since_ms = now_ms;
        if phase == Phase::Learn {
            self.last_change_ms = now_ms;
            self.sweeps = 0;
        }
    }

    /// The learner accepted a change (LEARN: the convergence clock
    /// restarts).
    pub fn change_accepted(&mut self, now_ms: u64) {
        self.last_change_ms = now_ms;
        self.sweeps = 0;
    }

    /// Forgets the reference signature (the next window with allocations
    /// sets it): the policy changed, and with it the refill counts the
    /// signature is made of.
    pub fn reset_signature(&mut self) {
        self.reference = None;
        self.shifted = 0;
    }

    /// The learner finished a sweep over every knob.
    pub fn sweep_completed(&mut self) {
        self.sweeps = self.sweeps.saturating_add(1);
    }

    /// An alternative won in CANARY: → LEARN.
    pub fn canary_won(&mut self, now_ms: u64) -> Option<Transition> {
        if self.phase != Phase::Canary {
            return None;
        }
        self.enter(Phase::Learn, now_ms);
        Some(Transition::CanaryWon)
    }

    /// One window ended at `now_ms`, with size signature `sig` (`None`: no
    /// allocations). Returns the transition it caused, if any.
    pub fn on_window(&mut self, now_ms: u64, sig: Option<&Signature>) -> Option<Transition> {
        if let Some(sig) = sig {
            let warming = self.seen < self.cfg.warmup_windows;
            self.seen = self.seen.saturating_add(1);
            match &mut self.reference {
                None => self.reference = Some(*sig),
                Some(r) if warming => *r = *sig,
                Some(r) => {
                    if r.l1(sig) > self.cfg.shift_threshold {
                        self.shifted += 1;
                    } else {
                        self.shifted = 0;
                        if self.phase == Phase::Learn {
                            r.blend(sig, self.cfg.signature_alpha);
                        }
                    }
                }
            }
            if self.shifted >= self.cfg.shift_windows.max(1) {
                self.shifted = 0;
                self.reference = Some(*sig);
                let t = if self.phase == Phase::Learn {
                    Transition::Relearn
                } else {
                    Transition::Shifted
                };
                self.enter(Phase::Learn, now_ms);
                return Some(t);
            }
        }
        let elapsed = now_ms.saturating_sub(self.since_ms);
        match self.phase {
            Phase::Learn => {
                if now_ms.saturating_sub(self.last_change_ms) >= self.cfg.converge_ms
                    && self.sweeps >= self.cfg.min_sweeps
                {
                    self.enter(Phase::Frozen, now_ms);
                    return Some(Transition::Converged);
                }
            }
            Phase::Frozen => {
                if elapsed >= self.cfg.frozen_ms {
                    self.enter(Phase::Canary, now_ms);
                    return Some(Transition::CanaryStarted);
                }
            }
            Phase::Canary => {
                if elapsed >= self.cfg.canary_ms {
                    self.enter(Phase::Frozen, now_ms);
                    return Some(Transition::CanaryEnded);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::SIG_BINS;

    fn sig(bins: &[(usize, u64)]) -> Signature {
        let mut c = [0u64; SIG_BINS];
        for &(b, n) in bins {
            c[b] = n;
        }
        Signature::from_counts(&c).unwrap()
    }

    fn small() -> Signature {
        sig(&[(1, 90), (2, 10)])
    }

    fn large() -> Signature {
        sig(&[(12, 50), (18, 50)])
    }

    /// The lifecycle these tests walk through: convergence after 10 s (the
    /// default is 1 s; 10 s keeps the convergence clock apart from the
    /// 1 s windows of the tests).
    /// The tests below check shifts from the second window on: no warm-up
    /// (tested on its own).
    fn cfg() -> LifecycleConfig {
        LifecycleConfig {
            converge_ms: 10_000,
            warmup_windows: 0,
            ..LifecycleConfig::DEFAULT
        }
    }

    #[test]
    fn start_up_windows_build_the_reference_and_are_not_shifts() {
        let c = LifecycleConfig {
            warmup_windows: 4,
            ..cfg()
        };
        let mut l = Lifecycle::new(c, Phase::Frozen, 0);
        // start-up: two windows of one shape, then the steady workload
        l.on_window(1000, Some(&large()));
        l.on_window(2000, Some(&large()));
        for t in 3..=4 {
            assert_eq!(l.on_window(t * 1000, Some(&small())), None, "warm-up");
        }
        // the reference is the steady shape; it stays FROZEN
        for t in 5..=10 {
            assert_eq!(l.on_window(t * 1000, Some(&small())), None);
        }
        assert_eq!(l.phase(), Phase::Frozen);
        // after the warm-up a real shift is seen as before
        l.on_window(11_000, Some(&large()));
        assert_eq!(
            l.on_window(12_000, Some(&large())),
            Some(Transition::Shifted)
        );
    }

    /// Runs 1 s windows of `s` from `from` (exclusive) to `to` (inclusive),
    /// returning the transitions.
    fn run(l: &mut Lifecycle, from: u64, to: u64, s: &Signature) -> Vec<(u64, Transition)> {
        let mut out = Vec::new();
        let mut t = from;
        while t < to {
            t += 1000;
            if let Some(tr) = l.on_window(t, Some(s)) {
                out.push((t, tr));
            }
        }
        out
    }

    #[test]
    fn learn_stays_until_converged() {
        let mut l = Lifecycle::new(cfg(), Phase::Learn, 0);
        // 10 s without a change but no sweep yet: still learning
        assert_eq!(run(&mut l, 0, 12_000, &small()), []);
        l.sweep_completed();
        assert_eq!(
            l.on_window(13_000, Some(&small())),
            Some(Transition::Converged)
        );
        assert_eq!(l.phase(), Phase::Frozen);
        assert_eq!(l.since_ms(), 13_000);
    }

    #[test]
    fn an_accepted_change_restarts_the_convergence_clock() {
        let mut l = Lifecycle::new(cfg(), Phase::Learn, 0);
        l.sweep_completed();
        run(&mut l, 0, 8000, &small());
        l.change_accepted(8000);
        l.sweep_completed();
        assert_eq!(run(&mut l, 8000, 17_000, &small()), []);
        assert_eq!(
            l.on_window(18_000, Some(&small())),
            Some(Transition::Converged)
        );
    }

    #[test]
    fn a_change_also_requires_a_new_sweep() {
        let mut l = Lifecycle::new(cfg(), Phase::Learn, 0);
        l.sweep_completed();
        l.change_accepted(1000);
        assert_eq!(run(&mut l, 0, 20_000, &small()), []);
        l.sweep_completed();
        assert_eq!(l.on_window(21_000, None), Some(Transition::Converged));
    }

    #[test]
    fn frozen_then_canary_then_frozen() {
        let mut l = Lifecycle::new(cfg(), Phase::Frozen, 0);
        assert_eq!(run(&mut l, 0, 29_000, &small()), []);
        assert_eq!(
            l.on_window(30_000, Some(&small())),
            Some(Transition::CanaryStarted)
        );
        assert_eq!(l.phase(), Phase::Canary);
        assert_eq!(run(&mut l, 30_000, 59_000, &small()), []);
        assert_eq!(l.on_window(60_000, None), Some(Transition::CanaryEnded));
        assert_eq!(l.phase(), Phase::Frozen);
        assert_eq!(l.since_ms(), 60_000);
    }

    #[test]
    fn a_canary_win_returns_to_learn() {
        let mut l = Lifecycle::new(cfg(), Phase::Canary, 0);
        assert_eq!(l.canary_won(5000), Some(Transition::CanaryWon));
        assert_eq!(l.phase(), Phase::Learn);
        // and learning needs a new convergence
        l.sweep_completed();
        assert_eq!(run(&mut l, 5000, 14_000, &small()), []);
        assert_eq!(l.on_window(15_000, None), Some(Transition::Converged));
        // canary_won outside CANARY does nothing
        assert_eq!(l.canary_won(16_000), None);
        assert_eq!(l.phase(), Phase::Frozen);
    }

    #[test]
    fn a_shift_while_frozen_returns_to_learn() {
        let mut l = Lifecycle::new(cfg(), Phase::Frozen, 0);
        run(&mut l, 0, 5000, &small());
        assert_eq!(
            l.on_window(6000, Some(&large())),
            None,
            "one window is noise"
        );
        assert_eq!(l.on_window(7000, Some(&large())), Some(Transition::Shifted));
        assert_eq!(l.phase(), Phase::Learn);
        assert_eq!(l.reference(), Some(&large()));
    }

    #[test]
    fn a_shift_during_canary_returns_to_learn() {
        let mut l = Lifecycle::new(cfg(), Phase::Canary, 0);
        run(&mut l, 0, 3000, &small());
        l.on_window(4000, Some(&large()));
        assert_eq!(l.on_window(5000, Some(&large())), Some(Transition::Shifted));
        assert_eq!(l.phase(), Phase::Learn);
    }

    #[test]
    fn a_shift_while_learning_restarts_learning() {
        let mut l = Lifecycle::new(cfg(), Phase::Learn, 0);
        l.sweep_completed();
        run(&mut l, 0, 5000, &small());
        l.on_window(6000, Some(&large()));
        assert_eq!(l.on_window(7000, Some(&large())), Some(Transition::Relearn));
        assert_eq!(l.phase(), Phase::Learn);
        // the convergence clock and sweeps restarted
        assert_eq!(run(&mut l, 7000, 17_000, &large()), []);
        l.sweep_completed();
        assert_eq!(l.on_window(18_000, None), Some(Transition::Converged));
    }

    #[test]
    fn a_reset_signature_is_set_again_by_the_next_window() {
        let mut l = Lifecycle::new(cfg(), Phase::Frozen, 0);
        l.on_window(1000, Some(&small()));
        l.on_window(2000, Some(&large()));
        l.reset_signature();
        assert_eq!(l.reference(), None);
        assert_eq!(l.on_window(3000, Some(&large())), None);
        assert_eq!(
            l.on_window(4000, Some(&large())),
            None,
            "large is the reference now"
        );
        assert_eq!(l.reference(), Some(&large()));
        assert_eq!(l.phase(), Phase::Frozen);
    }

    #[test]
    fn small_drifts_and_empty_windows_are_not_shifts() {
        let mut l = Lifecycle::new(cfg(), Phase::Frozen, 0);
        l.on_window(1000, Some(&small()));
        let near = sig(&[(1, 80), (2, 20)]); // L1 0.2
        for t in 2..20 {
            assert_eq!(l.on_window(t * 1000, Some(&near)), None);
            assert_eq!(l.on_window(t * 1000 + 500, None), None);
        }
        // a shift interrupted by a normal window does not count
        let mut l = Lifecycle::new(cfg(), Phase::Frozen, 0);
        l.on_window(1000, Some(&small()));
        l.on_window(2000, Some(&large()));
        l.on_window(3000, Some(&small()));
        assert_eq!(l.on_window(4000, Some(&large())), None);
        assert_eq!(l.phase(), Phase::Frozen);
    }

    #[test]
    fn the_learning_reference_follows_slow_drift() {
        let mut l = Lifecycle::new(cfg(), Phase::Learn, 0);
        l.on_window(1000, Some(&small()));
        // drift from small to large in steps of L1 0.2: never a shift
        let mut t = 1000;
        for k in 0..=10u64 {
            let s = sig(&[(1, 100 - 10 * k), (12, 10 * k)]);
            for _ in 0..10 {
                t += 1000;
                assert_ne!(l.on_window(t, Some(&s)), Some(Transition::Relearn), "k {k}");
            }
        }
        assert!(l.reference().unwrap().l1(&sig(&[(12, 1)])) < 0.5);
        assert_eq!(l.config().shift_windows, 2);
    }
}
