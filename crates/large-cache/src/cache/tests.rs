//! The cache's unit and property tests.

use super::*;
use proptest::prelude::*;

pub(super) const L: CacheLimits = CacheLimits {
    budget: 16 << 20,
    max_block: 8 << 20,
    wmax_permille: 1250,
    decay_ms: 1000,
    batch: 8,
    clean_budget: 64 << 20,
};

/// Limits with room for a 64 MiB mapping.
const L_BIG: CacheLimits = CacheLimits {
    budget: 64 << 20,
    max_block: 64 << 20,
    ..L
};

#[test]
fn classes_are_monotonic() {
    let mut last = 0;
    for mib in 1..200usize {
        let c = class_of(mib << 20);
        assert!(c >= last);
        last = c;
    }
    assert_eq!(class_of(1 << 20), 0);
    assert_eq!(class_of(2 << 20), 4);
}

#[test]
fn take_respects_wmax_and_prefers_dirty() {
    let mut bc = BigCache::new();
    let mut w = Work::NONE;
    bc.put(0x1000_0000, 4 << 20, 0, &L, &mut w);
    bc.put_clean(
        Cached {
            base: 0x2000_0000,
            len: 4 << 20,
            stamp: 0,
            dirty: true,
            family: 0,
            full: 4 << 20,
        },
        &L,
        &mut w,
    );
    assert!(
        bc.take(3 << 20, 0, &L).is_none(),
        "4 MiB is more than 1.25 x 3 MiB"
    );
    let e = bc.take(4 << 20, 0, &L).unwrap();
    assert!(e.dirty && e.base == 0x1000_0000);
    let e = bc.take((4 << 20) - 4096, 0, &L).unwrap();
    assert!(!e.dirty);
    assert!(bc.is_empty());
    assert_eq!(bc.stats().hits, 2);
}

#[test]
fn decay_purges_then_unmaps() {
    let mut bc = BigCache::new();
    let mut w = Work::NONE;
    bc.put(0x1000_0000, 2 << 20, 0, &L, &mut w);
    assert_eq!((w.n_purge, w.n_unmap), (0, 0));
    bc.enforce(1000, &L, &mut w);
    assert_eq!(w.n_purge, 0, "reusable for a whole decay period");
    bc.enforce(1500, &L, &mut w);
    assert_eq!(w.n_purge, 1, "idle for 1.5 times the decay time: all of it");
    assert_eq!(w.keep[0], 0);
    let e = w.purge[0];
    let mut w2 = Work::NONE;
    bc.put_clean(e, &L, &mut w2);
    assert_eq!(bc.stats().clean, (1, 2 << 20));
    bc.enforce(8000, &L, &mut w2);
    assert_eq!(w2.n_unmap, 1, "clean for 8 periods");
    assert!(bc.is_empty());
}

#[test]
fn reserved_entries_outlive_the_decay_and_score_hits() {
    let mut bc = BigCache::new();
    let mut w = Work::NONE;
    assert!(bc.reserve(2 << 20, 2));
    bc.put(0x1000_0000, 2 << 20, 0, &L, &mut w);
    bc.put(0x2000_0000, 3 << 20, 0, &L, &mut w);
    bc.enforce(2000, &L, &mut w);
    assert_eq!(w.n_purge, 1, "only the unreserved 3 MiB entry decays");
    assert_eq!(w.purge[0].len, 3 << 20);
    let e = bc.take(2 << 20, 5000, &L).unwrap();
    assert!(e.dirty, "still resident after 5 decay periods");
    let st = bc.stats();
    assert_eq!(
        (st.reserved_hits, st.reserved_misses, st.reservations),
        (1, 0, 1)
    );
}

#[test]
fn a_reservation_keeps_only_its_youngest_entries() {
    let mut bc = BigCache::new();
    let mut w = Work::NONE;
    bc.reserve(2 << 20, 2);
    for (k, t) in [0u64, 10, 20, 30].into_iter().enumerate() {
        bc.put(0x1000_0000 * (k + 1), 2 << 20, t, &L, &mut w);
    }
    bc.enforce(2000, &L, &mut w);
    assert_eq!(w.n_purge, 2);
    let mut purged: Vec<u64> = w.purge[..2].iter().map(|e| e.stamp).collect();
    purged.sort();
    assert_eq!(purged, [0, 10], "the two oldest go");
}

