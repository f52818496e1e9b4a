//! Huge pages for superslabs by default, without stalls on the program's
//! threads.
//!
//! The rule (`HAKMEM_THP_SUPERSLABS=auto`, the default), from the two THP
//! settings read once (`platform::thp_mode`):
//!
//! * `enabled=never`: no huge pages ([`HugeMode::Off`]).
//! * `defrag` `defer` or `never`: a fault in a range advised
//!   `MADV_HUGEPAGE` never compacts, so every fresh superslab is advised
//!   ([`HugeMode::Direct`]).
//! * otherwise (`defrag` `always`, `madvise` or `defer+madvise`: an
//!   advised fault may compact on the faulting thread): [`HugeMode::Gated`].
//!   A fresh superslab is advised only while huge pages are *at hand*: the
//!   set-up and then every background [`tick`] read the buddy allocator's
//!   free 2 MiB blocks (`/proc/buddyinfo`) and grant the pool half of those
//!   above a 64 MiB margin (at most [`MAX_GRANT`]), one per advised
//!   mapping, so its fault is served from a free block without compaction.
//!   When fewer are at hand than the program has recently been taking, the
//!   tick *prepares* superslabs (mapped, advised, faulted in on the
//!   background thread, where any compaction stall lands) into the pool's
//!   prepared reserve, sized by the last tick's demand (2 to
//!   [`MAX_PREPARED`]); unused ones are unmapped after the decay time.
//!   Without either, the allocating thread's faults stay 4 KiB. The same
//!   grant, renewed on each tick, gates the large tier's extension of a
//!   fresh mapping to a huge-page boundary (`Large::set_huge_gated`, one
//!   huge page per 2 MiB of the mapping); without it a fresh large mapping
//!   is made as it was before that extension.
//!
//! `1` is the old override (advise every fresh superslab: `Direct`
//! whatever `defrag` says), `0` turns huge superslabs off.

use core::sync::atomic::{AtomicU64, Ordering};

use hakmem_options::ThpSuperslabs;
use hakmem_platform::{ThpEnabled, ThpMode};
use hakmem_superslab::{HugeMode, MAX_PREPARED};

use crate::state::{LARGE, PAGE_MAP, POLICY, POOL};

/// Free 2 MiB blocks left to the rest of the system before any is granted
/// (64 MiB).
const MARGIN_BLOCKS: u64 = 32;
/// Most fresh mappings one grant covers.
pub(crate) const MAX_GRANT: u32 = 256;
/// Fewest prepared superslabs kept while there is demand.
const MIN_PREPARED: u64 = 2;

/// `cold` acquisitions counted at the last tick.
static LAST_COLD: AtomicU64 = AtomicU64::new(0);
/// When the last tick saw demand (ms).
static LAST_DEMAND_MS: AtomicU64 = AtomicU64::new(0);

/// The huge-page mode for the option's `choice` on a system with THP
/// settings `thp`.
pub(crate) fn choose(choice: ThpSuperslabs, thp: ThpMode) -> HugeMode {
    match choice {
        ThpSuperslabs::Off => HugeMode::Off,
        ThpSuperslabs::On => HugeMode::Direct,
        ThpSuperslabs::Auto if thp.enabled == ThpEnabled::Never => HugeMode::Off,
        ThpSuperslabs::Auto if !thp.advised_fault_may_stall() => HugeMode::Direct,
        ThpSuperslabs::Auto => HugeMode::Gated,
    }
}

/// How many fresh mappings may be advised when `free` 2 MiB blocks are
/// free (`None`: unknown, so none).
pub(crate) fn grant_for(free: Option<u64>) -> u32 {
    let spare = free.unwrap_or(0).saturating_sub(MARGIN_BLOCKS) / 2;
    spare.min(u64::from(MAX_GRANT)) as u32
}

/// How many superslabs the prepared reserve should hold: the last tick's
/// `demand` (acquisitions the dirty pool could not serve), at least
/// [`MIN_PREPARED`] while demand was seen within the decay time (`recent`),
/// at most [`MAX_PREPARED`], less what the `grant` covers without
/// preparing.
pub(crate) fn prepared_target(demand: u64, recent: bool, grant: u32) -> u64 {
    if !recent {
        return 0;
    }
    let want = demand.clamp(MIN_PREPARED, MAX_PREPARED as u64);
    want.saturating_sub(u64::from(grant))
}

