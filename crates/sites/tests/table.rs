//! The table against a model, and under concurrent inserts.

use std::collections::HashMap;
use std::sync::{Arc, Barrier};

use hakmem_sites::{
    life_bucket, size_bucket, SiteId, SiteTable, Stamp, LIFE_BUCKETS, SIZE_BUCKETS,
};
use proptest::prelude::*;

/// What a site should hold.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Model {
    allocs: u64,
    frees: u64,
    bytes: u64,
    freed: u64,
    remote: u64,
    max: u64,
    life_sum: u64,
    size_hist: [u64; SIZE_BUCKETS],
    life_hist: [u64; LIFE_BUCKETS],
}

impl Model {
    fn alloc(&mut self, size: u64) {
        self.allocs += 1;
        self.bytes += size;
        self.max = self.max.max(size);
        self.size_hist[size_bucket(size)] += 1;
    }

    fn free(&mut self, size: u64, life: u64, remote: bool) {
        self.frees += 1;
        self.freed += size;
        self.remote += remote as u64;
        self.life_sum += life;
        self.life_hist[life_bucket(life)] += 1;
    }

    fn add(&mut self, o: &Model) {
        self.allocs += o.allocs;
        self.frees += o.frees;
        self.bytes += o.bytes;
        self.freed += o.freed;
        self.remote += o.remote;
        self.max = self.max.max(o.max);
        self.life_sum += o.life_sum;
        for (a, b) in self.size_hist.iter_mut().zip(o.size_hist) {
            *a += b;
        }
        for (a, b) in self.life_hist.iter_mut().zip(o.life_hist) {
            *a += b;
        }
    }

