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
#![cfg_attr(not(test), no_std)]

use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

pub mod file;
pub use file::{
    BufferTooSmall, Key, KeyName, ParseError, Problem, MAX_CAP, POLICY_FILE_MAX, POLICY_HEADER,
};

use hakmem_mid_mt::{mid_default_cap, MID_CLASSES};
use hakmem_tiny_sll::{tiny_size, TINY_CLASSES};

/// All tunables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrozenPolicy {
    /// Per tiny class: how many free blocks a thread's bin may hold.
    pub tiny_cap: [u16; TINY_CLASSES],
    /// Per tiny class: how many blocks one refill moves into the bin.
    pub tiny_refill: [u16; TINY_CLASSES],
    /// Per mid class: bin capacity.
    pub mid_cap: [u16; MID_CLASSES],
    /// Per mid class: refill count.
    pub mid_refill: [u16; MID_CLASSES],
    /// Mid W_MAX, in thousandths: a mid request whose bin is empty may take
    /// a cached block of a larger class up to this multiple of its size.
    pub mid_wmax_permille: u32,
    /// Bytes of freed large mappings kept with their pages (BigCache budget).
    pub large_cache_budget: usize,
    /// Largest mapping the large cache keeps.
    pub large_cache_max_block: usize,
    /// Large W_MAX, in thousandths: a cached mapping is reused for a request
    /// only if it is at most this multiple of the request.
    pub large_wmax_permille: u32,
    /// Address space of purged large mappings kept for reuse.
    pub large_clean_budget: usize,
    /// Decay: cached memory unused this long (ms) is purged.
    pub decay_ms: u64,
    /// Mappings purged (`madvise`) per batch.
    pub madvise_batch: u32,
    /// Large mappings of at least this many bytes are 2 MiB aligned and
    /// advised for transparent huge pages (the THP gate).
    pub thp_threshold: usize,
    /// Empty superslabs the pool keeps with their pages.
    pub pool_dirty: u32,
    /// Purged superslabs the pool keeps as address space.
    pub pool_clean: u32,
    /// Empty superslabs a heap keeps for itself before giving them back.
    pub heap_keep_empty: u32,
    /// Bytes of empty slabs a heap keeps (for reuse as they are) until they
    /// decay; beyond it a slab that empties goes back to its superslab at once.
    pub heap_empty_budget: usize,
}

const fn clamp(v: usize, lo: usize, hi: usize) -> usize {
    if v < lo {
        lo
    } else if v > hi {
        hi
    } else {
        v
    }
}

const fn default_policy() -> FrozenPolicy {
    let mut tiny_cap = [0u16; TINY_CLASSES];
    let mut tiny_refill = [0u16; TINY_CLASSES];
    let mut c = 0;
    while c < TINY_CLASSES {
        // about 32 KiB of cached blocks per class, 32..=512 blocks
        let cap = clamp(
            32768 / hakmem_tiny_sll::classes::TINY_SIZES[c] as usize,
            32,
            512,
        );
        tiny_cap[c] = cap as u16;
        tiny_refill[c] = clamp(cap / 2, 8, 64) as u16;
        c += 1;
    }
    let mut mid_cap = [0u16; MID_CLASSES];
    let mut mid_refill = [0u16; MID_CLASSES];
    let mut m = 0;
    while m < MID_CLASSES {
        let cap = mid_default_cap(m) as usize;
        mid_cap[m] = cap as u16;
        mid_refill[m] = clamp(cap / 2, 1, 16) as u16;
        m += 1;
    }
    FrozenPolicy {
        tiny_cap,
        tiny_refill,
        mid_cap,
        mid_refill,
        mid_wmax_permille: 1250,
        large_cache_budget: 64 << 20,
        large_cache_max_block: 64 << 20,
        large_wmax_permille: 1250,
        large_clean_budget: 1 << 30,
        decay_ms: 1000,
        madvise_batch: 8,
        thp_threshold: 2 << 20,
        pool_dirty: 32,
        pool_clean: 64,
        heap_keep_empty: 8,
        heap_empty_budget: 64 << 20,
    }
}

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
