//! The two histograms a site keeps: request sizes and sampled lifetimes.
//!
//! Both are on a log4 scale, so a handful of buckets spans the whole range
//! and every bucket bound is a power of two.

/// Number of size buckets.
pub const SIZE_BUCKETS: usize = 12;

/// Number of lifetime buckets.
pub const LIFE_BUCKETS: usize = 13;

/// Size bucket `b < 11` holds sizes in `(SIZE_BOUNDS[b-1], SIZE_BOUNDS[b]]`
/// (bucket 0: `0..=16`); bucket 11 holds everything above 16 MiB.
///
/// The bounds 1 KiB and 1 MiB are hakmem's tier borders: buckets 0–3 are
/// the tiny tier, 4–8 the mid tier, 9–11 the large tier.
pub const SIZE_BOUNDS: [u64; SIZE_BUCKETS - 1] = [
    16,
    64,
    256,
    1 << 10,
    4 << 10,
    16 << 10,
    64 << 10,
    256 << 10,
    1 << 20,
    4 << 20,
    16 << 20,
];

/// The last size bucket of the tiny tier (≤ 1 KiB).
pub const TINY_LAST: usize = 3;
/// The last size bucket of the mid tier (≤ 1 MiB).
pub const MID_LAST: usize = 8;

/// Lifetime bucket `b < 12` holds durations below `LIFE_BOUNDS[b]` (and at
/// or above `LIFE_BOUNDS[b-1]`); bucket 12 holds 2^32 ns (≈ 4.3 s) and
/// more. Units are the caller's clock's (nanoseconds by convention): 2^10,
/// 2^12, … 2^32.
pub const LIFE_BOUNDS: [u64; LIFE_BUCKETS - 1] = [
    1 << 10,
    1 << 12,
    1 << 14,
    1 << 16,
    1 << 18,
    1 << 20,
    1 << 22,
    1 << 24,
    1 << 26,
    1 << 28,
    1 << 30,
    1 << 32,
];

/// The size bucket of a request of `size` bytes.
#[inline]
pub const fn size_bucket(size: u64) -> usize {
    if size <= 16 {
        return 0;
    }
    // ceil(log2(size)) >= 5; bucket = (ceil_log2 - 3) / 2.
    let ceil_log2 = (u64::BITS - (size - 1).leading_zeros()) as usize;
    let b = (ceil_log2 - 3) / 2;
    if b > SIZE_BUCKETS - 1 {
        SIZE_BUCKETS - 1
    } else {
        b
    }
}

/// The lifetime bucket of a duration.
#[inline]
pub const fn life_bucket(d: u64) -> usize {
    if d < 1 << 10 {
        return 0;
    }
    let floor_log2 = (u64::BITS - 1 - d.leading_zeros()) as usize;
    let b = (floor_log2 - 10) / 2 + 1;
    if b > LIFE_BUCKETS - 1 {
        LIFE_BUCKETS - 1
    } else {
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_buckets_follow_bounds() {
        assert_eq!(size_bucket(0), 0);
        assert_eq!(size_bucket(16), 0);
        for (b, &hi) in SIZE_BOUNDS.iter().enumerate() {
            assert_eq!(size_bucket(hi), b, "upper bound {hi} in bucket {b}");
            assert_eq!(
                size_bucket(hi + 1),
                b + 1,
                "{} opens bucket {}",
                hi + 1,
                b + 1
            );
        }
        assert_eq!(size_bucket(u64::MAX), SIZE_BUCKETS - 1);
        assert_eq!(SIZE_BOUNDS[TINY_LAST], 1024);
        assert_eq!(SIZE_BOUNDS[MID_LAST], 1 << 20);
    }

    #[test]
    fn life_buckets_follow_bounds() {
        assert_eq!(life_bucket(0), 0);
        for (b, &hi) in LIFE_BOUNDS.iter().enumerate() {
            assert_eq!(life_bucket(hi - 1), b, "{} below bound of {b}", hi - 1);
            assert_eq!(life_bucket(hi), b + 1, "{hi} opens bucket {}", b + 1);
        }
        assert_eq!(life_bucket(u64::MAX), LIFE_BUCKETS - 1);
    }

    proptest::proptest! {
        #[test]
        fn size_bucket_is_monotone_and_bounded(a in proptest::num::u64::ANY, b in proptest::num::u64::ANY) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            proptest::prop_assert!(size_bucket(lo) <= size_bucket(hi));
            let k = size_bucket(lo);
            if k < SIZE_BUCKETS - 1 {
                proptest::prop_assert!(lo <= SIZE_BOUNDS[k]);
            }
            if k > 0 {
                proptest::prop_assert!(lo > SIZE_BOUNDS[k - 1]);
            }
        }

        #[test]
        fn life_bucket_is_monotone_and_bounded(a in proptest::num::u64::ANY, b in proptest::num::u64::ANY) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            proptest::prop_assert!(life_bucket(lo) <= life_bucket(hi));
            let k = life_bucket(lo);
            if k < LIFE_BUCKETS - 1 {
                proptest::prop_assert!(lo < LIFE_BOUNDS[k]);
            }
            if k > 0 {
                proptest::prop_assert!(lo >= LIFE_BOUNDS[k - 1]);
            }
        }
    }
}
