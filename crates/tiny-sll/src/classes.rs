//! Tiny size classes: 16-byte multiples up to 1 KiB.
//!
//! Every class is a multiple of 16, so every tiny block is aligned like
//! `max_align_t`, and every free block has room for its two list words (the
//! link and the free mark, see [`crate::Block`]). Within each doubling above
//! 128 B there are eight
//! classes, so the rounding waste `(class - size) / size` stays at or below
//! 12.5% from 128 B up; between 64 B and 128 B the 16-byte granule (needed for
//! alignment) bounds it at 15/65 ≈ 23%, the same table mimalloc and jemalloc use.

/// The largest tiny request.
pub const TINY_MAX: usize = 1024;

/// Number of tiny classes.
pub const TINY_CLASSES: usize = 32;

/// Block size of each tiny class, ascending.
pub const TINY_SIZES: [u32; TINY_CLASSES] = build_sizes();

const fn build_sizes() -> [u32; TINY_CLASSES] {
    let mut s = [0u32; TINY_CLASSES];
    let mut i = 0;
    // 16..=128 by 16
    let mut v = 16;
    while v <= 128 {
        s[i] = v;
        i += 1;
        v += 16;
    }
    // eight classes per doubling: 144..=256 by 16, 288..=512 by 32, 576..=1024 by 64
    let mut base = 128;
    while base < 1024 {
        let step = base / 8;
        let mut k = 1;
        while k <= 8 {
            s[i] = base + k * step;
            i += 1;
            k += 1;
        }
        base *= 2;
    }
    assert!(i == TINY_CLASSES);
    s
}

/// `CLASS_OF[(size + 7) / 8]` is the class of `size` for `size <= TINY_MAX`.
static CLASS_OF: [u8; TINY_MAX / 8 + 1] = build_lookup();

const fn build_lookup() -> [u8; TINY_MAX / 8 + 1] {
    let mut t = [0u8; TINY_MAX / 8 + 1];
    let mut i = 0;
    while i < t.len() {
        let size = (i * 8) as u32;
        let mut c = 0;
        while TINY_SIZES[c] < size {
            c += 1;
        }
        t[i] = c as u8;
        i += 1;
    }
    t
}

/// The tiny class serving `size`. `size` must be at most [`TINY_MAX`];
/// `size == 0` maps to the smallest class (16 B).
#[inline(always)]
pub fn tiny_class(size: usize) -> usize {
    debug_assert!(size <= TINY_MAX);
    // SAFETY: size <= TINY_MAX, so the index is at most TINY_MAX / 8.
    unsafe { *CLASS_OF.get_unchecked((size + 7) >> 3) as usize }
}

/// The block size of tiny class `class`.
#[inline]
pub fn tiny_size(class: usize) -> usize {
    TINY_SIZES[class] as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_gets_the_smallest_fitting_class() {
        for size in 0..=TINY_MAX {
            let c = tiny_class(size);
            assert!(tiny_size(c) >= size.max(1), "size {size} class {c}");
            if c > 0 {
                assert!(
                    tiny_size(c - 1) < size,
                    "size {size} could use class {}",
                    c - 1
                );
            }
        }
    }

    #[test]
    fn classes_are_aligned_ascending_and_end_at_tiny_max() {
        for w in TINY_SIZES.windows(2) {
            assert!(w[0] < w[1]);
        }
        for &s in &TINY_SIZES {
            assert_eq!(s % 16, 0, "class {s} breaks 16-byte alignment");
        }
        assert_eq!(TINY_SIZES[0], 16, "every block holds two words");
        assert_eq!(*TINY_SIZES.last().unwrap() as usize, TINY_MAX);
    }

    #[test]
    fn waste_bounds() {
        for size in 64..=TINY_MAX {
            let waste = (tiny_size(tiny_class(size)) - size) as f64 / size as f64;
            let bound = if size >= 128 { 0.125 } else { 15.0 / 65.0 };
            assert!(
                waste <= bound + 1e-9,
                "size {size}: waste {waste:.3} > {bound:.3}"
            );
        }
    }
}
