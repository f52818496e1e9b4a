//! A test harness for the heap box: environments over the fake platform
//! (one per test, so tests on other threads share nothing), a thread's heap
//! as the facade would drive it, and checks of block contents.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hakmem_heap::classes::{class_of, class_size};
use hakmem_heap::{Heap, HeapEnv, Registry};
use hakmem_platform::fake::Fake;
use hakmem_superslab::Superslab;

/// The free mark every heap of the tests uses (the facade's is random, one
/// per process; all heaps of an environment must share it).
pub const MARK: u64 = 0x5EED_F00D_0BAD_CAFE;

/// What the hooks of a test environment saw, and its secure-mode switch.
#[derive(Debug, Default)]
pub struct Hooks {
    pub decay_ticks: AtomicU64,
    pub reclaims: AtomicU64,
    /// Blocks passed to `forget_fresh`.
    pub fresh: AtomicU64,
    pub secure: AtomicBool,
    /// `HeapEnv::checking`: heaps check themselves on their slow paths (on
    /// unless a test turns it off).
    pub check: AtomicBool,
}

impl Hooks {
    pub const fn new() -> Self {
        Hooks {
            decay_ticks: AtomicU64::new(0),
            reclaims: AtomicU64::new(0),
            fresh: AtomicU64::new(0),
            secure: AtomicBool::new(false),
            check: AtomicBool::new(true),
        }
    }
    pub fn reclaims(&self) -> u64 {
        self.reclaims.load(Ordering::SeqCst)
    }
}

/// A heap environment of the tests.
pub trait TestEnv: HeapEnv {
    fn hooks() -> &'static Hooks;
    fn registry() -> &'static Registry<Self>;
    fn fake() -> &'static Fake;
}

/// Declares a test environment `$name` over its own fake platform of
/// `$bytes` bytes, with its own page map, pool, orphanage, policy cell
/// (the default policy) and registry. Its heaps run `Heap::check` on their
/// slow paths (`Hooks::check`).
macro_rules! test_env {
    ($name:ident, $bytes:expr) => {
        struct $name;

        impl ::hakmem_platform::fake::FakeInstance for $name {
            fn fake() -> &'static ::hakmem_platform::fake::Fake {
                static F: ::hakmem_platform::fake::Fake =
                    ::hakmem_platform::fake::Fake::new($bytes);
                &F
            }
        }

        impl ::hakmem_heap::HeapEnv for $name {
            type Pal = ::hakmem_platform::fake::FakePal<$name>;

            fn page_map() -> &'static ::hakmem_pagemap::PageMap {
                static M: ::hakmem_pagemap::PageMap = ::hakmem_pagemap::PageMap::new();
                &M
            }

            fn pool() -> &'static ::hakmem_superslab::SuperslabPool<Self::Pal> {
                static P: ::hakmem_superslab::SuperslabPool<
                    ::hakmem_platform::fake::FakePal<$name>,
                > = ::hakmem_superslab::SuperslabPool::new();
                &P
            }

            fn orphanage() -> &'static ::hakmem_superslab::Orphanage {
                static O: ::hakmem_superslab::Orphanage = ::hakmem_superslab::Orphanage::new();
                &O
            }

            fn policy() -> &'static ::hakmem_policy_rcu::PolicyCell {
                static C: ::hakmem_policy_rcu::PolicyCell =
                    ::hakmem_policy_rcu::PolicyCell::new(&::hakmem_policy_rcu::DEFAULT_POLICY);
                &C
            }

            fn decay_tick() {
                use ::hakmem_platform::Pal;
                <$name as $crate::common::TestEnv>::hooks()
                    .decay_ticks
                    .fetch_add(1, ::std::sync::atomic::Ordering::SeqCst);
                let limits = ::hakmem_heap::pool_limits(Self::policy().load());
                Self::pool().maintain(Self::page_map(), Self::Pal::now_ms(), &limits);
            }

            fn reclaim_shared() {
                <$name as $crate::common::TestEnv>::hooks()
                    .reclaims
                    .fetch_add(1, ::std::sync::atomic::Ordering::SeqCst);
                Self::pool().trim(Self::page_map());
            }

            fn secure() -> bool {
                <$name as $crate::common::TestEnv>::hooks()
                    .secure
                    .load(::std::sync::atomic::Ordering::SeqCst)
            }

            unsafe fn forget_fresh(
                _data: *mut u8,
                _block_size: usize,
                blocks: ::core::ops::Range<usize>,
            ) {
                <$name as $crate::common::TestEnv>::hooks()
                    .fresh
                    .fetch_add(blocks.len() as u64, ::std::sync::atomic::Ordering::SeqCst);
            }

            fn checking() -> bool {
                <$name as $crate::common::TestEnv>::hooks()
                    .check
                    .load(::std::sync::atomic::Ordering::Relaxed)
            }
        }

        impl $crate::common::TestEnv for $name {
            fn hooks() -> &'static $crate::common::Hooks {
                static H: $crate::common::Hooks = $crate::common::Hooks::new();
                &H
            }
            fn registry() -> &'static ::hakmem_heap::Registry<Self> {
                static R: ::hakmem_heap::Registry<$name> = ::hakmem_heap::Registry::new();
                &R
            }
            fn fake() -> &'static ::hakmem_platform::fake::Fake {
                <$name as ::hakmem_platform::fake::FakeInstance>::fake()
            }
        }
    };
}

