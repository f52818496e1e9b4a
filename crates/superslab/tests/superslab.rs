//! The superslab box on its own: carving, ownership, remote frees, pool and
//! orphanage, against a private page map.

// Explicit drops mark where a slab handle's exclusive borrow ends.
#![allow(clippy::drop_non_drop)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use hakmem_pagemap::{Entry, PageMap};
use hakmem_platform::Linux;
use hakmem_superslab::*;
use hakmem_tiny_sll::Chain;
use proptest::prelude::*;

const KEEP: PoolLimits = PoolLimits {
    dirty: 4,
    clean: 4,
    decay_ms: 1000,
};

fn new_map() -> &'static PageMap {
    Box::leak(Box::new(PageMap::new()))
}

fn new_owner() -> &'static PendingList {
    Box::leak(Box::new(PendingList::new()))
}

/// Takes blocks until `n` are out or the slab has none left: one take
/// carves at most `carve_limit` fresh blocks.
fn take_blocks(h: &mut SlabHandle<'_>, n: u32) -> Vec<usize> {
    let mut v = Vec::new();
    while (v.len() as u32) < n {
        let got = chain_blocks(h.take(n - v.len() as u32));
        if got.is_empty() {
            break;
        }
        v.extend(got);
    }
    v
}

fn chain_blocks(mut c: Chain) -> Vec<usize> {
    let mut v = Vec::new();
    // SAFETY: chains handed out by a slab are valid lists.
    while let Some(b) = unsafe { c.pop() } {
        v.push(b as usize);
    }
    v
}

#[test]
fn slabs_are_carved_from_free_slot_runs() {
    let map = new_map();
    let pool = SuperslabPool::<Linux>::new();
    let owner = new_owner();
    let mut ss = pool.acquire(map, 100, owner).expect("superslab");
    assert_eq!(map.get(ss.base()), Entry::slot(100, NO_CLASS));
    assert!(ss.is_empty());
    let a = ss.alloc_slab(3, 48, 1).unwrap();
    let b = ss.alloc_slab(40, 20480, 4).unwrap();
    // SAFETY: we own the superslab.
    let (ha, hb) = unsafe { (a.handle(), b.handle()) };
    assert_eq!(ha.first_slot(), 1);
    assert_eq!(hb.first_slot(), 2);
    assert_eq!(ha.capacity() as usize, SLOT_SIZE / 48);
    assert_eq!(hb.capacity() as usize, 4 * SLOT_SIZE / 20480);
    let hdr = ss.header();
    let pa = ha.data();
    let pb = hb.data();
    assert_eq!(hdr.class_of(pa), 3);
    assert_eq!(
        map.get(pa as usize),
        Entry::slot(100, 3),
        "the map mirrors the class"
    );
    assert_eq!(map.get(pb as usize + 3 * SLOT_SIZE), Entry::slot(100, 40));
    // every slot of the 4-slot slab reports its class and its slab
    for k in 0..4 {
        let p = pb.wrapping_add(k * SLOT_SIZE + 100);
        assert_eq!(hdr.class_of(p), 40);
        // SAFETY: we own the superslab, which stays mapped until the pool
        // takes it back at the end of the test.
        assert!(std::ptr::eq(hdr.slab_of(p).unwrap(), unsafe { b.slab() }));
    }
    assert_eq!(
        hdr.class_of(hdr.base() as *const u8),
        NO_CLASS,
        "header slot"
    );
    assert!(hdr
        .slab_of((hdr.base() + 10 * SLOT_SIZE) as *const u8)
        .is_none());
    drop((ha, hb));
    // fill the rest with 1-slot slabs: 31 - 1 - 4 = 26 of them
    let mut n = 0;
    while ss.alloc_slab(5, 64, 1).is_some() {
        n += 1;
    }
    assert_eq!(n, 26);
    assert!(ss.alloc_slab(5, 64, 1).is_none());
    // SAFETY: the slabs hold no live blocks and were never queued.
    unsafe {
        ss.release_slab(a);
        ss.release_slab(b);
    }
    assert!(
        ss.alloc_slab(6, 96, 5).is_some(),
        "a and b were adjacent: 5 free slots"
    );
    assert!(ss.alloc_slab(6, 96, 1).is_none());
}

#[test]
fn idle_free_slots_are_purged_after_the_decay_time() {
    let map = new_map();
    let pool = SuperslabPool::<Linux>::new();
    let owner = new_owner();
    let mut ss = pool.acquire(map, 120, owner).unwrap();
    let a = ss.alloc_slab(3, 64, 2).unwrap();
    // SAFETY: we own the superslab.
    let data = unsafe { a.handle() }.data();
    // SAFETY: two slots of slab memory are ours.
    unsafe { std::ptr::write_bytes(data, 0x77, 2 * SLOT_SIZE) };
    // SAFETY: no block was handed out.
    unsafe { ss.release_slab(a) };
    assert_eq!(ss.dirty_slots(), 0b110);
    assert_eq!(
        ss.purge_idle::<Linux>(5000, 1000),
        0,
        "first sight starts the clock"
    );
    assert_eq!(
        ss.purge_idle::<Linux>(5500, 1000),
        0,
        "not idle long enough"
    );
    // SAFETY: the memory is still mapped (and still dirty).
    assert_eq!(unsafe { data.read() }, 0x77);
    assert_eq!(ss.purge_idle::<Linux>(6000, 1000), 2 * SLOT_SIZE);
    assert_eq!(ss.dirty_slots(), 0);
    // SAFETY: purged pages read zero.
    assert_eq!(unsafe { data.add(SLOT_SIZE + 5).read() }, 0);
    // reusing a slot makes it clean-and-busy; releasing again makes it dirty
    let b = ss.alloc_slab(3, 64, 1).unwrap();
    // SAFETY: no block handed out.
    unsafe { ss.release_slab(b) };
    assert_eq!(
        ss.purge_idle::<Linux>(0, 0),
        SLOT_SIZE,
        "decay 0 purges at once"
    );
}