    fn of(s: &hakmem_sites::SiteStats) -> Model {
        Model {
            allocs: s.allocs,
            frees: s.frees,
            bytes: s.bytes,
            freed: s.freed_bytes,
            remote: s.remote_frees,
            max: s.max_size,
            life_sum: s.lifetime_sum,
            size_hist: s.size_hist,
            life_hist: s.life_hist,
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// Allocate at key `k` of the pool.
    Alloc { k: usize, size: u64, dt: u64 },
    /// Free the `i`-th live block (mod live count).
    Free { i: usize, dt: u64, remote: bool },
}

fn op() -> impl Strategy<Value = Op> {
    let size = prop_oneof![0u64..2048, 0u64..(4 << 20), Just(64 << 10)];
    let dt = prop_oneof![0u64..2000, 0u64..(1 << 30)];
    prop_oneof![
        (0usize..12, size, dt.clone()).prop_map(|(k, size, dt)| Op::Alloc { k, size, dt }),
        (any::<usize>(), dt, any::<bool>()).prop_map(|(i, dt, remote)| Op::Free { i, dt, remote }),
    ]
}

fn key(k: usize) -> SiteId {
    // Spread like return addresses; mix kinds.
    match k % 3 {
        0 => SiteId::code(0x5555_0000 + k * 0x40),
        1 => SiteId::sampled(0x7f00_1000 + k * 0x13),
        _ => SiteId::code(0x40_0000 + k * 0x1_0000),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Counts match a model; the first 8 distinct sites own the 8 slots,
    /// the rest are summed in "other".
    #[test]
    fn counts_match_a_model(ops in proptest::collection::vec(op(), 0..300)) {
        let t = SiteTable::<8, 2>::new();
        let mut model: HashMap<usize, Model> = HashMap::new();
        let mut order: Vec<usize> = Vec::new();
        let mut live: Vec<(usize, Stamp, u64, u64)> = Vec::new();
        let mut now = 1u64 << 40;
        for op in ops {
            match op {
                Op::Alloc { k, size, dt } => {
                    now += dt;
                    if !order.contains(&k) {
                        order.push(k);
                    }
                    let st = t.record_alloc(key(k), size as usize, now);
                    prop_assert_eq!(st.slot() < 8, order.iter().position(|&x| x == k).unwrap() < 8);
                    model.entry(k).or_default().alloc(size);
                    live.push((k, st, size, now));
                }
                Op::Free { i, dt, remote } => {
                    if live.is_empty() {
                        continue;
                    }
                    now += dt;
                    let (k, st, size, at) = live.swap_remove(i % live.len());
                    t.record_free(st, size as usize, now, remote);
                    model.get_mut(&k).unwrap().free(size, now - at, remote);
                }
            }
        }
        prop_assert_eq!(t.used(), order.len().min(8));
        let mut other = Model::default();
        for (idx, k) in order.iter().enumerate() {
            let m = &model[k];
            if idx < 8 {
                let s = t.site_stats(key(*k)).expect("slotted");
                prop_assert_eq!(&Model::of(&s), m);
                let live_n = live.iter().filter(|b| b.0 == *k).count() as u64;
                prop_assert_eq!(s.live_blocks(), live_n);
                let ages: u64 = live.iter().filter(|b| b.0 == *k).map(|b| now - b.3).sum();
                prop_assert_eq!(s.mean_live_age(now), ages.checked_div(live_n));
            } else {
                prop_assert!(t.slot_of(key(*k)).is_none());
                other.add(m);
            }
        }
        prop_assert_eq!(Model::of(&t.other()), other);
    }

    /// Threads inserting and counting the same sites at once: no count is
    /// lost, no site gets two slots, sites beyond the table land in
    /// "other".
    #[test]
    fn concurrent_inserts_never_lose_counts(
        plans in proptest::collection::vec(
            proptest::collection::vec((0usize..24, 1u64..100_000, any::<bool>()), 1..400),
            2..8,
        )
    ) {
        let t: &'static SiteTable<16, 4> = Box::leak(Box::new(SiteTable::new()));
        let start = Arc::new(Barrier::new(plans.len()));
        let handles: Vec<_> = plans
            .into_iter()
            .map(|plan| {
                let start = start.clone();
                std::thread::spawn(move || {
                    let mut m: HashMap<usize, Model> = HashMap::new();
                    start.wait();
                    for (n, (k, size, free)) in plan.into_iter().enumerate() {
                        let now = n as u64 * 10;
                        let st = t.record_alloc(key(k), size as usize, now);
                        m.entry(k).or_default().alloc(size);
                        if free {
                            t.record_free(st, size as usize, now + 5, false);
                            m.get_mut(&k).unwrap().free(size, 5, false);
                        }
                    }
                    m
                })
            })
            .collect();
        let mut model: HashMap<usize, Model> = HashMap::new();
        for h in handles {
            for (k, m) in h.join().unwrap() {
                model.entry(k).or_default().add(&m);
            }
        }
        // Every slot holds a distinct key.
        let mut seen = std::collections::HashSet::new();
        for s in t.sites() {
            prop_assert!(seen.insert(s.site), "{:?} in two slots", s.site);
        }
        prop_assert!(t.used() <= 16);
        let mut other = Model::default();
        for (k, m) in &model {
            match t.site_stats(key(*k)) {
                Some(s) => prop_assert_eq!(&Model::of(&s), m, "site {}", k),
                None => other.add(m),
            }
        }
        prop_assert_eq!(Model::of(&t.other()), other);
        // With 24 candidate keys and 16 slots, a full table is possible but
        // only keys that were used can own slots.
        prop_assert!(t.sites().all(|s| model.keys().any(|k| key(*k) == s.site)));
    }
}

/// Many threads hammering one site: exact totals (the striped counters
/// lose nothing).
#[test]
fn one_hot_site_from_many_threads() {
    let t: &'static SiteTable<64, 8> = Box::leak(Box::new(SiteTable::new()));
    let site = SiteId::code(0x1234_5678);
    let threads = 8;
    let per = 50_000u64;
    let start = Arc::new(Barrier::new(threads));
    let hs: Vec<_> = (0..threads)
        .map(|i| {
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                for n in 0..per {
                    let st = t.record_alloc(site, 48 + i, n);
                    t.record_free(st, 48 + i, n + 100, i % 2 == 1);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let s = t.site_stats(site).unwrap();
    let n = per * threads as u64;
    assert_eq!((s.allocs, s.frees), (n, n));
    assert_eq!(
        s.bytes,
        per * (0..threads as u64).map(|i| 48 + i).sum::<u64>()
    );
    assert_eq!(s.remote_frees, n / 2);
    assert_eq!(s.max_size, 48 + threads as u64 - 1);
    assert_eq!(s.lifetime_sum, 100 * n);
    assert_eq!(s.live_blocks(), 0);
    assert_eq!(t.used(), 1);
}

/// A full probe window sends a new site to "other" even in a big table,
/// and that site keeps going there.
#[test]
fn big_table_full_goes_to_other_consistently() {
    let t: &'static SiteTable<1024, 1> = Box::leak(Box::new(SiteTable::new()));
    let mut slotted = 0;
    for k in 1..=2000usize {
        if t.record_alloc(SiteId::code(k * 0x10), 8, 0).slot() < 1024 {
            slotted += 1;
        }
    }
    assert_eq!(slotted, t.used());
    assert!(slotted > 900, "the table fills almost entirely ({slotted})");
    for k in 1..=2000usize {
        let s = t.record_alloc(SiteId::code(k * 0x10), 8, 0);
        assert_eq!(s.slot() < 1024, t.slot_of(SiteId::code(k * 0x10)).is_some());
    }
    let total: u64 = t.sites().map(|s| s.allocs).sum::<u64>() + t.other().allocs;
    assert_eq!(total, 4000);
}
