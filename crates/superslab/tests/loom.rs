//! Model checks (loom) of the remote-free protocol: the block's free-mark
//! swap, the slab's remote stack with its `QUEUED` bit, the owner's pending
//! list, draining, and ownership moving through the orphanage.
//!
//! The models run the crate's own code — `remote_free`, `remote_claim` and
//! `RemoteBatch` (a thread's batch of remote frees, one splice), `PendingList`,
//! `SlabHandle::drain_remote`/`drain_pending`, `Orphanage::abandon`/`adopt`,
//! `OwnedSuperslab::format`/`alloc_slab` — built with `--cfg loom`, which
//! makes every atomic and lock of the crate (`src/sync.rs`) and the block's
//! mark word (`hakmem_tiny_sll::Mark`) loom's. The superslab is a real one,
//! formatted in a 2 MiB-aligned heap allocation made once per test and
//! reformatted at the start of every execution; its page-map entries go to a
//! private map. (Blocks' link words and the owner-only slab state are plain
//! memory, which loom does not track: the models check the atomic protocol
//! and its outcomes, not plain-memory races.)
//!
//! Run with:
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p hakmem-superslab --test loom --release`
#![cfg(loom)]

use std::alloc::{alloc_zeroed, Layout};
use std::collections::HashSet;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use hakmem_pagemap::PageMap;
use hakmem_platform::Linux;
use hakmem_superslab::*;
use hakmem_tiny_sll::{Bin, Block, Chain, Mark};
use loom::thread;

/// The free mark of the modelled process.
const MARK: u64 = 0x5eed_f00d_1234_5678;
/// Four blocks per 64 KiB slot: a one-slot slab holds exactly four.
const BS: u32 = 16384;
const CLASS: u8 = 9;
const TAG: u32 = 200;
const TAG2: u32 = 201;

/// A 2 MiB-aligned chunk registered in a private page map, reused by every
/// execution of one test.
#[derive(Clone, Copy)]
struct Chunk {
    base: usize,
    map: &'static PageMap,
}

fn chunk() -> Chunk {
    let map: &'static PageMap = Box::leak(Box::new(PageMap::new()));
    let layout = Layout::from_size_align(SUPERSLAB_SIZE, SUPERSLAB_SIZE).unwrap();
    // SAFETY: the layout has a non-zero size.
    let base = unsafe { alloc_zeroed(layout) } as usize;
    assert_ne!(base, 0, "out of memory");
    assert!(map.reserve::<Linux>(base, SUPERSLAB_SIZE));
    Chunk { base, map }
}

/// The owners of one execution: a heap's pending list, a second heap's (the
/// adopter), and the orphanage. Shared by the model's threads; it outlives
/// every use of the superslab, whose header points at one of them.
struct World {
    owner: PendingList,
    adopter: PendingList,
    orphanage: Orphanage,
}

/// Formats the chunk as a superslab owned by `w.owner`, carves one slab of
/// four blocks and hands all four out (free mark cleared, as `malloc` does).
fn setup(c: Chunk, w: &World) -> (OwnedSuperslab, SlabRef, Vec<usize>) {
    // SAFETY: the chunk is ours, 2 MiB-aligned and reserved in the map; the
    // previous execution's threads are gone, so no block of it is live and
    // no slab of it is queued anywhere that will be read again.
    let mut ss = unsafe {
        OwnedSuperslab::format(
            NonNull::new(c.base as *mut u8).unwrap(),
            c.map,
            TAG,
            &w.owner,
        )
    };
    let s = ss.alloc_slab(CLASS, BS, 1).unwrap();
    // (a fresh slab carves a page's worth at a time: take until four)
    let mut blocks = Vec::new();
    while blocks.len() < 4 {
        // SAFETY: we own the superslab (we just formatted it).
        let c = unsafe { s.handle() }.take(4 - blocks.len() as u32);
        assert!(c.len > 0, "the slab holds at least four blocks");
        blocks.extend(chain_blocks(c));
    }
    assert_eq!(blocks.len(), 4);
    for &b in &blocks {
        // SAFETY: a block we hold, 16384 bytes, 16-aligned; no other thread
        // exists yet.
        unsafe { Mark::init(ptr::addr_of_mut!((*(b as *mut Block)).mark), 0) };
    }
    (ss, s, blocks)
}

fn chain_blocks(mut c: Chain) -> Vec<usize> {
    let mut v = Vec::new();
    // SAFETY: chains handed out by a slab are valid lists.
    while let Some(b) = unsafe { c.pop() } {
        v.push(b as usize);
    }
    v
}

/// A remote free from another thread, of a block of the superslab at `base`.
fn free_from_afar(base: usize, b: usize) -> bool {
    // SAFETY: the superslab stays live until the model's main thread, its
    // owner, has joined every thread; `b` is a block handed out from it.
    unsafe { remote_free(&*(base as *const Superslab), b as *mut u8, MARK) }
}

/// An owner's slow-path pass over its pending list (as the heap's
/// `process_pending`): a slab whose superslab changed owner is forwarded,
/// the others drained. Returns (slabs taken, blocks drained).
fn process_pending(me: &PendingList) -> (u32, u32) {
    let (mut seen, mut drained) = (0, 0);
    for s in me.take_all() {
        seen += 1;
        assert!(seen <= 4, "a pending list cycles: a slab was queued twice");
        // SAFETY: a queued slab's superslab is live.
        let owner = unsafe { s.superslab().as_ref() }.owner();
        if !ptr::eq(owner, me) {
            PendingList::forward(s);
            continue;
        }
        // SAFETY: its superslab is ours (its owner is us), and the slab is
        // off the list.
        drained += unsafe { s.handle() }.drain_pending();
    }
    (seen, drained)
}

/// Runs `f` under loom. Scenarios (a)-(c), (e) and (f) are explored
/// exhaustively (no preemption bound); (d), with three threads and the orphanage lock, is
/// bounded at 3 preemptions per execution (about 15 500 executions).
fn model(preemptions: Option<usize>, f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = preemptions;
    b.check(f);
}

/// (a) Two remote frees of different blocks race the owner, which drains
/// its current slab directly (`drain_remote`) and runs its pending list
/// (`drain_pending`). The slab is on the pending list at most once at a
/// time, both blocks are drained exactly once, none is lost, and at the end
/// the slab is no longer queued.
#[test]
fn two_remote_frees_race_the_owners_drain() {
    let c = chunk();
    model(None, move || {
        let w = Arc::new(World {
            owner: PendingList::new(),
            adopter: PendingList::new(),
            orphanage: Orphanage::new(),
        });
        let (_ss, s, blocks) = setup(c, &w);
        let frees: Vec<_> = [blocks[0], blocks[1]]
            .into_iter()
            .map(|b| thread::spawn(move || free_from_afar(c.base, b)))
            .collect();
        // SAFETY (all handles below): this thread owns the superslab.
        let mut drained = unsafe { s.handle() }.drain_remote();
        let (seen1, d) = process_pending(&w.owner);
        drained += d;
        for f in frees {
            assert!(f.join().unwrap(), "a first free is never refused");
        }
        let (seen2, d) = process_pending(&w.owner);
        drained += d;
        assert!(seen1 <= 1 && seen2 <= 1, "queued at most once per pass");
        assert_eq!(drained, 2, "every remote free drained exactly once");
        // SAFETY: this thread still owns the superslab.
        let mut h = unsafe { s.handle() };
        assert!(!h.is_queued(), "not queued once every free was drained");
        assert_eq!(h.used(), 2);
        h.check().unwrap();
        let back: HashSet<usize> = chain_blocks(h.take(2)).into_iter().collect();
        assert_eq!(back, HashSet::from([blocks[0], blocks[1]]));
    });
}

/// A thread with a heap frees `bs` into one [`RemoteBatch`] (claiming each:
/// the mark swap) and hands the batch to the slab with one splice. Returns,
/// per block, whether its claim went through (a refused one is a double
/// free and stays out of the batch).
fn batch_from_afar(base: usize, bs: &[usize]) -> Vec<bool> {
    // SAFETY: the superslab stays live until the model's main thread, its
    // owner, has joined every thread; each `b` is a block handed out from it.
    let ss = unsafe { &*(base as *const Superslab) };
    let mut batch = RemoteBatch::EMPTY;
    let mut ok = Vec::new();
    for &b in bs {
        assert!(ss.slab_of(b as *const u8).is_some(), "a block of a slab");
        // SAFETY: `b` is a block handed out from a slab of `ss`, live until
        // the owner joins this thread.
        let claimed = unsafe { remote_claim(b as *mut u8, MARK) };
        if claimed {
            let p = b as *mut u8;
            // The limit (4) is above the model's block counts: it never fills.
            let full = if batch.is_empty() {
                // SAFETY: the batch is empty; `p` was claimed just now.
                unsafe { batch.start(p, 4) }
            } else {
                assert_eq!(batch.key(), RemoteBatch::key_of(p));
                // SAFETY: claimed just now, of the batch's slot (checked).
                unsafe { batch.push(p) }
            };
            assert!(!full);
        }
        ok.push(claimed);
    }
    let n = ok.iter().filter(|&&c| c).count() as u32;
    assert_eq!(batch.len(), n);
    assert_eq!(batch.flush(), n);
    assert!(batch.is_empty());
    ok
}

/// (e) A batch of two remote frees, spliced onto the slab's remote stack
/// with one CAS, races a single remote free of a third block and the
/// owner's drains (`drain_remote`, then its pending list). The slab is
/// queued at most once per pass, the stack's count (in the remote word)
/// always equals its length, all three blocks reach the owner exactly
/// once, and the slab ends unqueued.
#[test]
fn batched_push_races_a_free_and_the_owners_drain() {
    let c = chunk();
    model(None, move || {
        let w = Arc::new(World {
            owner: PendingList::new(),
            adopter: PendingList::new(),
            orphanage: Orphanage::new(),
        });
        let (_ss, s, blocks) = setup(c, &w);
        let (b0, b1, b2) = (blocks[0], blocks[1], blocks[2]);
        let t1 = thread::spawn(move || batch_from_afar(c.base, &[b0, b1]));
        let t2 = thread::spawn(move || free_from_afar(c.base, b2));
        // SAFETY: this thread owns the superslab.
        let mut drained = unsafe { s.handle() }.drain_remote();
        let (seen1, d) = process_pending(&w.owner);
        drained += d;
        assert_eq!(t1.join().unwrap(), [true, true]);
        assert!(t2.join().unwrap());
        // whatever is still on the stack, the remote word counts it exactly
        // (the slab's check compares count and length)
        // SAFETY: this thread owns the superslab.
        unsafe { s.handle() }.check().unwrap();
        let (seen2, d) = process_pending(&w.owner);
        drained += d;
        assert!(seen1 <= 1 && seen2 <= 1, "queued at most once per pass");
        assert_eq!(drained, 3, "every batched and single free drained once");
        // SAFETY: this thread still owns the superslab.
        let mut h = unsafe { s.handle() };
        assert!(!h.is_queued());
        assert_eq!(h.used(), 1);
        h.check().unwrap();
        let back: HashSet<usize> = chain_blocks(h.take(3)).into_iter().collect();
        assert_eq!(back, HashSet::from([b0, b1, b2]));
    });
}

/// (f) A block is freed twice at once: into one thread's batch (with
/// another block) and by a second thread's single remote free, while the
/// owner drains. Exactly one of the two frees of the shared block goes
/// through (the other is a double free, caught by the mark swap), and the
/// owner gets it, and the batch's other block, exactly once.
#[test]
fn double_free_of_a_batched_block_is_caught_once() {
    let c = chunk();
    model(None, move || {
        let w = Arc::new(World {
            owner: PendingList::new(),
            adopter: PendingList::new(),
            orphanage: Orphanage::new(),
        });
        let (_ss, s, blocks) = setup(c, &w);
        let (b0, b1) = (blocks[0], blocks[1]);
        let t1 = thread::spawn(move || batch_from_afar(c.base, &[b0, b1]));
        let t2 = thread::spawn(move || free_from_afar(c.base, b0));
        let (_, mut drained) = process_pending(&w.owner);
        let r1 = t1.join().unwrap();
        let r2 = t2.join().unwrap();
        assert!(r1[1], "the batch's other block is never refused");
        assert!(r1[0] ^ r2, "exactly one of two racing frees succeeds");
        drained += process_pending(&w.owner).1;
        assert_eq!(drained, 2);
        // SAFETY: this thread owns the superslab.
        let mut h = unsafe { s.handle() };
        assert_eq!(h.used(), 2);
        assert!(!h.is_queued());
        h.check().unwrap();
        let back: HashSet<usize> = chain_blocks(h.take(2)).into_iter().collect();
        assert_eq!(back, HashSet::from([b0, b1]));
    });
}

/// (b) Two threads free the same block at once: exactly one free goes
/// through, the other is reported as a double free, and the owner (draining
/// concurrently) gets the block once.
#[test]
fn racing_double_free_is_caught_once() {
    let c = chunk();
    model(None, move || {
        let w = Arc::new(World {
            owner: PendingList::new(),
            adopter: PendingList::new(),
            orphanage: Orphanage::new(),
        });
        let (_ss, s, blocks) = setup(c, &w);
        let b = blocks[0];
        let t1 = thread::spawn(move || free_from_afar(c.base, b));
        let t2 = thread::spawn(move || free_from_afar(c.base, b));
        let (_, mut drained) = process_pending(&w.owner);
        let (r1, r2) = (t1.join().unwrap(), t2.join().unwrap());
        assert!(r1 ^ r2, "exactly one of two racing frees succeeds");
        drained += process_pending(&w.owner).1;
        assert_eq!(drained, 1);
        // SAFETY: this thread owns the superslab.
        let h = unsafe { s.handle() };
        assert_eq!(h.used(), 3);
        assert!(!h.is_queued());
        h.check().unwrap();
    });
}

/// (c) A block sits free in the owner's bin (mark set) when another thread
/// frees it again, while the owner pops it for a new `malloc` (mark
/// cleared). Either the free saw the mark (a double free, refused, nothing
/// queued) or it came after the pop and went through as an ordinary remote
/// free (the program's own race, undetectable); never both, never neither.
#[test]
fn double_free_racing_reuse() {
    static OUTCOMES: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
    let c = chunk();
    model(None, move || {
        let w = Arc::new(World {
            owner: PendingList::new(),
            adopter: PendingList::new(),
            orphanage: Orphanage::new(),
        });
        let (_ss, s, blocks) = setup(c, &w);
        let b = blocks[0];
        let mut bin = Bin::with_capacity(4);
        // SAFETY: our bin; `b` is a block of ours being freed.
        assert!(unsafe { Bin::try_push_raw(&mut bin, b as *mut u8, MARK) });
        let t = thread::spawn(move || free_from_afar(c.base, b));
        // SAFETY: our bin.
        let got = unsafe { Bin::pop_raw(&mut bin) };
        assert_eq!(got as usize, b);
        let ok = t.join().unwrap();
        // Whether the free was accepted shows in the remote stack: the block
        // reaches the owner exactly when it was accepted. (The final mark is
        // not asserted: loom keeps the modification order of a `Relaxed`
        // store and another thread's earlier swap unordered, so it lets the
        // last read return the swap's value after the store's, which C11
        // and x86 forbid; the accepted/queued pairing is the real property.)
        let drained = process_pending(&w.owner).1;
        assert_eq!(drained, ok as u32);
        // SAFETY: this thread owns the superslab.
        let h = unsafe { s.handle() };
        assert_eq!(h.used(), 4 - ok as u32);
        assert!(!h.is_queued());
        h.check().unwrap();
        bin.check(Some(MARK)).unwrap();
        OUTCOMES[ok as usize].fetch_add(1, Relaxed);
    });
    let (refused, accepted) = (OUTCOMES[0].load(Relaxed), OUTCOMES[1].load(Relaxed));
    eprintln!(
        "double_free_racing_reuse: {refused} executions refused the free, {accepted} accepted it"
    );
    assert!(refused > 0 && accepted > 0, "both outcomes explored");
}

/// (d) A remote free races the owner's exit (it drains, then abandons the
/// superslab to the orphanage) and another heap's adoption (which re-owns
/// it, forwards what waited on the orphanage and drains). Wherever the
/// free's queueing lands — the exited heap's list, the orphanage's, the
/// adopter's — the block reaches the new owner exactly once once the usual
/// housekeeping has run (a reused heap forwards its stale entries, the
/// orphanage forwards late arrivals), and the slab ends unqueued.
#[test]
fn remote_free_races_exit_and_adoption() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    static LATE: AtomicUsize = AtomicUsize::new(0);
    static STALE: AtomicUsize = AtomicUsize::new(0);
    let c = chunk();
    model(Some(3), move || {
        let w = Arc::new(World {
            owner: PendingList::new(),
            adopter: PendingList::new(),
            orphanage: Orphanage::new(),
        });
        let (ss, s, blocks) = setup(c, &w);
        let ss = ss.into_raw().as_ptr() as usize;
        let slab = s.as_ptr() as usize;
        let b = blocks[0];
        let t1 = thread::spawn(move || free_from_afar(c.base, b));
        let w2 = Arc::clone(&w);
        let exit = thread::spawn(move || {
            // SAFETY: this thread owns the superslab until it abandons it.
            let ss = unsafe { OwnedSuperslab::assume_owned(NonNull::new(ss as *mut _).unwrap()) };
            let (_, mut d) = process_pending(&w2.owner);
            let slabs: Vec<SlabRef> = ss.slabs().collect();
            for s in slabs {
                // SAFETY: this thread owns the superslab until it abandons it.
                d += unsafe { s.handle() }.drain_remote();
            }
            w2.orphanage.abandon(ss);
            d
        });
        let w3 = Arc::clone(&w);
        let adopt = thread::spawn(move || {
            let Some(ss) = w3.orphanage.adopt(TAG2, &w3.adopter) else {
                return (0, false);
            };
            let mut d = 0;
            let slabs: Vec<SlabRef> = ss.slabs().collect();
            for s in slabs {
                // SAFETY: this thread adopted the superslab.
                d += unsafe { s.handle() }.drain_remote();
            }
            d += process_pending(&w3.adopter).1;
            let _ = ss.into_raw();
            (d, true)
        });
        assert!(t1.join().unwrap());
        let mut drained = exit.join().unwrap();
        let (d, adopted) = adopt.join().unwrap();
        drained += d;
        // The adopting heap (this thread from now on).
        let ss = if adopted {
            // SAFETY: the adopter has handed the superslab on to us.
            unsafe { OwnedSuperslab::assume_owned(NonNull::new(ss as *mut _).unwrap()) }
        } else {
            let ss = w
                .orphanage
                .adopt(TAG2, &w.adopter)
                .expect("the orphan waits");
            let slabs: Vec<SlabRef> = ss.slabs().collect();
            for s in slabs {
                // SAFETY: this thread adopted the superslab.
                drained += unsafe { s.handle() }.drain_remote();
            }
            ss
        };
        assert_eq!(ss.header().tag(), TAG2);
        // Housekeeping: the exited heap, reused, forwards what arrived after
        // its last pass; the orphanage forwards what arrived after adoption.
        // Count the executions that needed each (the free queued the slab
        // on a list its superslab had already left).
        if w.orphanage.has_pending() {
            LATE.fetch_add(1, Relaxed);
        }
        if w.owner.has_pending() {
            STALE.fetch_add(1, Relaxed);
        }
        for s in w.owner.take_all() {
            PendingList::forward(s);
        }
        w.orphanage.forward_pending();
        drained += process_pending(&w.adopter).1;
        assert_eq!(drained, 1, "the remote free reached an owner exactly once");
        // SAFETY: we own the superslab now; the slab record lies in it.
        let h = unsafe { SlabRef::from_raw(slab as *mut Slab).handle() };
        assert!(!h.is_queued(), "nothing left waiting anywhere");
        assert!(!w.owner.has_pending() && !w.orphanage.has_pending());
        assert_eq!(h.used(), 3);
        h.check().unwrap();
        ss.check(c.map).unwrap();
        RUNS.fetch_add(1, Relaxed);
    });
    let (runs, late, stale) = (RUNS.load(Relaxed), LATE.load(Relaxed), STALE.load(Relaxed));
    eprintln!(
        "remote_free_races_exit_and_adoption: {runs} executions, {late} left the slab \
         on the orphanage after adoption, {stale} on the exited heap's list"
    );
}