#[test]
fn unused_reservations_are_dropped() {
    let mut bc = BigCache::new();
    bc.reserve(2 << 20, 1);
    let hold = HOLD_PERIODS * L.decay_ms;
    let mut now = 0;
    for k in 0..DROP_MARGIN as usize {
        let mut w = Work::NONE;
        bc.put(0x1000_0000 * (k + 1), 2 << 20, now, &L, &mut w);
        now += hold;
        bc.enforce(now, &L, &mut w);
        assert_eq!(w.n_purge, 1, "the hold ends: purged");
    }
    let st = bc.stats();
    assert_eq!(st.reserved_misses, u64::from(DROP_MARGIN));
    assert_eq!((st.reservations, st.reservations_dropped), (0, 1));
    // without the reservation the next entry decays normally
    let mut w = Work::NONE;
    bc.put(0x9000_0000, 2 << 20, now, &L, &mut w);
    bc.enforce(now + 2 * L.decay_ms, &L, &mut w);
    assert_eq!(w.n_purge, 1);
}

#[test]
fn the_curve_keeps_everything_for_the_decay_time_then_falls_smoothly() {
    let d = 1000;
    let mut last = 1000;
    for age in (0..=2 * d).step_by(10) {
        let k = kept_permille(age, d);
        assert!(k <= last, "not monotonic at {age}");
        if age < d {
            assert_eq!(k, 1000);
        }
        // smoothstep: no step bigger than its steepest slope allows
        assert!(last - k <= 40, "a cliff at {age}: {last} -> {k}");
        if age > d + 10 && age < d + d / 2 - 10 {
            assert!(k < last, "flat at {age}");
        }
        last = k;
    }
    assert_eq!(kept_permille(d + d / 2, d), 0);
    assert_eq!(kept_permille(d + d / 4, d), 500);
}

#[test]
fn decay_purges_big_entries_in_proportion() {
    let mut bc = BigCache::new();
    let mut w = Work::NONE;
    bc.put(0x1000_0000, 8 << 20, 0, &L, &mut w);
    // half way along the curve: half of it (whole pieces) stays
    bc.enforce(1250, &L, &mut w);
    assert_eq!(w.n_purge, 1);
    assert_eq!(w.keep[0], 4 << 20);
    let (e, keep) = (w.purge[0], w.keep[0]);
    let mut w2 = Work::NONE;
    bc.put_purged(e, keep, &L, &mut w2);
    assert_eq!(bc.check(), Ok(()));
    assert_eq!(bc.stats().dirty, (1, 4 << 20));
    assert_eq!(bc.stats().clean, (1, 4 << 20));
    // further along, the kept head shrinks again, then goes
    let mut w3 = Work::NONE;
    bc.enforce(1375, &L, &mut w3);
    assert_eq!(w3.n_purge, 1);
    assert!(w3.keep[0] > 0 && w3.keep[0] < 4 << 20);
    let mut w4 = Work::NONE;
    bc.put_purged(w3.purge[0], w3.keep[0], &L, &mut w4);
    bc.enforce(1500, &L, &mut w4);
    assert_eq!((w4.n_purge, w4.keep[0]), (1, 0));
    let e = w4.purge[0];
    bc.put_purged(e, 0, &L, &mut w4);
    assert_eq!(bc.stats().dirty, (0, 0));
    assert_eq!(bc.stats().clean.1, 8 << 20, "all of it, in pieces");
    assert_eq!(bc.check(), Ok(()));
}

