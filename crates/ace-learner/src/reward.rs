//! What a learning window measured, and the reward the learner derives
//! from it.
//!
//! The reward of a window is the log of a composite score relative to a
//! reference (the policy in force when the knob's exploration began):
//!
//! ```text
//! reward = 1.00 · ln(throughput / ref)      ops per ms: higher is better
//!        − 0.10 · ln(latency_p99 / ref)     sampled per-call P99 (±ln 4 at most)
//!        − 0.10 · ln(faults_per_op / ref)   minor page faults per op
//!        − 0.50 · ln(rss / ref)             resident set at window end
//!        − budget penalty                   see below
//! ```
//!
//! Why logs: a reward is then a relative change (+0.077 = 8% better), the
//! same whatever the program's absolute speed or size, and differences of
//! rewards do not depend on the reference at all (`ln(a/r) − ln(b/r) =
//! ln(a/b)`), so arms measured against the same reference compare
//! exactly. "A change must win by 8%" is a reward difference of
//! `ln(1.08)`.
//!
//! Why these weights ([`Weights::DEFAULT`]):
//!
//! * **throughput 1.0**: the point of a faster allocator, and the quantity
//!   the A/B benchmarks judge first;
//! * **RSS 0.5**: memory is the other judged quantity, but a cache is
//!   memory traded for speed; at ½ a knob may double RSS only for a
//!   throughput gain of more than √2 (41%), and halving RSS is worth a 29%
//!   throughput loss — conservative on the memory side without freezing
//!   every cache at its minimum;
//! * **latency P99 0.1**: sampled, and most of its signal (slow paths,
//!   page faults) already shows in throughput; it breaks ties towards
//!   smoother tails. Small because it is mostly noise at the window
//!   lengths that converge in seconds: on a loaded 2-core machine, the
//!   P99 of the calls timed in one 50–100 ms window varies with σ(ln P99)
//!   ≈ 0.85–1.3 from window to window under a fixed policy (preemption
//!   inside a timed call), which at 0.25 alone would be a reward noise of
//!   σ 0.2–0.3, more than the 8% margin;
//! * **faults 0.1**: minor faults cost time (already in throughput) and
//!   touch memory (already in RSS): a small weight that only tips the
//!   balance towards fewer faults (decay, madvise and THP knobs). At 0.25
//!   it double-counted them: a budget that halves a program's RSS and
//!   runs it faster still lost on faults (measured on `index-build`:
//!   1.6× the faults with a 16 MiB large-cache budget, for 1.35× the
//!   speed and 20% less RSS). Rates below [`FAULTS_PER_OP_FLOOR`] count
//!   as the floor.
//!
//! The memory budget ([`budget_penalty`]): above it the reward drops by
//! `1 + 10 × excess fraction`. A window 10% over the budget loses 2.0,
//! worse than any plausible gain (a score ×0.14), so a policy over budget
//! never wins, and one just over it loses to any policy under it.
//!
//! Terms with no data are left out: a zero or non-finite P99 (no samples)
//! or RSS (not measured).

use crate::math::ln;
use crate::signature::SIG_BINS;

/// What one learning window measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// The window's length in ms (the learner's clock advances by it).
    pub elapsed_ms: u64,
    /// Allocation calls in the window (malloc and friends; frees may be
    /// included, consistently): the throughput proxy is `ops / elapsed_ms`.
    /// 0 when the window was not observed: such a window only feeds the
    /// workload signature (from `size_hist`).
    pub ops: u64,
    /// P99 of the sampled per-call latencies, ns (a [`P2`](crate::p2::P2)
    /// estimate); 0 if none were sampled.
    pub latency_p99_ns: f64,
    /// Minor page faults during the window.
    pub minor_faults: u64,
    /// Resident set size at the end of the window (or its peak), bytes; 0
    /// if unknown.
    pub rss_bytes: u64,
    /// Allocations per size bin ([`size_bin`](crate::signature::size_bin))
    /// during the window, as the allocator's slow paths saw them (blocks
    /// moved by refills: they depend on the running policy too).
    pub size_hist: [u64; SIG_BINS],
    /// Calls per size bin as observed (sampled calls, scaled like `ops`):
    /// the same whatever policy runs. `None` when the window was not
    /// observed; all zeros when it was, but too few calls were sampled to
    /// tell their sizes apart from noise.
    pub call_hist: Option<[u64; SIG_BINS]>,
}

impl Window {
    /// An empty window of `elapsed_ms` (for building test windows).
    pub const fn idle(elapsed_ms: u64) -> Window {
        Window {
            elapsed_ms,
            ops: 0,
            latency_p99_ns: 0.0,
            minor_faults: 0,
            rss_bytes: 0,
            size_hist: [0; SIG_BINS],
            call_hist: None,
        }
    }
}

