//! How long the learner takes to reach FROZEN, and what it settles on, for
//! simulated programs with the window-to-window noise measured on a loaded
//! 2-core machine (the tuning tool behind `LearnerConfig::DEFAULT`).
//!
//! ```sh
//! cargo run --release -p hakmem-ace-learner --example convergence [-- window_ms [seeds]]
//! ```
//!
//! The noise model comes from per-window logs of hakmem's learner thread
//! (50 and 100 ms windows) under `request-burst` and `index-build` with
//! fixed policies: the calls-per-second of a window is in one of two
//! states, fast or 0.62× slow (another process on the sibling hardware
//! thread), each state lasting about 150 ms, times the program's own
//! unevenness (lognormal, σ 0.08 for request-burst, 0.4 for index-build,
//! whose chunk sizes vary); σ(ln ops) ≈ 0.22 and 0.47 per 100 ms window.
//! The sampled latency P99 varies with σ(ln P99) ≈ 0.85 (preemption).
//! Each program lists the knob levels it should settle on; "right" counts
//! the runs that did and moved nothing else.
use hakmem_ace_learner::knob::{initial_levels, KnobId};
use hakmem_ace_learner::learner::{Event, Learner, LearnerConfig};
use hakmem_ace_learner::lifecycle::Transition;
use hakmem_ace_learner::reward::Window;
use hakmem_ace_learner::rng::Rng;
use hakmem_ace_learner::signature::{size_bin, SIG_BINS};
use hakmem_policy_rcu::{FrozenPolicy, DEFAULT_POLICY};
use hakmem_tiny_sll::tiny_class;

const MIB: f64 = (1u64 << 20) as f64;

/// A program: throughput factor, RSS (bytes) and faults per op under a
/// policy at time `t_ms`.
type Model = fn(&FrozenPolicy, u64) -> (f64, f64, f64);

struct Program {
    name: &'static str,
    /// σ of ln(ops) per window from the program's own unevenness (on top
    /// of the machine's two-state noise).
    jitter: f64,
    hist: [u64; SIG_BINS],
    model: Model,
    /// The knob levels it should settle on (knob, acceptable levels).
    want: &'static [(KnobId, &'static [usize])],
}

struct Noise {
    rng: Rng,
    slow: bool,
}

impl Noise {
    fn window(&mut self, prog: &Program, p: &FrozenPolicy, t_ms: u64, window_ms: u64) -> Window {
        // the state lasts about 150 ms
        let stay = (-(window_ms as f64) / 150.0).exp();
        if self.rng.next_f64() > stay {
            self.slow = self.rng.next_f64() < 0.4;
        }
        let (gain, rss, faults_per_op) = (prog.model)(p, t_ms);
        let state = if self.slow { 0.62 } else { 1.0 };
        let ops =
            30_000.0 * window_ms as f64 * gain * state * (prog.jitter * self.rng.normal()).exp();
        let faults = ops * faults_per_op * (1.0 + 0.1 * self.rng.normal()).max(0.0);
        Window {
            elapsed_ms: window_ms,
            ops: ops as u64,
            latency_p99_ns: 100.0 * (0.85 * self.rng.normal()).exp(),
            minor_faults: faults as u64,
            rss_bytes: (rss * (1.0 + 0.01 * self.rng.normal())) as u64,
            size_hist: prog.hist,
            call_hist: Some(prog.hist),
        }
    }
}

fn hist(bins: &[(usize, u64)]) -> [u64; SIG_BINS] {
    let mut h = [0; SIG_BINS];
    for &(size, n) in bins {
        h[size_bin(size)] += n;
    }
    h
}

fn mult(p: &FrozenPolicy, size: usize) -> f64 {
    let c = tiny_class(size);
    p.tiny_cap[c] as f64 / DEFAULT_POLICY.tiny_cap[c] as f64
}

fn programs() -> Vec<Program> {
    vec![
        Program {
            name: "flat tiny",
            jitter: 0.08,
            hist: hist(&[(32, 600), (200, 300), (800, 100)]),
            model: |_, _| (1.0, 50.0 * MIB, 1e-5),
            want: &[],
        },
        Program {
            name: "flat tiny+mid+large",
            jitter: 0.3,
            hist: hist(&[(32, 600), (4000, 300), (3 << 20, 100)]),
            model: |_, _| (1.0, 200.0 * MIB, 1e-4),
            want: &[],
        },
        Program {
            // request-burst: in the observation slices ×2 caps show
            // +0-20%, ×4 +35-60% (the level steps are ×4); medium sizes +10%
            name: "bigger tiny caps",
            jitter: 0.08,
            hist: hist(&[(32, 500), (64, 200), (128, 100), (200, 200)]),
            model: |p, _| {
                let s = match mult(p, 32) {
                    m if m < 0.4 => 0.65,
                    m if m < 0.9 => 0.8,
                    m if m < 1.5 => 1.0,
                    m if m < 3.0 => 1.1,
                    _ => 1.45,
                };
                let m = if mult(p, 200) > 1.5 { 1.1 } else { 1.0 };
                (s * m, 6.0 * MIB, 1e-6)
            },
            want: &[
                (KnobId::TinyCapSmall, &[2]),
                (KnobId::TinyCapMedium, &[1, 2]),
            ],
        },
        Program {
            // index-build (measured with fixed policies: budget 16 MiB runs
            // 1.35x as fast as 64 MiB, no cache 2x; the cache holds chunk
            // buffers that are rarely reused): RSS = index + chunk + cache;
            // σ(ln ops) ≈ 0.47 per 100 ms window
            name: "index-build-like",
            jitter: 0.4,
            hist: hist(&[(64, 400), (200, 400), (8 << 20, 20)]),
            model: |p, t| {
                let index = (20.0 + 20.0 * t as f64 / 1000.0) * MIB;
                let budget = p.large_cache_budget as f64;
                let cache = budget.min(96.0 * MIB);
                let gain = match p.large_cache_budget >> 20 {
                    0 => 2.0,
                    1..=16 => 1.35,
                    17..=64 => 1.0,
                    _ => 0.9,
                };
                (gain, index + cache + 16.0 * MIB, 0.2 / gain)
            },
            want: &[(KnobId::LargeCacheBudget, &[0, 1])],
        },
    ]
}

