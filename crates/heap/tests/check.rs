//! `Heap::check` and `Registry::check` report heaps corrupted on purpose:
//! each test breaks one invariant through the public surface (a bin, a
//! slab's state or list link), asserts the report, repairs the damage and
//! asserts the heap passes again before its thread exits.

#[macro_use]
mod common;

use common::{check_registry, TestEnv, ThreadHeap};
use hakmem_heap::classes::class_of;
use hakmem_heap::HeapEnv;
use hakmem_superslab::{SlabRef, Superslab};
use hakmem_tiny_sll::Block;

/// The slab holding block `p` of a superslab the caller's heap owns.
fn slab_of(p: *mut u8) -> SlabRef {
    // SAFETY: `p` is a live block, so its superslab is live.
    let ss = unsafe { &*Superslab::of(p) };
    let s = ss.slab_of(p).expect("a block lies in a slab");
    // SAFETY: a slab record of a live superslab.
    unsafe { SlabRef::from_raw(s as *const _ as *mut _) }
}

fn err<E: TestEnv>(t: &mut ThreadHeap<E>) -> &'static str {
    t.heap().check().expect_err("the corruption is reported")
}

#[test]
fn a_fresh_and_a_busy_heap_pass() {
    test_env!(E, 64 << 20);
    let mut t = ThreadHeap::<E>::new();
    t.check();
    check_registry::<E>();
    let mut v = Vec::new();
    for i in 0..5000 {
        v.push(t.alloc([16, 24, 100, 1500, 40_000][i % 5]));
    }
    t.check();
    for (i, p) in v.into_iter().enumerate() {
        if i % 3 != 0 {
            // SAFETY: live blocks of ours, freed once.
            unsafe { t.free(p) };
        }
    }
    t.check();
    check_registry::<E>();
    t.exit();
    check_registry::<E>();
}

#[test]
fn a_foreign_block_in_a_bin_is_reported() {
    test_env!(E, 64 << 20);
    let mut a = ThreadHeap::<E>::new();
    let mut b = ThreadHeap::<E>::new();
    let c = class_of(24);
    let p = a.alloc(24);
    let q = b.alloc(24);
    b.check();
    // SAFETY: `p` is a live 32-byte block nobody else uses until it is
    // popped again below (the corruption under test: B's bin gets A's
    // block).
    assert!(unsafe { b.heap().bins[c].try_push(p) });
    assert_eq!(
        err(&mut b),
        "bin: block outside the heap's superslabs of its class"
    );
    assert_eq!(b.heap().bins[c].pop(), Some(p));
    b.check();

    // a block of the heap's own superslab filed under another class
    let c2 = class_of(100);
    // SAFETY: `q` is B's own live 32-byte block, unused until popped again
    // below (the corruption: the bin of another class gets it).
    assert!(unsafe { b.heap().bins[c2].try_push(q) });
    assert_eq!(
        err(&mut b),
        "bin: block outside the heap's superslabs of its class"
    );
    assert_eq!(b.heap().bins[c2].pop(), Some(q));

    // an interior pointer of an own block, in the right class's bin
    let inner = q.wrapping_add(16);
    // SAFETY: the pointer is inside our live block `q` (32 bytes, so 16
    // bytes from it are ours to use as a fake block's two words).
    assert!(unsafe { b.heap().bins[c].try_push(inner) });
    assert_eq!(
        err(&mut b),
        "bin: pointer is not the start of a carved block"
    );
    assert_eq!(b.heap().bins[c].pop(), Some(inner));
    b.check();
    // SAFETY: live blocks, freed once.
    unsafe {
        a.free(p);
        b.free(q);
    }
    a.exit();
    b.exit();
}

#[test]
fn a_cycle_or_a_wild_link_in_a_bin_is_reported() {
    test_env!(E, 64 << 20);
    let mut t = ThreadHeap::<E>::new();
    let c = class_of(48);
    let p = t.alloc(48);
    let q = t.alloc(48);
    // SAFETY: live blocks, freed once; they go to the bin (q on top).
    unsafe {
        t.free(p);
        t.free(q);
    }
    t.check();
    let top = t.heap().bins[c].head();
    assert_eq!(top, q.cast::<Block>());
    // SAFETY: `top` is a free block in our bin; we save and restore its link
    // (the write-after-free under test).
    let saved = unsafe { (*top).next };
    // SAFETY: `top` is a free block in our bin, which only this thread
    // touches; its link is restored below.
    unsafe { (*top).next = top };
    assert_eq!(
        err(&mut t),
        "bin: list longer than its capacity (cyclic or overfull)"
    );
    // a link to memory that is no block of ours: reported, not followed
    let mut outside = [0u64; 4];
    // SAFETY: `top` is a free block in our bin, which only this thread
    // touches; its link is restored below.
    unsafe { (*top).next = outside.as_mut_ptr().cast() };
    assert_eq!(
        err(&mut t),
        "bin: block outside the heap's superslabs of its class"
    );
    // a dropped tail: the list is shorter than room says
    // SAFETY: `top` is a free block in our bin, which only this thread
    // touches; its link is restored below.
    unsafe { (*top).next = core::ptr::null_mut() };
    assert_eq!(err(&mut t), "bin: room + len != cap");
    // SAFETY: `top` is a free block in our bin; this restores its link.
    unsafe { (*top).next = saved };
    t.check();
    t.exit();
}

