//! What a heap needs from the allocator around it.

use hakmem_pagemap::PageMap;
use hakmem_platform::Pal;
use hakmem_policy_rcu::{FrozenPolicy, PolicyCell};
use hakmem_superslab::{Orphanage, PoolLimits, SuperslabPool};

/// The environment of a [`Heap`](crate::Heap): the shared structures and
/// the facade's hooks.
///
/// Implemented by a zero-sized type whose functions return `&'static`
/// references to statics (Rust has no generic statics, so each environment
/// declares its own): after monomorphisation a call is the static's
/// address, exactly what the code referring to the static directly was.
///
/// All heaps of one environment share its structures; superslabs, blocks
/// and heaps never cross environments.
pub trait HeapEnv: Sized + 'static {
    /// The platform superslabs and heaps are mapped from.
    type Pal: Pal;

    /// The registry of every chunk (shared with the large tier).
    fn page_map() -> &'static PageMap;

    /// Empty superslabs, and where new ones are mapped.
    fn pool() -> &'static SuperslabPool<Self::Pal>;

    /// Superslabs of exited threads.
    fn orphanage() -> &'static Orphanage;

    /// The current policy (shared with the large tier).
    fn policy() -> &'static PolicyCell;

    /// A heap's refill counter wrapped (every 256 refills of any heap): the
    /// shared caches may decay (the facade rate-limits this and purges the
    /// pool and the large cache).
    fn decay_tick();

    /// A superslab could not be mapped: give every cached superslab (and
    /// whatever else the environment caches) back to the platform so that a
    /// retry can succeed. The calling heap has already given back its own.
    fn reclaim_shared();

    /// Secure mode (or another checked mode of the environment) is on:
    /// blocks carved fresh from a slab are handed to
    /// [`HeapEnv::forget_fresh`], and the bins' block-start tests are off
    /// (they refuse every offset), so that the fast `free` paths, which
    /// read them, leave every block to the environment's checked paths.
    fn secure() -> bool;

    /// Blocks `blocks` (indices) of the slab whose blocks start at `data`,
    /// of `block_size` bytes each, were just carved (never handed out).
    ///
    /// # Safety
    /// Those blocks must be free blocks of a slab the calling heap owns,
    /// referenced by nobody.
    unsafe fn forget_fresh(data: *mut u8, block_size: usize, blocks: core::ops::Range<usize>);

    /// Debug validation is on (the facade's `HAKMEM_CHECK`): a heap runs
    /// [`Heap::check`](crate::Heap::check) on entry to each refill, before
    /// each spill of a full bin and before giving everything back, and
    /// hands a failure to [`HeapEnv::invariant_broken`]. Off by default: the
    /// constant `false` compiles the hooks away.
    #[inline(always)]
    fn checking() -> bool {
        false
    }

    /// A heap failed its check on a slow path (`what` names the broken
    /// invariant). Must not return; the default panics.
    #[cold]
    fn invariant_broken(what: &'static str) -> ! {
        panic!("hakmem: invariant broken: {what}")
    }
}

/// The superslab pool limits of a policy.
#[inline]
pub fn pool_limits(p: &FrozenPolicy) -> PoolLimits {
    PoolLimits {
        dirty: p.pool_dirty as usize,
        clean: p.pool_clean as usize,
        decay_ms: p.decay_ms,
    }
}
