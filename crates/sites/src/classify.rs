//! Inferring a site's policy class from its counters.
//!
//! Two independent labels, both computed from a [`SiteStats`](crate::SiteStats)
//! at report time:
//!
//! **Policy class** (the prototype's three), from the mean request size
//! `avg` and the estimated allocation count `n` (records × sampling weight):
//!
//! | class | rule (defaults) |
//! |---|---|
//! | `SMALL_FREQUENT` | `avg ≤ small_max` (64 KiB) and `n ≥ frequent_min` (1000) |
//! | `LARGE_INFREQUENT` | `avg > large_min` (1 MiB, hakmem's large tier) and `n < frequent_min` |
//! | `MEDIUM` | everything else: mid sizes, and the small-but-rare and large-but-frequent sites the default policy serves |
//!
//! **Lifetime class**, from the sampled lifetimes: the freed blocks'
//! lifetime histogram plus the still-live blocks counted at their mean age
//! (a lower bound of their lifetime, so a site that never frees is seen as
//! long-lived rather than unknown). Let `b` be the log4 lifetime bucket
//! holding the median observation:
//!
//! | class | rule (defaults) |
//! |---|---|
//! | `UNKNOWN` | fewer than `min_samples` (8) observations |
//! | `SHORT` | bucket `b`'s upper bound ≤ `short_max` (2^24 ns ≈ 16.8 ms) |
//! | `LONG` | otherwise |
//!
//! Bucket bounds are powers of four from 2^10 ns, so `short_max` is exact
//! when it is one of them (2^24 is) and otherwise rounds down to one.
//! Thresholds are in the caller's clock units; the defaults assume
//! nanoseconds.

use crate::hist::{LIFE_BOUNDS, LIFE_BUCKETS};

/// The size/frequency class of a site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyClass {
    /// Small requests made often.
    SmallFrequent,
    /// Neither extreme.
    Medium,
    /// Large requests made rarely.
    LargeInfrequent,
}

impl PolicyClass {
    /// All classes, in report order.
    pub const ALL: [PolicyClass; 3] = [
        PolicyClass::SmallFrequent,
        PolicyClass::Medium,
        PolicyClass::LargeInfrequent,
    ];

    /// The prototype's name.
    pub const fn name(self) -> &'static str {
        match self {
            PolicyClass::SmallFrequent => "SMALL_FREQUENT",
            PolicyClass::Medium => "MEDIUM",
            PolicyClass::LargeInfrequent => "LARGE_INFREQUENT",
        }
    }
}

/// Short- or long-lived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LifetimeClass {
    /// Median lifetime at most `short_max`.
    Short,
    /// Median lifetime above `short_max`.
    Long,
    /// Too few samples.
    Unknown,
}

impl LifetimeClass {
    /// All classes, in report order.
    pub const ALL: [LifetimeClass; 3] = [
        LifetimeClass::Short,
        LifetimeClass::Long,
        LifetimeClass::Unknown,
    ];

    /// The report's name.
    pub const fn name(self) -> &'static str {
        match self {
            LifetimeClass::Short => "SHORT",
            LifetimeClass::Long => "LONG",
            LifetimeClass::Unknown => "UNKNOWN",
        }
    }
}

/// Both labels of a site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Class {
    /// Size/frequency class.
    pub policy: PolicyClass,
    /// Lifetime class.
    pub lifetime: LifetimeClass,
}

/// The classification thresholds (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Largest mean size of a small site (bytes).
    pub small_max: u64,
    /// Mean size above which a site is large (bytes).
    pub large_min: u64,
    /// Estimated allocations from which a site is frequent.
    pub frequent_min: u64,
    /// Longest median lifetime of a short-lived site (clock units).
    pub short_max: u64,
    /// Fewest lifetime observations for a lifetime class.
    pub min_samples: u64,
}

impl Thresholds {
    /// The defaults: 64 KiB, 1 MiB, 1000 allocations, 2^24 ns, 8 samples.
    pub const DEFAULT: Thresholds = Thresholds {
        small_max: 64 << 10,
        large_min: 1 << 20,
        frequent_min: 1000,
        short_max: 1 << 24,
        min_samples: 8,
    };
}

