//! Site-aware placement: which *lane* a recorded allocation goes to.
//!
//! Blocks that die young and blocks that live long should not share slabs:
//! one long-lived block keeps a whole slab of freed short-lived neighbours
//! from going back to the pool (and from serving another size class), which
//! is how a program's RSS creeps up while its live bytes stay flat. Knowing
//! the allocating site, the allocator can keep them apart (LLAMA's lifetime
//! segregation): sites whose blocks are seen to live long get their own lane,
//! the allocator's separate slabs for it; everything else shares the default
//! lane.
//!
//! "Long" is relative: a block that lives 50 ms is short-lived in a
//! program whose blocks typically live a second and long-lived in one whose
//! blocks live a microsecond. So a [`Placement`] keeps the *reference
//! lifetime* `R`, the mean lifetime of every recorded block freed so far
//! (any site, any lane), and one small state per [`SiteTable`] slot:
//!
//! * **Review.** Every [`REVIEW_EVERY`] allocations of a site,
//!   [`Placement::lane_for`] estimates the site's lifetime `E` from the
//!   table's counters: the mean over its freed blocks' lifetimes and its
//!   live blocks counted at their mean age (a lower bound of their
//!   lifetime). A default-lane site with at least `min_samples` live blocks,
//!   `E > PROMOTE_FACTOR × R`, and (if it has freed `min_samples` blocks) a
//!   freed mean of at least `R` is *promoted* to the long lane. No site is
//!   promoted before `MIN_REFERENCE` recorded frees have set `R`.
//! * **Measure.** Every recorded free reports its lifetime
//!   ([`Placement::on_free`]): all of them feed `R`; a long-lane block that
//!   lived less than `R` is a *misplacement* (it leaves a hole in a
//!   long-lived slab).
//! * **Undo.** At a review, a long-lane site with at least `min_samples`
//!   long-lane frees of which more than half were misplaced is *reverted* to
//!   the default lane and may not be promoted again for `4 << reverts`
//!   reviews (doubling with each revert, capped), so a site that changes its
//!   behaviour is followed but one that flips back and forth is not chased.
//!
//! Everything is a relaxed atomic: decisions race benignly (two reviews at
//! once may both promote; the counters are statistics). Nothing allocates.

use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};

use crate::classify::Thresholds;
use crate::table::SiteTable;

/// Allocations of a site between two reviews of its lane.
pub const REVIEW_EVERY: u16 = 64;

/// A site is promoted when its estimated lifetime exceeds this many
/// reference lifetimes.
pub const PROMOTE_FACTOR: u64 = 3;

/// Recorded frees needed before the reference lifetime is trusted.
pub const MIN_REFERENCE: u64 = 64;

/// Where a recorded block goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Lane {
    /// Shared slabs: new, short-lived and unknown sites.
    Default = 0,
    /// Slabs of long-lived sites only.
    Long = 1,
}

impl Lane {
    /// Number of lanes.
    pub const COUNT: usize = 2;

    /// The lane's index (0 or 1).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The lane of index `i` (anything but 1 is the default lane).
    pub const fn from_index(i: usize) -> Lane {
        if i == 1 {
            Lane::Long
        } else {
            Lane::Default
        }
    }

    /// The report's name.
    pub const fn name(self) -> &'static str {
        match self {
            Lane::Default => "default",
            Lane::Long => "long",
        }
    }
}

/// One site's placement state.
#[derive(Debug)]
struct SlotState {
    lane: AtomicU8,
    /// Times this site was reverted (caps at 10 for the hold-off).
    reverts: AtomicU8,
    /// Allocations left until the next review.
    countdown: AtomicU16,
    /// Reviews left before the site may be promoted again.
    holdoff: AtomicU32,
    /// Long-lane frees since the promotion (halved when large).
    long_frees: AtomicU32,
    /// Of those, frees that lived less than the reference lifetime.
    long_young: AtomicU32,
}

impl SlotState {
    const fn new() -> SlotState {
        SlotState {
            lane: AtomicU8::new(0),
            reverts: AtomicU8::new(0),
            countdown: AtomicU16::new(REVIEW_EVERY),
            holdoff: AtomicU32::new(0),
            long_frees: AtomicU32::new(0),
            long_young: AtomicU32::new(0),
        }
    }
}

