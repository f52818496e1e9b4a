//! The process-wide structures every heap shares. All are `const`-built
//! statics: nothing to initialise before the first `malloc`.

use hakmem_large_cache::{CacheLimits, Large};
use hakmem_pagemap::PageMap;
use hakmem_platform::Linux;
use hakmem_policy_rcu::{FrozenPolicy, PolicyCell, DEFAULT_POLICY};
use hakmem_stats::LargeCounters;
use hakmem_superslab::{Orphanage, SuperslabPool};

/// The platform hakmem runs on.
pub(crate) type Os = Linux;

/// Registry of every chunk hakmem owns.
pub(crate) static PAGE_MAP: PageMap = PageMap::new();
/// Empty superslabs: up to 16 kept (2 with their pages), the rest unmapped.
pub(crate) static POOL: SuperslabPool<Os> = SuperslabPool::new(16, 2);
/// Superslabs of exited threads.
pub(crate) static ORPHANAGE: Orphanage = Orphanage::new();
/// The large tier.
pub(crate) static LARGE: Large<Os> = Large::new();
/// Counters of the large tier.
pub(crate) static LARGE_STATS: LargeCounters = LargeCounters::new();
/// The current policy.
pub(crate) static POLICY: PolicyCell = PolicyCell::new(&DEFAULT_POLICY);

/// The large cache limits of a policy.
#[inline]
pub(crate) fn cache_limits(p: &FrozenPolicy) -> CacheLimits {
    CacheLimits {
        budget: p.large_cache_budget,
        max_block: p.large_cache_max_block,
    }
}
