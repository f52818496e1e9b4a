//! A memory budget as a rule over policies (`HAKMEM_MEM_BUDGET_MB`).
//!
//! The facade reads the process's resident set on the background thread
//! and keeps a [`Pressure`] level with [`Pressure::next`]; the policy in
//! force is then the wanted one (the start policy or the learner's) passed
//! through [`FrozenPolicy::within_budget`] for that level:
//!
//! * [`Pressure::Calm`] (resident below 3/4 of the budget, or below 5/8
//!   after a spell of pressure): what memory is kept for speed is sized to
//!   the budget: the empty slabs a heap keeps and the pool's dirty
//!   superslabs at most a 64th of the budget each, the large cache a 32nd,
//!   a thread's full bins a 64th, cached memory decaying within
//!   [`CALM_DECAY_MS`];
//! * [`Pressure::High`] (resident at or above 3/4 of the budget): nothing
//!   kept beyond use: no empty slab, superslab or pooled dirty superslab
//!   kept, the large cache a 64th of the budget, bins a 128th, decay
//!   within [`HIGH_DECAY_MS`] (and from 7/8 of the budget the facade
//!   purges what is free at once, every tick).
//!
//! In both levels large mappings get no huge pages (`thp_threshold` at
//! [`NO_HUGE_MAPPINGS`]) and the large W_MAX is at most
//! [`BUDGET_WMAX_PERMILLE`]; and the facade may size the large cache by
//! the room the resident set has left instead of the level's share
//! ([`FrozenPolicy::within_budget_room`]).
//!
//! Nothing here makes a policy keep more memory: a policy already leaner
//! than the rule stays as it is.

use hakmem_mid_mt::{mid_size, MID_CLASSES};
use hakmem_tiny_sll::{tiny_size, TINY_CLASSES};

use crate::FrozenPolicy;

/// Decay time at most under a budget, while calm (ms).
pub const CALM_DECAY_MS: u64 = 500;
/// Decay time at most under pressure (ms).
pub const HIGH_DECAY_MS: u64 = 80;

/// The THP gate under a budget: above any mapping (`thp_threshold`'s
/// range ends at the address space).
pub const NO_HUGE_MAPPINGS: usize = 1 << 47;

/// Large W_MAX under a budget (thousandths).
pub const BUDGET_WMAX_PERMILLE: u32 = 1100;

/// The large cache keeps at most this fraction (1/n) of the budget dirty,
/// however much room the resident set has left.
pub const MAX_LARGE_ROOM_SHARE: u64 = 16;

/// The step the large cache's room moves by under a budget of `budget`
/// bytes: a 32nd of its largest room, at least 256 KiB (so that at most
/// 33 distinct rooms exist per budget).
pub fn room_step(budget: u64) -> u64 {
    (budget / MAX_LARGE_ROOM_SHARE / 32).max(256 << 10)
}

/// How close the resident set is to the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pressure {
    /// Comfortably below the budget.
    Calm,
    /// Close to the budget (or over it): give back everything free.
    High,
}

impl Pressure {
    /// The level after reading `rss` bytes resident under a budget of
    /// `budget` bytes (not 0): `High` from 3/4 of the budget, back to
    /// `Calm` only below 5/8 (hysteresis, so that the level does not flip
    /// at every reading around one threshold).
    pub fn next(self, rss: u64, budget: u64) -> Pressure {
        let enter = budget / 4 * 3;
        let leave = budget / 8 * 5;
        match self {
            Pressure::Calm if rss >= enter => Pressure::High,
            Pressure::High if rss < leave => Pressure::Calm,
            p => p,
        }
    }
}

impl FrozenPolicy {
    /// This policy within a memory budget of `budget` bytes at pressure
    /// `level` (see the module's documentation). A budget of 0 (none)
    /// leaves it as it is.
    pub fn within_budget(&self, budget: u64, level: Pressure) -> FrozenPolicy {
        self.within_budget_room(budget, level, None)
    }