#[test]
fn a_slab_in_the_wrong_state_is_reported() {
    test_env!(E, 64 << 20);
    let mut t = ThreadHeap::<E>::new();
    // fill a slab of 1500-byte blocks past its first refill, then free one
    // block of an older, full slab so that it joins the partial list
    let mut v = Vec::new();
    let first = t.alloc(1500);
    let s = slab_of(first);
    v.push(first);
    loop {
        let p = t.alloc(1500);
        v.push(p);
        if slab_of(p) != s {
            break;
        }
    }
    t.check();
    // the first slab is FULL now; its state is 3, the current slab's 1
    // SAFETY: the heap owns the slab, and no other handle of it is alive.
    let state = |r: SlabRef| unsafe { r.handle() }.state();
    assert_eq!(state(s), 3, "the first slab is FULL");
    let cur = slab_of(*v.last().unwrap());
    assert_eq!(state(cur), 1, "the new slab is CURRENT");
    // SAFETY: a live block of ours, freed once; the bin of 1500-byte
    // blocks has room, so the block stays in the bin and the slab FULL.
    unsafe { t.free(v.remove(0)) };
    assert_eq!(state(s), 3, "the freed block waits in the bin");
    t.check();

    // a CURRENT slab marked PARTIAL: on no partial list
    // SAFETY: the heap owns the current slab's superslab, and no other
    // handle of the slab is alive.
    unsafe { cur.handle() }.set_state(2);
    assert_eq!(
        err(&mut t),
        "heap: current slab of another class or not CURRENT"
    );
    // SAFETY: the heap owns the current slab's superslab, and no other
    // handle of the slab is alive.
    unsafe { cur.handle() }.set_state(1);
    t.check();

    // a state no list uses
    // SAFETY: the heap owns the full slab's superslab, and no other handle
    // of the slab is alive.
    unsafe { s.handle() }.set_state(0x42);
    assert_eq!(err(&mut t), "heap: slab in an unknown state");
    // SAFETY: the heap owns the full slab's superslab, and no other handle
    // of the slab is alive.
    unsafe { s.handle() }.set_state(3);
    t.check();

    // spill the bin so that the full slab gets a free block and joins the
    // partial list (PARTIAL, state 2)
    t.heap().collect();
    assert_eq!(state(s), 2, "the slab is PARTIAL");
    t.check();
    // SAFETY: the heap owns the partial slab's superslab, and no other
    // handle of the slab is alive.
    unsafe { s.handle() }.set_state(3);
    assert_eq!(err(&mut t), "heap: slab on a partial list is not PARTIAL");
    // SAFETY: the heap owns the partial slab's superslab, and no other
    // handle of the slab is alive.
    unsafe { s.handle() }.set_state(2);
    t.check();

    for p in v {
        // SAFETY: live blocks of ours, freed once.
        unsafe { t.free(p) };
    }
    t.exit();
}

#[test]
#[should_panic(
    expected = "hakmem: invariant broken: bin: block outside the heap's superslabs of its class"
)]
fn a_refill_checks_the_heap_first() {
    test_env!(E, 64 << 20);
    assert!(E::checking(), "test heaps check themselves on slow paths");
    let mut t = ThreadHeap::<E>::new();
    let p = t.alloc(48);
    // SAFETY: a live block, freed once: it goes to the bin.
    unsafe { t.free(p) };
    let mut outside = [0u64; 4];
    // SAFETY: `p` is a free block in our bin (the write-after-free under
    // test: its link now points outside the heap).
    unsafe { (*p.cast::<Block>()).next = outside.as_mut_ptr().cast() };
    // another class's first allocation refills, which checks the heap
    t.alloc(2000);
}

#[test]
#[should_panic(expected = "hakmem: invariant broken: bin: list longer than its capacity")]
fn a_spill_checks_the_heap_first() {
    test_env!(E, 64 << 20);
    let mut t = ThreadHeap::<E>::new();
    let c = class_of(48);
    let cap = t.heap().bins[c].cap() as usize;
    let v: Vec<_> = (0..=cap).map(|_| t.alloc(48)).collect();
    // SAFETY: live blocks, freed once; the bin fills up (the refill left
    // some blocks in it, so it is full before the last frees).
    unsafe { t.free(v[0]) };
    let b = v[0].cast::<Block>();
    // SAFETY: `b` is a free block in our bin: it now links to itself.
    unsafe { (*b).next = b };
    for &p in &v[1..] {
        // SAFETY: live blocks of ours, each freed once.
        unsafe { t.free(p) };
    }
}

/// A superslab whose last slab is released stays on `spaces`, counted in
/// `empties`, and is carved again by the next refill (which uncounts it):
/// `Heap::check` follows the count through both steps.
#[test]
fn an_emptied_superslab_is_counted_and_reused() {
    test_env!(E, 64 << 20);
    // no bins: every free goes straight back to its slab
    let mut p = hakmem_policy_rcu::DEFAULT_POLICY;
    p.tiny_cap = [0; hakmem_tiny_sll::TINY_CLASSES];
    p.tiny_refill = [0; hakmem_tiny_sll::TINY_CLASSES];
    E::policy().publish(Box::leak(Box::new(p)));
    let mut t = ThreadHeap::<E>::new();
    let a = t.alloc(100);
    // SAFETY: a live block of ours, freed once: its slab empties.
    unsafe { t.free(a) };
    t.check();
    // the empty current slab goes back to its superslab, which empties
    t.heap().maintain(true);
    t.check();
    let released = t.heap().stats.classes[class_of(100)].slabs_released.get();
    assert_eq!(released, 1, "the empty slab was released");
    // the next refill carves the kept superslab again
    let b = t.alloc(100);
    t.check();
    assert_eq!(
        t.heap().stats.superslabs_acquired.get(),
        1,
        "the kept superslab was reused"
    );
    // SAFETY: a live block of ours, freed once.
    unsafe { t.free(b) };
    t.exit();
}
