//! The knobs the learner turns, their discrete levels, and — in one place,
//! [`apply`] — how a set of levels maps onto a [`FrozenPolicy`].
//!
//! A knob moves one level at a time: its candidates are {current,
//! current − 1, current + 1} (those that exist). Levels are either
//! absolute values of a policy field or, for bin capacities, multipliers
//! (in ‰) of the base policy's per-class values, so the class-by-class
//! shape of the base is kept.
//!
//! The base policy's own value is kept for a knob at its initial level
//! ([`initial_levels`]): a learner that changes nothing proposes exactly
//! the base, even when the base holds values between levels.
//!
//! Each knob names the policy field it moves ([`KnobSpec::field`], a
//! [`Key`] of the policy's one field table). An absolute knob's name, its
//! getter and setter and its bounds come from that field's
//! [`FieldInfo`]; what stays here is what
//! only the learner knows: which fields it moves, in which order, at which
//! levels, and which request sizes concern them. Every level of an absolute
//! knob lies within its field's range (checked when this crate compiles).

use hakmem_mid_mt::{mid_size, MID_CLASSES};
use hakmem_policy_rcu::{FieldInfo, FrozenPolicy, Key, MAX_CAP};
use hakmem_tiny_sll::{tiny_size, TINY_CLASSES};

use crate::signature::{size_bin, SIG_BINS};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// How a knob's levels read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Levels are the field's value.
    Absolute,
    /// Levels multiply the base policy's per-class values (‰); the initial
    /// level is the one equal to 1000.
    Relative,
}

/// A knob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnobId {
    /// `large_cache_budget`: the memory the large cache may hold (first:
    /// the knob that can hold the most memory).
    LargeCacheBudget,
    /// Caps and refills of tiny classes up to 128 B.
    TinyCapSmall,
    /// Caps and refills of tiny classes of 129–512 B.
    TinyCapMedium,
    /// Caps and refills of tiny classes of 513 B–1 KiB.
    TinyCapLarge,
    /// Caps and refills of mid classes up to 8 KiB.
    MidCapSmall,
    /// Caps and refills of mid classes of 8–64 KiB.
    MidCapMedium,
    /// Caps and refills of mid classes of 64 KiB–1 MiB.
    MidCapLarge,
    /// `mid_wmax_permille`.
    MidWmax,
    /// `large_cache_max_block`: the largest block the large cache keeps
    /// (with [`KnobId::ThpThreshold`], the closest hakmem has to the
    /// prototype's mmap threshold).
    LargeCacheMaxBlock,
    /// `large_wmax_permille`.
    LargeWmax,
    /// `thp_threshold`.
    ThpThreshold,
    /// `decay_ms`.
    DecayMs,
    /// `pool_dirty`: empty superslabs kept with their pages.
    PoolDirty,
}

/// Number of knobs.
pub const KNOBS: usize = 13;

/// A knob's description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnobSpec {
    /// Which knob.
    pub id: KnobId,
    /// Its name (for logs): the field's name for an absolute knob.
    pub name: &'static str,
    /// The policy field it moves: a scalar field for an absolute knob;
    /// `tiny_cap` or `mid_cap` (with the matching refills) for a relative
    /// one.
    pub field: Key,
    /// Its levels, ascending.
    pub levels: &'static [u64],
    /// How the levels read.
    pub scale: Scale,
    /// The request sizes it concerns, `(lo, hi]` in bytes; `None`: every
    /// size (decay, pool).
    pub sizes: Option<(u64, u64)>,
    /// A step up may hold much more memory, and one window of it can raise
    /// the process's peak RSS for good: the learner tries it only once the
    /// step down did not win.
    pub cautious_up: bool,
}

/// Bin capacities step by 4: measured in the learner's observation slices,
/// a 2x step rarely clears the window-to-window noise (`request-burst`:
/// 2x caps +0-10%, 4x +35-70%), and one 4x step is one epoch instead of two.
const CAP_STEPS: &[u64] = &[250, 1000, 4000];
const WMAX_STEPS: &[u64] = &[1000, 1125, 1250, 1500, 2000];
const TINY_SMALL: (u64, u64) = (0, 128);
const TINY_MEDIUM: (u64, u64) = (128, 512);
const TINY_LARGE: (u64, u64) = (512, KIB);
const MID_SMALL: (u64, u64) = (KIB, 8 * KIB);
const MID_MEDIUM: (u64, u64) = (8 * KIB, 64 * KIB);
const MID_LARGE: (u64, u64) = (64 * KIB, MIB);
const MID_ALL: (u64, u64) = (KIB, MIB);
const LARGE_ALL: (u64, u64) = (MIB, u64::MAX);

