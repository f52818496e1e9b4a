//! The mid box: size classes and slab geometry for 1 KiB < size ≤ 1 MiB.
//!
//! Mid blocks live in the same superslabs as tiny ones and move through the
//! same per-thread bins: a mid `free` takes the same fast path as a tiny one
//! (up to 32 KiB; bigger blocks are checked on the slow path), a mid
//! `malloc` pops its bin on the slow path, after a leading-zero count finds
//! the class. What is mid-specific is decided here:
//!
//! * the classes: eight per doubling, so rounding waste stays ≤ 12.5%;
//! * the slab span: how many 64 KiB slots a slab of a class covers, so that
//!   a slab holds about eight blocks while never exceeding 1 MiB;
//! * the default bin capacity: bounded in bytes, because a cached 512 KiB
//!   block is worth far more than a cached 32-byte one.
#![cfg_attr(not(test), no_std)]

/// The smallest mid block size is just above this.
pub const MID_MIN_EXCLUSIVE: usize = 1024;
/// The largest mid request.
pub const MID_MAX: usize = 1 << 20;
/// Number of mid classes.
pub const MID_CLASSES: usize = 80;
/// Slot size the geometry is expressed in (a superslab slot).
pub const SLOT: usize = 64 << 10;

/// The mid class (0-based) for `1024 < size ≤ 1 MiB`.
#[inline(always)]
pub fn mid_class(size: usize) -> usize {
    debug_assert!(size > MID_MIN_EXCLUSIVE && size <= MID_MAX);
    let s = size - 1;
    let lg = (usize::BITS - 1 - s.leading_zeros()) as usize; // floor(log2(size - 1)), 10..=19
    ((lg - 10) << 3) + ((s >> (lg - 3)) & 7)
}

/// The block size of mid class `class`.
#[inline]
pub const fn mid_size(class: usize) -> usize {
    let lg = 10 + (class >> 3);
    let base = 1usize << lg;
    base + ((class & 7) + 1) * (base >> 3)
}

/// How many blocks of mid class `class` a slab of `span` slots holds: blocks
/// up to half a slot are laid out slot by slot (`SLOT / size` per slot, none
/// straddling a slot boundary: the superslab box's layout), bigger ones back
/// to back.
#[inline]
pub const fn mid_blocks(class: usize, span: usize) -> usize {
    let size = mid_size(class);
    if size <= SLOT / 2 {
        span * (SLOT / size)
    } else {
        span * SLOT / size
    }
}

/// How many 64 KiB slots a slab of mid class `class` spans: enough for eight
/// blocks but at most 16 slots (1 MiB); where 16 slots would hold fewer than
/// two blocks, exactly the slots one block needs.
#[inline]
pub const fn mid_span(class: usize) -> usize {
    let size = mid_size(class);
    if size <= SLOT / 2 {
        return 8usize.div_ceil(SLOT / size);
    }
    let eight = (8 * size).div_ceil(SLOT);
    let span = if eight < 16 { eight } else { 16 };
    if span * SLOT / size >= 2 {
        span
    } else {
        size.div_ceil(SLOT)
    }
}

/// Default per-thread bin capacity (blocks) for a mid class: about 256 KiB of
/// cached blocks, at least two and at most 32.
#[inline]
pub const fn mid_default_cap(class: usize) -> u32 {
    let n = (256 << 10) / mid_size(class);
    if n < 2 {
        2
    } else if n > 32 {
        32
    } else {
        n as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any mid size maps to the smallest class that holds it, and a slab
        /// of that class fits in a superslab and holds the block.
        #[test]
        fn any_size_gets_a_fitting_class(size in (MID_MIN_EXCLUSIVE + 1)..=MID_MAX) {
            let c = mid_class(size);
            prop_assert!(c < MID_CLASSES);
            prop_assert!(mid_size(c) >= size);
            prop_assert!(c == 0 || mid_size(c - 1) < size);
            prop_assert!(mid_blocks(c, mid_span(c)) >= 1);
            prop_assert!(mid_span(c) <= 31, "fits in a superslab's 31 block slots");
        }
    }

    #[test]
    fn classes_cover_the_range_tightly() {
        assert_eq!(mid_size(0), 1152);
        assert_eq!(mid_size(MID_CLASSES - 1), MID_MAX);
        let mut size = MID_MIN_EXCLUSIVE + 1;
        while size <= MID_MAX {
            let c = mid_class(size);
            assert!(c < MID_CLASSES);
            assert!(mid_size(c) >= size, "size {size} class {c}");
            if c > 0 {
                assert!(mid_size(c - 1) < size, "size {size} fits class {}", c - 1);
            }
            let waste = (mid_size(c) - size) as f64 / size as f64;
            assert!(waste <= 0.125, "size {size} waste {waste}");
            size += if size < 8192 { 1 } else { 97 };
        }
        for c in 0..MID_CLASSES {
            assert_eq!(mid_class(mid_size(c)), c);
            assert_eq!(
                mid_size(c) % 128,
                0,
                "mid blocks stay 128-byte aligned in a 64 KiB slot"
            );
        }
    }

    #[test]
    fn spans_hold_blocks_and_stay_bounded() {
        for c in 0..MID_CLASSES {
            let span = mid_span(c);
            assert!((1..=16).contains(&span), "class {c} span {span}");
            let blocks = mid_blocks(c, span);
            assert!(blocks >= 1);
            if mid_size(c) <= 128 << 10 {
                assert!(blocks >= 8, "class {c} holds only {blocks}");
            }
        }
    }

    #[test]
    fn caps_are_byte_bounded() {
        for c in 0..MID_CLASSES {
            let cap = mid_default_cap(c) as usize;
            assert!((2..=32).contains(&cap));
            assert!(cap == 2 || cap * mid_size(c) <= 256 << 10);
        }
    }
}
