//! Timings of the recording paths (ignored by default; run with
//! `cargo test --release -p hakmem-sites --test bench -- --ignored --nocapture`).

use std::sync::{Arc, Barrier};
use std::time::Instant;

use hakmem_sites::{SiteId, SiteTable};

const OPS: u64 = 5_000_000;

fn per_op(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_nanos() as f64 / OPS as f64
}

#[test]
#[ignore]
fn single_thread_costs() {
    static T: SiteTable = SiteTable::new();
    let t = &T;
    let site = SiteId::code(0x5555_1234);
    let a = per_op(|| {
        for i in 0..OPS {
            std::hint::black_box(t.record_alloc(site, 48, i));
        }
    });
    let b = per_op(|| {
        for i in 0..OPS {
            let s = t.record_alloc(site, 48, i);
            t.record_free(s, 48, i + 100, false);
        }
    });
    println!("record_alloc: {a:.1} ns; record_alloc + record_free: {b:.1} ns");
}

fn hot_site<const S: usize>(threads: usize) -> f64 {
    let t: &'static SiteTable<64, S> = Box::leak(Box::new(SiteTable::new()));
    let site = SiteId::code(0x5555_1234);
    let start = Arc::new(Barrier::new(threads));
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                per_op(|| {
                    for i in 0..OPS {
                        let s = t.record_alloc(site, 48, i);
                        t.record_free(s, 48, i + 100, false);
                    }
                })
            })
        })
        .collect();
    let r: Vec<f64> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    r.iter().sum::<f64>() / r.len() as f64
}

#[test]
#[ignore]
fn one_site_from_all_cores() {
    let n = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!(
        "{n} threads on one site, alloc + free per thread: 1 stripe {:.1} ns, 8 stripes {:.1} ns",
        hot_site::<1>(n),
        hot_site::<8>(n)
    );
}

/// The floor: every thread on its own site (no shared line at all).
fn own_sites(threads: usize) -> f64 {
    let t: &'static SiteTable<64, 1> = Box::leak(Box::new(SiteTable::new()));
    let start = Arc::new(Barrier::new(threads));
    let hs: Vec<_> = (0..threads)
        .map(|k| {
            let start = start.clone();
            std::thread::spawn(move || {
                let site = SiteId::code(0x5555_1234 + k * 0x1000);
                start.wait();
                per_op(|| {
                    for i in 0..OPS {
                        let s = t.record_alloc(site, 48, i);
                        t.record_free(s, 48, i + 100, false);
                    }
                })
            })
        })
        .collect();
    let r: Vec<f64> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    r.iter().sum::<f64>() / r.len() as f64
}

#[test]
#[ignore]
fn own_site_per_core() {
    let n = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!(
        "{n} threads, one site each, alloc + free per thread: {:.1} ns",
        own_sites(n)
    );
}
