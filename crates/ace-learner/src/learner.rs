//! The learner: knobs, bandit, reward, safety and lifecycle tied together.
//!
//! Feed it one [`Window`] of measurements per learning window
//! ([`Learner::on_window`]); it answers with the policy to run during the
//! next window, when that differs from the one that just ran
//! ([`Step::publish`]). The driver publishes it (a `PolicyCell`) and
//! measures the next window.
//!
//! What it does, by [`Phase`]:
//!
//! * **LEARN**: after a warm-up (`warmup_ms`, the first second: no
//!   exploration, the windows only set the reference), one knob at a time
//!   (round robin over the enabled knobs,
//!   skipping those whose sizes the window did not see; in the order of
//!   their measured sensitivity, see [`Learner::next_knob`]), an *epoch*: a
//!   fresh bandit over the knob's candidates {current, current − 1,
//!   current + 1}; each window plays one of them and its reward (against
//!   the policy in force when the epoch began) updates the bandit. Once the
//!   current level and the bandit's best have each been played
//!   `min_pulls` times (a knob whose step up may hold much more memory,
//!   the large cache's budget, tries it only once its step down had its
//!   plays and is not ahead), the best one's advantage (counted only if it is
//!   also `z` = 2 standard errors clear of the noise, pooled over the
//!   epoch's arms) is evidence for [`Safety`]: 8% better 3 windows in a
//!   row and the change is accepted,
//!   runs alone on probation, and is kept or rolled back. A kept change
//!   starts a new epoch on the same knob (it may be worth another step,
//!   never back to the level it left); an epoch of `epoch_windows` without
//!   a change, or one in which no candidate can still win (each dropped, or
//!   short of the margin by `futility_z` standard errors), moves on to the
//!   next knob.
//! * **FROZEN**: the accepted policy runs; the learner only keeps a moving
//!   average of its metrics (the reference the canary compares with).
//! * **CANARY**: a `canary_permille` share of windows runs an alternative
//!   (one knob one step away); an alternative that beats the reference by
//!   8% three trials in a row sends the learner back to LEARN, starting
//!   with that knob.
//!
//! Everything is deterministic given the seed and the windows.

use hakmem_policy_rcu::FrozenPolicy;

use crate::bandit::{AnySelector, EloSoftmax, Selector, SelectorKind, Ucb1};
pub use crate::config::{LearnerConfig, DEFAULT_KNOBS};
use crate::knob::{apply, initial_levels, Candidates, KnobId, Levels, KNOBS};
use crate::lifecycle::{Lifecycle, Phase, Transition};
use crate::math::sqrt;
use crate::reward::{reward, Metrics, Window};
use crate::rng::Rng;
use crate::safety::{ProbeOutcome, Safety};
use crate::signature::Signature;

/// Something the learner did (for logs: `research` mode traces them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event {
    /// The lifecycle changed state.
    Phase(Transition),
    /// An epoch began on a knob.
    EpochStarted {
        /// The knob.
        knob: KnobId,
    },
    /// The next window runs a candidate level of the epoch's knob.
    Explore {
        /// The knob.
        knob: KnobId,
        /// The level played.
        level: usize,
    },
    /// A candidate won its streak: the policy changes, on probation.
    Accepted {
        /// The knob.
        knob: KnobId,
        /// The old level.
        from: usize,
        /// The new level.
        to: usize,
    },
    /// A change survived probation.
    Kept {
        /// The knob.
        knob: KnobId,
        /// Its level.
        level: usize,
    },
    /// A change failed probation and was taken back.
    RolledBack {
        /// The knob.
        knob: KnobId,
        /// The rejected level.
        from: usize,
        /// The level restored.
        to: usize,
    },
    /// An epoch ended without a change.
    EpochEnded {
        /// The knob.
        knob: KnobId,
    },
    /// Every knob was visited once more.
    SweepCompleted,
    /// The next window runs an alternative (CANARY).
    CanaryTrial {
        /// The knob.
        knob: KnobId,
        /// The level tried.
        level: usize,
    },
    /// A canary trial was measured: its reward against the reference.
    CanaryResult {
        /// The knob.
        knob: KnobId,
        /// The level tried.
        level: usize,
        /// Its reward.
        reward: f64,
    },
}

