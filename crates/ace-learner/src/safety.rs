//! Safety: when the learner may change the policy, and when it takes a
//! change back.
//!
//! A small state machine with three phases:
//!
//! * **Watching**: each window the learner reports its best candidate and
//!   that candidate's advantage over the current level (a reward
//!   difference). A candidate is accepted only when it is the same one,
//!   ahead by at least `margin` (ln 1.08: 8%), for `streak` windows in a
//!   row (3) — hysteresis, so noise does not flip the policy back and
//!   forth.
//! * **Probation**: after an accepted change, the new level runs alone for
//!   `probation_windows`; if its mean reward falls below the old level's
//!   mean by more than `rollback_margin` (or one window is catastrophic:
//!   below it by `4 × margin`, e.g. over the memory budget), the change is
//!   rolled back.
//! * **Cooldown**: after a probation (kept or rolled back), no change is
//!   accepted for `cooldown_ms`.

/// The safety parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SafetyConfig {
    /// Advantage (reward difference) a candidate needs: `ln(1.08)`.
    pub margin: f64,
    /// Consecutive winning windows needed: 3.
    pub streak: u32,
    /// Windows a change runs alone before it is kept: 3.
    pub probation_windows: u32,
    /// A change whose probation mean is below the old mean by more than
    /// this is rolled back: `ln(1.02)`.
    pub rollback_margin: f64,
    /// No change is accepted this long after the last one settled (ms).
    pub cooldown_ms: u64,
}

impl SafetyConfig {
    /// The defaults: 8%, 3 in a row, 3 probation windows, roll back at 2%
    /// worse, 250 ms cooldown (5 windows of 50 ms).
    pub const DEFAULT: SafetyConfig = SafetyConfig {
        margin: 0.076_961_041_136_128_32, // ln(1.08)
        streak: 3,
        probation_windows: 3,
        rollback_margin: 0.019_802_627_296_179_712, // ln(1.02)
        cooldown_ms: 250,
    };
}

impl Default for SafetyConfig {
    fn default() -> Self {
        SafetyConfig::DEFAULT
    }
}

/// Where the state machine is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SafetyPhase {
    /// Looking for a candidate that wins `streak` windows in a row.
    Watching {
        /// The candidate currently winning, if any.
        candidate: Option<usize>,
        /// Its consecutive winning windows.
        wins: u32,
    },
    /// A change runs alone.
    Probation {
        /// The reward the change must not fall below (the old level's mean).
        baseline: f64,
        /// Windows seen.
        windows: u32,
        /// Their reward sum.
        sum: f64,
    },
    /// No change until then (ms).
    Cooldown {
        /// End of the cooldown.
        until_ms: u64,
    },
}

/// What a window in probation decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// Probation goes on.
    Continue,
    /// The change stays; cooldown starts.
    Keep,
    /// The change must be taken back; cooldown starts.
    Rollback,
}

/// The safety state machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Safety {
    cfg: SafetyConfig,
    phase: SafetyPhase,
}

const WATCHING: SafetyPhase = SafetyPhase::Watching {
    candidate: None,
    wins: 0,
};

