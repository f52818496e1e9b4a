//! The stats box: counters per tier and per size class.
//!
//! Each thread's heap owns a [`ThreadStats`] and is its only writer, so a
//! counter bump is a relaxed load and store (no locked instruction). Any
//! thread may read them at any time; [`Snapshot`] merges many threads'
//! counters on demand. Counters are bumped on slow paths only (refills,
//! spills, remote frees, slab and mapping changes): the fast paths stay free
//! of bookkeeping.
#![cfg_attr(not(test), no_std)]

use core::sync::atomic::{AtomicU64, Ordering};

/// A counter with a single writer.
#[derive(Debug, Default)]
#[repr(transparent)]
pub struct Counter(AtomicU64);

impl Counter {
    /// A zero counter.
    pub const fn new() -> Self {
        Counter(AtomicU64::new(0))
    }

    /// Adds `n`. Only the owning thread may call this.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1)
    }

    /// Reads the counter (from any thread).
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A counter many threads bump (global, rarely touched structures).
#[derive(Debug, Default)]
#[repr(transparent)]
pub struct SharedCounter(AtomicU64);

impl SharedCounter {
    /// A zero counter.
    pub const fn new() -> Self {
        SharedCounter(AtomicU64::new(0))
    }
    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Subtracts `n`.
    #[inline]
    pub fn sub(&self, n: u64) {
        self.0.fetch_sub(n, Ordering::Relaxed);
    }
    /// Reads the counter.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Slow-path events of one size class in one thread.
#[derive(Debug, Default)]
pub struct ClassCounters {
    /// Bin misses that went to a slab.
    pub refills: Counter,
    /// Blocks moved from slabs into the bin by those refills.
    pub refill_blocks: Counter,
    /// Frees that found the bin full.
    pub spills: Counter,
    /// Blocks moved from the bin back to slabs.
    pub spill_blocks: Counter,
    /// Frees of this class's blocks that belonged to another thread.
    pub remote_frees: Counter,
    /// Blocks other threads gave back, drained by this thread.
    pub remote_drained: Counter,
    /// Slabs set up for this class.
    pub slabs_created: Counter,
    /// Slabs of this class given back to their superslab.
    pub slabs_released: Counter,
}

/// Plain numbers of one class (a merged view).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ClassSnapshot {
    /// See [`ClassCounters::refills`].
    pub refills: u64,
    /// See [`ClassCounters::refill_blocks`].
    pub refill_blocks: u64,
    /// See [`ClassCounters::spills`].
    pub spills: u64,
    /// See [`ClassCounters::spill_blocks`].
    pub spill_blocks: u64,
    /// See [`ClassCounters::remote_frees`].
    pub remote_frees: u64,
    /// See [`ClassCounters::remote_drained`].
    pub remote_drained: u64,
    /// See [`ClassCounters::slabs_created`].
    pub slabs_created: u64,
    /// See [`ClassCounters::slabs_released`].
    pub slabs_released: u64,
}

impl ClassCounters {
    /// A zeroed set.
    pub const fn new() -> Self {
        ClassCounters {
            refills: Counter::new(),
            refill_blocks: Counter::new(),
            spills: Counter::new(),
            spill_blocks: Counter::new(),
            remote_frees: Counter::new(),
            remote_drained: Counter::new(),
            slabs_created: Counter::new(),
            slabs_released: Counter::new(),
        }
    }

    /// Reads all counters.
    pub fn snapshot(&self) -> ClassSnapshot {
        ClassSnapshot {
            refills: self.refills.get(),
            refill_blocks: self.refill_blocks.get(),
            spills: self.spills.get(),
            spill_blocks: self.spill_blocks.get(),
            remote_frees: self.remote_frees.get(),
            remote_drained: self.remote_drained.get(),
            slabs_created: self.slabs_created.get(),
            slabs_released: self.slabs_released.get(),
        }
    }
}

impl ClassSnapshot {
    /// Adds another snapshot into this one.
    pub fn merge(&mut self, o: &ClassSnapshot) {
        self.refills += o.refills;
        self.refill_blocks += o.refill_blocks;
        self.spills += o.spills;
        self.spill_blocks += o.spill_blocks;
        self.remote_frees += o.remote_frees;
        self.remote_drained += o.remote_drained;
        self.slabs_created += o.slabs_created;
        self.slabs_released += o.slabs_released;
    }

    /// True when nothing happened in this class.
    pub fn is_zero(&self) -> bool {
        *self == ClassSnapshot::default()
    }
}