/// Most events one window produces.
pub const MAX_EVENTS: usize = 8;

/// The learner's answer to a window.
#[derive(Debug, Clone)]
pub struct Step {
    /// The policy to run from now on, if it differs from the one that ran
    /// during the window.
    pub publish: Option<FrozenPolicy>,
    events: [Option<Event>; MAX_EVENTS],
    n_events: usize,
}

impl Step {
    fn new() -> Self {
        Step {
            publish: None,
            events: [None; MAX_EVENTS],
            n_events: 0,
        }
    }

    fn push(&mut self, e: Event) {
        if self.n_events < MAX_EVENTS {
            self.events[self.n_events] = Some(e);
            self.n_events += 1;
        }
    }

    /// What happened, in order.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.events[..self.n_events].iter().flatten()
    }
}

/// One knob's exploration.
#[derive(Debug, Clone, PartialEq)]
struct Epoch {
    knob: KnobId,
    candidates: Candidates,
    reference: Metrics,
    windows: u32,
    /// The arm the window that just ran played.
    arm: usize,
    /// During probation: the level the change came from.
    probation_from: Option<usize>,
    /// Windows without a streak before the epoch ends: `epoch_windows`, or
    /// fewer for a re-check of a knob measured flat (see `start_epoch`).
    limit: u32,
}

/// A canary alternative and its winning streak.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Trial {
    knob: KnobId,
    level: usize,
    wins: u32,
}

/// The learner.
#[derive(Debug, Clone)]
pub struct Learner {
    cfg: LearnerConfig,
    base: FrozenPolicy,
    initial: Levels,
    accepted: Levels,
    running: Levels,
    now_ms: u64,
    rng: Rng,
    selector: AnySelector,
    safety: Safety,
    lifecycle: Lifecycle,
    /// Moving average of the metrics of windows that ran the accepted
    /// policy.
    reference: Option<Metrics>,
    epoch: Option<Epoch>,
    /// The knobs visited (explored, or skipped as disabled or unseen) in
    /// the current sweep, one bit per [`KnobId`]: the sweep is complete
    /// when every bit is set.
    visited: u32,
    /// Whether the current sweep has visited anything yet.
    scanned: bool,
    /// A knob to explore before the sweep order's choice (the canary's
    /// winner).
    first: Option<KnobId>,
    /// Each knob's measured sensitivity: how far (reward) its candidates'
    /// means spread from the current level's in its last epochs (an
    /// average), `None` before its first epoch.
    sensitivity: [Option<f64>; KNOBS],
    /// The canary alternative being tried, if any.
    trial: Option<Trial>,
    /// Whether the window that just ran was a canary trial.
    trial_running: bool,
    /// Whether the lifecycle's signature is made of observed calls
    /// (`Window::call_hist`) rather than refills.
    sig_observed: bool,
}

/// A window's sizes (which knobs matter): the observed calls' where it was
/// observed with enough samples, else the refills'.
fn sizes(w: &Window) -> &[u64; crate::signature::SIG_BINS] {
    match &w.call_hist {
        Some(h) if h.iter().any(|&n| n > 0) => h,
        _ => &w.size_hist,
    }
}

impl Learner {
    /// A learner over `base` (the built-in or loaded policy), which is
    /// what runs until it proposes otherwise.
    pub fn new(base: &FrozenPolicy, cfg: LearnerConfig) -> Self {
        let mut cfg = cfg;
        // Convergence needs a sweep after the last change settled; this
        // also keeps the lifecycle from freezing during a probation.
        cfg.lifecycle.min_sweeps = cfg.lifecycle.min_sweeps.max(1);
        cfg.min_pulls = cfg.min_pulls.max(1);
        let initial = initial_levels(base);
        let selector = match cfg.selector {
            SelectorKind::Ucb1 => AnySelector::Ucb1(Ucb1::new(3, cfg.ucb_c)),
            SelectorKind::Elo => {
                AnySelector::Elo(EloSoftmax::new(3, cfg.elo_k, cfg.elo_temperature))
            }
        };
        Learner {
            base: *base,
            initial,
            accepted: initial,
            running: initial,
            now_ms: 0,
            rng: Rng::new(cfg.seed),
            selector,
            safety: Safety::new(cfg.safety),
            lifecycle: Lifecycle::new(cfg.lifecycle, cfg.start, 0),
            reference: None,
            epoch: None,
            visited: 0,
            scanned: false,
            first: None,
            sensitivity: [None; KNOBS],
            trial: None,
            trial_running: false,
            sig_observed: false,
            cfg,
        }
    }

