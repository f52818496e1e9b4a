//! The allocator's joint class numbering: tiny classes first (0..32, 16 B to
//! 1 KiB), then mid classes (32..112, up to 1 MiB). A superslab's class byte and a heap's bin index
//! are this number; bins beyond it (and [`NO_CLASS`]) are disabled.

use hakmem_mid_mt::{mid_class, mid_size, mid_span, MID_CLASSES, MID_MAX};
use hakmem_superslab::NO_CLASS;
use hakmem_tiny_sll::{tiny_class, tiny_size, TINY_CLASSES, TINY_MAX};

/// Number of classes served from superslabs.
pub const NCLASSES: usize = TINY_CLASSES + MID_CLASSES;
/// Bins per heap: one per possible class byte, so the free fast path can
/// index with any byte it reads (unused bins stay disabled).
pub const NBINS: usize = 256;

const _: () = assert!(NCLASSES <= NO_CLASS as usize);

/// Size of a heap's bin (a [`hakmem_tiny_sll::Bin`]): the fast paths scale
/// class numbers by it.
pub const BIN_BYTES: usize = core::mem::size_of::<hakmem_tiny_sll::Bin>();

/// `TINY_BIN_OFFSET[size]` is the byte offset of the bin of a tiny `size`
/// in a heap (`tiny_class(size) * BIN_BYTES`): the malloc fast paths index
/// it with the size itself and add the result to the heap pointer, with no
/// rounding or scaling. Each heap keeps a copy next to its bins
/// (`Heap::size_bins`), which is what the fast paths read.
pub const TINY_BIN_OFFSET: [u16; TINY_MAX + 1] = {
    let sizes = hakmem_tiny_sll::classes::TINY_SIZES;
    let mut t = [0u16; TINY_MAX + 1];
    let mut i = 0;
    while i < t.len() {
        let mut c = 0;
        while (sizes[c] as usize) < i {
            c += 1;
        }
        t[i] = (c * BIN_BYTES) as u16;
        i += 1;
    }
    t
};

/// The largest request served from superslabs.
pub const SLAB_MAX: usize = MID_MAX;

/// The class of `size` (`size <= SLAB_MAX`).
#[inline]
pub fn class_of(size: usize) -> usize {
    if size <= TINY_MAX {
        tiny_class(size)
    } else {
        TINY_CLASSES + mid_class(size)
    }
}

/// Block size of a class.
#[inline]
pub fn class_size(class: usize) -> usize {
    if class < TINY_CLASSES {
        tiny_size(class)
    } else {
        mid_size(class - TINY_CLASSES)
    }
}

/// Slots a slab of the class spans.
#[inline]
pub fn class_span(class: usize) -> usize {
    if class < TINY_CLASSES {
        1
    } else {
        mid_span(class - TINY_CLASSES)
    }
}

/// The class serving `size` bytes aligned to `align` (a power of two up to
/// a slot, 64 KiB): the smallest class at least `size` and `align` whose
/// block size is a multiple of `align` (slabs start on slot boundaries, so
/// every block of such a class is aligned). `None` if no class fits.
pub fn class_for_aligned(size: usize, align: usize) -> Option<usize> {
    debug_assert!(align.is_power_of_two());
    let need = size.max(align);
    if need > SLAB_MAX {
        return None;
    }
    (class_of(need)..NCLASSES).find(|&c| class_size(c).is_multiple_of(align))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_ascending_and_cover_everything() {
        for c in 1..NCLASSES {
            assert!(class_size(c) > class_size(c - 1));
        }
        assert_eq!(class_size(NCLASSES - 1), SLAB_MAX);
        for size in (0..=SLAB_MAX).step_by(7) {
            let c = class_of(size);
            assert!(class_size(c) >= size);
            assert!(c == 0 || class_size(c - 1) < size);
        }
    }

    #[test]
    fn bin_offsets_match_classes() {
        for (size, &off) in TINY_BIN_OFFSET.iter().enumerate() {
            assert_eq!(off as usize, tiny_class(size) * BIN_BYTES);
        }
    }

    #[test]
    fn slab_geometry_agrees_with_the_superslab_layout() {
        for c in 0..NCLASSES {
            let (size, span) = (class_size(c), class_span(c));
            let blocks = hakmem_superslab::slab_capacity(size, span);
            assert!(blocks >= 1, "class {c}");
            // the slab's remote word counts its remote blocks in 16 bits
            assert!(
                blocks < hakmem_superslab::MAX_SLAB_BLOCKS,
                "class {c}: {blocks}"
            );
            if c >= hakmem_tiny_sll::TINY_CLASSES {
                assert_eq!(
                    blocks,
                    hakmem_mid_mt::mid_blocks(c - hakmem_tiny_sll::TINY_CLASSES, span)
                );
            }
            if size <= 128 << 10 {
                assert!(blocks >= 8, "class {c} ({size} B) holds {blocks}");
            }
        }
    }

    #[test]
    fn aligned_classes_are_multiples() {
        for align_log in 3..=16 {
            let align = 1usize << align_log;
            for size in [1usize, 7, 8, 24, 100, 1000, 4097, 65536, 300_000] {
                if let Some(c) = class_for_aligned(size, align) {
                    assert_eq!(class_size(c) % align, 0);
                    assert!(class_size(c) >= size);
                }
            }
            assert!(class_for_aligned(1, align).is_some());
        }
        assert!(class_for_aligned(SLAB_MAX + 1, 16).is_none());
    }
}