/// Slot 0 past the header's pages holds nothing: a purge of a run from
/// slot 1 (a heap's idle slots, or a superslab the pool purges) gives those
/// pages back too (with huge pages they were faulted in with the
/// superslab), and the header stays intact; a run starting later leaves
/// slot 0 alone.
#[test]
fn purges_from_slot_1_take_the_unused_tail_of_the_header_slot() {
    const _: () = assert!(
        HEADER_END >= std::mem::size_of::<Superslab>()
            && HEADER_END < SLOT_SIZE
            && HEADER_END.is_multiple_of(4096)
    );
    let map = new_map();
    let pool = SuperslabPool::<Linux>::new();
    let owner = new_owner();
    let mut ss = pool.acquire(map, 122, owner).unwrap();
    let base = ss.base();
    let tail = (base + HEADER_END) as *mut u8;
    let dirty_tail = || {
        // SAFETY: slot 0 past the header is mapped and holds nothing.
        unsafe { std::ptr::write_bytes(tail, 0x55, SLOT_SIZE - HEADER_END) }
    };
    // SAFETY: (below) reads of the mapped, unused tail of slot 0.
    let tail_byte = |i: usize| unsafe { tail.add(i).read() };
    dirty_tail();
    // a run that does not start at slot 1: slot 0 is left alone
    let a = ss.alloc_slab(3, 64, 1).unwrap();
    let b = ss.alloc_slab(3, 64, 1).unwrap();
    // SAFETY: no block was handed out.
    unsafe { ss.release_slab(b) };
    assert_eq!(ss.purge_idle::<Linux>(0, 0), SLOT_SIZE);
    assert_eq!(tail_byte(0), 0x55);
    // a run from slot 1: the tail goes too, the header stays
    // SAFETY: no block was handed out.
    unsafe { ss.release_slab(a) };
    assert_eq!(
        ss.purge_idle::<Linux>(0, 0),
        SLOT_SIZE,
        "slot bytes counted"
    );
    assert_eq!(tail_byte(0), 0);
    assert_eq!(tail_byte(SLOT_SIZE - HEADER_END - 1), 0);
    ss.check(map).expect("the header survives");
    // the pool's purge of a whole superslab takes the tail too
    dirty_tail();
    pool.release(map, ss, 0, 10_000, &KEEP);
    pool.maintain(map, 10_000, &KEEP);
    assert!(pool.stats().purged >= 1);
    assert_eq!(tail_byte(7), 0);
    let ss = pool.acquire(map, 122, owner).unwrap();
    assert_eq!(ss.base(), base, "the purged superslab is reused");
    ss.check(map).expect("the header survives");
    pool.release(map, ss, 10_000, 10_000, &KEEP);
}

/// A purged superslab keeps small pages (`MADV_NOHUGEPAGE`: khugepaged
/// would collapse its purged slots back into a resident huge page around
/// the pages still in use) until the pool hands it out clean, advised huge
/// again when its huge-page mode says so.
#[test]
fn purged_superslabs_keep_small_pages_until_handed_out_clean() {
    if !hakmem_platform::thp_available() {
        eprintln!("skipped: transparent huge pages are off or absent");
        return;
    }
    let map = new_map();
    let pool = SuperslabPool::<Linux>::new();
    pool.set_huge_mode(HugeMode::Direct);
    let owner = new_owner();
    let mut ss = pool.acquire(map, 123, owner).unwrap();
    let base = ss.base();
    let has = |flag: &str| vm_flags(base).split_whitespace().any(|f| f == flag);
    assert!(has("hg"), "fresh: {}", vm_flags(base));
    let a = ss.alloc_slab(3, 64, 1).unwrap();
    let b = ss.alloc_slab(3, 64, 1).unwrap();
    // SAFETY: no block was handed out.
    unsafe { ss.release_slab(b) };
    assert_eq!(ss.purge_idle::<Linux>(0, 0), SLOT_SIZE);
    assert!(has("nh"), "purged: {}", vm_flags(base));
    // SAFETY: no block was handed out.
    unsafe { ss.release_slab(a) };
    pool.release(map, ss, 0, 10_000, &KEEP);
    pool.maintain(map, 10_000, &KEEP);
    assert!(has("nh"), "pooled clean: {}", vm_flags(base));
    let ss = pool.acquire(map, 123, owner).unwrap();
    assert_eq!(ss.base(), base, "the purged superslab is reused");
    assert!(has("hg") && !has("nh"), "handed out: {}", vm_flags(base));
    pool.release(map, ss, 10_000, 10_000, &KEEP);
}