/// Set-up: picks the mode for the option's value and, when gated, makes
/// the first grant (so that the first superslabs get huge pages before any
/// background tick).
pub(crate) fn configure(choice: ThpSuperslabs) {
    let mode = choose(choice, hakmem_platform::thp_mode());
    POOL.set_huge_mode(mode);
    LARGE.set_huge_gated(mode == HugeMode::Gated);
    if mode == HugeMode::Gated {
        let grant = grant_for(hakmem_platform::free_huge_blocks());
        POOL.grant_huge(grant);
        LARGE.grant_huge(grant);
    }
}

/// The periodic work (the background thread, every tick; also safe from
/// any thread holding no allocator lock): renews the grant and keeps the
/// prepared reserve at its target. Does nothing unless gated.
pub(crate) fn tick(now_ms: u64) {
    #[cfg(test)]
    if tests::HOLD.load(Ordering::Acquire) {
        // a unit test drives the pool's huge-page state by hand
        return;
    }
    tick_now(now_ms);
}

/// [`tick`]'s work.
fn tick_now(now_ms: u64) {
    if POOL.huge_mode() != HugeMode::Gated {
        return;
    }
    tick_with(now_ms, hakmem_platform::free_huge_blocks());
}

/// [`tick`] with `free` 2 MiB blocks at hand.
fn tick_with(now_ms: u64, free: Option<u64>) {
    let grant = grant_for(free);
    POOL.grant_huge(grant);
    LARGE.grant_huge(grant);
    let p = POLICY.load();
    if p.pool_dirty == 0 {
        return; // no pool retention (minimal mode): nothing kept ahead
    }
    let s = POOL.stats();
    let demand = s
        .cold
        .saturating_sub(LAST_COLD.swap(s.cold, Ordering::Relaxed));
    if demand > 0 {
        LAST_DEMAND_MS.store(now_ms, Ordering::Relaxed);
    }
    let last = LAST_DEMAND_MS.load(Ordering::Relaxed);
    let recent = last != 0 && now_ms.saturating_sub(last) < p.decay_ms;
    let target = prepared_target(demand, recent, grant);
    let mut have = s.prepared;
    while have < target && POOL.prepare(&PAGE_MAP, now_ms) {
        have += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lets the background thread tick again when the test ends, passed or
    /// not.
    struct Release;

    impl Drop for Release {
        fn drop(&mut self) {
            HOLD.store(false, Ordering::Release);
        }
    }

    /// Set while a test drives the huge-page state by hand: the background
    /// thread (which other tests of this binary start) leaves it alone.
    pub(super) static HOLD: core::sync::atomic::AtomicBool =
        core::sync::atomic::AtomicBool::new(false);
    use hakmem_heap::pool_limits;
    use hakmem_pagemap::Entry;
    use hakmem_platform::Pal;
    use hakmem_superslab::PendingList;

    /// Demand without huge pages at hand fills the prepared reserve, from
    /// the ticking thread; the next acquisition without a dirty superslab
    /// takes a prepared one; unused ones are unmapped after the decay time.
    #[test]
    fn tick_prepares_when_no_huge_page_is_at_hand() {
        HOLD.store(true, Ordering::Release);
        let _release = Release;
        // a tick already under way (it checked HOLD before) ends first
        std::thread::sleep(std::time::Duration::from_millis(200));
        std::thread::spawn(|| {
            let limits = pool_limits(POLICY.load());
            POOL.set_huge_mode(HugeMode::Gated);
            POOL.trim(&PAGE_MAP);
            let now = crate::state::Os::now_ms().max(1);
            tick_with(now, Some(0));
            assert_eq!(POOL.huge_budget(), 0);
            assert_eq!(LARGE.huge_budget(), 0, "the large tier's grant too");
            let owner = PendingList::new();
            let tag = Entry::FIRST_TAG + 4000;
            let mut held = Vec::new();
            let cold = POOL.stats().cold;
            while POOL.stats().cold < cold + 3 && held.len() < 100 {
                held.push(POOL.acquire(&PAGE_MAP, tag, &owner).expect("memory"));
            }
            let made = POOL.stats().prepared_made;
            tick_with(now + 1, Some(0));
            let s = POOL.stats();
            assert!(s.prepared_made >= made + 3, "{made} -> {s:?}");
            assert!(s.prepared_made <= made + MAX_PREPARED as u64);
            // a huge page at hand: the grant covers demand, nothing more made
            tick_with(now + 2, Some(1 << 20));
            assert_eq!(POOL.huge_budget(), MAX_GRANT);
            // (other tests' large blocks may have taken a few since)
            assert!(LARGE.huge_budget() > MAX_GRANT / 2);
            assert_eq!(POOL.stats().prepared_made, s.prepared_made);
            // taken before a fresh mapping (other tests of this binary
            // share the pool and may park a dirty superslab there, which
            // comes first: a few acquisitions reach a prepared one)
            let used = POOL.stats().prepared_used;
            for _ in 0..8 {
                held.push(POOL.acquire(&PAGE_MAP, tag, &owner).expect("memory"));
                if POOL.stats().prepared_used > used {
                    break;
                }
            }
            let s = POOL.stats();
            assert!(s.prepared_used > used, "{s:?}");
            for ss in held {
                POOL.release(&PAGE_MAP, ss, now, now + 3, &limits);
            }
            // unused for the decay time: unmapped
            POOL.maintain(&PAGE_MAP, now + 3 + limits.decay_ms, &limits);
            assert_eq!(POOL.stats().prepared, 0);
            POOL.trim(&PAGE_MAP);
            // the tick itself: nothing unless gated, else a fresh grant
            POOL.set_huge_mode(HugeMode::Off);
            POOL.grant_huge(7);
            tick_now(now + 4);
            assert_eq!(POOL.huge_budget(), 7);
            POOL.set_huge_mode(HugeMode::Gated);
            let lo = grant_for(hakmem_platform::free_huge_blocks());
            tick_now(now + 5);
            let got = POOL.huge_budget();
            let hi = grant_for(hakmem_platform::free_huge_blocks());
            assert!(
                got >= lo.min(hi) / 2 && got <= lo.max(hi) * 2 + 4,
                "{lo} {got} {hi}"
            );
            POOL.trim(&PAGE_MAP);
            POOL.set_huge_mode(HugeMode::Off);
        })
        .join()
        .unwrap();
    }

    fn thp(e: &[u8], d: &[u8]) -> ThpMode {
        ThpMode::parse(e, d)
    }

    #[test]
    fn the_rule() {
        let madv = b"always [madvise] never";
        let always = b"[always] madvise never";
        let never = b"always madvise [never]";
        let d = |w: &str| {
            let all = ["always", "defer", "defer+madvise", "madvise", "never"];
            all.iter()
                .map(|x| {
                    if *x == w {
                        format!("[{x}]")
                    } else {
                        x.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let auto = ThpSuperslabs::Auto;
        assert_eq!(
            choose(auto, thp(madv, d("madvise").as_bytes())),
            HugeMode::Gated
        );
        assert_eq!(
            choose(auto, thp(madv, d("always").as_bytes())),
            HugeMode::Gated
        );
        assert_eq!(
            choose(auto, thp(always, d("defer+madvise").as_bytes())),
            HugeMode::Gated
        );
        assert_eq!(
            choose(auto, thp(madv, d("defer").as_bytes())),
            HugeMode::Direct
        );
        assert_eq!(
            choose(auto, thp(always, d("never").as_bytes())),
            HugeMode::Direct
        );
        assert_eq!(
            choose(auto, thp(never, d("defer").as_bytes())),
            HugeMode::Off
        );
        // the overrides ignore the settings
        assert_eq!(
            choose(ThpSuperslabs::On, thp(madv, d("madvise").as_bytes())),
            HugeMode::Direct
        );
        assert_eq!(
            choose(ThpSuperslabs::Off, thp(madv, d("never").as_bytes())),
            HugeMode::Off
        );
    }

    #[test]
    fn grants_leave_a_margin_and_are_capped() {
        assert_eq!(grant_for(None), 0);
        assert_eq!(grant_for(Some(0)), 0);
        assert_eq!(grant_for(Some(MARGIN_BLOCKS)), 0);
        assert_eq!(grant_for(Some(MARGIN_BLOCKS + 10)), 5);
        assert_eq!(grant_for(Some(1 << 40)), MAX_GRANT);
    }

    #[test]
    fn reserve_follows_demand_within_bounds() {
        assert_eq!(prepared_target(0, false, 0), 0);
        assert_eq!(
            prepared_target(5, false, 0),
            0,
            "no recent demand, nothing kept"
        );
        assert_eq!(prepared_target(0, true, 0), MIN_PREPARED);
        assert_eq!(prepared_target(5, true, 0), 5);
        assert_eq!(prepared_target(100, true, 0), MAX_PREPARED as u64);
        assert_eq!(prepared_target(5, true, 3), 2, "the grant covers the rest");
        assert_eq!(prepared_target(5, true, MAX_GRANT), 0);
    }
}
