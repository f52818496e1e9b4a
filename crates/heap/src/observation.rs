//! A heap's counters for the policy learner.

use core::sync::atomic::{AtomicU32, Ordering};

use hakmem_stats::Counter;

/// Size bins of [`Observation::sizes`] (the learner's workload signature
/// has as many; the facade checks that they agree).
pub const OBS_SIZE_BINS: usize = 20;

/// Latency samples a heap keeps (a ring).
pub const OBS_LATENCIES: usize = 64;

/// Per-heap observation counters: written by the heap's thread (inside the
/// learner's observation slices), read by the learner thread.
#[derive(Debug)]
pub struct Observation {
    /// Calls counted.
    pub calls: Counter,
    /// The counted calls by size bin (the workload's signature, whatever
    /// the policy).
    pub sizes: [Counter; OBS_SIZE_BINS],
    /// The last latency samples (ns), a ring indexed by `next % 64`.
    pub lat: [AtomicU32; OBS_LATENCIES],
    /// Samples pushed so far (wrapping).
    pub next: AtomicU32,
    /// The learner's slice in which this thread's countdown was last set
    /// (a period set in an earlier slice is not credited).
    pub slice: AtomicU32,
}

impl Default for Observation {
    fn default() -> Self {
        Self::new()
    }
}

impl Observation {
    /// Nothing counted.
    pub const fn new() -> Self {
        Observation {
            calls: Counter::new(),
            sizes: [const { Counter::new() }; OBS_SIZE_BINS],
            lat: [const { AtomicU32::new(0) }; OBS_LATENCIES],
            next: AtomicU32::new(0),
            slice: AtomicU32::new(u32::MAX),
        }
    }

    /// Records the latency of a call, `ns` nanoseconds (stored as at least
    /// 1: 0 marks an empty sample).
    pub fn push_latency(&self, ns: u32) {
        let i = self.next.load(Ordering::Relaxed);
        self.lat[i as usize % OBS_LATENCIES].store(ns.max(1), Ordering::Relaxed);
        self.next.store(i.wrapping_add(1), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_form_a_ring_of_nonzero_samples() {
        let o = Observation::new();
        for ns in 0..70u32 {
            o.push_latency(ns);
        }
        assert_eq!(o.next.load(Ordering::Relaxed), 70);
        // samples 64..70 overwrote slots 0..6
        assert_eq!(o.lat[0].load(Ordering::Relaxed), 64);
        assert_eq!(o.lat[5].load(Ordering::Relaxed), 69);
        assert_eq!(o.lat[6].load(Ordering::Relaxed), 6);
        assert!(o.lat.iter().all(|l| l.load(Ordering::Relaxed) >= 1));
    }
}