#[test]
fn slab_lists_link_both_ends() {
    let map = new_map();
    let pool = SuperslabPool::<Linux>::new();
    let owner = new_owner();
    let mut ss = pool.acquire(map, 121, owner).unwrap();
    let s: Vec<SlabRef> = (0..4).map(|_| ss.alloc_slab(1, 64, 1).unwrap()).collect();
    let mut list = SlabList::new();
    // SAFETY: we own the superslab; one handle at a time.
    unsafe {
        list.push_back(&mut s[1].handle());
        list.push_front(&mut s[0].handle());
        list.push_back(&mut s[2].handle());
        list.push_back(&mut s[3].handle());
    }
    assert_eq!(list.iter().collect::<Vec<_>>(), s);
    assert_eq!(list.len(), 4);
    // SAFETY: we own the superslab (`ss`); one handle at a time, each
    // dropped at the end of its statement.
    unsafe {
        list.remove(&mut s[3].handle());
        list.remove(&mut s[0].handle());
    }
    assert_eq!(list.iter().collect::<Vec<_>>(), vec![s[1], s[2]]);
    assert_eq!(list.next_after(s[1]), Some(s[2]));
    assert_eq!(list.next_after(s[2]), None);
    // SAFETY: we own the superslab (`ss`); one handle at a time, each
    // dropped at the end of its statement.
    unsafe { list.push_back(&mut s[0].handle()) };
    assert_eq!(list.iter().collect::<Vec<_>>(), vec![s[1], s[2], s[0]]);
    // SAFETY: we own the superslab (`ss`); one handle at a time, each
    // dropped at the end of its statement.
    unsafe {
        list.remove(&mut s[1].handle());
        list.remove(&mut s[2].handle());
        list.remove(&mut s[0].handle());
    }
    assert!(list.is_empty() && list.first().is_none());
    // SAFETY: we own the superslab (`ss`); one handle at a time, each
    // dropped at the end of its statement.
    unsafe { list.push_back(&mut s[3].handle()) };
    assert_eq!(list.first(), Some(s[3]));
}

#[test]
fn blocks_up_to_half_a_slot_never_straddle_slots() {
    let map = new_map();
    let pool = SuperslabPool::<Linux>::new();
    let owner = new_owner();
    let mut ss = pool.acquire(map, 122, owner).unwrap();
    let bs = 24576usize; // two per slot, 16 KiB unused at each slot's end
    let r = ss.alloc_slab(9, bs as u32, 4).unwrap();
    // SAFETY: we own the superslab.
    let mut h = unsafe { r.handle() };
    assert_eq!(h.capacity(), 8);
    let blocks = take_blocks(&mut h, 100);
    assert_eq!(blocks.len(), 8);
    for &p in &blocks {
        let in_slot = p % SLOT_SIZE;
        assert!(
            in_slot + bs <= SLOT_SIZE,
            "{p:#x} straddles a slot boundary"
        );
        assert!(h.is_block_start(p as *const u8));
        assert!(ss.header().is_block_start(p as *const u8, bs));
    }
    // the unused end of a slot is not a block, though its offset is a
    // multiple of the block size
    let tail = (h.data() as usize) + 2 * bs;
    assert!(!h.is_block_start(tail as *const u8));
    assert!(!ss.header().is_block_start(tail as *const u8, bs));
    assert_eq!(blocks_per_slot(bs), 2);
    assert_eq!(
        blocks_per_slot(40000),
        0,
        "bigger blocks are laid back to back"
    );
    assert_eq!(slab_capacity(40000, 16), 26);
}

#[test]
fn take_and_put_track_used_and_transitions() {
    let map = new_map();
    let pool = SuperslabPool::<Linux>::new();
    let owner = new_owner();
    let mut ss = pool.acquire(map, 101, owner).unwrap();
    let r = ss.alloc_slab(1, 1024, 1).unwrap(); // 64 blocks
                                                // SAFETY: we own the superslab.
    let mut h = unsafe { r.handle() };
    let first = take_blocks(&mut h, 10);
    assert_eq!(first.len(), 10);
    let rest = take_blocks(&mut h, 1000);
    assert_eq!(rest.len(), 54);
    assert!(h.is_full());
    assert!(h.take(1).is_empty());
    let all: Vec<usize> = first.iter().chain(rest.iter()).copied().collect();
    let set: HashSet<usize> = all.iter().copied().collect();
    assert_eq!(set.len(), 64, "no block handed out twice");
    for &p in &all {
        assert!(h.is_block_start(p as *const u8));
        assert!(!h.is_block_start((p + 8) as *const u8), "interior pointer");
        assert_eq!((p - h.data() as usize) % 1024, 0);
    }
    assert_eq!(h.used(), 64);
    // SAFETY: each block is ours and handed back once.
    let t = unsafe { h.put(all[0] as *mut _) };
    assert_eq!(t, Put::WasFull);
    for &p in &all[1..63] {
        // SAFETY: each block is ours and handed back once.
        assert_eq!(unsafe { h.put(p as *mut _) }, Put::Normal);
    }
    // SAFETY: each block is ours and handed back once.
    assert_eq!(unsafe { h.put(all[63] as *mut _) }, Put::Empty);
    assert!(h.is_releasable());
    // the whole free list comes back in one take
    let again = take_blocks(&mut h, 64);
    assert_eq!(again.iter().copied().collect::<HashSet<_>>(), set);
}

