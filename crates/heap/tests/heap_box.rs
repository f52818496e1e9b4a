//! The heap box in process, over the fake platform: refill and spill, remote
//! frees, thread exit and adoption, out of memory, failed purges, decay.
//! Every test has an environment (platform, page map, pool, orphanage,
//! registry) of its own.

#[macro_use]
mod common;

use std::sync::atomic::Ordering;

use common::{
    assert_all_superslabs_pooled, drain_orphans, free_all_and_exit, remote_free, Live, TestEnv,
    ThreadHeap,
};
use hakmem_heap::classes::{class_of, class_size, class_span, BIN_BYTES, NCLASSES, SLAB_MAX};
use hakmem_heap::Heap;
use hakmem_heap::HeapEnv;
use hakmem_pagemap::Entry;
use hakmem_policy_rcu::{FrozenPolicy, DEFAULT_POLICY};

/// What a bin's length becomes after `frees` frees into it, starting at
/// `len`, with capacity `cap` (a full bin spills half its capacity first);
/// returns (final length, spills).
fn simulate_frees(mut len: u32, cap: u32, frees: usize) -> (u32, u64) {
    let mut spills = 0;
    for _ in 0..frees {
        if len == cap {
            len -= (cap / 2).max(1);
            spills += 1;
        }
        len += 1;
    }
    (len, spills)
}

fn publish<E: HeapEnv>(f: impl FnOnce(&mut FrozenPolicy)) {
    let mut p = DEFAULT_POLICY;
    f(&mut p);
    E::policy().publish(Box::leak(Box::new(p)));
}

#[test]
fn tiny_refill_fills_the_bin_and_spills_return_half() {
    test_env!(E, 64 << 20);
    E::hooks().secure.store(true, Ordering::SeqCst);
    let mut t = ThreadHeap::<E>::new();
    let mut live = Live::new();
    let c = class_of(24);
    assert_eq!((c, class_size(c)), (1, 32));
    let (cap, refill) = (DEFAULT_POLICY.cap(c), DEFAULT_POLICY.refill(c));
    assert_eq!((cap, refill), (2048, 64));

    let p = t.alloc(24);
    assert!(!p.is_null());
    live.add(p, 24);
    assert!(E::fake().contains(p as usize), "memory comes from the fake");
    let e = E::page_map().get(p as usize);
    assert_eq!((e.tag(), e.class() as usize), (t.tag(), c));
    {
        let h = t.heap();
        let st = &h.stats.classes[c];
        assert_eq!((st.refills.get(), st.refill_blocks.get()), (1, 64));
        assert_eq!(
            h.bins[c].len(),
            63,
            "the refill's other blocks wait in the bin"
        );
        assert_eq!(h.stats.superslabs_acquired.get(), 1);
        // secure mode: the bins' block tests refuse every offset (the
        // environment's checked paths test blocks themselves)
        for off in [0u64, 32, 64] {
            // SAFETY: a valid bin of this heap.
            let start = unsafe { hakmem_tiny_sll::Bin::block_start_raw(&h.bins[c], off) };
            assert!(!start, "offset {off}");
        }
    }
    assert_eq!(
        E::hooks().fresh.load(Ordering::SeqCst),
        64,
        "secure mode saw the carved blocks"
    );

    // 6 bins' worth and one: refills of 64 from slabs of 2048 blocks
    let n = 6 * cap as usize + 1;
    let refills = n.div_ceil(64) as u64;
    let slabs = (refills * 64).div_ceil(2048);
    for _ in 0..n - 1 {
        let p = t.alloc(24);
        assert!(!p.is_null());
        live.add(p, 24);
    }
    let maps = E::fake().counts().maps;
    {
        let h = t.heap();
        let st = &h.stats.classes[c];
        assert_eq!(
            (st.refills.get(), st.refill_blocks.get()),
            (refills, refills * 64)
        );
        assert_eq!(h.bins[c].len() as u64, refills * 64 - n as u64);
        assert_eq!(st.slabs_created.get(), slabs);
    }
    assert_eq!(E::hooks().fresh.load(Ordering::SeqCst), refills * 64);

    // free them all: the bin fills, then spills half its capacity each time
    let (len, spills) = simulate_frees((refills * 64 - n as u64) as u32, cap, n);
    for p in live.all() {
        // SAFETY: a live block of ours, checked and forgotten by `remove`.
        unsafe { t.free(live.remove(p)) };
    }
    {
        let h = t.heap();
        let st = &h.stats.classes[c];
        assert_eq!(st.spills.get(), spills);
        assert_eq!(st.spill_blocks.get(), spills * (cap as u64 / 2));
        assert_eq!(h.bins[c].len(), len);
        assert!(spills >= 10);
    }

    // everything is reused: no new mapping, no new slab (the rest of the
    // current slab is carved, and only that)
    for _ in 0..n {
        let p = t.alloc(24);
        assert!(!p.is_null());
        live.add(p, 24);
    }
    assert_eq!(E::fake().counts().maps, maps);
    assert_eq!(t.heap().stats.classes[c].slabs_created.get(), slabs);
    assert!(E::hooks().fresh.load(Ordering::SeqCst) <= slabs * 2048);
    free_all_and_exit(t, &mut live);
}