/// What placement has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlacementStats {
    /// Sites moved to the long lane.
    pub promotions: u64,
    /// Sites moved back after their long-lane blocks died young.
    pub reverts: u64,
    /// Sites in the long lane now.
    pub long_sites: u64,
    /// Long-lane frees seen.
    pub long_frees: u64,
    /// Long-lane frees that lived less than the reference (misplacements).
    pub long_young: u64,
    /// The reference lifetime (clock units), once set.
    pub reference: Option<u64>,
    /// Whether placement is on.
    pub enabled: bool,
}

/// Per-site lanes for a [`SiteTable`] of `N` slots.
#[derive(Debug)]
pub struct Placement<const N: usize = { crate::table::DEFAULT_SITES }> {
    slots: [SlotState; N],
    enabled: AtomicBool,
    /// Lifetimes of all recorded frees: sum and count (the reference).
    life_sum: AtomicU64,
    life_count: AtomicU64,
    promotions: AtomicU64,
    reverts: AtomicU64,
    long_frees: AtomicU64,
    long_young: AtomicU64,
}

impl<const N: usize> Default for Placement<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Placement<N> {
    /// All sites in the default lane; placement on.
    pub const fn new() -> Self {
        Placement {
            slots: [const { SlotState::new() }; N],
            enabled: AtomicBool::new(true),
            life_sum: AtomicU64::new(0),
            life_count: AtomicU64::new(0),
            promotions: AtomicU64::new(0),
            reverts: AtomicU64::new(0),
            long_frees: AtomicU64::new(0),
            long_young: AtomicU64::new(0),
        }
    }

    /// Turns placement on or off. Off, every allocation goes to the default
    /// lane (blocks already in the long lane stay there until freed).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// Whether placement is on.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// The reference lifetime: the mean lifetime of the recorded blocks
    /// freed so far, once there are [`MIN_REFERENCE`] of them.
    pub fn reference(&self) -> Option<u64> {
        let n = self.life_count.load(Ordering::Relaxed);
        if n < MIN_REFERENCE {
            return None;
        }
        Some(self.life_sum.load(Ordering::Relaxed) / n)
    }

    /// The lane of `slot` now, without a review.
    #[inline]
    pub fn lane(&self, slot: usize) -> Lane {
        match self.slots.get(slot) {
            Some(s) if self.enabled() => Lane::from_index(s.lane.load(Ordering::Relaxed) as usize),
            _ => Lane::Default,
        }
    }

    /// The lane for an allocation at `slot` (from
    /// [`SiteTable::slot_or_insert`]) at time `now`; every
    /// [`REVIEW_EVERY`]th call for a slot reviews its lane first.
    pub fn lane_for<const S: usize>(&self, table: &SiteTable<N, S>, slot: usize, now: u64) -> Lane {
        let Some(s) = self.slots.get(slot) else {
            return Lane::Default;
        };
        if !self.enabled() {
            return Lane::Default;
        }
        // A load and a store, not a read-modify-write (a locked instruction
        // on every recorded call): threads allocating at one site at once
        // may lose a tick, which only moves a review a little.
        let left = s.countdown.load(Ordering::Relaxed);
        if left <= 1 {
            s.countdown.store(REVIEW_EVERY, Ordering::Relaxed);
            self.review(table, slot, now);
        } else {
            s.countdown.store(left - 1, Ordering::Relaxed);
        }
        Lane::from_index(s.lane.load(Ordering::Relaxed) as usize)
    }