/// A thread's heap, driven as the facade drives it. Used by one thread at a
/// time (it may be handed to another thread between uses).
pub struct ThreadHeap<E: TestEnv> {
    h: *mut Heap<E>,
}

// SAFETY: a heap may move between threads as long as one thread at a time
// uses it; `ThreadHeap` is not `Sync` and needs `&mut self`.
unsafe impl<E: TestEnv> Send for ThreadHeap<E> {}

impl<E: TestEnv> ThreadHeap<E> {
    /// A heap from the registry, ready (mark and policy set); `None` when
    /// the platform is out of memory.
    pub fn try_new() -> Option<Self> {
        let h = E::registry().acquire()?;
        // SAFETY: the heap is ours now.
        unsafe {
            (*h).mark = MARK;
            (*h).sync_policy();
        }
        Some(ThreadHeap { h })
    }

    pub fn new() -> Self {
        Self::try_new().expect("a heap")
    }

    pub fn heap(&mut self) -> &mut Heap<E> {
        // SAFETY: the heap is ours and used by this thread alone.
        unsafe { &mut *self.h }
    }

    pub fn tag(&self) -> u32 {
        // SAFETY: the tag of a registered heap never changes.
        unsafe { (*self.h).tag }
    }

    /// `size` bytes (up to `SLAB_MAX`); null when out of memory.
    pub fn alloc(&mut self, size: usize) -> *mut u8 {
        let c = class_of(size);
        let p = self.heap().alloc_class(c);
        if !p.is_null() {
            assert_eq!(p as usize % 16, 0, "blocks are 16-aligned");
            // the facade's invariant: a block handed out has no free mark
            // SAFETY: a block of at least 16 bytes, ours.
            assert_ne!(unsafe { p.cast::<u64>().add(1).read() }, MARK);
        }
        p
    }

    /// Frees a block, as the facade's slow path does: into this heap if it
    /// owns the block's superslab, else as a remote free batched in this
    /// heap (`Heap::free_remote`).
    ///
    /// # Safety
    /// `p` must be a live block of this environment, not used afterwards.
    pub unsafe fn free(&mut self, p: *mut u8) {
        let e = E::page_map().get(p as usize);
        assert!(e.is_live_superslab(), "freeing {p:?}: entry {:#x}", e.0);
        let class = e.class() as usize;
        if e.tag() == self.tag() {
            // SAFETY: a live block of ours (caller's contract), of the
            // class its slot's entry says.
            unsafe { self.heap().free_local(p, class) };
        } else {
            // SAFETY: a live block (caller's contract) of the class its slot's
            // entry says, in a live superslab; this heap is used by this
            // thread alone.
            let ok = unsafe { self.heap().free_remote(p, class) };
            assert!(ok, "double free of {p:?}");
        }
    }

    /// Panics, naming the broken invariant, unless the heap passes
    /// `Heap::check`.
    pub fn check(&mut self) {
        if let Err(what) = self.heap().check() {
            panic!("heap {}: invariant broken: {what}", self.tag());
        }
    }

    /// The thread exits: everything goes back, the heap to the registry.
    /// The heap is checked before and after giving everything back.
    pub fn exit(mut self) {
        self.check();
        self.heap().release_all();
        self.check();
        // SAFETY: from this registry, in use, not used afterwards.
        unsafe { E::registry().release(self.h) };
    }
}

/// Frees `p` from a thread that owns no heap (or not its superslab).
pub fn remote_free<E: TestEnv>(p: *mut u8) {
    let e = E::page_map().get(p as usize);
    assert!(
        e.is_live_superslab(),
        "remote free of {p:?}: entry {:#x}",
        e.0
    );
    // SAFETY: a live block (caller's contract) of a live superslab.
    let ok = unsafe { hakmem_superslab::remote_free(&*Superslab::of(p), p, MARK) };
    assert!(ok, "double free of {p:?}");
}