/// A checked mode's fast paths take sizes up to a limit of 0, which still
/// lets size 0 through: a heap made in one points size 0 at a bin past the
/// classes, which never holds a block, so `malloc(0)` misses too.
#[test]
fn a_checked_heap_sends_size_0_past_its_bins() {
    test_env!(E, 64 << 20);
    let mut plain = ThreadHeap::<E>::new();
    let plain_bins = plain.heap().size_bins;
    assert_eq!(plain_bins[0], plain_bins[1]);
    E::hooks().secure.store(true, Ordering::SeqCst);
    let mut t = ThreadHeap::<E>::new();
    let h = t.heap();
    assert_eq!(h.size_bins[0], Heap::<E>::CHECKED_ZERO_BIN);
    assert_eq!(h.size_bins[1..], plain_bins[1..], "only size 0");
    let off = h.size_bins[0] as usize;
    assert!(off / BIN_BYTES >= NCLASSES);
    let p = t.alloc(0);
    assert!(!p.is_null(), "size 0 is served by the slow path");
    let h = t.heap();
    let bin = &h.bins[off / BIN_BYTES];
    assert_eq!((bin.len(), bin.cap(), bin.room()), (0, 0, 0));
    // SAFETY: a block of ours, freed once.
    unsafe { t.free(p) };
    let bin = &t.heap().bins[off / BIN_BYTES];
    assert_eq!((bin.len(), bin.room()), (0, 0), "nor does a free fill it");
}

#[test]
fn mid_refill_spill_and_wmax() {
    test_env!(E, 128 << 20);
    let mut t = ThreadHeap::<E>::new();
    let mut live = Live::new();
    let size = 40_000;
    let c = class_of(size);
    let bs = class_size(c);
    assert!(bs > 32 << 10, "a class the free fast path never takes");
    let per_slab = hakmem_superslab::slab_capacity(bs, class_span(c)) as u64;
    let cap = DEFAULT_POLICY.cap(c);
    let n = 3 * cap as usize + 5;
    for _ in 0..n {
        let p = t.alloc(size);
        assert!(!p.is_null());
        live.add(p, size);
    }
    let in_bin = {
        let h = t.heap();
        let st = &h.stats.classes[c];
        let len = h.bins[c].len();
        assert_eq!(
            st.refill_blocks.get(),
            n as u64 + len as u64,
            "blocks are conserved"
        );
        assert_eq!(
            st.slabs_created.get(),
            st.refill_blocks.get().div_ceil(per_slab)
        );
        len
    };
    let (len, spills) = simulate_frees(in_bin, cap, n);
    for p in live.all() {
        // SAFETY: a live block of ours.
        unsafe { t.free(live.remove(p)) };
    }
    {
        let h = t.heap();
        let st = &h.stats.classes[c];
        assert_eq!(st.spills.get(), spills);
        assert_eq!(st.spill_blocks.get(), spills * (cap as u64 / 2).max(1));
        assert_eq!(h.bins[c].len(), len);
    }
    t.exit();
    assert_all_superslabs_pooled::<E>();

    // W_MAX: a mid request takes a larger block within 1.25x from a bin
    let mut t = ThreadHeap::<E>::new();
    let base = class_of(36_000);
    let (s0, s1) = (class_size(base), class_size(base + 1));
    assert!(s1 * 1000 <= s0 * 1250);
    let q = t.alloc(s1);
    assert!(!t.heap().bins[base + 1].is_empty());
    let before = t.heap().bins[base + 1].len();
    let p = t.heap().alloc_mid_wmax(base, s0);
    assert_eq!(
        t.heap().bins[base + 1].len(),
        before - 1,
        "taken from the larger bin"
    );
    assert_eq!(E::page_map().get(p as usize).class() as usize, base + 1);
    assert_eq!(t.heap().stats.classes[base].refills.get(), 0);
    // beyond 1.25x it refills its own class
    let far = base + 3;
    assert!(class_size(far) * 1000 > s0 * 1250);
    let r = t.alloc(class_size(far));
    assert!(!t.heap().bins[far].is_empty());
    // empty the bins in between so that only `far` holds blocks
    let mut held = vec![p, q, r];
    for k in [base + 1, base + 2] {
        while !t.heap().bins[k].is_empty() {
            held.push(t.alloc(class_size(k)));
        }
    }
    let p2 = t.heap().alloc_mid_wmax(base, s0);
    assert_eq!(E::page_map().get(p2 as usize).class() as usize, base);
    assert_eq!(t.heap().stats.classes[base].refills.get(), 1);
    held.push(p2);
    for p in held {
        // SAFETY: blocks we allocated above, each freed once.
        unsafe { t.free(p) };
    }
    t.exit();
    assert_all_superslabs_pooled::<E>();
}