/// Every knob, in [`KnobId`] order (the order the learner visits them:
/// the large cache's budget, then the per-thread bins from small to large
/// sizes, then the rest).
pub static KNOB_SPECS: [KnobSpec; KNOBS] = SPECS;

const SPECS: [KnobSpec; KNOBS] = [
    KnobSpec {
        id: KnobId::LargeCacheBudget,
        name: Key::LargeCacheBudget.name(),
        field: Key::LargeCacheBudget,
        // Down from the default in steps of ×4 (one step moves enough
        // memory to show against the window-to-window noise; 64 → 32 MiB
        // rarely does), up in steps of ×2: a window that explores a bigger
        // cache can fill it, and the process's peak RSS keeps that for good.
        levels: &[0, 16 * MIB, 64 * MIB, 128 * MIB, 256 * MIB, 1024 * MIB],
        scale: Scale::Absolute,
        sizes: Some(LARGE_ALL),
        cautious_up: true,
    },
    KnobSpec {
        id: KnobId::TinyCapSmall,
        name: "tiny_cap[<=128B]",
        field: Key::TinyCap,
        levels: CAP_STEPS,
        scale: Scale::Relative,
        sizes: Some(TINY_SMALL),
        cautious_up: false,
    },
    KnobSpec {
        id: KnobId::TinyCapMedium,
        name: "tiny_cap[129-512B]",
        field: Key::TinyCap,
        levels: CAP_STEPS,
        scale: Scale::Relative,
        sizes: Some(TINY_MEDIUM),
        cautious_up: false,
    },
    KnobSpec {
        id: KnobId::TinyCapLarge,
        name: "tiny_cap[513B-1K]",
        field: Key::TinyCap,
        levels: CAP_STEPS,
        scale: Scale::Relative,
        sizes: Some(TINY_LARGE),
        cautious_up: false,
    },
    KnobSpec {
        id: KnobId::MidCapSmall,
        name: "mid_cap[1-8K]",
        field: Key::MidCap,
        levels: CAP_STEPS,
        scale: Scale::Relative,
        sizes: Some(MID_SMALL),
        cautious_up: false,
    },
    KnobSpec {
        id: KnobId::MidCapMedium,
        name: "mid_cap[8-64K]",
        field: Key::MidCap,
        levels: CAP_STEPS,
        scale: Scale::Relative,
        sizes: Some(MID_MEDIUM),
        cautious_up: false,
    },
    KnobSpec {
        id: KnobId::MidCapLarge,
        name: "mid_cap[64K-1M]",
        field: Key::MidCap,
        levels: CAP_STEPS,
        scale: Scale::Relative,
        sizes: Some(MID_LARGE),
        cautious_up: false,
    },
    KnobSpec {
        id: KnobId::MidWmax,
        name: Key::MidWmaxPermille.name(),
        field: Key::MidWmaxPermille,
        levels: WMAX_STEPS,
        scale: Scale::Absolute,
        sizes: Some(MID_ALL),
        cautious_up: false,
    },
    KnobSpec {
        id: KnobId::LargeCacheMaxBlock,
        name: Key::LargeCacheMaxBlock.name(),
        field: Key::LargeCacheMaxBlock,
        levels: &[
            2 * MIB,
            4 * MIB,
            8 * MIB,
            16 * MIB,
            32 * MIB,
            64 * MIB,
            128 * MIB,
            256 * MIB,
        ],
        scale: Scale::Absolute,
        sizes: Some(LARGE_ALL),
        cautious_up: false,
    },
    KnobSpec {
        id: KnobId::LargeWmax,
        name: Key::LargeWmaxPermille.name(),
        field: Key::LargeWmaxPermille,
        levels: WMAX_STEPS,
        scale: Scale::Absolute,
        sizes: Some(LARGE_ALL),
        cautious_up: false,
    },
    KnobSpec {
        id: KnobId::ThpThreshold,
        name: Key::ThpThreshold.name(),
        field: Key::ThpThreshold,
        // six levels, like the prototype's mmap threshold (64 KiB → 2 MiB
        // there; hakmem's large tier starts above 1 MiB)
        levels: &[2 * MIB, 4 * MIB, 8 * MIB, 16 * MIB, 32 * MIB, 64 * MIB],
        scale: Scale::Absolute,
        sizes: Some(LARGE_ALL),
        cautious_up: false,
    },
    KnobSpec {
        id: KnobId::DecayMs,
        name: Key::DecayMs.name(),
        field: Key::DecayMs,
        levels: &[100, 250, 500, 1000, 2000, 5000, 10_000],
        scale: Scale::Absolute,
        sizes: None,
        cautious_up: false,
    },
    KnobSpec {
        id: KnobId::PoolDirty,
        name: Key::PoolDirty.name(),
        field: Key::PoolDirty,
        levels: &[0, 2, 4, 8, 16, 32, 64],
        scale: Scale::Absolute,
        sizes: None,
        cautious_up: false,
    },
];

