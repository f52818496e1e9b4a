//! The size-class distribution signature: what share of a window's
//! allocations fell in each power-of-two size bin. The lifecycle compares
//! signatures (L1 distance) to notice a phase change; the learner uses the
//! raw counts to skip knobs of tiers a program does not use.

/// Number of size bins: `≤ 8 B`, `(8, 16]`, …, `(512 KiB, 1 MiB]`,
/// `(1, 2] MiB`, `> 2 MiB`.
pub const SIG_BINS: usize = 20;

/// The bin of an allocation of `size` bytes: `ceil(log2(size)) - 3`,
/// clamped to `0..SIG_BINS`. Tiny sizes (≤ 1 KiB) are bins 0..=7, mid
/// sizes (1 KiB, 1 MiB] bins 8..=17, large sizes 18 and 19.
pub const fn size_bin(size: usize) -> usize {
    if size <= 8 {
        return 0;
    }
    let lg = (usize::BITS - (size - 1).leading_zeros()) as usize; // ceil(log2(size))
    let b = lg - 3;
    if b >= SIG_BINS {
        SIG_BINS - 1
    } else {
        b
    }
}

/// The bin of a size class in the allocator's joint numbering (tiny
/// classes first, then mid classes), for filling a window's histogram from
/// per-class counters. Classes past the last mid class map to the large
/// bin 18.
pub fn class_bin(class: usize) -> usize {
    use hakmem_mid_mt::{mid_size, MID_CLASSES};
    use hakmem_tiny_sll::{tiny_size, TINY_CLASSES};
    if class < TINY_CLASSES {
        size_bin(tiny_size(class))
    } else if class < TINY_CLASSES + MID_CLASSES {
        size_bin(mid_size(class - TINY_CLASSES))
    } else {
        size_bin((1 << 20) + 1)
    }
}

/// A normalised histogram (shares summing to 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Signature {
    share: [f64; SIG_BINS],
}

impl Signature {
    /// The signature of per-bin counts; `None` when they are all zero.
    pub fn from_counts(counts: &[u64; SIG_BINS]) -> Option<Signature> {
        let total: u64 = counts.iter().fold(0u64, |a, &c| a.saturating_add(c));
        if total == 0 {
            return None;
        }
        let mut share = [0.0; SIG_BINS];
        for (s, &c) in share.iter_mut().zip(counts) {
            *s = c as f64 / total as f64;
        }
        Some(Signature { share })
    }

    /// The share of bin `b`.
    pub fn share(&self, b: usize) -> f64 {
        self.share.get(b).copied().unwrap_or(0.0)
    }

    /// L1 distance, in `[0, 2]`: 0 for equal distributions, 2 for disjoint
    /// ones.
    pub fn l1(&self, other: &Signature) -> f64 {
        self.share
            .iter()
            .zip(&other.share)
            .map(|(a, b)| (a - b).abs())
            .sum()
    }

    /// Moves `self` towards `other` by `alpha` (an exponential moving
    /// average; the result stays normalised).
    pub fn blend(&mut self, other: &Signature, alpha: f64) {
        for (s, o) in self.share.iter_mut().zip(&other.share) {
            *s += alpha * (o - *s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hakmem_mid_mt::MID_CLASSES;
    use hakmem_tiny_sll::TINY_CLASSES;

    #[test]
    fn bins_follow_powers_of_two() {
        assert_eq!(size_bin(0), 0);
        assert_eq!(size_bin(8), 0);
        assert_eq!(size_bin(9), 1);
        assert_eq!(size_bin(16), 1);
        assert_eq!(size_bin(1024), 7);
        assert_eq!(size_bin(1025), 8);
        assert_eq!(size_bin(1 << 20), 17);
        assert_eq!(size_bin((1 << 20) + 1), 18);
        assert_eq!(size_bin(2 << 20), 18);
        assert_eq!(size_bin((2 << 20) + 1), 19);
        assert_eq!(size_bin(usize::MAX), 19);
        for c in 0..TINY_CLASSES {
            assert!(class_bin(c) <= 7);
        }
        for c in TINY_CLASSES..TINY_CLASSES + MID_CLASSES {
            assert!((8..=17).contains(&class_bin(c)));
        }
        assert_eq!(class_bin(TINY_CLASSES + MID_CLASSES), 18);
    }

    #[test]
    fn signatures_and_distance() {
        let mut a = [0u64; SIG_BINS];
        assert_eq!(Signature::from_counts(&a), None);
        a[2] = 30;
        a[3] = 10;
        let sa = Signature::from_counts(&a).unwrap();
        assert_eq!(sa.share(2), 0.75);
        assert_eq!(sa.share(99), 0.0);
        assert_eq!(sa.l1(&sa), 0.0);
        let mut b = [0u64; SIG_BINS];
        b[10] = 5;
        let sb = Signature::from_counts(&b).unwrap();
        assert!((sa.l1(&sb) - 2.0).abs() < 1e-12);
        let mut c = a;
        c[3] = 30; // 50/50 instead of 75/25
        let sc = Signature::from_counts(&c).unwrap();
        assert!((sa.l1(&sc) - 0.5).abs() < 1e-12);
        let mut m = sa;
        m.blend(&sb, 0.5);
        assert!((m.l1(&sa) - 1.0).abs() < 1e-12);
        let total: f64 = (0..SIG_BINS).map(|b| m.share(b)).sum();
        assert!((total - 1.0).abs() < 1e-12);
        // saturating totals
        let huge = [u64::MAX; SIG_BINS];
        assert!(Signature::from_counts(&huge).is_some());
    }
}