#[test]
fn remote_frees_are_drained_by_the_owner() {
    test_env!(E, 64 << 20);
    let mut t = ThreadHeap::<E>::new();
    let mut live = Live::new();
    let c = class_of(64);
    for _ in 0..1000 {
        let p = t.alloc(64);
        live.add(p, 64);
    }
    // (not secure mode: the bins' block tests pass block starts only)
    // SAFETY: a valid bin of this heap.
    unsafe {
        let bin = &t.heap().bins[c];
        assert!(hakmem_tiny_sll::Bin::block_start_raw(bin, 0));
        assert!(hakmem_tiny_sll::Bin::block_start_raw(bin, 64));
        assert!(!hakmem_tiny_sll::Bin::block_start_raw(bin, 32));
    }
    // another thread, with no heap, frees every other block
    let gone: Vec<usize> = live
        .all()
        .iter()
        .step_by(2)
        .map(|&p| live.remove(p) as usize)
        .collect();
    let n = gone.len() as u64;
    std::thread::spawn(move || {
        for p in gone {
            remote_free::<E>(p as *mut u8);
        }
    })
    .join()
    .unwrap();
    assert_eq!(t.heap().stats.classes[c].remote_drained.get(), 0);
    // the owner's next refill drains its pending list
    let refills = t.heap().stats.classes[c].refills.get();
    while t.heap().stats.classes[c].refills.get() == refills {
        let p = t.alloc(64);
        live.add(p, 64);
    }
    assert_eq!(t.heap().stats.classes[c].remote_drained.get(), n);
    live.check_all();
    // 1000 blocks filled the slab (1024 blocks, 16 refills of 64): the
    // drained blocks are all it has, and all are used before a new slab
    assert_eq!(hakmem_superslab::slab_capacity(64, 1), 1024);
    let slabs = t.heap().stats.classes[c].slabs_created.get();
    assert_eq!(slabs, 1);
    for _ in 0..n - 1 {
        let p = t.alloc(64);
        live.add(p, 64);
    }
    assert_eq!(t.heap().stats.classes[c].slabs_created.get(), slabs);
    let p = t.alloc(64);
    live.add(p, 64);
    assert_eq!(t.heap().stats.classes[c].slabs_created.get(), slabs + 1);
    for p in live.all() {
        // SAFETY: a live block of ours.
        unsafe { t.free(live.remove(p)) };
    }
    t.exit();
    assert!(E::orphanage().is_empty());
    assert_all_superslabs_pooled::<E>();
}

/// Allocates `n` blocks of `size` bytes in `a` (checked by the model
/// `live`) and hands their addresses over: the model forgets them, as their
/// free will come from another thread.
fn allocated_for_another_thread<E: TestEnv>(
    a: &mut ThreadHeap<E>,
    live: &mut Live,
    n: usize,
    size: usize,
) -> Vec<usize> {
    (0..n)
        .map(|_| {
            let p = a.alloc(size);
            live.add(p, size);
            live.remove(p) as usize
        })
        .collect()
}

#[test]
fn batched_remote_frees_reach_the_owner_and_double_frees_are_caught() {
    test_env!(E, 64 << 20);
    let mut a = ThreadHeap::<E>::new();
    let mut live = Live::new();
    let c = class_of(64);
    let blocks = allocated_for_another_thread(&mut a, &mut live, 200, 64);
    // B, a thread with a heap of its own, frees all 200: batches of one slab
    // go to its remote stack 64 blocks at a time, the last 8 wait in B
    let mut b = ThreadHeap::<E>::new();
    let (mut b, held) = std::thread::spawn(move || {
        for &p in &blocks {
            // SAFETY: A's blocks, handed to us, each freed once.
            unsafe { b.free(p as *mut u8) };
        }
        let held = blocks[192];
        // a second free of a block in B's batch is caught, by B itself and
        // by a thread without a heap (the mark is in the block already)
        // SAFETY: a block of a live superslab (double-freed on purpose).
        assert!(!unsafe { b.heap().free_remote(held as *mut u8, c) });
        // SAFETY: `held` is a block of a live superslab (A owns it, and the
        // block in B's batch keeps it unreleased), so `of` gives its header.
        let ss = unsafe { &*hakmem_superslab::Superslab::of(held as *const u8) };
        // SAFETY: `held` is a block of the live superslab `ss` (double-freed on
        // purpose: the mark swap refuses it).
        assert!(!unsafe { hakmem_superslab::remote_free(ss, held as *mut u8, common::MARK) });
        (b, held)
    })
    .join()
    .unwrap();
    // remote frees are counted as their batches are flushed: the 8 still
    // held are not yet
    assert_eq!(b.heap().stats.classes[c].remote_frees.get(), 192);
    // the owner's refills drain what B flushed, not what B still holds
    let refill = |a: &mut ThreadHeap<E>, live: &mut Live| {
        let refills = a.heap().stats.classes[c].refills.get();
        while a.heap().stats.classes[c].refills.get() == refills {
            let p = a.alloc(64);
            live.add(p, 64);
        }
    };
    refill(&mut a, &mut live);
    assert_eq!(a.heap().stats.classes[c].remote_drained.get(), 192);
    assert!(
        !live.contains(held as *mut u8),
        "a batched block was reused"
    );
    // B's exit flushes its batches
    b.exit();
    refill(&mut a, &mut live);
    assert_eq!(a.heap().stats.classes[c].remote_drained.get(), 200);
    free_all_and_exit(a, &mut live);
}

/// Mid blocks of one slab that spans two slots share one batch (keyed by
/// the slab's first slot), which goes to the slab in one splice when it
/// holds 128 KiB: eight 16 KiB blocks, four in each slot.
#[test]
fn mid_remote_frees_batch_by_slab_across_its_slots() {
    test_env!(E, 64 << 20);
    let mut a = ThreadHeap::<E>::new();
    let mut live = Live::new();
    let c = class_of(16384);
    assert_eq!((class_size(c), class_span(c)), (16384, 2));
    let blocks = allocated_for_another_thread(&mut a, &mut live, 8, 16384);
    let slots: std::collections::HashSet<usize> = blocks.iter().map(|p| p >> 16).collect();
    assert_eq!(slots.len(), 2, "one slab of two slots");
    let b = ThreadHeap::<E>::new();
    let b = std::thread::spawn(move || {
        let mut b = b;
        for (n, &p) in blocks.iter().enumerate() {
            assert_eq!(
                b.heap().stats.classes[c].remote_frees.get(),
                0,
                "{n} blocks wait in one batch"
            );
            // SAFETY: A's blocks, handed to us, each freed once.
            unsafe { b.free(p as *mut u8) };
        }
        assert_eq!(
            b.heap().stats.classes[c].remote_frees.get(),
            8,
            "the eighth filled the batch: one flush of both slots' blocks"
        );
        b
    })
    .join()
    .unwrap();
    let refills = a.heap().stats.classes[c].refills.get();
    while a.heap().stats.classes[c].refills.get() == refills {
        let p = a.alloc(16384);
        live.add(p, 16384);
    }
    assert_eq!(a.heap().stats.classes[c].remote_drained.get(), 8);
    b.exit();
    free_all_and_exit(a, &mut live);
}

