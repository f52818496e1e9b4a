//! A site's merged counters and what is derived from them.

use crate::classify::{lifetime_class, policy_class, Class, Thresholds};
use crate::hist::{life_bucket, LIFE_BUCKETS, MID_LAST, SIZE_BUCKETS, TINY_LAST};
use crate::id::SiteId;

/// The counters of one site, summed over its stripes (plain numbers).
///
/// Counts are *records*: for a [`SampledCode`](crate::SiteKind::SampledCode)
/// site each stands for `weight` calls; the `est_*` methods scale them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SiteStats {
    /// The site.
    pub site: SiteId,
    /// Its slot (the table's capacity for "other").
    pub slot: usize,
    /// Calls each record stands for (1, or 2^sample_shift).
    pub weight: u64,
    /// Recorded allocations.
    pub allocs: u64,
    /// Recorded frees.
    pub frees: u64,
    /// Bytes requested by the recorded allocations.
    pub bytes: u64,
    /// Bytes of the recorded frees.
    pub freed_bytes: u64,
    /// Recorded frees made by a thread other than the allocating one.
    pub remote_frees: u64,
    /// Largest recorded request.
    pub max_size: u64,
    /// Sum of the recorded lifetimes (alloc → free), in clock units.
    pub lifetime_sum: u64,
    /// Sum (wrapping) of the allocation times of recorded blocks not yet
    /// freed; with `now` it gives their mean age.
    pub live_time_sum: u64,
    /// Recorded allocations per size bucket ([`SIZE_BOUNDS`](crate::SIZE_BOUNDS)).
    pub size_hist: [u64; SIZE_BUCKETS],
    /// Recorded frees per lifetime bucket ([`LIFE_BOUNDS`](crate::LIFE_BOUNDS)).
    pub life_hist: [u64; LIFE_BUCKETS],
}

impl SiteStats {
    /// Recorded blocks not yet freed.
    pub fn live_blocks(&self) -> u64 {
        self.allocs.saturating_sub(self.frees)
    }

    /// Bytes of recorded blocks not yet freed.
    pub fn live_bytes(&self) -> u64 {
        self.bytes.saturating_sub(self.freed_bytes)
    }

    /// Frees by the allocating thread.
    pub fn local_frees(&self) -> u64 {
        self.frees.saturating_sub(self.remote_frees)
    }

    /// Mean request size (0 without allocations).
    pub fn avg_size(&self) -> u64 {
        self.bytes.checked_div(self.allocs).unwrap_or(0)
    }

    /// Estimated allocations (records × weight).
    pub fn est_allocs(&self) -> u64 {
        self.allocs.saturating_mul(self.weight)
    }

    /// Estimated frees.
    pub fn est_frees(&self) -> u64 {
        self.frees.saturating_mul(self.weight)
    }

    /// Estimated bytes allocated.
    pub fn est_bytes(&self) -> u64 {
        self.bytes.saturating_mul(self.weight)
    }

    /// Estimated live bytes.
    pub fn est_live_bytes(&self) -> u64 {
        self.live_bytes().saturating_mul(self.weight)
    }

    /// Mean recorded lifetime of freed blocks.
    pub fn mean_lifetime(&self) -> Option<u64> {
        self.lifetime_sum.checked_div(self.frees)
    }

    /// Mean age at `now` of the recorded blocks still live.
    pub fn mean_live_age(&self, now: u64) -> Option<u64> {
        let live = self.live_blocks();
        if live == 0 {
            return None;
        }
        let ages = now.wrapping_mul(live).wrapping_sub(self.live_time_sum);
        // A racing snapshot can see a free before its allocation; an age
        // beyond `now` is such noise.
        Some((ages / live).min(now))
    }

    /// Allocations per tier: tiny (≤ 1 KiB), mid (≤ 1 MiB), large.
    pub fn tier_counts(&self) -> [u64; 3] {
        let h = &self.size_hist;
        [
            h[..=TINY_LAST].iter().sum(),
            h[TINY_LAST + 1..=MID_LAST].iter().sum(),
            h[MID_LAST + 1..].iter().sum(),
        ]
    }

    /// Lifetime observations: the freed blocks' lifetimes plus the live
    /// blocks, each counted at the bucket of their mean age (a lower bound
    /// of their lifetime: censored observations).
    pub fn lifetime_samples(&self, now: u64) -> ([u64; LIFE_BUCKETS], u64) {
        let mut h = self.life_hist;
        let live = self.live_blocks();
        if let Some(age) = self.mean_live_age(now) {
            h[life_bucket(age)] += live;
        }
        let n = h.iter().sum();
        (h, n)
    }

    /// The lifetime bucket holding the median observation (see
    /// [`lifetime_samples`](Self::lifetime_samples)), if any.
    pub fn median_life_bucket(&self, now: u64) -> Option<usize> {
        let (h, n) = self.lifetime_samples(now);
        if n == 0 {
            return None;
        }
        let half = n.div_ceil(2);
        let mut acc = 0;
        for (b, &c) in h.iter().enumerate() {
            acc += c;
            if acc >= half {
                return Some(b);
            }
        }
        Some(LIFE_BUCKETS - 1)
    }

    /// The inferred class of this site at time `now` (see
    /// [`crate::classify`]).
    pub fn classify(&self, th: &Thresholds, now: u64) -> Class {
        let (_, samples) = self.lifetime_samples(now);
        Class {
            policy: policy_class(self.avg_size(), self.est_allocs(), th),
            lifetime: lifetime_class(self.median_life_bucket(now), samples, th),
        }
    }
}
