//! The policy box: every tunable of the allocator in one snapshot.
//!
//! Slow paths read the current [`FrozenPolicy`] through a [`PolicyCell`]
//! once per call: one atomic load, no lock, no allocation. Publishing a new
//! policy swaps a pointer and bumps a generation number, which heaps compare
//! against the generation they last applied to notice a change cheaply.
//!
//! Snapshots are `'static`: the publisher keeps them alive (the default is a
//! `static`; a learner keeps its published policies), so a reader can never
//! hold a dangling snapshot.
//!
//! Every field is defined once, in the table of `fields.rs`: the struct,
//! [`DEFAULT_POLICY`], the policy file's keys ([`Key`]: names, ranges,
//! comments), [`FrozenPolicy::validate`] and the [`FIELDS`] descriptors
//! that the learner's knobs, the options and `xtask` iterate are all
//! generated from it. Adding a field there is the whole change.
#![cfg_attr(not(test), no_std)]

use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

pub mod budget;
mod fields;
pub mod file;
pub use budget::Pressure;
pub use fields::{FieldInfo, FrozenPolicy, Key, Unit, FIELDS, MAX_CAP};
pub use file::{BufferTooSmall, KeyName, ParseError, Problem, POLICY_FILE_MAX, POLICY_HEADER};

use fields::default_policy;
use hakmem_mid_mt::MID_CLASSES;
use hakmem_tiny_sll::{tiny_size, TINY_CLASSES};

/// The built-in policy ("balanced").
pub static DEFAULT_POLICY: FrozenPolicy = default_policy();

impl FrozenPolicy {
    /// Bin capacity of a class in the allocator's joint numbering (tiny
    /// classes first, then mid classes).
    #[inline]
    pub fn cap(&self, class: usize) -> u32 {
        if class < TINY_CLASSES {
            self.tiny_cap[class] as u32
        } else {
            self.mid_cap[class - TINY_CLASSES] as u32
        }
    }

    /// Refill count of a class in the joint numbering (at least 1).
    #[inline]
    pub fn refill(&self, class: usize) -> u32 {
        let r = if class < TINY_CLASSES {
            self.tiny_refill[class]
        } else {
            self.mid_refill[class - TINY_CLASSES]
        };
        (r as u32).max(1)
    }

    /// Bytes a full set of bins may hold (a bound on per-thread caching).
    pub fn max_cached_bytes(&self) -> usize {
        let tiny: usize = (0..TINY_CLASSES)
            .map(|c| self.tiny_cap[c] as usize * tiny_size(c))
            .sum();
        let mid: usize = (0..MID_CLASSES)
            .map(|c| self.mid_cap[c] as usize * hakmem_mid_mt::mid_size(c))
            .sum();
        tiny + mid
    }
}

/// Where the current policy is published.
#[derive(Debug)]
pub struct PolicyCell {
    current: AtomicPtr<FrozenPolicy>,
    generation: AtomicU64,
}

impl PolicyCell {
    /// A cell holding `initial` at generation 1.
    pub const fn new(initial: &'static FrozenPolicy) -> Self {
        PolicyCell {
            current: AtomicPtr::new(initial as *const _ as *mut _),
            generation: AtomicU64::new(1),
        }
    }

    /// The current snapshot.
    #[inline]
    pub fn load(&self) -> &'static FrozenPolicy {
        // SAFETY: only `'static` snapshots are ever stored.
        unsafe { &*self.current.load(Ordering::Acquire) }
    }

    /// The generation of the current snapshot (bumped by every publish).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Publishes a new snapshot; readers see it from their next slow path.
    pub fn publish(&self, p: &'static FrozenPolicy) {
        self.current
            .store(p as *const _ as *mut _, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_sane() {
        let p = &DEFAULT_POLICY;
        for c in 0..TINY_CLASSES + MID_CLASSES {
            assert!(p.cap(c) >= 1, "class {c}");
            assert!(p.refill(c) >= 1 && p.refill(c) <= p.cap(c), "class {c}");
        }
        assert!(p.max_cached_bytes() < 64 << 20, "{}", p.max_cached_bytes());
        assert!(p.large_cache_max_block <= p.large_cache_budget);
        assert!(p.mid_wmax_permille >= 1000 && p.large_wmax_permille >= 1000);
        assert!(p.madvise_batch >= 1 && p.decay_ms > 0);
    }

    #[test]
    fn publish_bumps_generation_and_swaps() {
        static OTHER: FrozenPolicy = {
            let mut p = default_policy();
            p.tiny_cap[0] = 7;
            p
        };
        let cell = PolicyCell::new(&DEFAULT_POLICY);
        let g = cell.generation();
        assert_eq!(cell.load().tiny_cap[0], DEFAULT_POLICY.tiny_cap[0]);
        cell.publish(&OTHER);
        assert_eq!(cell.generation(), g + 1);
        assert_eq!(cell.load().cap(0), 7);
    }
}