    /// The lifecycle state.
    pub fn phase(&self) -> Phase {
        self.lifecycle.phase()
    }

    /// Whether the next window, `window_ms` long, needs its calls
    /// measured: not in FROZEN, and not while it ends within the warm-up
    /// (nothing will be learned from it; the window that ends the warm-up
    /// is the first play of the first epoch, so it is measured).
    pub fn wants_observation(&self, window_ms: u64) -> bool {
        self.phase() != Phase::Frozen && self.now_ms + window_ms > self.cfg.warmup_ms
    }

    /// The learner's clock: the sum of the windows' lengths (ms).
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// The accepted policy: what FROZEN runs and `HAKMEM_POLICY_SAVE`
    /// should write (never a candidate under trial).
    pub fn accepted_policy(&self) -> FrozenPolicy {
        apply(&self.base, &self.initial, &self.accepted)
    }

    /// The policy running now (the accepted one, or a candidate).
    pub fn running_policy(&self) -> FrozenPolicy {
        apply(&self.base, &self.initial, &self.running)
    }

    /// The accepted knob levels.
    pub fn accepted_levels(&self) -> &Levels {
        &self.accepted
    }

    /// The knob levels running now.
    pub fn running_levels(&self) -> &Levels {
        &self.running
    }

    /// The parameters.
    pub fn config(&self) -> &LearnerConfig {
        &self.cfg
    }

    /// Takes one window's measurements (of the policy that ran during it:
    /// the last one published) and says what to run next.
    pub fn on_window(&mut self, w: &Window) -> Step {
        let mut step = Step::new();
        let before = self.running;
        self.now_ms += w.elapsed_ms;
        let now = self.now_ms;
        // A window without measured calls (`ops` below the minimum: idle, or
        // not observed, as the allocator does while FROZEN) is neither
        // scored nor learned from; its size histogram still feeds the
        // lifecycle's workload signature when it has enough allocations.
        let idle = w.ops < self.cfg.min_window_ops;
        // The signature's source: the observed calls' sizes where the
        // window was observed (the same under any policy), else the blocks
        // that slow-path refills moved, which depend on the policy too (4x
        // bins refill a quarter as often): then only windows that ran the
        // accepted policy tell the workload's signature, never a
        // candidate's. The two are not compared with each other.
        let observed = w.call_hist.is_some();
        if observed != self.sig_observed {
            self.sig_observed = observed;
            self.lifecycle.reset_signature();
        }
        let hist = w.call_hist.as_ref().unwrap_or(&w.size_hist);
        let counted: u64 = hist.iter().sum();
        let sig = if (idle && counted < self.cfg.min_window_ops)
            || (!observed && before != self.accepted)
        {
            None
        } else {
            // (none from an observed window with too few samples)
            Signature::from_counts(hist)
        };
        let transition = self.lifecycle.on_window(now, sig.as_ref());
        let shifted = matches!(transition, Some(Transition::Relearn | Transition::Shifted));
        // A canary trial's window is scored whatever the state now is,
        // unless the workload shifted under it.
        if self.trial_running {
            self.trial_running = false;
            if !idle && !shifted {
                self.score_trial(w, &mut step);
            }
        } else if !idle && before == self.accepted && !shifted {
            self.learn_reference(w);
        }
        if let Some(t) = transition {
            step.push(Event::Phase(t));
            self.on_transition(t);
            if shifted && !idle && before == self.accepted {
                // the window shows the new workload: its first reference
                self.learn_reference(w);
            }
        }
        let ran_accepted = before == self.accepted;
        match self.lifecycle.phase() {
            Phase::Learn => {
                // After a transition there is no epoch: the window opens
                // one (as the current level's first play if it ran it).
                if !idle && now > self.cfg.warmup_ms {
                    self.learn(w, ran_accepted, &mut step);
                }
            }
            Phase::Frozen => self.running = self.accepted,
            Phase::Canary => self.canary(w, &mut step),
        }
        if self.running != before {
            step.publish = Some(self.running_policy());
        }
        step
    }