/// Fewer faults per op than this are counted as this many: a program that
/// makes millions of calls per window takes a handful of faults at random
/// (thread stacks, the learner's own reads), and their ratio from window to
/// window is noise (measured: σ(ln faults) ≈ 1.3 per 100 ms window under
/// `request-burst`), not a property of the policy.
pub const FAULTS_PER_OP_FLOOR: f64 = 1e-5;

/// The rates a reward compares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics {
    /// Ops per ms.
    pub throughput: f64,
    /// Latency P99, ns (0: unknown).
    pub latency_p99: f64,
    /// Minor faults per op (with one fault added, so it is never 0), at
    /// least [`FAULTS_PER_OP_FLOOR`].
    pub faults_per_op: f64,
    /// Bytes (0: unknown).
    pub rss: f64,
}

impl Metrics {
    /// The rates of a window.
    pub fn of(w: &Window) -> Metrics {
        let ops = w.ops.max(1) as f64;
        Metrics {
            throughput: ops / w.elapsed_ms.max(1) as f64,
            latency_p99: if w.latency_p99_ns.is_finite() && w.latency_p99_ns > 0.0 {
                w.latency_p99_ns
            } else {
                0.0
            },
            faults_per_op: ((w.minor_faults as f64 + 1.0) / ops).max(FAULTS_PER_OP_FLOOR),
            rss: w.rss_bytes as f64,
        }
    }

    /// Moves each rate towards `other`'s by `alpha` (an exponential moving
    /// average); an unknown rate takes the other's value.
    pub fn blend(&mut self, other: &Metrics, alpha: f64) {
        fn mix(a: &mut f64, b: f64, alpha: f64) {
            if *a <= 0.0 {
                *a = b;
            } else if b > 0.0 {
                *a += alpha * (b - *a);
            }
        }
        mix(&mut self.throughput, other.throughput, alpha);
        mix(&mut self.latency_p99, other.latency_p99, alpha);
        mix(&mut self.faults_per_op, other.faults_per_op, alpha);
        mix(&mut self.rss, other.rss, alpha);
    }
}

/// The weights of the reward's terms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    /// Of `ln(throughput ratio)`.
    pub throughput: f64,
    /// Of `−ln(latency P99 ratio)`.
    pub latency: f64,
    /// Of `−ln(faults per op ratio)`.
    pub faults: f64,
    /// Of `−ln(RSS ratio)`.
    pub rss: f64,
}

impl Weights {
    /// The documented weights (see the module documentation).
    pub const DEFAULT: Weights = Weights {
        throughput: 1.0,
        latency: 0.1,
        faults: 0.1,
        rss: 0.5,
    };
}

impl Default for Weights {
    fn default() -> Self {
        Weights::DEFAULT
    }
}

/// `ln(a / b)`, 0 when either is unknown (≤ 0).
fn log_ratio(a: f64, b: f64) -> f64 {
    if a > 0.0 && b > 0.0 {
        ln(a / b)
    } else {
        0.0
    }
}

/// The latency term's log-ratio is clamped to ±ln 4: one timed call that
/// spans a preemption can make a window's P99 a thousand times the
/// reference's (measured: 394 µs against 300 ns), which unclamped would
/// outweigh every other term.
pub const LATENCY_CLAMP: f64 = 1.386_294_361_119_890_6; // ln(4)

/// The score of `m` against `reference`: the weighted log-ratios, without
/// the budget penalty.
pub fn score(m: &Metrics, reference: &Metrics, w: &Weights) -> f64 {
    w.throughput * log_ratio(m.throughput, reference.throughput)
        - w.latency
            * log_ratio(m.latency_p99, reference.latency_p99).clamp(-LATENCY_CLAMP, LATENCY_CLAMP)
        - w.faults * log_ratio(m.faults_per_op, reference.faults_per_op)
        - w.rss * log_ratio(m.rss, reference.rss)
}

/// The penalty for `rss_bytes` above `budget` bytes (0 = no budget): 0
/// within it, `1 + 10 × (rss / budget − 1)` above it.
pub fn budget_penalty(rss_bytes: u64, budget: u64) -> f64 {
    if budget == 0 || rss_bytes <= budget {
        0.0
    } else {
        1.0 + 10.0 * (rss_bytes as f64 / budget as f64 - 1.0)
    }
}