impl Default for Thresholds {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The policy class of a site with mean size `avg_size` and `est_allocs`
/// estimated allocations.
pub const fn policy_class(avg_size: u64, est_allocs: u64, th: &Thresholds) -> PolicyClass {
    let frequent = est_allocs >= th.frequent_min;
    if avg_size <= th.small_max && frequent {
        PolicyClass::SmallFrequent
    } else if avg_size > th.large_min && !frequent {
        PolicyClass::LargeInfrequent
    } else {
        PolicyClass::Medium
    }
}

/// The lifetime class from the median's lifetime bucket and the number of
/// observations.
pub const fn lifetime_class(
    median_bucket: Option<usize>,
    samples: u64,
    th: &Thresholds,
) -> LifetimeClass {
    match median_bucket {
        Some(b) if samples >= th.min_samples && samples > 0 => {
            if b < LIFE_BUCKETS - 1 && LIFE_BOUNDS[b] <= th.short_max {
                LifetimeClass::Short
            } else {
                LifetimeClass::Long
            }
        }
        _ => LifetimeClass::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SiteId, SiteTable};

    const T: Thresholds = Thresholds::DEFAULT;

    #[test]
    fn policy_rules_and_boundaries() {
        use PolicyClass::*;
        let cases = [
            // (avg, n, class)
            (24, 1_000_000, SmallFrequent),
            (64 << 10, 1000, SmallFrequent), // both bounds inclusive
            ((64 << 10) + 1, 1000, Medium),  // just above small
            (64 << 10, 999, Medium),         // just below frequent
            (24, 10, Medium),                // small but rare
            (256 << 10, 100, Medium),        // mid size
            (1 << 20, 10, Medium),           // 1 MiB is still mid tier
            ((1 << 20) + 1, 10, LargeInfrequent),
            (2 << 20, 999, LargeInfrequent),
            (2 << 20, 1000, Medium), // large but frequent
            (0, 0, Medium),
        ];
        for (avg, n, want) in cases {
            assert_eq!(policy_class(avg, n, &T), want, "avg {avg} n {n}");
        }
    }

    #[test]
    fn the_prototype_demo_gets_three_classes() {
        assert_eq!(policy_class(64 << 10, 1000, &T), PolicyClass::SmallFrequent);
        assert_eq!(policy_class(256 << 10, 100, &T), PolicyClass::Medium);
        assert_eq!(policy_class(2 << 20, 10, &T), PolicyClass::LargeInfrequent);
    }

    #[test]
    fn lifetime_rules_and_boundaries() {
        use LifetimeClass::*;
        // Bucket 7 is [2^22, 2^24): its bound equals short_max.
        assert_eq!(lifetime_class(Some(7), 8, &T), Short);
        assert_eq!(lifetime_class(Some(0), 8, &T), Short);
        assert_eq!(lifetime_class(Some(8), 8, &T), Long);
        assert_eq!(lifetime_class(Some(LIFE_BUCKETS - 1), 100, &T), Long);
        assert_eq!(lifetime_class(Some(0), 7, &T), Unknown);
        assert_eq!(lifetime_class(None, 100, &T), Unknown);
        let strict = Thresholds {
            short_max: (1 << 24) - 1,
            ..T
        };
        // A threshold between bounds rounds down: bucket 7 (bound 2^24) is
        // no longer short, bucket 6 (bound 2^22) still is.
        assert_eq!(lifetime_class(Some(7), 8, &strict), Long);
        assert_eq!(lifetime_class(Some(6), 8, &strict), Short);
    }

    #[test]
    fn lifetime_from_a_table() {
        let t = SiteTable::<16, 2>::new();
        let short = SiteId::code(0x10);
        let long = SiteId::code(0x20);
        let never = SiteId::code(0x30);
        let few = SiteId::code(0x40);
        let mut now = 1_000_000u64;
        for _ in 0..100 {
            let s = t.record_alloc(short, 32, now);
            t.record_free(s, 32, now + 50_000, false); // 50 µs
            let _ = t.record_alloc(never, 32, now);
            let s = t.record_alloc(long, 32, now);
            t.record_free(s, 32, now + 500_000_000, false); // 0.5 s
            now += 1_000_000;
        }
        for _ in 0..3 {
            let s = t.record_alloc(few, 32, now);
            t.record_free(s, 32, now + 10, false);
        }
        // Report at 10 s: the never-freed blocks are 9.9 s .. 9.8 s old.
        let at = 10_000_000_000;
        let class = |s| t.site_stats(s).unwrap().classify(&T, at).lifetime;
        assert_eq!(class(short), LifetimeClass::Short);
        assert_eq!(class(long), LifetimeClass::Long);
        assert_eq!(class(never), LifetimeClass::Long);
        assert_eq!(class(few), LifetimeClass::Unknown);
        // Never-freed blocks seen right after their allocation look short:
        // their age is all that is known.
        let fresh = SiteId::code(0x50);
        for _ in 0..10 {
            let _ = t.record_alloc(fresh, 32, at);
        }
        assert_eq!(
            t.site_stats(fresh)
                .unwrap()
                .classify(&T, at + 1000)
                .lifetime,
            LifetimeClass::Short
        );
    }

    #[test]
    fn median_uses_live_blocks_as_censored_samples() {
        let t = SiteTable::<16, 1>::new();
        let s = SiteId::code(0x10);
        // 4 short frees, 5 still live since t=0.
        for _ in 0..4 {
            let st = t.record_alloc(s, 8, 0);
            t.record_free(st, 8, 100, false);
        }
        for _ in 0..5 {
            let _ = t.record_alloc(s, 8, 0);
        }
        let st = t.site_stats(s).unwrap();
        assert_eq!(
            st.median_life_bucket(1 << 30),
            Some(crate::hist::life_bucket(1 << 30))
        );
        assert_eq!(st.classify(&T, 1 << 30).lifetime, LifetimeClass::Long);
        assert_eq!(st.classify(&T, 200).lifetime, LifetimeClass::Short);
    }
}
