//! Multi-armed bandits behind one trait: [`Ucb1`] (the default) and
//! [`EloSoftmax`]. Arms are small integers `0..arms`; for the learner they
//! are the candidate levels of one knob ({current - 1, current,
//! current + 1}).

use crate::math::{exp, ln, sqrt};
use crate::rng::Rng;

/// Most arms a selector handles.
pub const MAX_ARMS: usize = 8;

/// What a selector knows about one arm.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ArmStats {
    /// Times the arm was played.
    pub pulls: u32,
    /// Sum of its rewards.
    pub sum: f64,
    /// Sum of its rewards' squares.
    pub sum_sq: f64,
}

impl ArmStats {
    /// Its mean reward, `None` before the first play.
    pub fn mean(&self) -> Option<f64> {
        (self.pulls > 0).then(|| self.sum / self.pulls as f64)
    }

    /// Sum of squared deviations from its mean.
    pub fn squared_deviations(&self) -> f64 {
        match self.mean() {
            Some(m) => (self.sum_sq - self.pulls as f64 * m * m).max(0.0),
            None => 0.0,
        }
    }

    fn add(&mut self, reward: f64) {
        self.pulls += 1;
        self.sum += reward;
        self.sum_sq += reward * reward;
    }
}

/// A bandit: picks the next arm to play and learns from rewards.
pub trait Selector {
    /// Number of arms (at most [`MAX_ARMS`]).
    fn arms(&self) -> usize;
    /// Forgets everything and starts over with `arms` arms.
    fn reset(&mut self, arms: usize);
    /// The arm to play next.
    fn select(&mut self, rng: &mut Rng) -> usize;
    /// Records `reward` for a play of `arm` (ignored for an arm out of
    /// range or a NaN reward).
    fn update(&mut self, arm: usize, reward: f64);
    /// What is known about `arm`.
    fn stats(&self, arm: usize) -> ArmStats;
    /// The arm the selector believes best (the one to exploit), `None`
    /// before any play.
    fn best(&self) -> Option<usize>;
}

fn clamp_arms(arms: usize) -> usize {
    arms.clamp(1, MAX_ARMS)
}

/// The first arm never played, if any.
fn unplayed(stats: &[ArmStats]) -> Option<usize> {
    stats.iter().position(|s| s.pulls == 0)
}

/// UCB1 (Auer, Cesa-Bianchi & Fischer 2002): play every arm once, then the
/// arm maximising `mean + c * sqrt(ln(total plays) / plays)`. With rewards
/// in [0, 1] and `c = sqrt(2)` this is the textbook index; the learner's
/// rewards are log-ratios of a few percent, so it uses a smaller `c`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ucb1 {
    arms: usize,
    stats: [ArmStats; MAX_ARMS],
    total: u64,
    c: f64,
}

impl Ucb1 {
    /// A UCB1 over `arms` arms with exploration constant `c`.
    pub fn new(arms: usize, c: f64) -> Self {
        Ucb1 {
            arms: clamp_arms(arms),
            stats: [ArmStats::default(); MAX_ARMS],
            total: 0,
            c,
        }
    }
}

impl Selector for Ucb1 {
    fn arms(&self) -> usize {
        self.arms
    }

    fn reset(&mut self, arms: usize) {
        *self = Ucb1::new(arms, self.c);
    }

    fn select(&mut self, _rng: &mut Rng) -> usize {
        let stats = &self.stats[..self.arms];
        if let Some(a) = unplayed(stats) {
            return a;
        }
        let log_t = ln(self.total as f64);
        let mut best = 0;
        let mut best_index = f64::NEG_INFINITY;
        for (a, s) in stats.iter().enumerate() {
            let index = s.sum / s.pulls as f64 + self.c * sqrt(log_t / s.pulls as f64);
            if index > best_index {
                best = a;
                best_index = index;
            }
        }
        best
    }

    fn update(&mut self, arm: usize, reward: f64) {
        if arm < self.arms && !reward.is_nan() {
            self.stats[arm].add(reward);
            self.total += 1;
        }
    }

    fn stats(&self, arm: usize) -> ArmStats {
        self.stats.get(arm).copied().unwrap_or_default()
    }

    fn best(&self) -> Option<usize> {
        best_mean(&self.stats[..self.arms])
    }
}

