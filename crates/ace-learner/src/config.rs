//! The learner's parameters ([`LearnerConfig`]) and the knobs it moves by
//! default.

use crate::bandit::SelectorKind;
use crate::knob::{KnobId, KNOBS};
use crate::lifecycle::{LifecycleConfig, Phase};
use crate::reward::Weights;
use crate::safety::SafetyConfig;

/// The knobs the learner moves by default: all but four whose effects are
/// second-order (`mid_wmax_permille`, `large_cache_max_block`,
/// `large_wmax_permille`, `pool_dirty`). Every knob a program's sizes make
/// relevant costs an epoch in every sweep, and convergence needs a whole
/// sweep after the last change: nine knobs instead of thirteen keep a
/// program that uses every tier within ten seconds (50 ms windows).
pub const DEFAULT_KNOBS: [bool; KNOBS] = {
    let mut k = [true; KNOBS];
    k[KnobId::MidWmax as usize] = false;
    k[KnobId::LargeCacheMaxBlock as usize] = false;
    k[KnobId::LargeWmax as usize] = false;
    k[KnobId::PoolDirty as usize] = false;
    k
};

/// The learner's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LearnerConfig {
    /// RNG seed.
    pub seed: u64,
    /// The bandit (`HAKMEM_SELECTOR`).
    pub selector: SelectorKind,
    /// UCB1's exploration constant, in reward units (0.1: rewards are
    /// log-ratios of a few percent).
    pub ucb_c: f64,
    /// ELO update step (rating points per comparison).
    pub elo_k: f64,
    /// ELO softmax temperature (rating points).
    pub elo_temperature: f64,
    /// The reward's weights.
    pub weights: Weights,
    /// Memory budget in bytes of RSS (0: none).
    pub memory_budget: u64,
    /// Windows of exploration per knob before moving on (extended while a
    /// candidate is on a winning streak). 17 (was 20): with the sweep
    /// order by measured sensitivity, the `convergence` example's simulated
    /// programs (100 seeds, 50 ms windows) freeze at a median 4.5, 5.0, 3.8
    /// and 5.7 s (p90 4.8, 6.2, 4.5, 6.2) instead of 5.0, 5.5, 4.3 and
    /// 7.0 s (p90 7.0, 8.1, 6.8, 13.8), settling right as often or more.
    pub epoch_windows: u32,
    /// A candidate behind the current level by more than `drop_margin`
    /// (reward) after `drop_after` plays is not played again in the epoch.
    pub drop_after: u32,
    /// See `drop_after` (0.23 = 3 × the 8% margin: 21% worse).
    pub drop_margin: f64,
    /// Plays of both the current level and the best candidate before the
    /// advantage counts.
    pub min_pulls: u32,
    /// An epoch ends early when no candidate, credited this many standard
    /// errors more than it measured, would be ahead by the safety margin
    /// (1: about 84% sure it cannot win; `f64::INFINITY`: epochs always run
    /// their `epoch_windows`).
    pub futility_z: f64,
    /// Besides the margin, the advantage must be at least this many
    /// standard errors (2: a one-sided ~98% test under Gaussian noise; 0:
    /// the margin alone).
    pub z: f64,
    /// Windows with fewer allocation calls are idle: they neither teach
    /// nor move anything.
    pub min_window_ops: u64,
    /// A knob is explored only if the window saw at least this many
    /// allocations in its sizes.
    pub min_knob_ops: u64,
    /// ... or, for the knobs of large blocks (above 1 MiB), this many: a
    /// few large blocks per window are as much memory as thousands of
    /// small ones.
    pub min_large_knob_ops: u64,
    /// Weight of a new window in the reference metrics' moving average.
    pub reference_alpha: f64,
    /// Share of CANARY windows that try an alternative (‰;
    /// `HAKMEM_CANARY_PERMILLE`).
    pub canary_permille: u32,
    /// No exploration before the learner's clock reaches this (ms): a
    /// program's start-up is a transient, and a program that ends sooner
    /// could never win back what exploring costs it. Its windows still set
    /// the reference metrics.
    pub warmup_ms: u64,
    /// Which knobs may move.
    pub knobs: [bool; KNOBS],
    /// Hysteresis, probation, cooldown.
    pub safety: SafetyConfig,
    /// LEARN → FROZEN → CANARY timing and shift detection.
    pub lifecycle: LifecycleConfig,
    /// The starting state: LEARN, or FROZEN when starting on a saved
    /// policy (`HAKMEM_POLICY`).
    pub start: Phase,
}

impl LearnerConfig {
    /// The defaults (see each field).
    pub const DEFAULT: LearnerConfig = LearnerConfig {
        seed: 0x4841_4b4d_454d, // "HAKMEM"
        selector: SelectorKind::Ucb1,
        ucb_c: 0.1,
        elo_k: 16.0,
        elo_temperature: 100.0,
        weights: Weights::DEFAULT,
        memory_budget: 0,
        epoch_windows: 17,
        min_pulls: 5,
        futility_z: 1.0,
        drop_after: 3,
        drop_margin: 0.23,
        z: 2.0,
        min_window_ops: 1000,
        min_knob_ops: 64,
        min_large_knob_ops: 2,
        reference_alpha: 0.2,
        canary_permille: 50,
        warmup_ms: 1000,
        knobs: DEFAULT_KNOBS,
        safety: SafetyConfig::DEFAULT,
        lifecycle: LifecycleConfig::DEFAULT,
        start: Phase::Learn,
    };
}

impl Default for LearnerConfig {
    fn default() -> Self {
        LearnerConfig::DEFAULT
    }
}