#[test]
fn carving_serves_a_smaller_request_and_freeing_merges_back() {
    let mut bc = BigCache::new();
    let mut w = Work::NONE;
    let base = 0x1000_0000;
    bc.put_merging(base, 32 << 20, 7, 0, &L_BIG, &mut w, |_| {
        panic!("nothing to merge")
    });
    // a 3 MiB request is far below W_MAX of 32 MiB: carved
    let mut tails = Vec::new();
    let e = bc
        .take_or_carve(3 << 20, 10, &L_BIG, |t| {
            tails.push(*t);
            true
        })
        .unwrap();
    assert_eq!((e.base, e.len, e.dirty, e.family), (base, 3 << 20, true, 7));
    assert_eq!(tails.len(), 1);
    assert_eq!((tails[0].base, tails[0].len), (base + (3 << 20), 29 << 20));
    assert_eq!(bc.stats().dirty, (1, 29 << 20));
    assert_eq!(bc.check(), Ok(()));
    // a refused split leaves the mapping whole and cached
    assert!(bc.take_or_carve(2 << 20, 10, &L_BIG, |_| false).is_none());
    assert_eq!(bc.stats().dirty, (1, 29 << 20));
    // freeing the head merges it with its tail
    let mut absorbed = Vec::new();
    let merged = bc.put_merging(base, 3 << 20, 7, 20, &L_BIG, &mut w, |b| absorbed.push(b));
    assert_eq!(merged, (base, 32 << 20));
    assert_eq!(absorbed, [base + (3 << 20)]);
    assert_eq!(bc.stats().dirty, (1, 32 << 20));
    // another family never merges, even when adjacent
    let merged = bc.put_merging(base + (32 << 20), 2 << 20, 8, 20, &L_BIG, &mut w, |_| {
        panic!("another family")
    });
    assert_eq!(merged, (base + (32 << 20), 2 << 20));
    assert_eq!(bc.check(), Ok(()));
    assert_eq!(w.n_purge + w.n_unmap, 0);
}

#[test]
fn a_block_grows_over_the_pieces_of_its_family_that_follow_it() {
    let mut bc = BigCache::new();
    let mut w = Work::NONE;
    let base = 0x1000_0000;
    // a live block [base, base + 2 MiB) of family 7; its mapping's
    // next 8 MiB are cached, dirty, and then 3 MiB clean
    bc.put_merging(base + (2 << 20), 8 << 20, 7, 5, &L_BIG, &mut w, |_| {});
    bc.put_clean(
        Cached {
            base: base + (10 << 20),
            len: 3 << 20,
            stamp: 5,
            dirty: false,
            family: 7,
            full: 3 << 20,
        },
        &L_BIG,
        &mut w,
    );
    let none = |_: &Cached| -> bool { panic!("nothing to split") };
    // another family, or not right behind the block: nothing
    assert_eq!(bc.take_after(base + (2 << 20), 8, 1 << 20, none, |_| {}), 0);
    assert_eq!(bc.take_after(base + (3 << 20), 7, 1 << 20, none, |_| {}), 0);
    assert_eq!(bc.stats().dirty, (1, 8 << 20));
    // 2 MiB of the dirty piece; its rest stays cached, dirty, stamped
    let (mut tails, mut gone) = (Vec::new(), Vec::new());
    let got = bc.take_after(
        base + (2 << 20),
        7,
        2 << 20,
        |t| {
            tails.push(*t);
            true
        },
        |b| gone.push(b),
    );
    assert_eq!(got, 2 << 20);
    assert_eq!(gone, [base + (2 << 20)]);
    assert_eq!(tails.len(), 1);
    assert_eq!((tails[0].base, tails[0].len), (base + (4 << 20), 6 << 20));
    assert!(tails[0].dirty && tails[0].stamp == 5 && tails[0].family == 7);
    assert_eq!(bc.stats().dirty, (1, 6 << 20));
    assert_eq!(bc.check(), Ok(()));
    // a rest below a piece goes with the block
    let got = bc.take_after(base + (4 << 20), 7, (5 << 20) + 4096, none, |_| {});
    assert_eq!(got, 6 << 20);
    assert_eq!(bc.stats().dirty, (0, 0));
    // a split the caller refuses: all of it
    let got = bc.take_after(base + (10 << 20), 7, 1 << 20, |_| false, |_| {});
    assert_eq!(got, 3 << 20);
    assert!(bc.is_empty());
    // pieces that end first: what there is
    bc.put_merging(base + (20 << 20), 4 << 20, 9, 5, &L_BIG, &mut w, |_| {});
    bc.put_merging(base + (30 << 20), 4 << 20, 9, 5, &L_BIG, &mut w, |_| {});
    let got = bc.take_after(base + (20 << 20), 9, 16 << 20, none, |_| {});
    assert_eq!(got, 4 << 20, "the gap ends the run");
    assert_eq!(bc.stats().dirty, (1, 4 << 20));
    assert_eq!(bc.check(), Ok(()));
    assert_eq!(w.n_purge + w.n_unmap, 0);
}