/// The played arm with the highest mean (the lowest index on ties).
fn best_mean(stats: &[ArmStats]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (a, s) in stats.iter().enumerate() {
        if let Some(m) = s.mean() {
            if best.is_none_or(|(_, b)| m > b) {
                best = Some((a, m));
            }
        }
    }
    best.map(|(a, _)| a)
}

/// ELO ratings from pairwise comparisons, softmax selection.
///
/// Every reward of an arm is a "game" against each other played arm: it
/// wins (score 1) if the reward beats that arm's mean reward, draws (½) on
/// equality, loses (0) otherwise; both ratings move by `k * (score -
/// expected)`, the expected score being `1 / (1 + 10^((R_other - R_arm) /
/// 400))`. Arms are played once each first, then drawn with probability
/// proportional to `exp(R / temperature)`. An arm with a higher mean wins
/// more than half of its games against a worse one, so ratings order arms
/// by mean reward.
#[derive(Debug, Clone, PartialEq)]
pub struct EloSoftmax {
    arms: usize,
    stats: [ArmStats; MAX_ARMS],
    rating: [f64; MAX_ARMS],
    k: f64,
    temperature: f64,
}

/// The rating every arm starts at.
pub const ELO_START: f64 = 1500.0;

impl EloSoftmax {
    /// An ELO selector over `arms` arms, with update step `k` (rating
    /// points per game, e.g. 16) and softmax `temperature` (rating points
    /// that multiply an arm's odds by e, e.g. 100).
    pub fn new(arms: usize, k: f64, temperature: f64) -> Self {
        EloSoftmax {
            arms: clamp_arms(arms),
            stats: [ArmStats::default(); MAX_ARMS],
            rating: [ELO_START; MAX_ARMS],
            k,
            temperature: temperature.max(1e-9),
        }
    }

    /// The rating of `arm`.
    pub fn rating(&self, arm: usize) -> f64 {
        self.rating.get(arm).copied().unwrap_or(ELO_START)
    }

    /// Softmax probability of selecting `arm` (once every arm was played).
    pub fn probability(&self, arm: usize) -> f64 {
        let ratings = &self.rating[..self.arms];
        let top = ratings.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = ratings
            .iter()
            .map(|r| exp((r - top) / self.temperature))
            .sum();
        if arm < self.arms {
            exp((ratings[arm] - top) / self.temperature) / total
        } else {
            0.0
        }
    }
}

impl Selector for EloSoftmax {
    fn arms(&self) -> usize {
        self.arms
    }

    fn reset(&mut self, arms: usize) {
        *self = EloSoftmax::new(arms, self.k, self.temperature);
    }

    fn select(&mut self, rng: &mut Rng) -> usize {
        if let Some(a) = unplayed(&self.stats[..self.arms]) {
            return a;
        }
        let mut x = rng.next_f64();
        for a in 0..self.arms {
            x -= self.probability(a);
            if x < 0.0 {
                return a;
            }
        }
        self.arms - 1
    }

    fn update(&mut self, arm: usize, reward: f64) {
        if arm >= self.arms || reward.is_nan() {
            return;
        }
        for other in 0..self.arms {
            let Some(m) = self.stats[other].mean() else {
                continue;
            };
            if other == arm {
                continue;
            }
            let score = if reward > m {
                1.0
            } else if reward < m {
                0.0
            } else {
                0.5
            };
            let expected =
                1.0 / (1.0 + exp((self.rating[other] - self.rating[arm]) * (ln(10.0) / 400.0)));
            let delta = self.k * (score - expected);
            self.rating[arm] += delta;
            self.rating[other] -= delta;
        }
        self.stats[arm].add(reward);
    }

    fn stats(&self, arm: usize) -> ArmStats {
        self.stats.get(arm).copied().unwrap_or_default()
    }

    fn best(&self) -> Option<usize> {
        let mut best: Option<usize> = None;
        for a in 0..self.arms {
            if self.stats[a].pulls > 0 && best.is_none_or(|b| self.rating[a] > self.rating[b]) {
                best = Some(a);
            }
        }
        best
    }
}

/// Which bandit the learner uses (`HAKMEM_SELECTOR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectorKind {
    /// [`Ucb1`].
    Ucb1,
    /// [`EloSoftmax`].
    Elo,
}

/// Either selector, without boxing.
#[derive(Debug, Clone, PartialEq)]
pub enum AnySelector {
    /// UCB1.
    Ucb1(Ucb1),
    /// ELO + softmax.
    Elo(EloSoftmax),
}