/// The three tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// ≤ 1 KiB.
    Tiny,
    /// 1 KiB – 1 MiB.
    Mid,
    /// Above 1 MiB: direct mappings.
    Large,
}

/// One thread's counters for `N` classes.
#[derive(Debug)]
pub struct ThreadStats<const N: usize> {
    /// Per class.
    pub classes: [ClassCounters; N],
    /// Superslabs this thread took from the pool or the OS.
    pub superslabs_acquired: Counter,
    /// Superslabs it gave back.
    pub superslabs_released: Counter,
    /// Superslabs it adopted from exited threads.
    pub superslabs_adopted: Counter,
}

impl<const N: usize> Default for ThreadStats<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> ThreadStats<N> {
    /// Zeroed counters.
    pub const fn new() -> Self {
        ThreadStats {
            classes: [const { ClassCounters::new() }; N],
            superslabs_acquired: Counter::new(),
            superslabs_released: Counter::new(),
            superslabs_adopted: Counter::new(),
        }
    }
}

/// Global counters of the large tier.
#[derive(Debug, Default)]
pub struct LargeCounters {
    /// Large allocations served.
    pub allocs: SharedCounter,
    /// Large blocks freed.
    pub frees: SharedCounter,
    /// Bytes mapped for live large blocks now.
    pub bytes_live: SharedCounter,
    /// Reallocations done by resizing the mapping (in place or by moving
    /// its pages) instead of copying.
    pub resizes: SharedCounter,
}

impl LargeCounters {
    /// Zeroed counters.
    pub const fn new() -> Self {
        LargeCounters {
            allocs: SharedCounter::new(),
            frees: SharedCounter::new(),
            bytes_live: SharedCounter::new(),
            resizes: SharedCounter::new(),
        }
    }
}

/// A merged view over all threads.
#[derive(Debug, Clone)]
pub struct Snapshot<const N: usize> {
    /// Per class, summed over threads.
    pub classes: [ClassSnapshot; N],
    /// Superslabs acquired, released, adopted (summed).
    pub superslabs_acquired: u64,
    /// See [`ThreadStats::superslabs_released`].
    pub superslabs_released: u64,
    /// See [`ThreadStats::superslabs_adopted`].
    pub superslabs_adopted: u64,
    /// Threads (heaps) merged in.
    pub threads: u64,
}

impl<const N: usize> Default for Snapshot<N> {
    fn default() -> Self {
        Snapshot {
            classes: [ClassSnapshot::default(); N],
            superslabs_acquired: 0,
            superslabs_released: 0,
            superslabs_adopted: 0,
            threads: 0,
        }
    }
}

impl<const N: usize> Snapshot<N> {
    /// Adds one thread's counters.
    pub fn add_thread(&mut self, t: &ThreadStats<N>) {
        for (m, c) in self.classes.iter_mut().zip(t.classes.iter()) {
            m.merge(&c.snapshot());
        }
        self.superslabs_acquired += t.superslabs_acquired.get();
        self.superslabs_released += t.superslabs_released.get();
        self.superslabs_adopted += t.superslabs_adopted.get();
        self.threads += 1;
    }

    /// Sums a field over a range of classes (e.g. one tier).
    pub fn sum(&self, classes: core::ops::Range<usize>, f: impl Fn(&ClassSnapshot) -> u64) -> u64 {
        self.classes[classes].iter().map(f).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn single_writer_counters_are_read_by_others() {
        let t = Arc::new(ThreadStats::<4>::new());
        let w = t.clone();
        std::thread::spawn(move || {
            for _ in 0..1000 {
                w.classes[2].refills.inc();
            }
            w.classes[2].refill_blocks.add(64_000);
        })
        .join()
        .unwrap();
        let mut s = Snapshot::<4>::default();
        s.add_thread(&t);
        s.add_thread(&t);
        assert_eq!(s.classes[2].refills, 2000);
        assert_eq!(s.classes[2].refill_blocks, 128_000);
        assert!(s.classes[0].is_zero());
        assert_eq!(s.threads, 2);
        assert_eq!(s.sum(0..4, |c| c.refills), 2000);
    }

    #[test]
    fn shared_counters_are_exact_under_contention() {
        let c = Arc::new(LargeCounters::new());
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        c.allocs.add(1);
                        c.bytes_live.add(10);
                        c.bytes_live.sub(3);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(c.allocs.get(), 40_000);
        assert_eq!(c.bytes_live.get(), 280_000);
    }
}