// Checked when the crate compiles: the specs are in `KnobId` order, a knob
// is relative exactly when its field is per class (then `tiny_cap` or
// `mid_cap`), and every level of an absolute knob lies within its field's
// range.
const _: () = {
    let mut i = 0;
    while i < KNOBS {
        let spec = &SPECS[i];
        assert!(spec.id as usize == i);
        match spec.scale {
            Scale::Relative => assert!(matches!(spec.field, Key::TinyCap | Key::MidCap)),
            Scale::Absolute => {
                let Some(f) = spec.field.field() else {
                    panic!("an absolute knob moves a scalar field");
                };
                let mut l = 0;
                while l < spec.levels.len() {
                    assert!(f.min <= spec.levels[l] && spec.levels[l] <= f.max);
                    l += 1;
                }
            }
        }
        i += 1;
    }
};

impl KnobId {
    /// Every knob.
    pub const ALL: [KnobId; KNOBS] = [
        KnobId::LargeCacheBudget,
        KnobId::TinyCapSmall,
        KnobId::TinyCapMedium,
        KnobId::TinyCapLarge,
        KnobId::MidCapSmall,
        KnobId::MidCapMedium,
        KnobId::MidCapLarge,
        KnobId::MidWmax,
        KnobId::LargeCacheMaxBlock,
        KnobId::LargeWmax,
        KnobId::ThpThreshold,
        KnobId::DecayMs,
        KnobId::PoolDirty,
    ];

    /// The knob's description.
    pub fn spec(self) -> &'static KnobSpec {
        &KNOB_SPECS[self as usize]
    }

    /// The size bins (of a window's histogram) the knob concerns, as an
    /// inclusive range; `None` for a knob that concerns every size.
    pub fn bins(self) -> Option<(usize, usize)> {
        let (lo, hi) = self.spec().sizes?;
        let lo = size_bin(lo.saturating_add(1).min(usize::MAX as u64) as usize);
        let hi = if hi == u64::MAX {
            SIG_BINS - 1
        } else {
            size_bin(hi as usize)
        };
        Some((lo, hi))
    }

    /// Whether a window's size histogram shows at least `min_ops`
    /// allocations in the knob's sizes (always true for a knob of every
    /// size).
    pub fn relevant(self, hist: &[u64; SIG_BINS], min_ops: u64) -> bool {
        match self.bins() {
            None => true,
            Some((lo, hi)) => {
                hist[lo..=hi].iter().fold(0u64, |a, &c| a.saturating_add(c)) >= min_ops
            }
        }
    }
}

/// A knob's position: its levels and the current index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Knob {
    /// Which knob.
    pub id: KnobId,
    /// Index into its levels.
    pub current: usize,
}

/// The candidate levels of a knob (one bandit arm each): arm 0 is the
/// current level, then the lower and the higher neighbour where they
/// exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidates {
    levels: [usize; 3],
    len: usize,
}

impl Candidates {
    /// The candidates' level indices, arm by arm.
    pub fn as_slice(&self) -> &[usize] {
        &self.levels[..self.len]
    }

    /// Number of candidates (arms).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: the current level is a candidate.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The level of `arm`.
    pub fn level(&self, arm: usize) -> usize {
        self.levels[arm.min(self.len - 1)]
    }

    /// The arm of `level`, if it is a candidate.
    pub fn arm_of(&self, level: usize) -> Option<usize> {
        self.as_slice().iter().position(|&l| l == level)
    }

    /// The candidates without `level` (unless it is arm 0, the current
    /// level): after a step is kept, the level it left is known to be worse.
    pub fn without(mut self, level: usize) -> Candidates {
        if let Some(a) = self.arm_of(level).filter(|&a| a > 0) {
            self.levels.copy_within(a + 1..self.len, a);
            self.len -= 1;
        }
        self
    }
}