/// `LearnerConfig::DEFAULT`, with overrides from `ACE_*` variables (for
/// trying other values: `ACE_EPOCH`, `ACE_PULLS`, `ACE_Z`, `ACE_STREAK`,
/// `ACE_PROBATION`, `ACE_COOLDOWN_MS`, `ACE_CONVERGE_MS`, `ACE_SWEEPS`,
/// `ACE_W_LATENCY`, `ACE_W_FAULTS`, `ACE_W_RSS`, `ACE_MARGIN`).
fn config(seed: u64) -> LearnerConfig {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<f64>().ok());
    let mut c = LearnerConfig {
        seed,
        ..LearnerConfig::DEFAULT
    };
    if let Some(v) = var("ACE_EPOCH") {
        c.epoch_windows = v as u32;
    }
    if let Some(v) = var("ACE_PULLS") {
        c.min_pulls = v as u32;
    }
    if let Some(v) = var("ACE_Z") {
        c.z = v;
    }
    if let Some(v) = var("ACE_STREAK") {
        c.safety.streak = v as u32;
    }
    if let Some(v) = var("ACE_PROBATION") {
        c.safety.probation_windows = v as u32;
    }
    if let Some(v) = var("ACE_COOLDOWN_MS") {
        c.safety.cooldown_ms = v as u64;
    }
    if let Some(v) = var("ACE_ROLLBACK") {
        c.safety.rollback_margin = v;
    }
    if let Some(v) = var("ACE_MARGIN") {
        c.safety.margin = v;
    }
    if let Some(v) = var("ACE_CONVERGE_MS") {
        c.lifecycle.converge_ms = v as u64;
    }
    if let Some(v) = var("ACE_SWEEPS") {
        c.lifecycle.min_sweeps = v as u32;
    }
    if let Some(v) = var("ACE_W_LATENCY") {
        c.weights.latency = v;
    }
    if let Some(v) = var("ACE_W_FAULTS") {
        c.weights.faults = v;
    }
    if let Ok(v) = std::env::var("ACE_KNOBS_OFF") {
        for name in v.split(',').filter(|n| !n.is_empty()) {
            for k in KnobId::ALL {
                if format!("{k:?}") == name {
                    c.knobs[k as usize] = false;
                }
            }
        }
    }
    if let Some(v) = var("ACE_W_RSS") {
        c.weights.rss = v;
    }
    c
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let window_ms: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(50);
    let seeds: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    let horizon_ms = 30_000;
    println!("window {window_ms} ms, {seeds} seeds, {horizon_ms} ms each");
    for prog in programs() {
        let mut times = Vec::new();
        let (mut right, mut changes, mut never) = (0, 0, 0);
        for seed in 1..=seeds {
            let cfg = config(seed);
            let mut l = Learner::new(&DEFAULT_POLICY, cfg);
            let mut noise = Noise {
                rng: Rng::new(seed * 7919),
                slow: false,
            };
            let mut running = DEFAULT_POLICY;
            let mut frozen = None;
            while l.now_ms() < horizon_ms && frozen.is_none() {
                let w = noise.window(&prog, &running, l.now_ms(), window_ms);
                let step = l.on_window(&w);
                for e in step.events() {
                    if std::env::var_os("ACE_TRACE").is_some()
                        && seed == 1
                        && !matches!(e, Event::Explore { .. })
                    {
                        println!("  {:>6} {:?}", l.now_ms(), e);
                    }
                    match e {
                        Event::Phase(Transition::Converged) => frozen = Some(l.now_ms()),
                        Event::Accepted { .. } => changes += 1,
                        _ => {}
                    }
                }
                if let Some(p) = step.publish {
                    running = p;
                }
            }
            match frozen {
                Some(t) => times.push(t),
                None => never += 1,
            }
            let init = initial_levels(&DEFAULT_POLICY);
            let ok = prog
                .want
                .iter()
                .all(|(k, levels)| levels.contains(&l.accepted_levels().get(*k)));
            let others_default = KnobId::ALL.iter().all(|k| {
                prog.want.iter().any(|(w, _)| w == k) || l.accepted_levels().get(*k) == init.get(*k)
            });
            right += usize::from(ok && others_default);
            if std::env::var_os("ACE_LEVELS").is_some() {
                let moved: Vec<String> = KnobId::ALL
                    .iter()
                    .filter(|k| l.accepted_levels().get(**k) != init.get(**k))
                    .map(|k| format!("{k:?}={}", l.accepted_levels().get(*k)))
                    .collect();
                println!("  seed {seed}: frozen {frozen:?} {}", moved.join(" "));
            }
        }
        times.sort_unstable();
        let pct = |q: f64| {
            times
                .get(((times.len() as f64 - 1.0) * q).round() as usize)
                .map_or("-".to_string(), |t| format!("{:.1}", *t as f64 / 1000.0))
        };
        println!(
            "{:<28} frozen: median {} s, p90 {} s, max {} s, never {never}; right {right}/{seeds}; accepted changes {changes}",
            prog.name,
            pct(0.5),
            pct(0.9),
            pct(1.0),
        );
    }
}