    fn learn_reference(&mut self, w: &Window) {
        let m = Metrics::of(w);
        match &mut self.reference {
            None => self.reference = Some(m),
            Some(r) => r.blend(&m, self.cfg.reference_alpha),
        }
    }

    fn on_transition(&mut self, t: Transition) {
        self.running = self.accepted;
        match t {
            // The canary's alternative and its streak outlive the switches
            // between FROZEN and CANARY.
            Transition::CanaryStarted | Transition::CanaryEnded => {}
            Transition::Relearn | Transition::Shifted => {
                // measured under another workload: forget it
                self.reference = None;
                self.sensitivity = [None; KNOBS];
                self.forget();
                self.restart_sweep();
            }
            Transition::CanaryWon | Transition::Converged => self.forget(),
        }
    }

    /// The accepted policy changed, and with it the refill counts: a
    /// signature made of them starts again from the new policy's windows
    /// (one made of observed calls is not affected, and goes on watching
    /// for a phase change across the change).
    fn refills_changed(&mut self) {
        if !self.sig_observed {
            self.lifecycle.reset_signature();
        }
    }

    /// The next sweep must visit every knob again: after a change, or when
    /// learning starts again, the knobs explored before it are due again.
    fn restart_sweep(&mut self) {
        self.visited = 0;
        self.scanned = false;
    }

    fn forget(&mut self) {
        self.epoch = None;
        self.trial = None;
        self.trial_running = false;
        self.safety.reset();
    }

    /// The next knob to explore: enabled, seen in the window and not yet
    /// visited in this sweep, the most promising first. A knob measured in
    /// an earlier epoch ranks by its sensitivity (the spread of its
    /// candidates' rewards: the knobs that moved the reward most are the
    /// likeliest to move it again after another change); one not measured
    /// yet ranks by the share of the window's allocations (calls or bytes,
    /// whichever is larger) in its sizes, and
    /// ahead of every measured knob whose sensitivity is below that share
    /// times the safety margin (unexplored knobs that carry the workload
    /// go first; a knob of every size, such as the decay time, has share
    /// zero and goes after them). Ties keep [`KnobId`] order. Where a sweep
    /// order has found a change, it is found early in the sweep, so less of
    /// the sweep is repeated after it. A sweep is complete when every knob
    /// has been visited (explored, or skipped as disabled or unseen).
    fn next_knob(&mut self, w: &Window, step: &mut Step) -> Option<KnobId> {
        if let Some(id) = self.first.take() {
            if self.cfg.knobs[id as usize] && id.relevant(sizes(w), self.min_ops(id)) {
                self.visited |= 1 << id as u32;
                self.scanned = true;
                return Some(id);
            }
        }
        for _ in 0..2 {
            let hist = sizes(w);
            let mut best: Option<(KnobId, f64)> = None;
            for id in KnobId::ALL {
                let bit = 1u32 << id as u32;
                if self.visited & bit != 0 {
                    continue;
                }
                if !self.cfg.knobs[id as usize] || !id.relevant(hist, self.min_ops(id)) {
                    // skipped: visited for this sweep
                    self.visited |= bit;
                    self.scanned = true;
                    continue;
                }
                let score = self.priority(id, hist);
                if best.is_none_or(|(_, b)| score > b) {
                    best = Some((id, score));
                }
            }
            if let Some((id, _)) = best {
                self.visited |= 1 << id as u32;
                self.scanned = true;
                return Some(id);
            }
            // every knob visited: the sweep is complete, the next begins
            if self.scanned {
                self.lifecycle.sweep_completed();
                step.push(Event::SweepCompleted);
            }
            self.restart_sweep();
        }
        None
    }