    /// Reviews the lane of `slot` now (also done by [`lane_for`](Self::lane_for)).
    pub fn review<const S: usize>(&self, table: &SiteTable<N, S>, slot: usize, now: u64) {
        let Some(s) = self.slots.get(slot) else {
            return;
        };
        let min_samples = Thresholds::DEFAULT.min_samples;
        if s.lane.load(Ordering::Relaxed) == Lane::Long as u8 {
            let frees = s.long_frees.load(Ordering::Relaxed);
            let young = s.long_young.load(Ordering::Relaxed);
            if u64::from(frees) >= min_samples && young > frees / 2 {
                s.lane.store(Lane::Default as u8, Ordering::Relaxed);
                let r = s.reverts.load(Ordering::Relaxed).saturating_add(1).min(10);
                s.reverts.store(r, Ordering::Relaxed);
                s.holdoff.store(4 << r, Ordering::Relaxed);
                self.reverts.fetch_add(1, Ordering::Relaxed);
            } else if frees >= 1 << 16 {
                // keep the misplacement rate recent
                s.long_frees.store(frees / 2, Ordering::Relaxed);
                s.long_young.store(young / 2, Ordering::Relaxed);
            }
            return;
        }
        let hold = s.holdoff.load(Ordering::Relaxed);
        if hold > 0 {
            s.holdoff.store(hold - 1, Ordering::Relaxed);
            return;
        }
        let (Some(r), Some(st)) = (self.reference(), table.stats(slot)) else {
            return;
        };
        let live = st.live_blocks();
        let Some(age) = st.mean_live_age(now) else {
            return;
        };
        if live < min_samples {
            return;
        }
        let n = u128::from(st.frees) + u128::from(live);
        let estimate = (u128::from(st.lifetime_sum) + u128::from(live) * u128::from(age)) / n;
        let freed_ok = st.frees < min_samples || st.lifetime_sum / st.frees >= r;
        if freed_ok && estimate > u128::from(r) * u128::from(PROMOTE_FACTOR) {
            s.long_frees.store(0, Ordering::Relaxed);
            s.long_young.store(0, Ordering::Relaxed);
            s.lane.store(Lane::Long as u8, Ordering::Relaxed);
            self.promotions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A recorded block of `slot`, placed in `lane`, is freed after `life`
    /// clock units.
    #[inline]
    pub fn on_free(&self, slot: usize, lane: Lane, life: u64) {
        let reference = self.reference();
        self.life_sum.fetch_add(life, Ordering::Relaxed);
        self.life_count.fetch_add(1, Ordering::Relaxed);
        if lane != Lane::Long {
            return;
        }
        let Some(s) = self.slots.get(slot) else {
            return;
        };
        s.long_frees.fetch_add(1, Ordering::Relaxed);
        self.long_frees.fetch_add(1, Ordering::Relaxed);
        if reference.is_some_and(|r| life < r) {
            s.long_young.fetch_add(1, Ordering::Relaxed);
            self.long_young.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counters.
    pub fn stats(&self) -> PlacementStats {
        PlacementStats {
            promotions: self.promotions.load(Ordering::Relaxed),
            reverts: self.reverts.load(Ordering::Relaxed),
            long_sites: self
                .slots
                .iter()
                .filter(|s| s.lane.load(Ordering::Relaxed) == Lane::Long as u8)
                .count() as u64,
            long_frees: self.long_frees.load(Ordering::Relaxed),
            long_young: self.long_young.load(Ordering::Relaxed),
            reference: self.reference(),
            enabled: self.enabled(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SiteId;

    const MS: u64 = 1_000_000;

    fn setup() -> (&'static SiteTable<64, 1>, &'static Placement<64>) {
        (
            Box::leak(Box::new(SiteTable::new())),
            Box::leak(Box::new(Placement::new())),
        )
    }

    /// A temporary site whose `n` blocks each live `life`: sets the
    /// reference lifetime.
    fn temporaries(t: &SiteTable<64, 1>, p: &Placement<64>, n: u64, life: u64, now: &mut u64) {
        let site = SiteId::code(0xf000);
        let slot = t.slot_or_insert(site);
        for _ in 0..n {
            let lane = p.lane_for(t, slot, *now);
            let st = t.record_alloc(site, 32, *now);
            *now += life;
            t.record_free(st, 32, *now, false);
            p.on_free(slot, lane, life);
        }
    }

    #[test]
    fn nothing_is_promoted_before_the_reference_is_known() {
        let (t, p) = setup();
        let site = SiteId::code(0x1000);
        let slot = t.slot_or_insert(site);
        for i in 0..16 {
            t.record_alloc(site, 64, i);
        }
        p.review(t, slot, 10_000 * MS);
        assert_eq!(p.lane(slot), Lane::Default);
        assert_eq!(p.reference(), None);
    }

    #[test]
    fn a_site_that_keeps_its_blocks_is_promoted_once_they_outlive_the_reference() {
        let (t, p) = setup();
        let mut now = 0;
        temporaries(t, p, MIN_REFERENCE, MS, &mut now);
        assert_eq!(p.reference(), Some(MS));
        let site = SiteId::code(0x1000);
        let slot = t.slot_or_insert(site);
        // live blocks 2 ms old: not 3x the reference yet
        for _ in 0..16 {
            t.record_alloc(site, 64, now);
        }
        p.review(t, slot, now + 2 * MS);
        assert_eq!(p.lane(slot), Lane::Default);
        // 4 ms old: promoted
        p.review(t, slot, now + 4 * MS);
        assert_eq!(p.lane(slot), Lane::Long);
        assert_eq!(p.stats().promotions, 1);
        assert_eq!(p.stats().long_sites, 1);
    }

    #[test]
    fn lane_for_reviews_once_every_review_every_calls() {
        let (t, p) = setup();
        let mut now = 0;
        temporaries(t, p, MIN_REFERENCE, MS, &mut now);
        let site = SiteId::code(0x1800);
        let slot = t.slot_or_insert(site);
        for _ in 0..16 {
            t.record_alloc(site, 64, now);
        }
        // its blocks are long-lived by now, but only a review promotes it
        now += 100 * MS;
        for k in 1..REVIEW_EVERY {
            assert_eq!(p.lane_for(t, slot, now), Lane::Default, "call {k}");
        }
        assert_eq!(p.lane_for(t, slot, now), Lane::Long, "the review's call");
        assert_eq!(p.stats().promotions, 1);
    }

    #[test]
    fn a_site_like_the_others_stays_default() {
        let (t, p) = setup();
        let mut now = 0;
        temporaries(t, p, MIN_REFERENCE, MS, &mut now);
        let site = SiteId::code(0x2000);
        let slot = t.slot_or_insert(site);
        for _ in 0..10 * REVIEW_EVERY {
            let lane = p.lane_for(t, slot, now);
            assert_eq!(lane, Lane::Default);
            let st = t.record_alloc(site, 64, now);
            now += 2 * MS;
            t.record_free(st, 64, now, false);
            p.on_free(slot, lane, 2 * MS);
        }
        assert_eq!(p.stats().promotions, 0);
    }

    #[test]
    fn a_promoted_site_whose_blocks_die_young_is_reverted_and_held_off() {
        let (t, p) = setup();
        let mut now = 0;
        temporaries(t, p, MIN_REFERENCE, MS, &mut now);
        let site = SiteId::code(0x3000);
        let slot = t.slot_or_insert(site);
        for _ in 0..16 {
            t.record_alloc(site, 64, now);
        }
        now += 100 * MS;
        p.review(t, slot, now);
        assert_eq!(p.lane(slot), Lane::Long);
        // the site changes: its long-lane blocks now die within 0.1 ms
        for _ in 0..16 {
            p.on_free(slot, Lane::Long, MS / 10);
        }
        p.review(t, slot, now);
        assert_eq!(p.lane(slot), Lane::Default, "undone");
        assert_eq!(p.stats().reverts, 1);
        // its 16 live blocks still look long, but it is held off for 8 reviews
        for k in 0..8 {
            p.review(t, slot, now + k);
            assert_eq!(p.lane(slot), Lane::Default, "review {k}");
        }
        p.review(t, slot, now + 8);
        assert_eq!(
            p.lane(slot),
            Lane::Long,
            "promoted again after the hold-off"
        );
    }

    #[test]
    fn old_long_lane_frees_confirm_the_decision() {
        let (t, p) = setup();
        let mut now = 0;
        temporaries(t, p, MIN_REFERENCE, MS, &mut now);
        let site = SiteId::code(0x4000);
        let slot = t.slot_or_insert(site);
        for _ in 0..16 {
            t.record_alloc(site, 64, now);
        }
        p.review(t, slot, now + 100 * MS);
        assert_eq!(p.lane(slot), Lane::Long);
        for _ in 0..100 {
            p.on_free(slot, Lane::Long, 50 * MS);
        }
        p.on_free(slot, Lane::Long, MS / 2);
        p.review(t, slot, now + 101 * MS);
        assert_eq!(p.lane(slot), Lane::Long);
        let s = p.stats();
        assert_eq!((s.long_frees, s.long_young, s.reverts), (101, 1, 0));
    }

    #[test]
    fn disabled_placement_uses_the_default_lane() {
        let (t, p) = setup();
        let mut now = 0;
        temporaries(t, p, MIN_REFERENCE, MS, &mut now);
        let site = SiteId::code(0x5000);
        let slot = t.slot_or_insert(site);
        for _ in 0..16 {
            t.record_alloc(site, 64, now);
        }
        p.review(t, slot, now + 100 * MS);
        assert_eq!(p.lane(slot), Lane::Long);
        p.set_enabled(false);
        assert_eq!(p.lane(slot), Lane::Default);
        assert_eq!(p.lane_for(t, slot, now), Lane::Default);
        assert_eq!(p.lane_for(t, 64, 0), Lane::Default, "the other bucket");
        p.set_enabled(true);
        assert_eq!(p.lane(slot), Lane::Long);
    }
}

#[cfg(test)]
mod prop {
    use super::*;
    use crate::SiteId;
    use proptest::prelude::*;

    const MS: u64 = 1_000_000;

    proptest! {
        /// Random sites with fixed lifetimes, interleaved at random: sites
        /// whose blocks live no longer than the typical block are never
        /// promoted, sites whose blocks live far longer are (once enough
        /// of them are old), the lane counts agree with the promotion and
        /// revert counters, and the other bucket is always default.
        #[test]
        fn decisions_follow_lifetimes(
            ops in proptest::collection::vec((0u64..8, 0u64..300), 200..3000)
        ) {
            let t: &'static SiteTable<16, 1> = Box::leak(Box::new(SiteTable::new()));
            let p: &'static Placement<16> = Box::leak(Box::new(Placement::new()));
            let mut now = 0u64;
            // sites 0..=5 live 1 ms; sites 6 and 7 keep their blocks
            let mut live: Vec<(crate::Stamp, u64, usize, Lane)> = Vec::new();
            for (k, gap) in ops {
                now += gap * 10_000;
                let site = SiteId::code(0x1000 + k as usize);
                let slot = t.slot_or_insert(site);
                let lane = p.lane_for(t, slot, now);
                let st = t.record_alloc(site, 32, now);
                if k <= 5 {
                    live.push((st, now + MS, slot, lane));
                }
                live.retain(|&(st, due, slot, lane)| {
                    if due <= now {
                        t.record_free(st, 32, due, false);
                        p.on_free(slot, lane, due - st.alloc_time(due));
                        false
                    } else {
                        true
                    }
                });
            }
            let s = p.stats();
            prop_assert_eq!(s.long_sites, s.promotions - s.reverts);
            prop_assert_eq!(s.reverts, 0, "no site changes its behaviour");
            for k in 0..=5usize {
                if let Some(slot) = t.slot_of(SiteId::code(0x1000 + k)) {
                    prop_assert_eq!(p.lane(slot), Lane::Default, "short site {}", k);
                }
            }
            // A keeping site with 8+ blocks whose mean age is over three
            // reference lifetimes is long after one more review.
            if let Some(r) = p.reference() {
                prop_assert!(r <= MS);
                for k in 6..8usize {
                    let Some(slot) = t.slot_of(SiteId::code(0x1000 + k)) else {
                        continue;
                    };
                    let st = t.stats(slot).unwrap();
                    p.review(t, slot, now);
                    if st.live_blocks() >= 8 && st.mean_live_age(now).unwrap() > 3 * r {
                        prop_assert_eq!(p.lane(slot), Lane::Long, "keeping site {}", k);
                    }
                }
            }
            prop_assert_eq!(p.lane(16), Lane::Default);
        }
    }
}