/// The batch entry of slot number `key` (the heap's hash, restated).
fn batch_entry(key: usize) -> usize {
    ((key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize
}

/// Remote batches are two-way: the batches of two slots whose entry is the
/// same live side by side in the entry's pair (no flush), and a third
/// slot of the pair flushes the fuller of the two.
#[test]
fn remote_batches_of_colliding_slots_share_an_entry_pair() {
    test_env!(E, 64 << 20);
    let mut a = ThreadHeap::<E>::new();
    let mut live = Live::new();
    let size = 512;
    let c = class_of(size);
    // blocks in 200 slots: some two share an entry, and a third its pair
    let mut by_slot = std::collections::BTreeMap::<usize, Vec<usize>>::new();
    while by_slot.len() < 200 {
        let p = a.alloc(size);
        live.add(p, size);
        by_slot
            .entry(p as usize >> 16)
            .or_default()
            .push(p as usize);
    }
    let slots: Vec<usize> = by_slot
        .keys()
        .copied()
        .filter(|s| by_slot[s].len() >= 4)
        .collect();
    let (x, y, z) = slots
        .iter()
        .flat_map(|&x| slots.iter().map(move |&y| (x, y)))
        .filter(|&(x, y)| x < y && batch_entry(x) == batch_entry(y))
        .find_map(|(x, y)| {
            let z = slots
                .iter()
                .copied()
                .find(|&z| z != x && z != y && batch_entry(z) >> 1 == batch_entry(x) >> 1)?;
            Some((x, y, z))
        })
        .expect("200 slots in 64 entries: a colliding pair and a third");
    let mut take = |slot: usize, n: usize| -> Vec<usize> {
        by_slot[&slot][..n]
            .iter()
            .map(|&p| live.remove(p as *mut u8) as usize)
            .collect()
    };
    let (xs, ys, zs) = (take(x, 4), take(y, 2), take(z, 1));
    let b = ThreadHeap::<E>::new();
    let b = std::thread::spawn(move || {
        let mut b = b;
        let free = |b: &mut ThreadHeap<E>, ps: &[usize]| {
            for &p in ps {
                // SAFETY: A's blocks, handed to us, each freed once.
                unsafe { b.free(p as *mut u8) };
            }
        };
        let flushed = |b: &mut ThreadHeap<E>| b.heap().stats.classes[c].remote_frees.get();
        free(&mut b, &xs[..3]);
        free(&mut b, &ys[..1]);
        free(&mut b, &xs[3..]);
        free(&mut b, &ys[1..]);
        assert_eq!(flushed(&mut b), 0, "x and y batch side by side");
        free(&mut b, &zs);
        assert_eq!(flushed(&mut b), 4, "z flushed x's batch, the fuller");
        b
    })
    .join()
    .unwrap();
    b.exit();
    let refills = a.heap().stats.classes[c].refills.get();
    while a.heap().stats.classes[c].refills.get() == refills {
        let p = a.alloc(size);
        live.add(p, size);
    }
    assert_eq!(a.heap().stats.classes[c].remote_drained.get(), 7);
    free_all_and_exit(a, &mut live);
}

#[test]
fn batched_blocks_of_an_exited_owner_reach_the_adopter() {
    test_env!(E, 64 << 20);
    let mut b = ThreadHeap::<E>::new();
    let (small, mid) = (48, 3000);
    // A allocates and exits: its superslab, all blocks live, is orphaned
    let mut live = std::thread::spawn(move || {
        let mut a = ThreadHeap::<E>::new();
        let mut live = Live::new();
        for i in 0..100 {
            let size = if i % 10 == 0 { mid } else { small };
            let p = a.alloc(size);
            live.add(p, size);
        }
        a.exit();
        live
    })
    .join()
    .unwrap();
    assert_eq!(E::orphanage().len(), 1);
    // B frees 50 of them, batched (fewer than a batch holds per slab)
    for _ in 0..50 {
        let p = live.remove(live.nth(0));
        // SAFETY: a live block of the orphan, freed once.
        unsafe { b.free(p) };
    }
    // B's collect flushes them onto the orphanage's pending list; C adopts
    // the orphan and drains every one
    b.heap().collect();
    let mut c = ThreadHeap::<E>::new();
    let p = c.alloc(small);
    live.add(p, small);
    assert_eq!(c.heap().stats.superslabs_adopted.get(), 1);
    let drained: u64 = (0..NCLASSES)
        .map(|k| c.heap().stats.classes[k].remote_drained.get())
        .sum();
    assert_eq!(drained, 50, "batched frees were flushed to the orphan");
    live.check_all();
    for p in live.all() {
        // SAFETY: live blocks, now C's.
        unsafe { c.free(live.remove(p)) };
    }
    b.exit();
    c.exit();
    assert!(E::orphanage().is_empty());
    assert_all_superslabs_pooled::<E>();
}

#[test]
fn concurrent_remote_frees_lose_nothing() {
    test_env!(E, 256 << 20);
    let (tx, rx) = std::sync::mpsc::channel::<(usize, usize)>();
    let freer = std::thread::spawn(move || {
        let mut got = 0u64;
        let mut live = Live::new();
        for (p, size) in rx {
            // the owner filled it: refill our own pattern and check it
            live.add(p as *mut u8, size);
            remote_free::<E>(live.remove(p as *mut u8));
            got += 1;
        }
        got
    });
    let owner = std::thread::spawn(move || {
        let mut t = ThreadHeap::<E>::new();
        let mut live = Live::new();
        let sizes = [16, 48, 200, 1024, 3000, 20_000];
        let mut sent = 0u64;
        for i in 0..20_000usize {
            let size = sizes[i % sizes.len()];
            let p = t.alloc(size);
            assert!(!p.is_null());
            if i % 3 == 0 {
                tx.send((p as usize, size)).unwrap();
                sent += 1;
            } else {
                live.add(p, size);
                if i % 7 == 0 {
                    let q = live.nth(i % live.len());
                    // SAFETY: a live block of ours.
                    unsafe { t.free(live.remove(q)) };
                }
            }
        }
        drop(tx);
        live.check_all();
        for p in live.all() {
            // SAFETY: a live block of ours.
            unsafe { t.free(live.remove(p)) };
        }
        t.exit();
        sent
    });
    let sent = owner.join().unwrap();
    assert_eq!(freer.join().unwrap(), sent);
    drain_orphans::<E>();
    assert_all_superslabs_pooled::<E>();
}

#[test]
fn orphans_are_adopted_with_their_remote_frees() {
    test_env!(E, 64 << 20);
    // the adopting heap exists before the other thread's heap
    let mut b = ThreadHeap::<E>::new();
    let (small, mid) = (48, 3000);
    let (mut live, a_tag) = std::thread::spawn(move || {
        let mut a = ThreadHeap::<E>::new();
        let mut live = Live::new();
        for i in 0..320 {
            let size = if i % 16 == 0 { mid } else { small };
            let p = a.alloc(size);
            live.add(p, size);
        }
        // 100 freed by their own thread
        for i in 0..100 {
            let p = live.nth(i * 2);
            // SAFETY: a live block of ours.
            unsafe { a.free(live.remove(p)) };
        }
        let tag = a.tag();
        a.exit();
        (live, tag)
    })
    .join()
    .unwrap();
    assert_ne!(a_tag, b.tag());
    assert_eq!(
        E::orphanage().len(),
        1,
        "the exited heap's superslab is orphaned"
    );
    let any = live.nth(0);
    assert_eq!(E::page_map().get(any as usize).tag(), Entry::ORPHAN_TAG);
    live.check_all();

    // 100 more freed while orphaned (remote frees, queued on the orphanage)
    for _ in 0..100 {
        let p = live.nth(live.len() / 2);
        remote_free::<E>(live.remove(p));
    }
    let still = live.len();
    assert_eq!(still, 120);

    // B needs a slab and has no superslab: it adopts
    let p = b.alloc(small);
    live.add(p, small);
    assert_eq!(b.heap().stats.superslabs_adopted.get(), 1);
    assert_eq!(b.heap().stats.superslabs_acquired.get(), 0);
    assert!(E::orphanage().is_empty());
    let drained: u64 = (0..NCLASSES)
        .map(|k| b.heap().stats.classes[k].remote_drained.get())
        .sum();
    assert_eq!(
        drained, 100,
        "the orphan's remote frees were drained, not lost"
    );
    assert_eq!(E::page_map().get(any as usize).tag(), b.tag());
    live.check_all();

    // the freed blocks are reused without new memory, never a live one
    let mapped = E::pool().stats().mapped;
    for _ in 0..150 {
        let p = b.alloc(small);
        live.add(p, small);
    }
    let q = b.alloc(mid);
    live.add(q, mid);
    assert_eq!(E::pool().stats().mapped, mapped);
    assert_eq!(b.heap().stats.superslabs_acquired.get(), 0);

    // B owns A's blocks now: their frees are local
    for p in live.all() {
        assert_eq!(E::page_map().get(p as usize).tag(), b.tag());
        // SAFETY: a live block, owned by B's superslab now.
        unsafe { b.free(live.remove(p)) };
    }
    b.exit();
    assert!(E::orphanage().is_empty());
    assert_all_superslabs_pooled::<E>();
}

#[test]
fn out_of_memory_at_the_chosen_map_is_deterministic_and_recoverable() {
    test_env!(E, 128 << 20);
    let mut t = ThreadHeap::<E>::new();
    let mut live = Live::new();
    let size = 100_000;
    for _ in 0..40 {
        let p = t.alloc(size);
        assert!(!p.is_null());
        live.add(p, size);
    }
    let acquired = t.heap().stats.superslabs_acquired.get();
    let f = E::fake();

    // the next two superslab mappings work, the third fails
    f.fail_map_after(2);
    let mut got = 0;
    loop {
        let p = t.alloc(size);
        if p.is_null() {
            break;
        }
        live.add(p, size);
        got += 1;
        assert!(got < 10_000, "the map failure was never hit");
    }
    assert_eq!(t.heap().stats.superslabs_acquired.get(), acquired + 2);
    assert_eq!(E::hooks().reclaims(), 1, "shared caches reclaimed once");
    assert_eq!(f.counts().failed_maps, 2, "one retry after reclaiming");
    assert_eq!(E::pool().stats().dirty + E::pool().stats().clean, 0);
    live.check_all();

    // still failing: each refill reclaims once and fails again
    assert!(t.alloc(size).is_null());
    assert_eq!(E::hooks().reclaims(), 2);
    assert_eq!(f.counts().failed_maps, 4);
    // the largest class fails too (every superslab is full of slabs of the
    // other one), without touching what is live
    assert!(t.alloc(SLAB_MAX).is_null());
    // a new thread gets no heap (none free, no memory for one)
    assert!(ThreadHeap::<E>::try_new().is_none());
    live.check_all();

    // the failure clears: allocation works again
    f.clear_failures();
    for _ in 0..20 {
        let p = t.alloc(size);
        assert!(!p.is_null());
        live.add(p, size);
    }
    let p = t.alloc(SLAB_MAX);
    assert!(!p.is_null());
    live.add(p, SLAB_MAX);
    free_all_and_exit(t, &mut live);
}

#[test]
fn failed_purges_corrupt_nothing() {
    test_env!(E, 128 << 20);
    // released superslabs are purged at once (no dirty ones kept, none kept
    // empty by the heap)
    publish::<E>(|p| {
        p.pool_dirty = 0;
        p.heap_keep_empty = 0;
    });
    let mut t = ThreadHeap::<E>::new();
    let mut live = Live::new();
    let mut spare = Vec::new();
    for i in 0..6000 {
        let size = if i % 50 == 0 { 3000 } else { 48 };
        let p = t.alloc(size);
        if i % 10 == 0 {
            live.add(p, size);
        } else {
            spare.push(p);
        }
    }
    // a second superslab's worth, freed entirely later
    let mut big = Vec::new();
    for _ in 0..40 {
        big.push(t.alloc(100_000));
    }
    for p in spare.drain(..).chain(big.drain(..)) {
        // SAFETY: blocks we allocated and never freed.
        unsafe { t.free(p) };
    }
    let f = E::fake();
    f.fail_purge_after(0);
    t.heap().maintain(true);
    t.heap().collect();
    let k = f.counts();
    assert!(k.purges > 0, "idle slots and pooled superslabs were purged");
    assert_eq!(k.failed_purges, k.purges, "and every purge failed");
    live.check_all();

    // the memory the purges left as it was is handed out again, intact
    for i in 0..3000 {
        let size = match i {
            _ if i % 30 == 0 => 100_000,
            _ if i % 3 == 0 => 3000,
            _ => 48,
        };
        let p = t.alloc(size);
        assert!(!p.is_null());
        live.add(p, size);
    }
    live.check_all();
    f.clear_failures();
    for p in live.all() {
        // SAFETY: a live block of ours.
        unsafe { t.free(live.remove(p)) };
    }
    let before = f.counts();
    t.heap().maintain(true);
    t.heap().collect();
    let after = f.counts();
    assert!(after.purges > before.purges);
    assert_eq!(after.failed_purges, before.failed_purges);
    t.exit();
    assert_all_superslabs_pooled::<E>();
}

#[test]
fn a_decay_tick_every_256_refills() {
    test_env!(E, 64 << 20);
    let mut t = ThreadHeap::<E>::new();
    let mut held = Vec::new();
    for _ in 0..255 {
        held.push(t.heap().refill(1));
    }
    assert_eq!(E::hooks().decay_ticks.load(Ordering::SeqCst), 0);
    held.push(t.heap().refill(1));
    assert_eq!(E::hooks().decay_ticks.load(Ordering::SeqCst), 1);
    for _ in 0..256 {
        held.push(t.heap().refill(1));
    }
    assert_eq!(E::hooks().decay_ticks.load(Ordering::SeqCst), 2);
    for p in held {
        assert!(!p.is_null());
        // SAFETY: blocks handed out above, each freed once.
        unsafe { t.free(p) };
    }
    t.exit();
    assert_all_superslabs_pooled::<E>();
}

#[test]
fn idle_slots_are_purged_after_the_decay_time() {
    test_env!(E, 64 << 20);
    let mut t = ThreadHeap::<E>::new();
    let keep = t.alloc(48);
    let mut blocks: Vec<*mut u8> = (0..2000).map(|_| t.alloc(3000)).collect();
    for p in blocks.drain(..) {
        // SAFETY: blocks we allocated.
        unsafe { t.free(p) };
    }
    let decay = DEFAULT_POLICY.decay_ms;
    let f = E::fake();
    // too early: nothing purged (the empty slabs are kept for reuse)
    f.advance_ms(decay / 2);
    let purges = f.counts().purges;
    t.heap().maintain(false);
    assert_eq!(f.counts().purges, purges);
    // after the decay time the empty slabs go back and their slots are
    // purged once they idled for the decay time too
    f.advance_ms(decay);
    t.heap().maintain(false);
    f.advance_ms(decay);
    t.heap().maintain(false);
    assert!(f.counts().purges > purges, "idle slots were purged");
    // SAFETY: the block we kept.
    unsafe { t.free(keep) };
    t.exit();
    assert_all_superslabs_pooled::<E>();
}

#[test]
fn a_visitor_decays_an_idle_heap_and_skips_a_released_one() {
    test_env!(E, 64 << 20);
    use hakmem_heap::Heap;
    use hakmem_platform::Pal;
    let mut t = ThreadHeap::<E>::new();
    let keep = t.alloc(48);
    let blocks: Vec<*mut u8> = (0..2000).map(|_| t.alloc(3000)).collect();
    for p in blocks {
        // SAFETY: blocks we allocated, each freed once.
        unsafe { t.free(p) };
    }
    let h: *mut Heap<E> = t.heap();
    let decay = DEFAULT_POLICY.decay_ms;
    let f = E::fake();
    let purges = f.counts().purges;
    // SAFETY: a registered heap; this thread is in none of its slow paths.
    assert!(unsafe { Heap::visit(h, <E as HeapEnv>::Pal::now_ms(), decay) });
    assert_eq!(f.counts().purges, purges, "nothing idled long enough yet");
    // the owner makes no call; visits alone return the idle memory
    f.advance_ms(decay);
    // SAFETY: a registered heap; this thread is in none of its slow paths.
    assert!(unsafe { Heap::visit(h, <E as HeapEnv>::Pal::now_ms(), decay) });
    f.advance_ms(decay);
    // SAFETY: a registered heap; this thread is in none of its slow paths.
    assert!(unsafe { Heap::visit(h, <E as HeapEnv>::Pal::now_ms(), decay) });
    assert!(f.counts().purges > purges, "idle slots were purged");
    t.check();
    // the owner carries on as before
    let p = t.alloc(3000);
    assert!(!p.is_null());
    // SAFETY: blocks we allocated, each freed once.
    unsafe {
        t.free(p);
        t.free(keep);
    }
    t.exit();
    // SAFETY: a registered heap (heaps are never unmapped); it is released,
    // so the visit does nothing.
    assert!(!unsafe { Heap::visit(h, <E as HeapEnv>::Pal::now_ms(), 0) });
    assert_all_superslabs_pooled::<E>();
    // a new thread gets it back, open to visits again
    let mut t = ThreadHeap::<E>::new();
    assert!(std::ptr::eq(t.heap(), h), "the released heap is reused");
    // SAFETY: a registered heap; this thread is in none of its slow paths.
    assert!(unsafe { Heap::visit(h, <E as HeapEnv>::Pal::now_ms(), 0) });
    t.exit();
}

/// A visitor that visits an owner's heap in a loop (everything idle goes,
/// at once) while the owner allocates and frees: the owner's blocks keep
/// their contents, the heap its invariants, and nothing is lost.
#[test]
fn visits_racing_the_owner_corrupt_nothing() {
    test_env!(E, 256 << 20);
    use hakmem_heap::Heap;
    use hakmem_platform::Pal;
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::sync::Arc;
    let t = ThreadHeap::<E>::new();
    let mut t = t;
    let h = t.heap() as *mut Heap<E> as usize;
    let stop = Arc::new(AtomicBool::new(false));
    let visits = Arc::new(AtomicUsize::new(0));
    let visitor = {
        let (stop, visits) = (stop.clone(), visits.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: a registered heap; this thread owns no heap.
                if unsafe { Heap::visit(h as *mut Heap<E>, <E as HeapEnv>::Pal::now_ms(), 0) } {
                    visits.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::yield_now();
            }
        })
    };
    let owner = std::thread::spawn(move || {
        let mut live = Live::new();
        let sizes = [16, 48, 200, 1024, 3000, 20_000];
        for round in 0..20usize {
            for i in 0..2000usize {
                let size = sizes[(i + round) % sizes.len()];
                let p = t.alloc(size);
                assert!(!p.is_null());
                live.add(p, size);
            }
            // free most, in an order that empties whole slabs
            let all = live.all();
            for (k, p) in all.into_iter().enumerate() {
                if k % 8 != 0 {
                    // SAFETY: a live block of ours.
                    unsafe { t.free(live.remove(p)) };
                }
            }
            live.check_all();
            t.check();
            E::fake().advance_ms(1);
        }
        for p in live.all() {
            // SAFETY: a live block of ours.
            unsafe { t.free(live.remove(p)) };
        }
        t.exit();
    });
    owner.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    visitor.join().unwrap();
    assert!(visits.load(Ordering::Relaxed) > 0, "the visitor got in");
    assert_all_superslabs_pooled::<E>();
}

/// Allocates `bytes` in blocks of each of `sizes` in turn, then frees them
/// all (in allocation order); returns nothing held.
fn churn<E: TestEnv>(t: &mut ThreadHeap<E>, sizes: &[usize], bytes: usize) {
    let mut held = Vec::new();
    let mut done = 0;
    while done < bytes {
        for &n in sizes {
            let p = t.alloc(n);
            assert!(!p.is_null());
            held.push(p);
            done += n;
        }
    }
    for p in held {
        // SAFETY: blocks allocated above, each freed once.
        unsafe { t.free(p) };
    }
}

/// A thread that frees far more than its bins hold, with no refill in
/// between, drains: every bin gives back all but `drain_cap` blocks, so its
/// slabs empty and can go back while the thread stays quiet; the next
/// refill gives the bins their capacities back. A free phase that stays
/// under `DRAIN_AFTER_BYTES`, refills in between, does not drain.
#[test]
fn a_long_free_phase_drains_the_bins_until_the_next_refill() {
    use hakmem_heap::{drain_cap, Heap, DRAIN_AFTER_BYTES, DRAIN_BIN_BYTES};
    use hakmem_platform::Pal;
    test_env!(E, 256 << 20);
    let mut t = ThreadHeap::<E>::new();
    let sizes = [64, 1000, 3000, 20000];
    let caps = |t: &mut ThreadHeap<E>| {
        (0..NCLASSES)
            .map(|c| t.heap().bins[c].cap())
            .collect::<Vec<_>>()
    };
    let full = caps(&mut t);
    assert_eq!(
        full,
        (0..NCLASSES)
            .map(|c| DEFAULT_POLICY.cap(c))
            .collect::<Vec<_>>()
    );

    // two phases of half the threshold each, a refill between them: no drain
    churn(&mut t, &sizes, DRAIN_AFTER_BYTES / 2);
    churn(&mut t, &sizes, DRAIN_AFTER_BYTES / 2);
    assert!(!t.heap().draining());
    assert_eq!(t.heap().drains(), 0);
    let cached: usize = (0..NCLASSES)
        .map(|c| t.heap().bins[c].len() as usize * class_size(c))
        .sum();
    assert!(cached > 256 << 10, "full bins keep a lot: {cached}");

    // one phase of twice the threshold: the heap drains
    churn(&mut t, &sizes, 2 * DRAIN_AFTER_BYTES);
    assert!(t.heap().draining());
    assert_eq!(t.heap().drains(), 1);
    for (c, &cap) in full.iter().enumerate() {
        let bin = &t.heap().bins[c];
        assert_eq!(bin.cap(), drain_cap(cap, c), "class {c}");
        assert!(bin.len() as usize * class_size(c) <= DRAIN_BIN_BYTES.max(class_size(c)));
    }
    assert_eq!(drain_cap(full[class_of(20000)], class_of(20000)), 0);
    assert!(drain_cap(full[class_of(64)], class_of(64)) > 0);
    t.check();
    // nothing pins the slabs now: a visit with decay 0 gives every slab
    // but those of the blocks left in the bins back, and the empty
    // superslabs to the pool
    let h: *mut Heap<E> = t.heap();
    // SAFETY: a registered heap; this thread is in none of its slow paths.
    assert!(unsafe { Heap::visit(h, <E as HeapEnv>::Pal::now_ms(), 0) });
    t.check();
    let pooled = E::pool().stats();
    assert!(
        pooled.dirty + pooled.clean >= 4,
        "empty superslabs pooled: {pooled:?}"
    );

    // the next refill restores the capacities, and the bins fill again
    churn(&mut t, &sizes, 1 << 20);
    assert!(!t.heap().draining());
    assert_eq!(caps(&mut t), full);
    let cached: usize = (0..NCLASSES)
        .map(|c| t.heap().bins[c].len() as usize * class_size(c))
        .sum();
    assert!(cached > 256 << 10, "the bins cache again: {cached}");
    t.exit();
    assert_all_superslabs_pooled::<E>();
}

/// A bin that spills and then runs empty (a request's tree freed, then
/// the next one built) doubles its capacity at that refill, up to
/// `MAX_GROWTH` times, and from then on serves the whole cycle from the
/// bin; a bin that only fills, or only empties, keeps its policy's
/// capacity. Draining gives the growth back.
#[test]
fn a_churning_bin_grows_until_it_holds_the_cycle() {
    use hakmem_heap::{DRAIN_AFTER_BYTES, MAX_GROWTH};
    test_env!(E, 256 << 20);
    let mut t = ThreadHeap::<E>::new();
    let c = class_of(64);
    let base = DEFAULT_POLICY.cap(c) as usize;
    let cycle = |t: &mut ThreadHeap<E>, n: usize| {
        let held: Vec<*mut u8> = (0..n).map(|_| t.alloc(64)).collect();
        assert!(held.iter().all(|p| !p.is_null()));
        for p in held {
            // SAFETY: blocks allocated above, each freed once.
            unsafe { t.free(p) };
        }
    };
    // within the capacity: no spill, no growth
    cycle(&mut t, base / 2);
    cycle(&mut t, base / 2);
    assert_eq!(t.heap().growth(c), 0);
    assert_eq!(t.heap().bins[c].cap() as usize, base);
    // three times the capacity: spills, then refills: ×2, then ×4
    let n = 3 * base;
    cycle(&mut t, n);
    assert_eq!(t.heap().growth(c), 0, "spilled, not refilled yet");
    let spills_before = t.heap().stats.classes[c].spills.get();
    cycle(&mut t, n);
    assert_eq!(t.heap().growth(c), 1);
    cycle(&mut t, n);
    assert_eq!(t.heap().growth(c), MAX_GROWTH);
    assert_eq!(t.heap().bins[c].cap() as usize, base << MAX_GROWTH);
    // the cycle now stays in the bin
    let spills = t.heap().stats.classes[c].spills.get();
    cycle(&mut t, n);
    cycle(&mut t, n);
    assert_eq!(
        t.heap().stats.classes[c].spills.get(),
        spills,
        "no more spills"
    );
    assert!(spills > spills_before);
    assert_eq!(t.heap().growth(c), MAX_GROWTH, "never past the limit");
    // other classes untouched
    assert_eq!(t.heap().growth(class_of(32)), 0);
    t.check();
    // a long free phase drains: the growth goes back
    let held: Vec<*mut u8> = (0..(2 * DRAIN_AFTER_BYTES / 1024))
        .map(|_| t.alloc(1024))
        .collect();
    for p in held {
        // SAFETY: blocks allocated above, each freed once.
        unsafe { t.free(p) };
    }
    assert!(t.heap().draining());
    assert_eq!(t.heap().growth(c), 0);
    // (more than the drained bin holds: a refill ends the drain)
    cycle(&mut t, 200);
    assert!(!t.heap().draining());
    assert_eq!(
        t.heap().bins[c].cap() as usize,
        base,
        "the policy's capacity again"
    );
    t.exit();
    assert_all_superslabs_pooled::<E>();
}
