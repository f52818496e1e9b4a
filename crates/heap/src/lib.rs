//! The heap box: the part of hakmem that ties the boxes together into an
//! allocator, generic over the platform.
//!
//! It owns:
//! * [`Heap`]: one thread's bins (the fast paths read them) and the
//!   superslabs it owns, with everything the slow paths do: refills from
//!   slabs, spills back to slabs, draining remote frees, finding, adopting
//!   or acquiring superslabs, purging idle slots (per-heap decay), giving
//!   memory back when out of memory, and giving everything back (to the
//!   pool and the orphanage) when its thread exits;
//! * [`Registry`]: every heap ever created, and the free ones;
//! * [`classes`]: the joint class numbering of tiny and mid blocks;
//! * [`Observation`]: a heap's counters for the policy learner.
//!
//! What the heap shares with the rest of the allocator — the page map, the
//! superslab pool, the orphanage, the policy cell — and the few things it
//! asks of the facade (a decay tick, reclaiming shared caches when out of
//! memory, secure mode's handling of fresh blocks) come from a [`HeapEnv`]:
//! a type whose associated functions return `&'static` references to
//! statics, so that `Heap<E>` reaches them by static dispatch, with no
//! pointer in the heap and no extra instruction on any path. The facade has
//! one (`type Pal = Linux`); tests build others over
//! `hakmem_platform::fake`.
//!
//! # Layout
//!
//! `Heap` is `#[repr(C, align(64))]` with `bins: [Bin; NBINS]` first, then
//! `key`, `mark`, `tag`: the fast paths (Rust and hand-written assembly) add
//! a bin's byte offset (`class * BIN_BYTES`, from a table or from
//! `entry ^ key`) to the heap pointer. The layout does not depend on the
//! environment type.
//!
//! # Invariants
//!
//! The owner thread alone touches a heap, except its pending list, its
//! counters, and its slab and superslab lists, which a *visitor* (the
//! facade's background thread, or `collect` on another thread) may touch
//! through [`Heap::visit`] while it holds the heap's maintenance lock (the
//! owner's slow paths take the same lock; a visitor never touches the bins
//! or the remote batches, which the owner's fast and free paths use with no
//! lock):
//! * every block in `bins[c]` is a free block of class `c` in a superslab
//!   this heap owns;
//! * `current[c]` is null or a slab of class `c` in state `CURRENT`; every
//!   slab on `partial[c]` is in state `PARTIAL` and has a free block (or is
//!   empty and `RETAINED`, counted in `empty_bytes`); other slabs of the
//!   heap are `FULL` (no free block when last looked at) or `CURRENT`;
//! * every superslab the heap owns is on `spaces` (some slot free) or
//!   `fulls` (no slot free), and its page-map entries carry the heap's tag;
//! * heaps are never unmapped (superslab headers point at their pending
//!   lists); a heap keeps its tag for life.
//!
//! [`Heap::check`] validates all of this from the owner thread and
//! [`Registry::check`] the registry's bookkeeping; an environment whose
//! [`HeapEnv::checking`] is true has each heap check itself on entry to
//! every refill, before every spill and before [`Heap::release_all`].
//!
//! Nothing here allocates through the global allocator: the crate is
//! `no_std` outside its tests.
#![cfg_attr(not(test), no_std)]

pub mod classes;
mod env;
mod heap;
mod heaps;
mod observation;

pub use env::{pool_limits, HeapEnv};
pub use heap::{
    drain_cap, Heap, Placeholder, DRAIN_AFTER_BYTES, DRAIN_BIN_BYTES, GROWTH_BYTES,
    HEAP_KEY_OFFSET, HEAP_MARK_OFFSET, HEAP_SIZE_BINS_OFFSET, MAX_GROWTH,
};
pub use heaps::Registry;
pub use observation::{Observation, OBS_SIZE_BINS};