impl Selector for AnySelector {
    fn arms(&self) -> usize {
        match self {
            AnySelector::Ucb1(s) => s.arms(),
            AnySelector::Elo(s) => s.arms(),
        }
    }

    fn reset(&mut self, arms: usize) {
        match self {
            AnySelector::Ucb1(s) => s.reset(arms),
            AnySelector::Elo(s) => s.reset(arms),
        }
    }

    fn select(&mut self, rng: &mut Rng) -> usize {
        match self {
            AnySelector::Ucb1(s) => s.select(rng),
            AnySelector::Elo(s) => s.select(rng),
        }
    }

    fn update(&mut self, arm: usize, reward: f64) {
        match self {
            AnySelector::Ucb1(s) => s.update(arm, reward),
            AnySelector::Elo(s) => s.update(arm, reward),
        }
    }

    fn stats(&self, arm: usize) -> ArmStats {
        match self {
            AnySelector::Ucb1(s) => s.stats(arm),
            AnySelector::Elo(s) => s.stats(arm),
        }
    }

    fn best(&self) -> Option<usize> {
        match self {
            AnySelector::Ucb1(s) => s.best(),
            AnySelector::Elo(s) => s.best(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bernoulli(means: &'static [f64]) -> impl FnMut(usize, &mut Rng) -> f64 {
        move |a, rng| if rng.next_f64() < means[a] { 1.0 } else { 0.0 }
    }

    fn gaussian(means: &'static [f64], sigma: f64) -> impl FnMut(usize, &mut Rng) -> f64 {
        move |a, rng| means[a] + sigma * rng.normal()
    }

    /// Plays `rounds` rounds; returns the pulls per arm.
    fn play(
        s: &mut dyn Selector,
        rounds: usize,
        seed: u64,
        mut reward: impl FnMut(usize, &mut Rng) -> f64,
    ) -> Vec<u32> {
        let mut rng = Rng::new(seed);
        let mut env = Rng::new(seed ^ 0xdead_beef);
        for _ in 0..rounds {
            let a = s.select(&mut rng);
            assert!(a < s.arms());
            let r = reward(a, &mut env);
            s.update(a, r);
        }
        (0..s.arms()).map(|a| s.stats(a).pulls).collect()
    }

    #[test]
    fn arm_stats_track_mean_and_deviations() {
        let mut a = ArmStats::default();
        assert_eq!((a.mean(), a.squared_deviations()), (None, 0.0));
        for r in [1.0, 2.0, 3.0, 6.0] {
            a.add(r);
        }
        assert_eq!(a.mean(), Some(3.0));
        assert!((a.squared_deviations() - 14.0).abs() < 1e-12);
    }

    #[test]
    fn ucb1_explores_every_arm_first() {
        let mut s = Ucb1::new(5, 2f64.sqrt());
        let mut rng = Rng::new(1);
        assert_eq!(s.best(), None);
        let mut first = Vec::new();
        for _ in 0..5 {
            let a = s.select(&mut rng);
            first.push(a);
            s.update(a, if a == 4 { 1.0 } else { 0.0 });
        }
        first.sort();
        assert_eq!(first, [0, 1, 2, 3, 4]);
        assert_eq!(s.best(), Some(4));
    }

    #[test]
    fn ucb1_converges_on_bernoulli_arms() {
        for seed in 1..=5 {
            let mut s = Ucb1::new(3, 2f64.sqrt());
            let pulls = play(&mut s, 5000, seed, bernoulli(&[0.2, 0.5, 0.8]));
            assert_eq!(s.best(), Some(2), "seed {seed}");
            assert!(pulls[2] > 4200, "seed {seed}: {pulls:?}");
            // it keeps exploring the others, logarithmically
            assert!(pulls[0] >= 5 && pulls[1] >= 5, "seed {seed}: {pulls:?}");
        }
    }

    #[test]
    fn ucb1_converges_on_close_gaussian_arms() {
        for seed in 1..=5 {
            let mut s = Ucb1::new(5, 0.5);
            let pulls = play(
                &mut s,
                20_000,
                seed,
                gaussian(&[0.40, 0.45, 0.50, 0.55, 0.60], 0.1),
            );
            assert_eq!(s.best(), Some(4), "seed {seed}");
            assert!(pulls[4] as f64 > 0.6 * 20_000.0, "seed {seed}: {pulls:?}");
            assert!(pulls.iter().all(|&p| p >= 10), "seed {seed}: {pulls:?}");
        }
    }

    #[test]
    fn ucb1_best_arm_in_the_middle_and_reset() {
        let mut s = Ucb1::new(3, 0.3);
        play(&mut s, 3000, 7, gaussian(&[0.0, 0.1, 0.05], 0.05));
        assert_eq!(s.best(), Some(1));
        s.reset(2);
        assert_eq!(s.arms(), 2);
        assert_eq!(s.best(), None);
        assert_eq!(s.stats(0), ArmStats::default());
        // out-of-range arms and NaN rewards are ignored
        s.update(5, 1.0);
        s.update(0, f64::NAN);
        assert_eq!(s.stats(0).pulls, 0);
        assert_eq!(s.stats(5), ArmStats::default());
    }

    #[test]
    fn elo_ranks_arms_by_mean_reward() {
        const MEANS: [f64; 4] = [0.1, 0.3, 0.5, 0.7];
        for seed in 1..=5 {
            let mut s = EloSoftmax::new(4, 16.0, 100.0);
            // uniform play, to judge the ratings alone
            let mut env = Rng::new(seed);
            for round in 0..4000 {
                let a = round % 4;
                let r = MEANS[a] + 0.2 * env.normal();
                s.update(a, r);
            }
            let r: Vec<f64> = (0..4).map(|a| s.rating(a)).collect();
            assert!(r.windows(2).all(|w| w[0] < w[1]), "seed {seed}: {r:?}");
            assert_eq!(s.best(), Some(3));
            // ratings are zero-sum
            assert!((r.iter().sum::<f64>() - 4.0 * ELO_START).abs() < 1e-6);
        }
    }

    #[test]
    fn elo_ranks_bernoulli_arms() {
        let mut s = EloSoftmax::new(3, 16.0, 100.0);
        let mut env = Rng::new(11);
        let means = [0.5, 0.2, 0.8];
        for round in 0..3000 {
            let a = round % 3;
            s.update(a, if env.next_f64() < means[a] { 1.0 } else { 0.0 });
        }
        assert!(s.rating(1) < s.rating(0) && s.rating(0) < s.rating(2));
    }

    #[test]
    fn elo_softmax_prefers_the_best_arm_and_explores_all() {
        for seed in 1..=5 {
            let mut s = EloSoftmax::new(3, 16.0, 100.0);
            let pulls = play(&mut s, 3000, seed, gaussian(&[0.2, 0.5, 0.8], 0.2));
            assert_eq!(s.best(), Some(2), "seed {seed}");
            assert!(pulls[2] > 2700, "{pulls:?}");
            assert!(pulls.iter().all(|&p| p >= 1), "{pulls:?}");
            let p: f64 = (0..3).map(|a| s.probability(a)).sum();
            assert!((p - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn elo_plays_every_arm_first_and_draws_on_equal_rewards() {
        let mut s = EloSoftmax::new(3, 16.0, 100.0);
        let mut rng = Rng::new(2);
        let mut seen = [false; 3];
        for _ in 0..3 {
            let a = s.select(&mut rng);
            seen[a] = true;
            s.update(a, 1.0);
        }
        assert_eq!(seen, [true; 3]);
        // equal rewards against equal ratings: draws, nothing moves
        assert!((0..3).all(|a| s.rating(a) == ELO_START));
    }

    #[test]
    fn any_selector_delegates() {
        let mut rng = Rng::new(5);
        for mut s in [
            AnySelector::Ucb1(Ucb1::new(3, 0.2)),
            AnySelector::Elo(EloSoftmax::new(3, 16.0, 100.0)),
        ] {
            assert_eq!(s.arms(), 3);
            for _ in 0..300 {
                let a = s.select(&mut rng);
                s.update(a, a as f64);
            }
            assert_eq!(s.best(), Some(2));
            assert!(s.stats(2).pulls > 0);
            s.reset(2);
            assert_eq!((s.arms(), s.best()), (2, None));
        }
    }

    #[test]
    fn deterministic_given_a_seed() {
        let run = |seed| {
            let mut s = EloSoftmax::new(3, 16.0, 100.0);
            play(&mut s, 500, seed, gaussian(&[0.2, 0.5, 0.4], 0.3))
        };
        assert_eq!(run(3), run(3));
    }
}