/// The byte pattern of block `id`.
pub fn pattern(id: u64, i: usize) -> u8 {
    (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8 ^ i as u8
}

/// Live blocks with their contents: checks that no two overlap and that
/// each keeps what was written into it.
#[derive(Debug, Default)]
pub struct Live {
    /// start -> (usable size, id)
    blocks: BTreeMap<usize, (usize, u64)>,
    next_id: u64,
}

impl Live {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a block just handed out for a request of `size` bytes and
    /// fills all of its usable size.
    pub fn add(&mut self, p: *mut u8, size: usize) {
        let usable = class_size(class_of(size));
        assert!(usable >= size);
        let start = p as usize;
        if let Some((&s, &(len, _))) = self.blocks.range(..start + usable).next_back() {
            assert!(
                s + len <= start,
                "{start:#x}+{usable} overlaps live block {s:#x}+{len}"
            );
        }
        let id = self.next_id;
        self.next_id += 1;
        // SAFETY: a block of `usable` bytes, just handed out to us.
        let b = unsafe { std::slice::from_raw_parts_mut(p, usable) };
        for (i, x) in b.iter_mut().enumerate() {
            *x = pattern(id, i);
        }
        self.blocks.insert(start, (usable, id));
    }

    /// Checks a block's contents and forgets it; returns it for freeing.
    pub fn remove(&mut self, p: *mut u8) -> *mut u8 {
        let (usable, id) = self.blocks.remove(&(p as usize)).expect("a live block");
        check(p, usable, id);
        p
    }

    /// Checks every live block.
    pub fn check_all(&self) {
        for (&s, &(usable, id)) in &self.blocks {
            check(s as *mut u8, usable, id);
        }
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    pub fn contains(&self, p: *mut u8) -> bool {
        self.blocks.contains_key(&(p as usize))
    }

    /// The `i`-th live block (in address order).
    pub fn nth(&self, i: usize) -> *mut u8 {
        *self.blocks.keys().nth(i).expect("in range") as *mut u8
    }

    pub fn all(&self) -> Vec<*mut u8> {
        self.blocks.keys().map(|&s| s as *mut u8).collect()
    }
}

fn check(p: *mut u8, usable: usize, id: u64) {
    // SAFETY: a live block of `usable` bytes we filled.
    let b = unsafe { std::slice::from_raw_parts(p, usable) };
    if let Some(i) = (0..usable).find(|&i| b[i] != pattern(id, i)) {
        panic!("block {p:?} ({usable} B) changed at byte {i}");
    }
}

/// Adopts and gives back every orphan with a heap of its own; panics if an
/// orphan cannot be emptied (a block of it was lost: neither live nor
/// returned). Call with no live block of the environment.
pub fn drain_orphans<E: TestEnv>() {
    let orphans = E::orphanage().len();
    for _ in 0..=orphans {
        if E::orphanage().is_empty() {
            return;
        }
        let mut t = ThreadHeap::<E>::new();
        // a heap with no superslab adopts the newest orphan for its first slab
        let p = t.alloc(16);
        assert!(!p.is_null());
        // SAFETY: just allocated, ours.
        unsafe { t.free(p) };
        t.exit();
    }
    assert!(
        E::orphanage().is_empty(),
        "{} orphans keep blocks nobody holds",
        E::orphanage().len()
    );
}

/// Every superslab ever mapped is back in the pool or unmapped.
pub fn assert_all_superslabs_pooled<E: TestEnv>() {
    let s = E::pool().stats();
    assert_eq!(
        s.mapped - s.unmapped,
        s.dirty + s.clean,
        "superslabs outside the pool: {s:?}"
    );
}

/// Checks every heap of a model (`Heap::check`).
pub fn check_heaps<E: TestEnv>(heaps: &mut [Option<ThreadHeap<E>>]) {
    for t in heaps.iter_mut().flatten() {
        t.check();
    }
}

/// Panics unless the registry passes `Registry::check`.
pub fn check_registry<E: TestEnv>() {
    if let Err(what) = E::registry().check() {
        panic!("registry: invariant broken: {what}");
    }
}

/// The end of most heap-box tests: every live block checked and freed by
/// `t`, `t` exits, and then nothing is left orphaned and every superslab
/// is back in the pool.
pub fn free_all_and_exit<E: TestEnv>(mut t: ThreadHeap<E>, live: &mut Live) {
    live.check_all();
    for p in live.all() {
        // SAFETY: a live block of this test, checked and forgotten by
        // `remove`; `t` is the heap that serves the test's frees.
        unsafe { t.free(live.remove(p)) };
    }
    t.exit();
    assert!(E::orphanage().is_empty());
    assert_all_superslabs_pooled::<E>();
}