    /// A knob's rank in the sweep order (see [`Learner::next_knob`]).
    fn priority(&self, id: KnobId, hist: &[u64; crate::signature::SIG_BINS]) -> f64 {
        if let Some(s) = self.sensitivity[id as usize] {
            return s;
        }
        let Some((lo, hi)) = id.bins() else {
            return 0.0;
        };
        // The share of the calls, or of the bytes (bin b holds sizes up to
        // 2^(b+3)): a few large blocks are as much memory as many small
        // ones, and the large cache's knobs are about memory.
        let bytes = |b: usize, n: u64| n as f64 * (8u64 << b) as f64;
        let (mut calls, mut all_calls, mut mem, mut all_mem) = (0.0, 0.0, 0.0, 0.0);
        for (b, &n) in hist.iter().enumerate() {
            all_calls += n as f64;
            all_mem += bytes(b, n);
            if (lo..=hi).contains(&b) {
                calls += n as f64;
                mem += bytes(b, n);
            }
        }
        let share = |part: f64, all: f64| if all > 0.0 { part / all } else { 0.0 };
        share(calls, all_calls).max(share(mem, all_mem)) * self.cfg.safety.margin
    }

    /// The epoch on `epoch.knob` ended: how far its candidates' mean
    /// rewards spread from the current level's joins the knob's measured
    /// sensitivity (an even average with the earlier epochs').
    fn measure_sensitivity(&mut self, epoch: &Epoch) {
        let Some(m0) = self.selector.stats(0).mean() else {
            return;
        };
        let spread = (1..epoch.candidates.len())
            .filter_map(|a| self.selector.stats(a).mean())
            .fold(0.0f64, |acc, m| acc.max((m - m0).abs()));
        let slot = &mut self.sensitivity[epoch.knob as usize];
        *slot = Some(match *slot {
            Some(prev) => 0.5 * prev + 0.5 * spread,
            None => spread,
        });
    }

    /// The allocations a window must show in a knob's sizes for the knob
    /// to be explored.
    fn min_ops(&self, id: KnobId) -> u64 {
        match id.spec().sizes {
            Some((lo, _)) if lo >= 1 << 20 => self.cfg.min_large_knob_ops,
            _ => self.cfg.min_knob_ops,
        }
    }

    /// Starts an epoch on `knob`; `left` is the level a kept change just
    /// left, which is not a candidate again.
    fn start_epoch(
        &mut self,
        knob: KnobId,
        reference: Metrics,
        left: Option<usize>,
        step: &mut Step,
    ) {
        let mut candidates = self.accepted.knob(knob).candidates();
        if let Some(l) = left {
            candidates = candidates.without(l);
        }
        self.selector.reset(candidates.len());
        self.safety.clear_streak();
        // A knob whose earlier epochs measured it flat (its candidates
        // within half the margin of the current level) is re-checked, not
        // explored anew: its epoch is cut to what gives every candidate its
        // `min_pulls` plays (a streak still extends it).
        let flat =
            self.sensitivity[knob as usize].is_some_and(|s| s < 0.5 * self.cfg.safety.margin);
        let limit = if flat {
            self.cfg
                .epoch_windows
                .min(self.cfg.min_pulls.saturating_mul(candidates.len() as u32))
        } else {
            self.cfg.epoch_windows
        };
        self.epoch = Some(Epoch {
            knob,
            candidates,
            reference,
            windows: 0,
            arm: 0,
            probation_from: None,
            limit,
        });
        step.push(Event::EpochStarted { knob });
    }