impl Knob {
    /// The knob's levels.
    pub fn levels(&self) -> &'static [u64] {
        self.id.spec().levels
    }

    /// The value of the current level.
    pub fn value(&self) -> u64 {
        self.levels()[self.current]
    }

    /// {current, current − 1, current + 1}, those that exist.
    pub fn candidates(&self) -> Candidates {
        let mut c = Candidates {
            levels: [self.current; 3],
            len: 1,
        };
        if self.current > 0 {
            c.levels[c.len] = self.current - 1;
            c.len += 1;
        }
        if self.current + 1 < self.levels().len() {
            c.levels[c.len] = self.current + 1;
            c.len += 1;
        }
        c
    }
}

/// A level index per knob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Levels(pub [u8; KNOBS]);

impl Levels {
    /// The level of `knob`.
    pub fn get(&self, knob: KnobId) -> usize {
        self.0[knob as usize] as usize
    }

    /// Sets the level of `knob` (clamped to its levels).
    pub fn set(&mut self, knob: KnobId, level: usize) {
        let max = knob.spec().levels.len() - 1;
        self.0[knob as usize] = level.min(max) as u8;
    }

    /// The knob at its level here.
    pub fn knob(&self, id: KnobId) -> Knob {
        Knob {
            id,
            current: self.get(id),
        }
    }
}

/// The level closest to `v` (in ratio; the lower one on ties).
fn nearest(levels: &[u64], v: u64) -> usize {
    let mut best = 0;
    let mut best_d = f64::INFINITY;
    for (i, &l) in levels.iter().enumerate() {
        // distance in log space, with 0 treated as 1/2 of the next step
        let (a, b) = ((l as f64).max(0.5), (v as f64).max(0.5));
        let d = if a > b { a / b } else { b / a };
        if d < best_d {
            best = i;
            best_d = d;
        }
    }
    best
}

impl KnobSpec {
    /// The descriptor of the scalar field an absolute knob sets (`None`
    /// for a relative knob).
    pub fn scalar(&self) -> Option<&'static FieldInfo> {
        match self.scale {
            Scale::Absolute => self.field.field(),
            Scale::Relative => None,
        }
    }
}

/// The policy field an absolute knob sets, as a number (1000 for a
/// relative knob: they start at ×1).
fn field(p: &FrozenPolicy, id: KnobId) -> u64 {
    match id.spec().scalar() {
        Some(f) => (f.get)(p),
        None => 1000,
    }
}

/// The levels that reproduce `base`: ×1 for the relative knobs, the
/// nearest level for the others.
pub fn initial_levels(base: &FrozenPolicy) -> Levels {
    let mut l = Levels([0; KNOBS]);
    for id in KnobId::ALL {
        l.set(id, nearest(id.spec().levels, field(base, id)));
    }
    l
}

/// Scales caps and refills of the classes whose size lies in `(lo, hi]`.
fn scale_caps(
    cap: &mut [u16],
    refill: &mut [u16],
    size: impl Fn(usize) -> usize,
    (lo, hi): (u64, u64),
    permille: u64,
) {
    for c in 0..cap.len() {
        let s = size(c) as u64;
        if s <= lo || s > hi {
            continue;
        }
        let scale = |v: u16| -> u16 {
            if v == 0 {
                return 0;
            }
            (v as u64 * permille / 1000).clamp(1, MAX_CAP as u64) as u16
        };
        cap[c] = scale(cap[c]);
        refill[c] = scale(refill[c]).min(cap[c]);
    }
}