#[test]
fn reservation_slots_are_bounded() {
    let mut bc = BigCache::new();
    for k in 0..RESERVATIONS {
        assert!(bc.reserve((k + 1) << 20, 1));
    }
    assert!(!bc.reserve(100 << 20, 1));
    assert!(bc.reserve(1 << 20, 4), "an existing one can grow");
    bc.unreserve(1 << 20);
    assert!(bc.reserve(100 << 20, 1));
    assert!(!bc.reserve(101 << 20, 0), "keep 0 is no reservation");
}

proptest! {
    /// With reservations: accounting stays exact, dirty bytes stay
    /// within the budget, and nothing dirty outlives the hold.
    #[test]
    fn reservations_respect_the_limits(
        ops in proptest::collection::vec((0u8..4, 1usize..6, 0u64..3000), 1..200)
    ) {
        let mut bc = BigCache::new();
        let mut now = 0u64;
        let mut next_base = 0x1000_0000usize;
        let mut outstanding: std::collections::HashSet<usize> = Default::default();
        for (op, mib, dt) in ops {
            now += dt;
            let len = mib << 20;
            let mut w = Work::NONE;
            match op {
                0 => {
                    bc.reserve(len, mib);
                }
                1 => {
                    if let Some(e) = bc.take(len, now, &L) {
                        prop_assert!(outstanding.remove(&e.base));
                    }
                }
                _ => {
                    next_base += 64 << 20;
                    outstanding.insert(next_base);
                    bc.put(next_base, len, now, &L, &mut w);
                }
            }
            bc.enforce(now, &L, &mut w);
            for e in &w.unmap[..w.n_unmap] {
                prop_assert!(outstanding.remove(&e.base));
            }
            for e in &w.purge[..w.n_purge] {
                prop_assert!(outstanding.remove(&e.base));
            }
            let st = bc.stats();
            prop_assert_eq!(bc.check(), Ok(()));
            prop_assert!(st.dirty.1 <= L.budget || w.n_purge == L.batch);
            prop_assert_eq!(st.dirty.0 + st.clean.0, outstanding.len());
            prop_assert!(st.reservations <= RESERVATIONS);
            if w.n_purge < L.batch && now.saturating_sub(bc.last_decay) == 0 {
                for c in 0..CLASSES {
                    for e in &bc.slots[c][..bc.counts[c] as usize] {
                        prop_assert!(
                            !e.dirty || now - e.stamp < HOLD_PERIODS * L.decay_ms,
                            "a dirty entry outlived the hold"
                        );
                    }
                }
            }
        }
    }

    /// Carving, merging and the decay curve: every byte of every
    /// mapping is in exactly one place (cached, handed out, or handed
    /// back for unmapping), handed-out blocks never overlap the cache,
    /// the bookkeeping checks, and dirty bytes stay within the budget.
    #[test]
    fn carving_merging_and_the_curve_keep_every_byte(
        ops in proptest::collection::vec((0u8..4, 1usize..40, 0u64..700), 1..150)
    ) {
        let mut bc = BigCache::new();
        let mut now = 0u64;
        let mut next = (0x1000_0000usize, 1u64);
        let mut taken: Vec<Cached> = Vec::new();
        let (mut mapped, mut unmapped) = (0usize, 0usize);
        let l = CacheLimits { budget: 96 << 20, max_block: 64 << 20, ..L };
        for (op, n, dt) in ops {
            now += dt;
            let len = (n << 20) / 2 + PAGE; // 1.5 MiB .. 20 MiB, page multiples
            let mut w = Work::NONE;
            match op {
                0 => {
                    // a fresh mapping, freed at once
                    let big = len * 3;
                    next.0 += 128 << 20;
                    next.1 += 1;
                    mapped += big;
                    bc.put_merging(next.0, big, next.1, now, &l, &mut w, |_| {});
                }
                1 | 2 => {
                    if let Some(e) = bc.take_or_carve(len, now, &l, |_| true) {
                        prop_assert!(e.len >= len);
                        for t in &taken {
                            prop_assert!(e.base + e.len <= t.base || t.base + t.len <= e.base);
                        }
                        taken.push(e);
                    }
                }
                _ => {
                    if !taken.is_empty() {
                        let e = taken.swap_remove(n % taken.len());
                        bc.put_merging(e.base, e.len, e.family, now, &l, &mut w, |_| {});
                    }
                }
            }
            bc.enforce(now, &l, &mut w);
            let purged: Vec<(Cached, usize)> =
                (0..w.n_purge).map(|k| (w.purge[k], w.keep[k])).collect();
            unmapped += w.unmap[..w.n_unmap].iter().map(|e| e.len).sum::<usize>();
            let mut w2 = Work::NONE;
            for (e, keep) in purged {
                prop_assert!(keep == 0 || (keep % PAGE == 0 && keep < e.len));
                bc.put_purged(e, keep, &l, &mut w2);
            }
            unmapped += w2.unmap[..w2.n_unmap].iter().map(|e| e.len).sum::<usize>();
            prop_assert_eq!(bc.check(), Ok(()));
            let st = bc.stats();
            prop_assert!(st.dirty.1 <= l.budget || w.n_purge == l.batch);
            let held: usize = taken.iter().map(|e| e.len).sum();
            prop_assert_eq!(st.dirty.1 + st.clean.1 + held + unmapped, mapped);
            for t in &taken {
                for e in bc.entries() {
                    prop_assert!(e.base + e.len <= t.base || t.base + t.len <= e.base);
                }
            }
        }
    }

    /// The dirty bytes never exceed the budget once the returned work
    /// is done, every mapping put is accounted for exactly once (still
    /// cached, taken, or handed back for purge/unmap), and clean bytes
    /// stay within their budget.
    #[test]
    fn cache_stays_within_limits(ops in proptest::collection::vec((any::<bool>(), 1usize..12, 0u64..400), 1..200)) {
        let mut bc = BigCache::new();
        let mut now = 0u64;
        let mut next_base = 0x1000_0000usize;
        let mut outstanding: std::collections::HashSet<usize> = Default::default();
        for (put, mib, dt) in ops {
            now += dt;
            let len = mib << 20;
            let mut w = Work::NONE;
            if put {
                next_base += 64 << 20;
                outstanding.insert(next_base);
                bc.put(next_base, len, now, &L, &mut w);
            } else if let Some(e) = bc.take(len, now, &L) {
                prop_assert!(e.len >= len && e.len * 1000 <= len * 1250);
                prop_assert!(outstanding.remove(&e.base));
            }
            let purged: Vec<Cached> = w.purge[..w.n_purge].to_vec();
            for e in &w.unmap[..w.n_unmap] {
                prop_assert!(outstanding.remove(&e.base));
            }
            let mut w2 = Work::NONE;
            for e in purged {
                bc.put_clean(e, &L, &mut w2);
            }
            for e in &w2.unmap[..w2.n_unmap] {
                prop_assert!(outstanding.remove(&e.base));
            }
            let st = bc.stats();
            prop_assert_eq!(bc.check(), Ok(()));
            prop_assert!(st.dirty.1 <= L.budget || w.n_purge == L.batch);
            prop_assert!(st.clean.1 <= L.clean_budget);
            prop_assert_eq!(st.dirty.0 + st.clean.0, outstanding.len());
        }
    }
}