    /// One LEARN window.
    fn learn(&mut self, w: &Window, ran_accepted: bool, step: &mut Step) {
        let now = self.now_ms;
        let Some(mut epoch) = self.epoch.take() else {
            // Start an epoch; the window just measured ran the accepted
            // policy, so it is the current level's first play.
            let Some(knob) = self.next_knob(w, step) else {
                return;
            };
            let m = Metrics::of(w);
            let reference = self.reference.unwrap_or(m);
            self.start_epoch(knob, reference, None, step);
            if ran_accepted {
                let r = self.reward(w, &reference);
                self.selector.update(0, r);
                if let Some(e) = &mut self.epoch {
                    e.windows = 1;
                }
            }
            self.explore(step);
            return;
        };
        let r = self.reward(w, &epoch.reference);
        if let Some(from) = epoch.probation_from {
            match self.safety.probe(now, r) {
                ProbeOutcome::Continue => self.epoch = Some(epoch),
                ProbeOutcome::Keep => {
                    let level = self.accepted.get(epoch.knob);
                    step.push(Event::Kept {
                        knob: epoch.knob,
                        level,
                    });
                    self.lifecycle.change_accepted(now);
                    self.restart_sweep();
                    // another step on the same knob may pay off too (this
                    // epoch is the new sweep's visit of the knob)
                    let reference = self.reference.unwrap_or(epoch.reference);
                    self.visited |= 1 << epoch.knob as u32;
                    self.scanned = true;
                    self.start_epoch(epoch.knob, reference, Some(from), step);
                    self.explore(step);
                }
                ProbeOutcome::Rollback => {
                    let to_level = self.accepted.get(epoch.knob);
                    self.accepted.set(epoch.knob, from);
                    self.running = self.accepted;
                    self.reference = None;
                    self.lifecycle.change_accepted(now);
                    self.restart_sweep();
                    self.refills_changed();
                    step.push(Event::RolledBack {
                        knob: epoch.knob,
                        from: to_level,
                        to: from,
                    });
                }
            }
            return;
        }
        self.selector.update(epoch.arm, r);
        epoch.windows += 1;
        let best = self.selector.best().unwrap_or(0);
        let (cur, top) = (self.selector.stats(0), self.selector.stats(best));
        let advantage = match (cur.mean(), top.mean()) {
            (Some(c), Some(t))
                if cur.pulls >= self.cfg.min_pulls && top.pulls >= self.cfg.min_pulls =>
            {
                // Under noise a gain must also be clear of it: `z`
                // standard errors (pooled over the epoch's arms).
                let advantage = t - c;
                let se = self.standard_error(&epoch, cur.pulls, top.pulls);
                Some(if advantage >= self.cfg.z * se {
                    advantage
                } else {
                    0.0
                })
            }
            _ => None,
        };
        if let Some(arm) = self.safety.watch(now, 0, best, advantage) {
            self.measure_sensitivity(&epoch);
            let from = epoch.candidates.level(0);
            let to = epoch.candidates.level(arm);
            self.accepted.set(epoch.knob, to);
            self.running = self.accepted;
            self.reference = None;
            self.safety.start_probation(cur.mean().unwrap_or(0.0));
            self.lifecycle.change_accepted(now);
            self.restart_sweep();
            self.refills_changed();
            epoch.probation_from = Some(from);
            step.push(Event::Accepted {
                knob: epoch.knob,
                from,
                to,
            });
            self.epoch = Some(epoch);
            return;
        }
        let streak = matches!(
            self.safety.phase(),
            crate::safety::SafetyPhase::Watching { wins, .. } if wins > 0
        );
        let limit = epoch.limit + if streak { self.cfg.safety.streak } else { 0 };
        if epoch.windows >= limit || (!streak && self.futile(&epoch)) {
            self.measure_sensitivity(&epoch);
            step.push(Event::EpochEnded { knob: epoch.knob });
            self.running = self.accepted;
            return;
        }
        self.epoch = Some(epoch);
        self.explore(step);
    }