    /// [`FrozenPolicy::within_budget`], with the large cache's dirty bytes
    /// set by the room the resident set has left (`large_room`, measured
    /// by the caller: what the cache holds now plus the distance from the
    /// resident set to the line it must stay under) instead of the level's
    /// fixed share. The room is quantised down to [`room_step`] (so that
    /// the policies it makes are few) and capped at
    /// [`MAX_LARGE_ROOM_SHARE`] of the budget and at what the policy itself
    /// keeps. `None`: the level's share.
    pub fn within_budget_room(
        &self,
        budget: u64,
        level: Pressure,
        large_room: Option<u64>,
    ) -> FrozenPolicy {
        let mut p = *self;
        if budget == 0 {
            return p;
        }
        let b = usize::try_from(budget).unwrap_or(usize::MAX);
        let (keep, large, bins, decay) = match level {
            Pressure::Calm => (b / 64, b / 32, b / 64, CALM_DECAY_MS),
            Pressure::High => (0, b / 64, b / 128, HIGH_DECAY_MS),
        };
        let large = match large_room {
            None => large,
            Some(room) => {
                let step = room_step(budget);
                let room = room.min(budget / MAX_LARGE_ROOM_SHARE) / step * step;
                usize::try_from(room).unwrap_or(usize::MAX)
            }
        };
        p.large_cache_budget = p.large_cache_budget.min(large);
        p.large_cache_max_block = p.large_cache_max_block.min(p.large_cache_budget);
        p.heap_empty_budget = p.heap_empty_budget.min(keep);
        let superslabs = (keep >> 21) as u32;
        p.pool_dirty = p.pool_dirty.min(superslabs);
        p.heap_keep_empty = p.heap_keep_empty.min(superslabs / 4);
        p.decay_ms = p.decay_ms.min(decay);
        // no huge large mappings: a large block rounded up to a 2 MiB
        // huge page (or grown to a huge-page boundary) may be 2 MiB
        // resident for a few hundred KiB in use
        p.thp_threshold = NO_HUGE_MAPPINGS;
        // a cached mapping reused for a smaller block keeps its tail
        // resident while the block lives: less slack
        p.large_wmax_permille = p.large_wmax_permille.min(BUDGET_WMAX_PERMILLE);
        p.shrink_bins(bins);
        p
    }