#[test]
fn remote_frees_reach_the_owner_through_the_pending_list() {
    let map = new_map();
    let pool = SuperslabPool::<Linux>::new();
    let owner = new_owner();
    let mut ss = pool.acquire(map, 102, owner).unwrap();
    let slabs: Vec<SlabRef> = (0..4).map(|_| ss.alloc_slab(2, 32, 1).unwrap()).collect();
    let mut blocks = Vec::new();
    for s in &slabs {
        // SAFETY: we own the superslab.
        blocks.extend(take_blocks(&mut unsafe { s.handle() }, 2048));
    }
    assert_eq!(blocks.len(), 4 * 2048);
    let base = ss.base();
    // four threads free disjoint quarters, interleaved across slabs
    let freed = AtomicUsize::new(0);
    std::thread::scope(|sc| {
        for t in 0..4 {
            let mine: Vec<usize> = blocks.iter().copied().skip(t).step_by(4).collect();
            let freed = &freed;
            sc.spawn(move || {
                // SAFETY: base is a live superslab while the scope runs.
                let hdr = unsafe { &*(base as *const Superslab) };
                for p in mine {
                    // SAFETY: each block is live and freed exactly once.
                    assert!(unsafe { remote_free(hdr, p as *mut u8, 0xfeed) });
                    freed.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(freed.load(Ordering::Relaxed), 4 * 2048);
    let mut seen = 0;
    let mut drained = 0;
    for s in owner.take_all() {
        seen += 1;
        // SAFETY: we own the superslab of every slab on our pending list.
        drained += unsafe { s.handle() }.drain_pending();
    }
    assert!(
        (4..=4 * 2048).contains(&seen),
        "each slab queued, at most once per push"
    );
    assert_eq!(drained, 4 * 2048);
    for s in &slabs {
        // SAFETY: owned.
        let h = unsafe { s.handle() };
        assert!(h.is_releasable(), "{h:?}");
        assert!(!h.is_queued());
    }
    for s in slabs {
        // SAFETY: releasable, checked above.
        unsafe { ss.release_slab(s) };
    }
    assert!(ss.is_empty());
    pool.release(map, ss, 0, 0, &KEEP);
    assert_eq!(
        map.get(base + 5 * SLOT_SIZE),
        Entry::slot(Entry::FREE_TAG, NO_CLASS)
    );
}

#[test]
fn a_queued_slab_is_not_releasable_until_processed() {
    let map = new_map();
    let pool = SuperslabPool::<Linux>::new();
    let owner = new_owner();
    let mut ss = pool.acquire(map, 103, owner).unwrap();
    let s = ss.alloc_slab(2, 32, 1).unwrap();
    // SAFETY: owned.
    let b = take_blocks(&mut unsafe { s.handle() }, 1);
    // SAFETY: live block freed once.
    assert!(unsafe { remote_free(ss.header(), b[0] as *mut u8, 0xfeed) });
    // SAFETY: owned.
    let mut h = unsafe { s.handle() };
    assert_eq!(h.drain_remote(), 1, "direct drain takes the block");
    assert_eq!(h.used(), 0);
    assert!(
        h.is_queued() && !h.is_releasable(),
        "still on the pending list"
    );
    drop(h);
    let taken: Vec<SlabRef> = owner.take_all().collect();
    assert_eq!(taken, vec![s]);
    // SAFETY: owned.
    let mut h = unsafe { s.handle() };
    assert_eq!(h.drain_pending(), 0);
    assert!(h.is_releasable());
}

/// Batches of remote frees carry their length into the slab's remote word:
/// the owner's drain takes stack and count in one swap, and splices them
/// with the local free list whichever is shorter (or adopts the stack as
/// the free list when that is empty); nothing is lost or counted twice,
/// and the slab's check (count = the stack's length) holds throughout.
#[test]
fn counted_remote_stacks_join_the_local_free_list() {
    let map = new_map();
    let pool = SuperslabPool::<Linux>::new();
    let owner = new_owner();
    let mut ss = pool.acquire(map, 104, owner).unwrap();
    let s = ss.alloc_slab(2, 32, 1).unwrap();
    // SAFETY: owned.
    let blocks = take_blocks(&mut unsafe { s.handle() }, 300);
    assert_eq!(blocks.len(), 300);
    let batch_free = |bs: &[usize]| {
        let mut b = RemoteBatch::EMPTY;
        for &p in bs {
            let p = p as *mut u8;
            // SAFETY: a live block of our slab, freed once.
            assert!(unsafe { remote_claim(p, 0xfeed) });
            let full = if b.is_empty() {
                // SAFETY: empty batch, claimed block.
                unsafe { b.start(p, 64) }
            } else {
                // SAFETY: claimed, of the batch's slot (one slot slab).
                unsafe { b.push(p) }
            };
            if full {
                assert_eq!(b.flush(), 64);
            }
        }
        b.flush();
    };
    let check = |what: &str| {
        // SAFETY: owned.
        let h = unsafe { s.handle() };
        assert_eq!(h.check(), Ok(()), "{what}");
    };
    // an empty local free list takes the stack as it is: 100 in two batches
    batch_free(&blocks[..100]);
    check("after 100 remote frees");
    // SAFETY: owned.
    let mut h = unsafe { s.handle() };
    assert_eq!(h.free_count(), 0);
    assert_eq!(h.drain_remote(), 100);
    assert_eq!((h.free_count(), h.used()), (100, 200));
    drop(h);
    check("after the first drain");
    // a shorter stack (10) is walked and spliced before the 100
    batch_free(&blocks[100..110]);
    // SAFETY: owned.
    assert_eq!(unsafe { s.handle() }.drain_remote(), 10);
    check("after the second drain");
    // a longer stack (190) than the free list (110): the free list is walked
    batch_free(&blocks[110..300]);
    check("190 waiting");
    let taken: Vec<SlabRef> = owner.take_all().collect();
    assert_eq!(taken, vec![s]);
    // SAFETY: owned.
    let mut h = unsafe { s.handle() };
    assert_eq!(h.drain_pending(), 190);
    assert_eq!((h.free_count(), h.used()), (300, 0));
    assert!(h.is_releasable());
    drop(h);
    check("all drained");
    // SAFETY: owned; every block once, none lost.
    let back: HashSet<usize> = take_blocks(&mut unsafe { s.handle() }, 300)
        .into_iter()
        .collect();
    assert_eq!(back, blocks.iter().copied().collect::<HashSet<_>>());
}

#[test]
fn pool_keeps_a_bounded_number_and_unmaps_the_rest() {
    let map = new_map();
    let pool = SuperslabPool::<Linux>::new();
    let owner = new_owner();
    let one = PoolLimits {
        dirty: 1,
        clean: 1,
        decay_ms: 1000,
    };
    let all: Vec<OwnedSuperslab> = (0..5)
        .map(|_| pool.acquire(map, 104, owner).unwrap())
        .collect();
    let bases: Vec<usize> = all.iter().map(|s| s.base()).collect();
    for s in all {
        pool.release(map, s, 10, 10, &one);
    }
    let st = pool.stats();
    assert_eq!(st.mapped, 5);
    assert_eq!((st.dirty, st.clean), (1, 1));
    assert_eq!(
        st.purged, 4,
        "each newer release pushes the older dirty one out"
    );
    assert_eq!(st.unmapped, 3);
    let pooled = bases
        .iter()
        .filter(|&&b| map.get(b).tag() == Entry::FREE_TAG)
        .count();
    let gone = bases.iter().filter(|&&b| map.get(b) == Entry::NONE).count();
    assert_eq!((pooled, gone), (2, 3));
    // the newest dirty one comes back first
    let again = pool.acquire(map, 105, owner).unwrap();
    assert_eq!(again.base(), bases[4]);
    assert_eq!(pool.stats().reused, 1);
    pool.release(map, again, 20, 20, &one);
    // decay: after a period the dirty one is purged, after 8 the clean unmapped
    pool.maintain(map, 1020, &one);
    assert_eq!(pool.stats().dirty, 0);
    pool.maintain(map, 20_000, &one);
    assert_eq!((pool.stats().dirty, pool.stats().clean), (0, 0));
    pool.trim(map);
    assert!(bases.iter().all(|&b| map.get(b) == Entry::NONE));
}

#[test]
fn orphans_are_adopted_and_their_queued_slabs_forwarded() {
    let map = new_map();
    let pool = SuperslabPool::<Linux>::new();
    let orphanage = Orphanage::new();
    let old_owner = new_owner();
    let new_owner_list = new_owner();
    let mut ss = pool.acquire(map, 106, old_owner).unwrap();
    let s = ss.alloc_slab(2, 32, 1).unwrap();
    // SAFETY: owned.
    let blocks = take_blocks(&mut unsafe { s.handle() }, 3);
    let base = ss.base();
    orphanage.abandon(ss);
    assert_eq!(map.get(base).tag(), Entry::ORPHAN_TAG);
    assert_eq!(
        map.get(blocks[0]),
        Entry::slot(Entry::ORPHAN_TAG, 2),
        "classes survive re-tagging"
    );
    assert_eq!(orphanage.len(), 1);
    // SAFETY: the superslab is live; the block is live and freed once.
    assert!(unsafe { remote_free(&*(base as *const Superslab), blocks[0] as *mut u8, 0xfeed) });
    assert!(!old_owner.has_pending(), "the orphanage is the owner now");
    let mut adopted = orphanage.adopt(107, new_owner_list).unwrap();
    assert_eq!(map.get(blocks[1]), Entry::slot(107, 2));
    assert!(orphanage.is_empty());
    let fwd: Vec<SlabRef> = new_owner_list.take_all().collect();
    assert_eq!(fwd, vec![s], "the queued slab followed its superslab");
    // SAFETY: we own it now.
    let mut h = unsafe { s.handle() };
    assert_eq!(h.drain_pending(), 1);
    for &b in &blocks[1..] {
        // SAFETY: live blocks, returned once.
        unsafe { h.put(b as *mut _) };
    }
    assert!(h.is_releasable());
    drop(h);
    // SAFETY: releasable.
    unsafe { adopted.release_slab(s) };
    pool.release(map, adopted, 0, 0, &KEEP);
}

#[test]
fn slab_check_reports_a_broken_free_list_or_remote_stack() {
    let map = new_map();
    let pool = SuperslabPool::<Linux>::new();
    let owner = new_owner();
    let mut ss = pool.acquire(map, 123, owner).unwrap();
    let r = ss.alloc_slab(4, 64, 1).unwrap();
    let other = ss.alloc_slab(4, 64, 1).unwrap();
    // SAFETY: we own the superslab, and this is the only handle to `r`.
    let mut h = unsafe { r.handle() };
    let b = take_blocks(&mut h, 4);
    // SAFETY: we own the superslab; the handle to `other` lives for this
    // statement only.
    let foreign = take_blocks(&mut unsafe { other.handle() }, 1)[0];
    for &p in &b[..3] {
        // SAFETY: live blocks of this slab, returned once.
        unsafe { h.put(p as *mut _) };
    }
    assert_eq!(h.check(), Ok(()));
    let link = |p: usize| p as *mut *mut u8;
    // SAFETY: the blocks are ours (free, on our list); we only rewrite and
    // then restore their link words.
    unsafe {
        // the list is b2 -> b1 -> b0 -> null; make b0 point back at b2
        *link(b[0]) = b[2] as *mut u8;
        assert!(h.check().is_err(), "a cyclic free list");
        *link(b[0]) = b[0] as *mut u8;
        assert!(h.check().is_err(), "a self loop");
        *link(b[0]) = (b[3] + 8) as *mut u8;
        assert!(h.check().is_err(), "an interior pointer on the free list");
        *link(b[0]) = std::ptr::null_mut();
    }
    assert_eq!(h.check(), Ok(()));
    drop(h);
    // SAFETY: b[3] is live and freed once.
    assert!(unsafe { remote_free(ss.header(), b[3] as *mut u8, 0xfeed) });
    // SAFETY: we own the superslab; the previous handle to `r` was dropped.
    let h = unsafe { r.handle() };
    assert_eq!(h.check(), Ok(()));
    // SAFETY: b[3] is on the remote stack, with a null link; we rewrite the
    // link to a block of the other slab, then restore it.
    unsafe {
        *link(b[3]) = foreign as *mut u8;
        assert!(h.check().is_err(), "a foreign block on the remote stack");
        *link(b[3]) = std::ptr::null_mut();
    }
    assert_eq!(h.check(), Ok(()));
    assert_eq!(ss.check(map), Ok(()));
}

#[test]
fn superslab_check_reports_a_header_out_of_step_with_the_map() {
    let map = new_map();
    let pool = SuperslabPool::<Linux>::new();
    let owner = new_owner();
    let mut ss = pool.acquire(map, 124, owner).unwrap();
    let r = ss.alloc_slab(6, 96, 3).unwrap();
    assert_eq!(ss.check(map), Ok(()));
    // SAFETY: we own the superslab.
    let data = unsafe { r.handle() }.data() as usize;
    let good = map.get(data + SLOT_SIZE);
    map.set(data + SLOT_SIZE, Entry::slot(124, 7));
    assert!(ss.check(map).is_err(), "a slot's entry has the wrong class");
    map.set(data + SLOT_SIZE, Entry::slot(125, 6));
    assert!(ss.check(map).is_err(), "a slot's entry has the wrong tag");
    map.set(data + SLOT_SIZE, good);
    map.set(ss.base() + 20 * SLOT_SIZE, Entry::slot(124, 6));
    assert!(ss.check(map).is_err(), "a free slot's entry has a class");
    map.set(ss.base() + 20 * SLOT_SIZE, Entry::slot(124, NO_CLASS));
    assert_eq!(ss.check(map), Ok(()));
    assert!(ss.check(new_map()).is_err(), "not the superslab's map");
}

#[derive(Debug, Clone)]
enum Op {
    Take(u32),
    Put(usize),
    Remote(usize),
    Drain,
    Pending,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u32..40).prop_map(Op::Take),
        3 => any::<usize>().prop_map(Op::Put),
        2 => any::<usize>().prop_map(Op::Remote),
        1 => Just(Op::Drain),
        1 => Just(Op::Pending),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Model test of one slab: blocks handed out are unique, aligned, inside
    /// the slab, and the used count always equals live + remote blocks.
    #[test]
    fn slab_matches_model(bs_idx in 0usize..4, ops in proptest::collection::vec(op(), 1..120)) {
        let bs = [16u32, 48, 1024, 5120][bs_idx];
        let map = new_map();
        let pool = SuperslabPool::<Linux>::new();
        let owner = new_owner();
        let mut ss = pool.acquire(map, 110, owner).unwrap();
        let r = ss.alloc_slab(7, bs, 1).unwrap();
        let mut live: Vec<usize> = Vec::new();
        let mut remote: usize = 0;
        let mut ever: HashSet<usize> = HashSet::new();
        for o in ops {
            // SAFETY: we own the superslab; one handle at a time.
            let mut h = unsafe { r.handle() };
            match o {
                Op::Take(n) => {
                    let got = chain_blocks(h.take(n));
                    for &p in &got {
                        prop_assert!(h.is_block_start(p as *const u8));
                        prop_assert!(!live.contains(&p));
                        // write the whole block: it must be ours to write
                        // SAFETY: the block is live and bs bytes long.
                        unsafe { std::ptr::write_bytes(p as *mut u8, 0x5a, bs as usize) };
                        ever.insert(p);
                    }
                    live.extend(got);
                }
                Op::Put(i) if !live.is_empty() => {
                    let p = live.swap_remove(i % live.len());
                    // SAFETY: a live block of this slab, returned once.
                    unsafe { h.put(p as *mut _) };
                }
                Op::Remote(i) if !live.is_empty() => {
                    let p = live.swap_remove(i % live.len());
                    drop(h);
                    // SAFETY: a live block handed out from a slab of the live superslab,
                    // freed once, through the remote path.
                    assert!(unsafe { remote_free(ss.header(), p as *mut u8, 0xfeed) });
                    remote += 1;
                    continue;
                }
                Op::Drain => remote -= h.drain_remote() as usize,
                Op::Pending => {
                    drop(h);
                    for s in owner.take_all() {
                        prop_assert_eq!(s, r);
                        // SAFETY: owned.
                        remote -= unsafe { s.handle() }.drain_pending() as usize;
                    }
                    continue;
                }
                _ => {}
            }
            // SAFETY: owned.
            let h = unsafe { r.handle() };
            prop_assert_eq!(h.used() as usize, live.len() + remote);
            prop_assert!(h.carved() <= h.capacity());
            prop_assert_eq!(h.check(), Ok(()));
            drop(h);
            prop_assert_eq!(ss.check(map), Ok(()));
        }
        prop_assert!(ever.len() <= (SLOT_SIZE / bs as usize));
    }
}

/// The `VmFlags` of the mapping of this process that contains `addr`.
fn vm_flags(addr: usize) -> String {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("/proc/self/smaps");
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((lo, hi)) = first.split_once('-') {
            if let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = lo <= addr && addr < hi;
                continue;
            }
        }
        if inside {
            if let Some(flags) = line.strip_prefix("VmFlags:") {
                return flags.trim().to_owned();
            }
        }
    }
    panic!("no mapping with VmFlags contains {addr:#x}");
}

/// With huge pages on, a fresh superslab is advised `MADV_HUGEPAGE` (the
/// kernel marks its mapping `hg`); with them off it is not.
#[test]
fn fresh_superslabs_are_advised_huge_pages_when_asked() {
    let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled");
    if !thp.is_ok_and(|s| !s.contains("[never]")) {
        eprintln!("skipped: transparent huge pages are off or absent");
        return;
    }
    let map = new_map();
    let owner = new_owner();
    let plain = SuperslabPool::<Linux>::new();
    let a = plain.acquire(map, 101, owner).expect("superslab");
    let huge = SuperslabPool::<Linux>::new();
    huge.set_huge_pages(true);
    let b = huge.acquire(map, 102, owner).expect("superslab");
    let fa = vm_flags(a.base());
    let fb = vm_flags(b.base());
    assert!(
        !fa.split_whitespace().any(|f| f == "hg"),
        "plain superslab: {fa}"
    );
    assert!(
        fb.split_whitespace().any(|f| f == "hg"),
        "huge superslab: {fb}"
    );
    plain.release(map, a, 0, 0, &KEEP);
    huge.release(map, b, 0, 0, &KEEP);
}

/// Gated: a fresh superslab is advised huge only while the grant lasts.
#[test]
fn gated_pools_advise_only_within_the_grant() {
    let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled");
    let thp_on = thp.is_ok_and(|s| !s.contains("[never]"));
    let map = new_map();
    let owner = new_owner();
    let pool = SuperslabPool::<Linux>::new();
    pool.set_huge_mode(HugeMode::Gated);
    assert_eq!(pool.huge_mode(), HugeMode::Gated);
    pool.grant_huge(1);
    let a = pool.acquire(map, 103, owner).expect("superslab");
    assert_eq!(pool.huge_budget(), 0);
    let b = pool.acquire(map, 104, owner).expect("superslab");
    assert_eq!(pool.huge_budget(), 0, "never below zero");
    let s = pool.stats();
    assert_eq!((s.mapped, s.huge_fresh, s.cold), (2, 1, 2));
    if thp_on {
        let hg = |x: usize| vm_flags(x).split_whitespace().any(|f| f == "hg");
        assert!(hg(a.base()), "granted superslab advised");
        assert!(!hg(b.base()), "beyond the grant: not advised");
    }
    pool.release(map, a, 0, 0, &KEEP);
    pool.release(map, b, 0, 0, &KEEP);
    pool.trim(map);
}

/// Prepared superslabs: made ahead (registered as pooled), taken after the
/// dirty ones and before a fresh mapping, bounded, unmapped when unused
/// for the decay time or trimmed.
#[test]
fn prepared_superslabs_are_taken_after_dirty_ones_and_decay() {
    let map = new_map();
    let owner = new_owner();
    let pool = SuperslabPool::<Linux>::new();
    assert!(pool.prepare(map, 1000));
    assert!(pool.prepare(map, 1000));
    let s = pool.stats();
    assert_eq!((s.prepared, s.prepared_made, s.mapped), (2, 2, 2));
    // a prepared superslab reads as pooled to a stray free
    let a = pool.acquire(map, 105, owner).expect("superslab");
    let s = pool.stats();
    assert_eq!(
        (s.prepared, s.prepared_used, s.cold, s.mapped),
        (1, 1, 1, 2)
    );
    assert_eq!(map.get(a.base()), Entry::slot(105, NO_CLASS));
    let base = a.base();
    pool.release(map, a, 1000, 1000, &KEEP);
    assert_eq!(map.get(base), Entry::slot(Entry::FREE_TAG, NO_CLASS));
    // the dirty one first
    let b = pool.acquire(map, 106, owner).expect("superslab");
    assert_eq!(b.base(), base);
    let s = pool.stats();
    assert_eq!((s.prepared, s.cold, s.reused), (1, 1, 1));
    pool.release(map, b, 1000, 1000, &KEEP);
    // bounded
    let mut made = 1;
    while pool.prepare(map, 1500) {
        made += 1;
        assert!(made <= MAX_PREPARED, "the reserve is bounded");
    }
    assert_eq!(made, MAX_PREPARED);
    // the one prepared at 1000 decays at 2000, the others at 2500
    pool.maintain(map, 2000, &KEEP);
    let s = pool.stats();
    assert_eq!(s.prepared as usize, MAX_PREPARED - 1);
    assert!(s.unmapped >= 1);
    pool.trim(map);
    let s = pool.stats();
    assert_eq!((s.prepared, s.dirty, s.clean), (0, 0, 0));
    assert_eq!(s.mapped, s.unmapped);
}

/// A slab that spans several slots: the blocks of all its slots share one
/// slab key (its first slot's number), so one batch carries blocks of
/// every slot to the slab's remote stack in one splice; the drained stack
/// then moves out whole with `take_up_to` (no split walk), or split to `n`
/// with `take` when it is longer than `whole` allows.
#[test]
fn slab_keyed_batches_span_slots_and_drained_lists_move_whole() {
    let map = new_map();
    let pool = SuperslabPool::<Linux>::new();
    let owner = new_owner();
    let mut ss = pool.acquire(map, 123, owner).unwrap();
    let bs = 24576usize; // two per slot, a slab of 4 slots holds 8
    let r = ss.alloc_slab(9, bs as u32, 4).unwrap();
    // SAFETY: we own the superslab.
    let blocks = take_blocks(&mut unsafe { r.handle() }, 8);
    assert_eq!(blocks.len(), 8);
    let slots: HashSet<usize> = blocks
        .iter()
        .map(|&p| RemoteBatch::key_of(p as *const u8))
        .collect();
    assert_eq!(slots.len(), 4, "the blocks lie in four slots");
    // SAFETY: live blocks of our live superslab.
    let keys: HashSet<usize> = blocks
        .iter()
        .map(|&p| unsafe { RemoteBatch::slab_key_of(p as *const u8) })
        .collect();
    assert_eq!(keys.len(), 1, "one slab key for all of them");
    let key = *keys.iter().next().unwrap();
    assert_eq!(
        key,
        RemoteBatch::key_of(blocks[0] as *const u8),
        "the first slot's number"
    );
    let mut b = RemoteBatch::EMPTY;
    for (i, &p) in blocks[..6].iter().enumerate() {
        let p = p as *mut u8;
        // SAFETY: a live block of our slab, freed once.
        assert!(unsafe { remote_claim(p, 0xfeed) });
        let full = if i == 0 {
            // SAFETY: empty batch, claimed block.
            unsafe { b.start_tagged(p, key, 6, 77) }
        } else {
            assert_eq!(b.key(), key);
            // SAFETY: claimed, of the batch's slab.
            unsafe { b.push(p) }
        };
        assert_eq!(full, i == 5);
    }
    assert_eq!((b.len(), b.tag()), (6, 77));
    assert_eq!(b.flush(), 6);
    assert!(b.is_empty());
    // a claimed block's second free is refused while it waits
    // SAFETY: a block of our slab, claimed already.
    assert!(!unsafe { remote_claim(blocks[0] as *mut u8, 0xfeed) });
    let taken: Vec<SlabRef> = owner.take_all().collect();
    assert_eq!(taken, vec![r], "one splice queued the slab once");
    // SAFETY: owned.
    let mut h = unsafe { r.handle() };
    assert_eq!(h.drain_pending(), 6);
    assert_eq!((h.free_count(), h.used()), (6, 2));
    assert_eq!(h.check(), Ok(()));
    // `take` splits 2 off; `take_up_to` with room for the rest takes it whole
    let two = h.take(2);
    assert_eq!((two.len, h.free_count()), (2, 4));
    let rest = h.take_up_to(2, 4);
    assert_eq!((rest.len, h.free_count(), h.used()), (4, 0, 8));
    assert!(
        rest.tail.is_null(),
        "moved whole: the tail was never looked for"
    );
    let mut back: HashSet<usize> = chain_blocks(two).into_iter().collect();
    back.extend(chain_blocks(rest));
    let freed: HashSet<usize> = blocks[..6].iter().copied().collect();
    assert_eq!(back, freed, "every batched block came back once");
    assert_eq!(h.check(), Ok(()));
}
