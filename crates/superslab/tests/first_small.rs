//! A heap's first superslab gets 4 KiB pages in `Gated` mode and is
//! collapsed into a huge page once densely used; fresh slabs are carved a
//! little at a time. On the fake platform, which counts the advice calls.

// Explicit drops mark where a slab handle's exclusive borrow ends.
#![allow(clippy::drop_non_drop)]

use hakmem_pagemap::PageMap;
use hakmem_platform::fake::{Fake, FakeInstance, FakePal};
use hakmem_superslab::*;
use hakmem_tiny_sll::Chain;

/// One fake platform per test: the tests run in parallel and assert on the
/// fake's call counters, which a shared fake would mix up.
macro_rules! fake_platform {
    ($mem:ident, $pal:ident) => {
        struct $mem;
        impl FakeInstance for $mem {
            fn fake() -> &'static Fake {
                static F: Fake = Fake::new(64 << 20);
                &F
            }
        }
        type $pal = FakePal<$mem>;
    };
}

const KEEP: PoolLimits = PoolLimits {
    dirty: 4,
    clean: 4,
    decay_ms: 1000,
};

fn leak<T>(x: T) -> &'static T {
    Box::leak(Box::new(x))
}

fn len(mut c: Chain) -> usize {
    let mut n = 0;
    // SAFETY: chains handed out by a slab are valid lists.
    while unsafe { c.pop() }.is_some() {
        n += 1;
    }
    n
}

#[test]
fn first_superslabs_start_small_and_collapse_when_dense() {
    fake_platform!(Mem, P);
    let map = leak(PageMap::new());
    let owner = leak(PendingList::new());
    let pool = SuperslabPool::<P>::new();
    pool.set_huge_mode(HugeMode::Gated);
    pool.grant_huge(2);
    let c0 = Mem::fake().counts();

    // first: advised small, nothing taken from the grant, no demand counted
    let mut first = pool.acquire_for(map, 200, owner, true).expect("memory");
    let c1 = Mem::fake().counts();
    assert_eq!(c1.small_advises, c0.small_advises + 1);
    assert_eq!(c1.advises, c0.advises);
    assert!(first.is_small());
    assert_eq!(pool.huge_budget(), 2);
    let s = pool.stats();
    assert_eq!((s.small_first, s.cold, s.huge_fresh), (1, 0, 0));

    // not first: advised huge from the grant, as before
    let other = pool.acquire_for(map, 200, owner, false).expect("memory");
    assert!(!other.is_small());
    assert_eq!(Mem::fake().counts().advises, c1.advises + 1);
    assert_eq!(pool.huge_budget(), 1);

    // a page of 64-byte blocks: the header's pages and one more, below
    // DENSE_BYTES (16 KiB): it stays small
    assert_eq!(HEADER_END, 8192);
    let slab = first.alloc_slab(3, 64, 1).expect("slot");
    // SAFETY: we own the superslab; one handle at a time.
    let got = len(unsafe { slab.handle() }.take(200));
    assert_eq!(got, 64, "a fresh slab carves a page's worth first");
    assert!(!pool.densify(&mut first, 64, 64));
    assert!(first.is_small());
    assert_eq!(Mem::fake().counts().collapses, c1.collapses);
    // a second page (the carve doubles): dense, collapsed with the grant
    // SAFETY: we own the superslab, and the earlier handle is gone: one
    // handle at a time.
    let got = len(unsafe { slab.handle() }.take(200));
    assert_eq!(got, 64);
    assert!(pool.densify(&mut first, 64, 64));
    let c2 = Mem::fake().counts();
    assert_eq!(c2.collapses, c1.collapses + 1);
    assert_eq!(c2.advises, c1.advises + 2, "advised huge before collapsing");
    assert!(!first.is_small());
    assert_eq!(pool.huge_budget(), 0);
    assert_eq!(pool.stats().collapsed, 1);
    // once huge, nothing more
    assert!(!pool.densify(&mut first, 64, 64));
    assert_eq!(Mem::fake().counts().collapses, c2.collapses);

    // without a huge page at hand a dense small superslab stays small
    let mut second = pool.acquire_for(map, 201, owner, true).expect("memory");
    let s2 = second.alloc_slab(5, 96, 1).expect("slot");
    // SAFETY: we own the superslab; one handle at a time.
    let mut h = unsafe { s2.handle() };
    while h.available() > 0 {
        len(h.take(64));
    }
    drop(h);
    assert!(!pool.densify(&mut second, 64, 96), "no grant");
    assert!(second.is_small());
    assert_eq!(Mem::fake().counts().collapses, c2.collapses);
    pool.grant_huge(1);
    assert!(pool.densify(&mut second, 64, 96), "granted: collapsed");
    assert!(!second.is_small());

    // a small superslab given back dirty stays small when handed out again
    let mut third = pool.acquire_for(map, 202, owner, true).expect("memory");
    let base = third.base();
    let s3 = third.alloc_slab(3, 64, 1).expect("slot");
    // SAFETY: no block was handed out.
    unsafe { third.release_slab(s3) };
    pool.release(map, third, 0, 0, &KEEP);
    let again = pool.acquire_for(map, 203, owner, false).expect("memory");
    assert_eq!(again.base(), base, "the dirty one comes first");
    assert!(again.is_small());

    // blocks about to be carved count: whole ones up to half a slot, a
    // page each above (their list words)
    let mut fourth = pool.acquire_for(map, 204, owner, true).expect("memory");
    pool.grant_huge(1);
    assert!(
        !pool.densify(&mut fourth, 1, 40960),
        "one big block: a page"
    );
    assert!(fourth.is_small());
    assert!(pool.densify(&mut fourth, 1, 16384), "header and 16 KiB");
    assert!(!fourth.is_small());
    // (the superslabs holding blocks stay the fake's)
    pool.release(map, again, 0, 0, &KEEP);
    drop((first, other, second));
    pool.release(map, fourth, 0, 0, &KEEP);
    pool.trim(map);
}