    /// Lowers bin capacities (never above what they were) until full bins
    /// hold at most `bytes`: every class gets an equal share of it, so the
    /// biggest classes may get no bin at all (their blocks go back to
    /// their slabs at once, which costs little next to their size).
    fn shrink_bins(&mut self, bytes: usize) {
        if self.max_cached_bytes() <= bytes {
            return;
        }
        let share = bytes / (TINY_CLASSES + MID_CLASSES);
        for c in 0..TINY_CLASSES {
            let fit = (share / tiny_size(c)).min(u16::MAX as usize) as u16;
            self.tiny_cap[c] = self.tiny_cap[c].min(fit);
            self.tiny_refill[c] = self.tiny_refill[c].min(self.tiny_cap[c]);
        }
        for c in 0..MID_CLASSES {
            let fit = (share / mid_size(c)).min(u16::MAX as usize) as u16;
            self.mid_cap[c] = self.mid_cap[c].min(fit);
            self.mid_refill[c] = self.mid_refill[c].min(self.mid_cap[c]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DEFAULT_POLICY;

    const MIB: u64 = 1 << 20;

    #[test]
    fn no_budget_changes_nothing() {
        for level in [Pressure::Calm, Pressure::High] {
            assert_eq!(DEFAULT_POLICY.within_budget(0, level), DEFAULT_POLICY);
        }
    }

    #[test]
    fn calm_sizes_what_is_kept_to_the_budget() {
        let p = DEFAULT_POLICY.within_budget(128 * MIB, Pressure::Calm);
        assert_eq!(p.large_cache_budget as u64, 4 * MIB);
        assert!(p.large_cache_max_block <= p.large_cache_budget);
        assert_eq!(p.heap_empty_budget as u64, 2 * MIB);
        assert_eq!(p.pool_dirty, 1);
        assert_eq!(p.heap_keep_empty, 0);
        assert_eq!(p.decay_ms, CALM_DECAY_MS);
        assert!(
            p.max_cached_bytes() as u64 <= 4 * MIB,
            "{}",
            p.max_cached_bytes()
        );
        assert!(p.cap(0) >= 1, "the smallest classes keep a bin");
        assert_eq!(p.validate(), Ok(()));
        // a roomy budget leaves the default's smaller knobs alone
        let big = DEFAULT_POLICY.within_budget(64 << 30, Pressure::Calm);
        assert_eq!(big.large_cache_budget, DEFAULT_POLICY.large_cache_budget);
        assert_eq!(big.tiny_cap, DEFAULT_POLICY.tiny_cap);
        assert_eq!(big.mid_cap, DEFAULT_POLICY.mid_cap);
    }

    #[test]
    fn high_pressure_keeps_nothing_beyond_use() {
        let p = DEFAULT_POLICY.within_budget(128 * MIB, Pressure::High);
        assert_eq!(p.large_cache_budget as u64, 2 * MIB);
        assert_eq!(p.heap_empty_budget, 0);
        assert_eq!(p.pool_dirty, 0);
        assert_eq!(p.heap_keep_empty, 0);
        assert_eq!(p.decay_ms, HIGH_DECAY_MS);
        assert!(
            p.max_cached_bytes() as u64 <= MIB,
            "{}",
            p.max_cached_bytes()
        );
        for c in 0..TINY_CLASSES + MID_CLASSES {
            let refill = if c < TINY_CLASSES {
                p.tiny_refill[c]
            } else {
                p.mid_refill[c - TINY_CLASSES]
            };
            assert!(u32::from(refill) <= p.cap(c), "class {c}");
        }
        assert!(p.cap(0) >= 1);
        assert_eq!(p.validate(), Ok(()));
    }

    #[test]
    fn a_leaner_policy_stays_as_it_is() {
        let mut lean = DEFAULT_POLICY;
        lean.decay_ms = 5;
        lean.large_cache_budget = 0;
        lean.large_cache_max_block = 0;
        lean.tiny_cap = [1; TINY_CLASSES];
        lean.tiny_refill = [1; TINY_CLASSES];
        lean.mid_cap = [0; MID_CLASSES];
        lean.mid_refill = [0; MID_CLASSES];
        lean.pool_dirty = 0;
        lean.heap_keep_empty = 0;
        lean.heap_empty_budget = 0;
        lean.thp_threshold = NO_HUGE_MAPPINGS;
        lean.large_wmax_permille = 1000;
        assert_eq!(lean.within_budget(64 * MIB, Pressure::High), lean);
        assert_eq!(lean.within_budget(64 * MIB, Pressure::Calm), lean);
    }

    #[test]
    fn a_budget_makes_large_mappings_lean() {
        for level in [Pressure::Calm, Pressure::High] {
            let p = DEFAULT_POLICY.within_budget(128 * MIB, level);
            assert_eq!(p.thp_threshold, NO_HUGE_MAPPINGS);
            assert_eq!(p.large_wmax_permille, BUDGET_WMAX_PERMILLE);
            assert_eq!(p.validate(), Ok(()));
        }
    }

    #[test]
    fn the_room_sizes_the_large_cache() {
        let b = 128 * MIB;
        let step = room_step(b);
        assert_eq!(step, 256 << 10);
        // no room measured: the level's share
        assert_eq!(
            DEFAULT_POLICY.within_budget_room(b, Pressure::High, None),
            DEFAULT_POLICY.within_budget(b, Pressure::High)
        );
        // a measured room, quantised down to the step, in either level
        for level in [Pressure::Calm, Pressure::High] {
            let p = DEFAULT_POLICY.within_budget_room(b, level, Some(5 * MIB + step / 2));
            assert_eq!(p.large_cache_budget as u64, 5 * MIB);
            assert!(p.large_cache_max_block <= p.large_cache_budget);
            assert_eq!(p.validate(), Ok(()));
        }
        // no room: nothing kept dirty
        let p = DEFAULT_POLICY.within_budget_room(b, Pressure::High, Some(0));
        assert_eq!(p.large_cache_budget, 0);
        assert_eq!(p.large_cache_max_block, 0);
        // capped at a 16th of the budget, and at what the policy keeps
        let p = DEFAULT_POLICY.within_budget_room(b, Pressure::Calm, Some(b));
        assert_eq!(p.large_cache_budget as u64, b / MAX_LARGE_ROOM_SHARE);
        let mut lean = DEFAULT_POLICY;
        lean.large_cache_budget = MIB as usize;
        lean.large_cache_max_block = MIB as usize;
        let p = lean.within_budget_room(b, Pressure::Calm, Some(6 * MIB));
        assert_eq!(p.large_cache_budget as u64, MIB);
        // no budget: nothing changes
        assert_eq!(
            DEFAULT_POLICY.within_budget_room(0, Pressure::High, Some(0)),
            DEFAULT_POLICY
        );
        // few distinct rooms: at most 33 per budget
        assert!(b / MAX_LARGE_ROOM_SHARE / step <= 32);
        assert_eq!(room_step(64 << 30), (64 << 30) / 16 / 32);
    }

    #[test]
    fn pressure_has_hysteresis() {
        let b = 800 * MIB;
        let mut l = Pressure::Calm;
        l = l.next(590 * MIB, b);
        assert_eq!(l, Pressure::Calm);
        l = l.next(600 * MIB, b);
        assert_eq!(l, Pressure::High);
        l = l.next(550 * MIB, b);
        assert_eq!(l, Pressure::High, "between the thresholds: stays");
        l = l.next(499 * MIB, b);
        assert_eq!(l, Pressure::Calm);
        assert_eq!(Pressure::Calm.next(900 * MIB, b), Pressure::High);
    }
}