/// The reward of a window: its [`score`] against `reference` minus the
/// [`budget_penalty`].
pub fn reward(w: &Window, reference: &Metrics, weights: &Weights, budget: u64) -> f64 {
    score(&Metrics::of(w), reference, weights) - budget_penalty(w.rss_bytes, budget)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(ops: u64, p99: f64, faults: u64, rss: u64) -> Window {
        Window {
            elapsed_ms: 1000,
            ops,
            latency_p99_ns: p99,
            minor_faults: faults,
            rss_bytes: rss,
            ..Window::idle(1000)
        }
    }

    const BASE: (u64, f64, u64, u64) = (1_000_000, 200.0, 999, 100 << 20);

    fn base() -> Window {
        window(BASE.0, BASE.1, BASE.2, BASE.3)
    }

    #[test]
    fn the_reference_scores_zero() {
        let r = Metrics::of(&base());
        assert_eq!(reward(&base(), &r, &Weights::DEFAULT, 0), 0.0);
        assert_eq!(Metrics::of(&base()).faults_per_op, 1000.0 / 1e6);
    }

    #[test]
    fn each_term_moves_the_reward_by_its_weight() {
        let r = Metrics::of(&base());
        let w = Weights::DEFAULT;
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        // 10% more throughput (and the same faults per op)
        let faster = window(1_100_000, BASE.1, 1099, BASE.3);
        assert!(close(reward(&faster, &r, &w, 0), ln(1.1)));
        // P99 doubled
        let slow_tail = window(BASE.0, 400.0, BASE.2, BASE.3);
        assert!(close(reward(&slow_tail, &r, &w, 0), -w.latency * ln(2.0)));
        // ... or a thousand times: clamped at 4x
        let preempted = window(BASE.0, 200_000.0, BASE.2, BASE.3);
        assert!(close(reward(&preempted, &r, &w, 0), -w.latency * ln(4.0)));
        assert!((LATENCY_CLAMP - ln(4.0)).abs() < 1e-12);
        // faults doubled
        let faulty = window(BASE.0, BASE.1, 1999, BASE.3);
        assert!(close(reward(&faulty, &r, &w, 0), -w.faults * ln(2.0)));
        // RSS doubled
        let fat = window(BASE.0, BASE.1, BASE.2, 200 << 20);
        assert!(close(reward(&fat, &r, &w, 0), -w.rss * ln(2.0)));
        // doubling RSS pays off only beyond a √2 throughput gain
        let trade = window(1_400_000, BASE.1, 1399, 200 << 20);
        assert!(reward(&trade, &r, &w, 0) < 0.0);
        let trade = window(1_420_000, BASE.1, 1419, 200 << 20);
        assert!(reward(&trade, &r, &w, 0) > 0.0);
    }

    #[test]
    fn unknown_terms_are_left_out() {
        let r = Metrics::of(&window(BASE.0, 0.0, BASE.2, 0));
        let w = window(BASE.0, 500.0, BASE.2, 1 << 30);
        assert_eq!(reward(&w, &r, &Weights::DEFAULT, 0), 0.0);
        let nan = window(BASE.0, f64::NAN, BASE.2, BASE.3);
        assert_eq!(Metrics::of(&nan).latency_p99, 0.0);
        // an idle window does not divide by zero
        let idle = Metrics::of(&Window::idle(0));
        assert!(idle.throughput.is_finite() && idle.faults_per_op.is_finite());
    }

    #[test]
    fn over_budget_is_strongly_negative() {
        let r = Metrics::of(&base());
        let budget = 100 << 20;
        assert_eq!(budget_penalty(budget, budget), 0.0);
        assert_eq!(budget_penalty(u64::MAX, 0), 0.0);
        assert!((budget_penalty(110 << 20, budget) - 2.0).abs() < 1e-12);
        // twice the throughput does not make up for 10% over the budget
        let greedy = window(2 * BASE.0, BASE.1, 2 * BASE.2 + 1, 110 << 20);
        assert!(reward(&greedy, &r, &Weights::DEFAULT, budget) < -1.0);
        // and a policy just over loses to one just under
        let over = window(BASE.0, BASE.1, BASE.2, budget + 1);
        let under = window(BASE.0, BASE.1, BASE.2, budget);
        assert!(
            reward(&over, &r, &Weights::DEFAULT, budget) + 0.9
                < reward(&under, &r, &Weights::DEFAULT, budget)
        );
    }

    #[test]
    fn blending_metrics() {
        let mut m = Metrics::of(&window(1000, 0.0, 0, 0));
        let n = Metrics::of(&window(3000, 100.0, 0, 1000));
        m.blend(&n, 0.5);
        assert_eq!(m.throughput, 2.0);
        assert_eq!(m.latency_p99, 100.0); // unknown takes the other's
        assert_eq!(m.rss, 1000.0);
        assert_eq!(Weights::default(), Weights::DEFAULT);
    }
}