    /// True when no candidate can still win the epoch: each was dropped
    /// (well behind the current level), or has had its `min_pulls` plays
    /// and, even `futility_z` standard errors better than measured, is not
    /// ahead of the current level by the safety margin. Ending such an
    /// epoch early is what keeps a sweep over knobs that do not matter
    /// short.
    fn futile(&self, epoch: &Epoch) -> bool {
        let s0 = self.selector.stats(0);
        let Some(m0) = s0.mean() else {
            return false;
        };
        (1..epoch.candidates.len()).all(|a| {
            let s = self.selector.stats(a);
            match s.mean() {
                Some(m) if s.pulls >= self.cfg.drop_after && m < m0 - self.cfg.drop_margin => true,
                Some(m) if s.pulls >= self.cfg.min_pulls && s0.pulls >= self.cfg.min_pulls => {
                    let se = self.standard_error(epoch, s0.pulls, s.pulls);
                    m - m0 + self.cfg.futility_z * se < self.cfg.safety.margin
                }
                _ => false,
            }
        })
    }

    /// The standard error of the difference of two arm means with `n1`
    /// and `n2` plays, from the variance pooled over the epoch's arms (0
    /// while there are no degrees of freedom).
    fn standard_error(&self, epoch: &Epoch, n1: u32, n2: u32) -> f64 {
        let (mut ss, mut n, mut k) = (0.0, 0u32, 0u32);
        for arm in 0..epoch.candidates.len() {
            let s = self.selector.stats(arm);
            if s.pulls > 0 {
                ss += s.squared_deviations();
                n += s.pulls;
                k += 1;
            }
        }
        if n <= k {
            return 0.0;
        }
        let var = ss / (n - k) as f64;
        sqrt(var * (1.0 / n1 as f64 + 1.0 / n2 as f64))
    }

    /// Picks the arm for the next window: an arm played fewer than
    /// `min_pulls` times (the fewest first), else the bandit's choice.
    fn explore(&mut self, step: &mut Step) {
        let Some(epoch) = &mut self.epoch else {
            return;
        };
        let n = epoch.candidates.len();
        // An arm already well behind the current level after a few plays
        // is not played again just to reach `min_pulls`: every window of a
        // losing arm is a window the program runs slower.
        let s0 = self.selector.stats(0);
        let mut losing = [false; 3];
        for (a, l) in losing.iter_mut().enumerate().take(n).skip(1) {
            let s = self.selector.stats(a);
            *l = s.pulls >= self.cfg.drop_after
                && matches!((s.mean(), s0.mean()), (Some(m), Some(m0)) if m < m0 - self.cfg.drop_margin);
        }
        // A cautious knob's step up waits until its step down had its
        // plays (or lost) and is not ahead of the current level.
        let current = epoch.candidates.level(0);
        let arm_of =
            |pred: &dyn Fn(usize) -> bool| (1..n).find(|&a| pred(epoch.candidates.level(a)));
        let (lower, upper) = (arm_of(&|l| l < current), arm_of(&|l| l > current));
        let blocked = match (epoch.knob.spec().cautious_up, lower, upper) {
            (true, Some(lo), Some(up)) => {
                let s_lo = self.selector.stats(lo);
                let lower_ahead = match (s_lo.mean(), s0.mean()) {
                    (Some(a), Some(b)) => a >= b,
                    _ => true,
                };
                let played = s_lo.pulls >= self.cfg.min_pulls || losing[lo];
                (!played || lower_ahead).then_some(up)
            }
            _ => None,
        };
        let mut ok = [true; 3];
        for (a, ok) in ok.iter_mut().enumerate().take(n) {
            *ok = Some(a) != blocked && !losing[a];
        }
        let least = (0..n)
            .filter(|&a| ok[a])
            .min_by_key(|&a| self.selector.stats(a).pulls)
            .unwrap_or(0);
        let arm = if self.selector.stats(least).pulls < self.cfg.min_pulls {
            least
        } else {
            match self.selector.select(&mut self.rng).min(n - 1) {
                a if !ok[a] => least,
                a => a,
            }
        };
        epoch.arm = arm;
        let level = epoch.candidates.level(arm);
        self.running = self.accepted;
        self.running.set(epoch.knob, level);
        step.push(Event::Explore {
            knob: epoch.knob,
            level,
        });
    }

    fn reward(&self, w: &Window, reference: &Metrics) -> f64 {
        reward(w, reference, &self.cfg.weights, self.cfg.memory_budget)
    }