#[test]
fn direct_and_off_modes_hand_out_first_superslabs_as_before() {
    fake_platform!(Mem, P);
    let map = leak(PageMap::new());
    let owner = leak(PendingList::new());
    let pool = SuperslabPool::<P>::new();
    pool.set_huge_mode(HugeMode::Direct);
    let a0 = Mem::fake().counts().advises;
    let mut a = pool.acquire_for(map, 210, owner, true).expect("memory");
    assert!(!a.is_small());
    assert!(Mem::fake().counts().advises > a0);
    assert!(!pool.densify(&mut a, 1000, 64));
    pool.set_huge_mode(HugeMode::Off);
    let mut b = pool.acquire_for(map, 211, owner, true).expect("memory");
    assert!(!pool.densify(&mut b, 1000, 64), "off: never collapsed");
    assert_eq!(pool.stats().small_first, 0);
    pool.release(map, a, 0, 0, &KEEP);
    pool.release(map, b, 0, 0, &KEEP);
    pool.trim(map);
}

#[test]
fn carving_doubles_from_a_page() {
    fake_platform!(Mem, P);
    assert_eq!(carve_limit(0, 16), 256);
    assert_eq!(carve_limit(0, 64), 64);
    assert_eq!(carve_limit(64, 64), 64);
    assert_eq!(carve_limit(128, 64), 128);
    assert_eq!(carve_limit(0, 4096), 2);
    assert_eq!(carve_limit(0, 32768), 2, "at least two blocks");
    assert_eq!(carve_limit(3, 32768), 3);
    let map = leak(PageMap::new());
    let owner = leak(PendingList::new());
    let pool = SuperslabPool::<P>::new();
    let mut ss = pool.acquire(map, 220, owner).expect("memory");
    let slab = ss.alloc_slab(31, 1024, 1).expect("slot");
    // SAFETY: we own the superslab; one handle at a time.
    let mut h = unsafe { slab.handle() };
    let takes: Vec<usize> = (0..5).map(|_| len(h.take(64))).collect();
    assert_eq!(
        takes,
        [4, 4, 8, 16, 32],
        "1 KiB blocks: a page, then doubling"
    );
    assert_eq!(h.carved(), 64);
    assert_eq!(len(h.take(64)), 0, "a slot holds 64");
    drop(h);
}

/// A small superslab whose idle slots were purged keeps small pages: it is
/// no collapse candidate any more (a collapse would make the purged slots
/// resident again).
#[test]
fn purged_superslabs_are_not_collapsed() {
    fake_platform!(Mem, P);
    let map = leak(PageMap::new());
    let owner = leak(PendingList::new());
    let pool = SuperslabPool::<P>::new();
    pool.set_huge_mode(HugeMode::Gated);
    pool.grant_huge(4);
    let mut ss = pool.acquire_for(map, 230, owner, true).expect("memory");
    let keep = ss.alloc_slab(3, 64, 1).expect("slot");
    let idle = ss.alloc_slab(3, 64, 1).expect("slot");
    // SAFETY: no block was handed out.
    unsafe { ss.release_slab(idle) };
    assert!(ss.is_small());
    assert_eq!(ss.purge_idle::<P>(0, 0), SLOT_SIZE);
    assert!(!ss.is_small());
    let collapses = Mem::fake().counts().collapses;
    assert!(!pool.densify(&mut ss, 1000, 64));
    assert_eq!(Mem::fake().counts().collapses, collapses);
    // SAFETY: no block was handed out.
    unsafe { ss.release_slab(keep) };
    pool.release(map, ss, 0, 0, &KEEP);
    pool.trim(map);
}