/// The policy for `levels`: `base` with every knob whose level differs
/// from `initial` set to its level. The one place where knob levels meet
/// policy fields. The result is kept consistent: refills within caps and
/// `large_cache_max_block ≤ large_cache_budget` (the max block is lowered
/// to the budget). It passes `FrozenPolicy::validate` when `base` does.
pub fn apply(base: &FrozenPolicy, initial: &Levels, levels: &Levels) -> FrozenPolicy {
    let mut p = *base;
    for id in KnobId::ALL {
        let level = levels.get(id);
        if level == initial.get(id) {
            continue;
        }
        let spec = id.spec();
        let v = spec.levels[level];
        let sizes = spec.sizes.unwrap_or((0, u64::MAX));
        match (spec.scalar(), spec.field) {
            // within the field's range (checked at compile time); the
            // clamp only keeps `set`'s contract local
            (Some(f), _) => (f.set)(&mut p, f.clamp(v)),
            (None, Key::TinyCap) => {
                scale_caps(&mut p.tiny_cap, &mut p.tiny_refill, tiny_size, sizes, v)
            }
            (None, _) => scale_caps(&mut p.mid_cap, &mut p.mid_refill, mid_size, sizes, v),
        }
    }
    p.large_cache_max_block = p.large_cache_max_block.min(p.large_cache_budget);
    debug_assert!(p.tiny_refill.len() == TINY_CLASSES && p.mid_refill.len() == MID_CLASSES);
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use hakmem_policy_rcu::DEFAULT_POLICY;
    use proptest::prelude::*;

    #[test]
    fn specs_are_in_order_with_ascending_levels() {
        for (i, spec) in KNOB_SPECS.iter().enumerate() {
            assert_eq!(spec.id as usize, i);
            assert_eq!(KnobId::ALL[i], spec.id);
            assert!(spec.levels.len() >= 2 && spec.levels.len() <= u8::MAX as usize);
            assert!(spec.levels.windows(2).all(|w| w[0] < w[1]), "{}", spec.name);
            if spec.scale == Scale::Relative {
                assert!(spec.levels.contains(&1000));
            }
        }
        // the prototype's six threshold levels
        assert_eq!(KnobId::ThpThreshold.spec().levels.len(), 6);
    }

    #[test]
    fn absolute_knobs_are_named_and_bounded_by_their_fields() {
        for spec in &KNOB_SPECS {
            match spec.scalar() {
                Some(f) => {
                    assert_eq!(spec.name, f.name);
                    assert_eq!(f.key, spec.field);
                    assert!(spec.levels.iter().all(|&l| f.min <= l && l <= f.max));
                }
                None => assert!(spec.field.per_class(), "{}", spec.name),
            }
        }
        assert_eq!(KnobId::DecayMs.spec().name, "decay_ms");
        assert_eq!(KnobId::MidWmax.spec().name, "mid_wmax_permille");
    }

    #[test]
    fn candidates_are_one_step_around_the_current_level() {
        let k = Knob {
            id: KnobId::DecayMs,
            current: 3,
        };
        assert_eq!(k.candidates().as_slice(), [3, 2, 4]);
        assert_eq!(k.value(), 1000);
        let low = Knob { current: 0, ..k };
        assert_eq!(low.candidates().as_slice(), [0, 1]);
        let top = Knob { current: 6, ..k };
        let c = top.candidates();
        assert_eq!(c.as_slice(), [6, 5]);
        assert_eq!(
            (c.len(), c.level(1), c.arm_of(5), c.arm_of(4)),
            (2, 5, Some(1), None)
        );
        assert!(!c.is_empty());
        // after a step down from 4 to 3 is kept, 4 is not tried again
        assert_eq!(k.candidates().without(4).as_slice(), [3, 2]);
        assert_eq!(k.candidates().without(2).as_slice(), [3, 4]);
        assert_eq!(k.candidates().without(3).as_slice(), [3, 2, 4]);
        assert_eq!(k.candidates().without(0).as_slice(), [3, 2, 4]);
    }

    #[test]
    fn initial_levels_reproduce_the_default() {
        let init = initial_levels(&DEFAULT_POLICY);
        for id in KnobId::ALL {
            let spec = id.spec();
            match spec.scale {
                Scale::Relative => assert_eq!(spec.levels[init.get(id)], 1000),
                Scale::Absolute => assert_eq!(
                    spec.levels[init.get(id)],
                    field(&DEFAULT_POLICY, id),
                    "{}: the default is one of the levels",
                    spec.name
                ),
            }
        }
        assert_eq!(apply(&DEFAULT_POLICY, &init, &init), DEFAULT_POLICY);
    }

    #[test]
    fn base_values_between_levels_are_kept_until_moved() {
        let base = FrozenPolicy {
            decay_ms: 1400,
            ..DEFAULT_POLICY
        };
        let init = initial_levels(&base);
        assert_eq!(
            KnobId::DecayMs.spec().levels[init.get(KnobId::DecayMs)],
            1000
        );
        assert_eq!(apply(&base, &init, &init).decay_ms, 1400);
        let mut up = init;
        up.set(KnobId::DecayMs, init.get(KnobId::DecayMs) + 1);
        assert_eq!(apply(&base, &init, &up).decay_ms, 2000);
    }

    #[test]
    fn cap_knobs_scale_only_their_classes() {
        let init = initial_levels(&DEFAULT_POLICY);
        let mut l = init;
        l.set(KnobId::TinyCapMedium, 2); // ×4
        let p = apply(&DEFAULT_POLICY, &init, &l);
        for c in 0..TINY_CLASSES {
            let (cap, base) = (p.tiny_cap[c], DEFAULT_POLICY.tiny_cap[c]);
            if tiny_size(c) > 128 && tiny_size(c) <= 512 {
                assert_eq!(cap, (base * 4).min(MAX_CAP), "class {c}");
                assert!(p.tiny_refill[c] <= cap);
            } else {
                assert_eq!(cap, base, "class {c}");
                assert_eq!(p.tiny_refill[c], DEFAULT_POLICY.tiny_refill[c]);
            }
        }
        assert_eq!(p.mid_cap, DEFAULT_POLICY.mid_cap);
        let mut l = init;
        l.set(KnobId::MidCapLarge, 0); // ×1/4
        let p = apply(&DEFAULT_POLICY, &init, &l);
        for c in 0..MID_CLASSES {
            if mid_size(c) > 64 << 10 {
                assert!(p.mid_cap[c] >= 1 && p.mid_cap[c] <= DEFAULT_POLICY.mid_cap[c]);
            } else {
                assert_eq!(p.mid_cap[c], DEFAULT_POLICY.mid_cap[c]);
            }
        }
        assert_eq!(p.validate(), Ok(()));
    }

    #[test]
    fn max_block_follows_a_smaller_budget() {
        let init = initial_levels(&DEFAULT_POLICY);
        let mut l = init;
        l.set(KnobId::LargeCacheBudget, 1); // 16 MiB
        let p = apply(&DEFAULT_POLICY, &init, &l);
        assert_eq!(p.large_cache_budget, 16 << 20);
        assert_eq!(p.large_cache_max_block, 16 << 20);
        l.set(KnobId::LargeCacheBudget, 0);
        let p = apply(&DEFAULT_POLICY, &init, &l);
        assert_eq!((p.large_cache_budget, p.large_cache_max_block), (0, 0));
        assert_eq!(p.validate(), Ok(()));
    }

    #[test]
    fn relevance_from_the_histogram() {
        let mut h = [0u64; SIG_BINS];
        assert!(KnobId::DecayMs.relevant(&h, 1));
        assert!(!KnobId::TinyCapSmall.relevant(&h, 1));
        h[size_bin(48)] = 100;
        h[size_bin(3 << 20)] = 3;
        assert!(KnobId::TinyCapSmall.relevant(&h, 64));
        assert!(!KnobId::TinyCapMedium.relevant(&h, 64));
        assert!(!KnobId::LargeCacheBudget.relevant(&h, 64));
        assert!(KnobId::LargeCacheBudget.relevant(&h, 3));
        assert_eq!(KnobId::TinyCapSmall.bins(), Some((0, 4)));
        assert_eq!(KnobId::TinyCapLarge.bins(), Some((7, 7)));
        assert_eq!(KnobId::MidCapSmall.bins(), Some((8, 10)));
        assert_eq!(KnobId::MidCapLarge.bins(), Some((14, 17)));
        assert_eq!(KnobId::ThpThreshold.bins(), Some((18, 19)));
        assert_eq!(KnobId::PoolDirty.bins(), None);
    }

    fn levels_strategy() -> impl Strategy<Value = Levels> {
        prop::collection::vec(any::<prop::sample::Index>(), KNOBS).prop_map(|ix| {
            let mut l = Levels([0; KNOBS]);
            for (id, i) in KnobId::ALL.into_iter().zip(ix) {
                l.set(id, i.index(id.spec().levels.len()));
            }
            l
        })
    }

    proptest! {
        /// Any levels over the default give a valid policy, and moving
        /// back to the initial levels restores the base.
        #[test]
        fn any_levels_give_a_valid_policy(l in levels_strategy()) {
            let init = initial_levels(&DEFAULT_POLICY);
            let p = apply(&DEFAULT_POLICY, &init, &l);
            prop_assert_eq!(p.validate(), Ok(()));
            for id in KnobId::ALL {
                if id.spec().scale == Scale::Absolute && l.get(id) != init.get(id) {
                    let v = field(&p, id);
                    if id == KnobId::LargeCacheMaxBlock {
                        prop_assert!(v <= id.spec().levels[l.get(id)]);
                    } else {
                        prop_assert_eq!(v, id.spec().levels[l.get(id)]);
                    }
                }
            }
            prop_assert_eq!(apply(&DEFAULT_POLICY, &init, &init), DEFAULT_POLICY);
        }
    }
}