impl Safety {
    /// Watching, no candidate.
    pub fn new(cfg: SafetyConfig) -> Self {
        Safety {
            cfg,
            phase: WATCHING,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> SafetyPhase {
        self.phase
    }

    /// The parameters.
    pub fn config(&self) -> &SafetyConfig {
        &self.cfg
    }

    /// Drops any streak (a new exploration starts); a probation or cooldown
    /// in progress is kept.
    pub fn clear_streak(&mut self) {
        if let SafetyPhase::Watching { .. } = self.phase {
            self.phase = WATCHING;
        }
    }

    /// Forgets everything, cooldown included.
    pub fn reset(&mut self) {
        self.phase = WATCHING;
    }

    /// Whether a change may be accepted at `now_ms` (watching, cooldown
    /// over).
    pub fn may_change(&self, now_ms: u64) -> bool {
        match self.phase {
            SafetyPhase::Watching { .. } => true,
            SafetyPhase::Cooldown { until_ms } => now_ms >= until_ms,
            SafetyPhase::Probation { .. } => false,
        }
    }

    /// One window's evidence while exploring: `best` is the candidate the
    /// bandit believes best and `advantage` its reward advantage over the
    /// `current` one (`None`: not enough data yet). Returns the candidate
    /// to switch to once it has won `streak` windows in a row; the caller
    /// switches and calls [`start_probation`](Self::start_probation).
    pub fn watch(
        &mut self,
        now_ms: u64,
        current: usize,
        best: usize,
        advantage: Option<f64>,
    ) -> Option<usize> {
        match self.phase {
            SafetyPhase::Probation { .. } => return None,
            SafetyPhase::Cooldown { until_ms } if now_ms < until_ms => return None,
            SafetyPhase::Cooldown { .. } => self.phase = WATCHING,
            SafetyPhase::Watching { .. } => {}
        }
        let SafetyPhase::Watching { candidate, wins } = self.phase else {
            return None;
        };
        let winning = best != current && advantage.is_some_and(|a| a >= self.cfg.margin);
        if !winning {
            self.phase = WATCHING;
            return None;
        }
        let wins = if candidate == Some(best) { wins + 1 } else { 1 };
        if wins >= self.cfg.streak {
            self.phase = WATCHING;
            return Some(best);
        }
        self.phase = SafetyPhase::Watching {
            candidate: Some(best),
            wins,
        };
        None
    }

    /// The change was made; it must hold `baseline` (the old level's mean
    /// reward).
    pub fn start_probation(&mut self, baseline: f64) {
        self.phase = SafetyPhase::Probation {
            baseline,
            windows: 0,
            sum: 0.0,
        };
    }

    /// One window's reward under the new level during probation.
    pub fn probe(&mut self, now_ms: u64, reward: f64) -> ProbeOutcome {
        let SafetyPhase::Probation {
            baseline,
            windows,
            sum,
        } = self.phase
        else {
            return ProbeOutcome::Continue;
        };
        let (windows, sum) = (windows + 1, sum + reward);
        let catastrophic = reward < baseline - 4.0 * self.cfg.margin;
        let outcome = if catastrophic {
            ProbeOutcome::Rollback
        } else if windows >= self.cfg.probation_windows {
            if sum / (windows as f64) < baseline - self.cfg.rollback_margin {
                ProbeOutcome::Rollback
            } else {
                ProbeOutcome::Keep
            }
        } else {
            ProbeOutcome::Continue
        };
        self.phase = match outcome {
            ProbeOutcome::Continue => SafetyPhase::Probation {
                baseline,
                windows,
                sum,
            },
            _ => SafetyPhase::Cooldown {
                until_ms: now_ms + self.cfg.cooldown_ms,
            },
        };
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: f64 = SafetyConfig::DEFAULT.margin;

    /// The safety machine these tests walk through: the defaults with a
    /// 5 s cooldown (5 windows of 1 s).
    const CFG: SafetyConfig = SafetyConfig {
        cooldown_ms: 5000,
        ..SafetyConfig::DEFAULT
    };

    fn safety() -> Safety {
        Safety::new(CFG)
    }

    #[test]
    fn margins_are_the_documented_percentages() {
        assert!((SafetyConfig::DEFAULT.margin - 1.08f64.ln()).abs() < 1e-15);
        assert!((SafetyConfig::DEFAULT.rollback_margin - 1.02f64.ln()).abs() < 1e-15);
    }

    #[test]
    fn three_wins_in_a_row_are_needed() {
        let mut s = safety();
        assert_eq!(s.watch(0, 0, 1, Some(M)), None);
        assert_eq!(
            s.phase(),
            SafetyPhase::Watching {
                candidate: Some(1),
                wins: 1
            }
        );
        assert_eq!(s.watch(1, 0, 1, Some(0.2)), None);
        assert_eq!(s.watch(2, 0, 1, Some(M)), Some(1));
        assert_eq!(
            s.phase(),
            SafetyPhase::Watching {
                candidate: None,
                wins: 0
            }
        );
    }

    #[test]
    fn a_short_win_resets_the_streak() {
        let mut s = safety();
        s.watch(0, 0, 1, Some(0.1));
        s.watch(1, 0, 1, Some(0.1));
        // 7.9%: not enough
        assert_eq!(s.watch(2, 0, 1, Some(1.079f64.ln())), None);
        assert_eq!(s.watch(3, 0, 1, Some(0.1)), None);
        assert_eq!(s.watch(4, 0, 1, Some(0.1)), None);
        assert_eq!(s.watch(5, 0, 1, Some(0.1)), Some(1));
    }

    #[test]
    fn the_current_level_or_no_data_resets_the_streak() {
        let mut s = safety();
        s.watch(0, 0, 2, Some(0.1));
        s.watch(1, 0, 2, Some(0.1));
        assert_eq!(s.watch(2, 0, 0, Some(0.5)), None); // best is current
        assert_eq!(s.watch(3, 0, 2, Some(0.1)), None);
        s.watch(4, 0, 2, Some(0.1));
        assert_eq!(s.watch(5, 0, 2, None), None); // no data
        assert_eq!(
            s.phase(),
            SafetyPhase::Watching {
                candidate: None,
                wins: 0
            }
        );
    }

    #[test]
    fn another_candidate_restarts_the_count() {
        let mut s = safety();
        s.watch(0, 0, 1, Some(0.1));
        s.watch(1, 0, 1, Some(0.1));
        assert_eq!(s.watch(2, 0, 2, Some(0.1)), None);
        assert_eq!(
            s.phase(),
            SafetyPhase::Watching {
                candidate: Some(2),
                wins: 1
            }
        );
        s.watch(3, 0, 2, Some(0.1));
        assert_eq!(s.watch(4, 0, 2, Some(0.1)), Some(2));
    }

    #[test]
    fn probation_keeps_a_change_that_holds() {
        let mut s = safety();
        s.start_probation(0.10);
        assert!(!s.may_change(0));
        assert_eq!(s.watch(0, 0, 1, Some(1.0)), None, "no changes in probation");
        assert_eq!(s.probe(1000, 0.12), ProbeOutcome::Continue);
        assert_eq!(s.probe(2000, 0.09), ProbeOutcome::Continue);
        // mean 0.0967: within the 2% rollback margin of 0.10
        assert_eq!(s.probe(3000, 0.08), ProbeOutcome::Keep);
        assert_eq!(s.phase(), SafetyPhase::Cooldown { until_ms: 8000 });
    }

    #[test]
    fn probation_rolls_back_a_change_that_makes_things_worse() {
        let mut s = safety();
        s.start_probation(0.10);
        assert_eq!(s.probe(1000, 0.07), ProbeOutcome::Continue);
        assert_eq!(s.probe(2000, 0.07), ProbeOutcome::Continue);
        assert_eq!(s.probe(3000, 0.07), ProbeOutcome::Rollback);
        assert_eq!(s.phase(), SafetyPhase::Cooldown { until_ms: 8000 });
    }

    #[test]
    fn a_catastrophic_window_rolls_back_at_once() {
        let mut s = safety();
        s.start_probation(0.0);
        assert_eq!(s.probe(1000, -2.0), ProbeOutcome::Rollback);
        // probing outside probation does nothing
        assert_eq!(s.probe(1500, -9.0), ProbeOutcome::Continue);
    }

    #[test]
    fn cooldown_blocks_changes_until_it_ends() {
        let mut s = safety();
        s.start_probation(0.0);
        for t in 1..=3 {
            s.probe(t * 1000, 0.0);
        }
        assert_eq!(s.phase(), SafetyPhase::Cooldown { until_ms: 8000 });
        assert!(!s.may_change(7999));
        assert!(s.may_change(8000));
        // wins during the cooldown do not count
        for t in [4000, 5000, 6000, 7000] {
            assert_eq!(s.watch(t, 0, 1, Some(0.5)), None);
        }
        assert_eq!(s.watch(8000, 0, 1, Some(0.5)), None);
        assert_eq!(s.watch(9000, 0, 1, Some(0.5)), None);
        assert_eq!(s.watch(10000, 0, 1, Some(0.5)), Some(1));
    }

    #[test]
    fn clear_and_reset() {
        let mut s = safety();
        s.watch(0, 0, 1, Some(0.5));
        s.clear_streak();
        assert_eq!(
            s.phase(),
            SafetyPhase::Watching {
                candidate: None,
                wins: 0
            }
        );
        s.start_probation(0.0);
        s.clear_streak();
        assert!(matches!(s.phase(), SafetyPhase::Probation { .. }));
        s.reset();
        assert!(s.may_change(0));
        assert_eq!(s.config(), &CFG);
    }
}
