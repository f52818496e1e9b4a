//! The large box: blocks above the mid tier, each in its own mapping, and
//! the cache of freed mappings (the BigCache).
//!
//! A large mapping is page aligned (2 MiB aligned when it is big enough for
//! transparent huge pages), a whole number of pages long, and starts with a
//! [`LargeHeader`]; the user pointer lies one page (or, for bigger alignments,
//! one alignment) after it. The page-map entry of the user pointer's 64 KiB
//! slot is `large(k)`, saying the header is `k` pages back. Only that slot is
//! registered: any other pointer into the mapping is not a block start and is
//! reported as invalid. Two large user pointers never share a slot, because
//! every mapping is longer than a slot.
//!
//! Freed mappings go to the [`BigCache`](cache): kept per size class (four per
//! doubling) for reuse, first with their pages ("dirty") up to a byte budget,
//! then purged with `MADV_DONTNEED` ("clean": address space only, the pages
//! come back zeroed on reuse) in batches, when the budget overflows or, after
//! the decay time, along a smooth curve (tail first), and finally unmapped.
//! A request of another size is carved from a longer dirty mapping or grown
//! (`mremap`) from a shorter one, and freed pieces of one mapping merge. A
//! live block that grows takes the cached pieces of its own mapping that
//! follow it (no system call), and a grown mapping ends on a huge-page
//! boundary, so a `realloc` chain reuses its last run's memory and faults
//! the rest in whole huge pages.
//! `MADV_DONTNEED` (rather than `MADV_FREE`) is the choice because it drops
//! RSS at once and makes reused pages read zero, so `calloc` can skip zeroing
//! them.
#![cfg_attr(not(test), no_std)]

mod cache;
mod header;
mod large;

pub use cache::{CacheLimits, CacheStats};
pub use header::{LargeAlloc, LargeHeader};
pub use large::Large;