    /// Scores the canary trial that just ran against the reference.
    fn score_trial(&mut self, w: &Window, step: &mut Step) {
        let (Some(t), Some(reference)) = (&mut self.trial, &self.reference) else {
            return;
        };
        let r = reward(w, reference, &self.cfg.weights, self.cfg.memory_budget);
        step.push(Event::CanaryResult {
            knob: t.knob,
            level: t.level,
            reward: r,
        });
        if r >= self.cfg.safety.margin {
            t.wins += 1;
        } else {
            self.trial = None;
        }
    }

    /// One CANARY window: act on a winning alternative, or maybe try one.
    fn canary(&mut self, w: &Window, step: &mut Step) {
        self.running = self.accepted;
        if let Some(t) = self.trial {
            if t.wins >= self.cfg.safety.streak {
                if let Some(tr) = self.lifecycle.canary_won(self.now_ms) {
                    step.push(Event::Phase(tr));
                    self.on_transition(tr);
                    // learning starts with the knob that won
                    self.restart_sweep();
                    self.first = Some(t.knob);
                }
                return;
            }
        }
        if self.reference.is_none() || !self.rng.chance_permille(self.cfg.canary_permille) {
            return;
        }
        let trial = match self.trial {
            Some(t) => Some(t),
            None => self.pick_trial(w),
        };
        if let Some(t) = trial {
            self.trial = Some(t);
            self.trial_running = true;
            self.running.set(t.knob, t.level);
            step.push(Event::CanaryTrial {
                knob: t.knob,
                level: t.level,
            });
        }
    }

    /// A random alternative: an enabled knob seen in the window, one step
    /// up or down.
    fn pick_trial(&mut self, w: &Window) -> Option<Trial> {
        let mut choices = [(KnobId::DecayMs, 0usize); 2 * KNOBS];
        let mut n = 0;
        for id in KnobId::ALL {
            if !self.cfg.knobs[id as usize] || !id.relevant(sizes(w), self.min_ops(id)) {
                continue;
            }
            for &level in &self.accepted.knob(id).candidates().as_slice()[1..] {
                choices[n] = (id, level);
                n += 1;
            }
        }
        if n == 0 {
            return None;
        }
        let (knob, level) = choices[self.rng.below(n as u64) as usize];
        Some(Trial {
            knob,
            level,
            wins: 0,
        })
    }
}

#[cfg(test)]
mod unobserved_windows {
    use super::*;
    use crate::lifecycle::Phase;
    use hakmem_policy_rcu::DEFAULT_POLICY;

    fn window(ops: u64, hist: [u64; crate::signature::SIG_BINS]) -> Window {
        let mut w = Window::idle(1000);
        w.ops = ops;
        w.size_hist = hist;
        w.rss_bytes = 64 << 20;
        w
    }

    /// A FROZEN learner fed windows with no measured calls (the allocator
    /// does not observe its fast path then) still notices a workload shift
    /// through the size histogram, and never scores those windows.
    #[test]
    fn unobserved_windows_still_detect_a_shift() {
        let cfg = LearnerConfig {
            start: Phase::Frozen,
            ..LearnerConfig::DEFAULT
        };
        let mut l = Learner::new(&DEFAULT_POLICY, cfg);
        let mut small = [0u64; crate::signature::SIG_BINS];
        small[2] = 50_000;
        let mut big = [0u64; crate::signature::SIG_BINS];
        big[15] = 50_000;
        for _ in 0..5 {
            let s = l.on_window(&window(0, small));
            assert!(s.publish.is_none());
            assert_eq!(l.phase(), Phase::Frozen);
        }
        let mut relearned = false;
        for _ in 0..5 {
            l.on_window(&window(0, big));
            relearned |= l.phase() == Phase::Learn;
        }
        assert!(relearned, "the size signature shifted");
        // idle and unobserved: no signature, no change
        let mut l2 = Learner::new(&DEFAULT_POLICY, cfg);
        for _ in 0..20 {
            l2.on_window(&window(0, [0; crate::signature::SIG_BINS]));
        }
        assert_ne!(l2.phase(), Phase::Learn);
    }
}
