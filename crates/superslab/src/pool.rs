//! The pool of empty superslabs, and the only place superslabs are mapped
//! and unmapped.
//!
//! An empty superslab released by a heap is kept *dirty* (pages resident,
//! reuse is free) while it is among the `dirty` most recent ones and younger
//! than the decay time; then its block slots are purged with
//! `MADV_DONTNEED` and it stays *clean* (the header page and the address
//! space only) until it is among more than `clean` clean ones or 8 decay
//! periods old, when it is unmapped. Acquisition prefers the most recent
//! dirty superslab, then a clean one, then a fresh mapping. Purging and
//! unmapping happen outside the lock, after the superslab left the pool, so
//! no thread can acquire memory while it is being purged.
//!
//! Huge pages ([`HugeMode`]): a fresh mapping is advised `MADV_HUGEPAGE`
//! always (`Direct`), never (`Off`), or (`Gated`) only while the budget of
//! huge pages at hand last granted by [`SuperslabPool::grant_huge`] lasts,
//! so that its first fault finds a free huge page and never compacts. A
//! background thread may also [`SuperslabPool::prepare`] superslabs ahead of
//! need (mapped, advised, faulted in: any compaction stall is its own) into
//! a small *prepared* reserve; acquisition takes it after the dirty list.
//! Prepared superslabs unused for the decay time are unmapped.
//!
//! A heap's *first* superslab ([`SuperslabPool::acquire_for`] with `first`)
//! gets 4 KiB pages in `Gated` mode: a thread that allocates next to
//! nothing (a helper thread, the background thread) would otherwise hold a
//! resident 2 MiB huge page for a few KiB. Its owner calls
//! [`SuperslabPool::densify`] whenever a refill carves fresh blocks from
//! it; once [`DENSE_BYTES`] of a small-paged superslab are resident
//! (counting the blocks just carved) and a huge page is at hand (the
//! grant), it is advised huge and collapsed (`MADV_COLLAPSE`) into one huge
//! page, so a busy heap takes only a few small faults before its memory is
//! huge.
//!
//! Pooled chunks carry [`Entry::FREE_TAG`] in the page map, so a stray free
//! into one is recognised as invalid.

use core::marker::PhantomData;
use core::ptr::NonNull;

use hakmem_pagemap::{Entry, PageMap};
use hakmem_platform::Pal;

use crate::remote::PendingList;
use crate::superslab::{OwnedSuperslab, Superslab, HEADER_END};
use crate::sync::{const_fn_unless_loom, AtomicU32, AtomicU8, Ordering, SpinLock};
use crate::{SLOT_SIZE, SUPERSLAB_SIZE};

const MAX_DIRTY: usize = 64;
const MAX_CLEAN: usize = 256;
const BATCH: usize = 8;
/// Prepared superslabs kept at most.
pub const MAX_PREPARED: usize = 8;
/// Resident bytes from which [`SuperslabPool::densify`] collapses a
/// small-paged superslab into a huge page: the header's two pages and two
/// more. Measured on the quick matrix's threaded rows (16, 24, 32, 64 KiB):
/// every thread that allocates at all soon passes 32 KiB (the benchmarks'
/// own sample buffers are written page by page), and from 32 KiB the small
/// faults taken before the collapse break the fault target on handoff-small
/// 1x3 and 2x2, handoff-mid 1x3 and larson-loop-1k, while threads that stay
/// below 16 KiB (the background thread) keep 2 MiB each out of RSS.
pub const DENSE_BYTES: usize = 16 << 10;

/// How fresh superslab mappings get transparent huge pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum HugeMode {
    /// Never advised (4 KiB pages, unless THP `enabled=always`).
    Off = 0,
    /// Every fresh mapping is advised `MADV_HUGEPAGE` (its first fault may
    /// compact memory where THP `defrag` says so).
    Direct = 1,
    /// A fresh mapping is advised only while the budget granted by
    /// [`SuperslabPool::grant_huge`] lasts (one per mapping); the others
    /// stay 4 KiB-paged. Prepared superslabs are taken first.
    Gated = 2,
}

/// Counters of the pool (all-time, and what it holds now).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// Superslabs obtained from the OS.
    pub mapped: u64,
    /// Superslabs returned to the OS.
    pub unmapped: u64,
    /// Acquisitions served from the pool.
    pub reused: u64,
    /// Superslabs whose block slots were purged.
    pub purged: u64,
    /// Dirty superslabs in the pool now.
    pub dirty: u64,
    /// Clean superslabs in the pool now.
    pub clean: u64,
    /// Prepared superslabs in the pool now.
    pub prepared: u64,
    /// Superslabs prepared (mapped, advised huge, faulted in) all-time.
    pub prepared_made: u64,
    /// Acquisitions served from the prepared reserve.
    pub prepared_used: u64,
    /// Acquisitions the dirty list could not serve (prepared, clean or
    /// fresh): the demand a prepared reserve would have to cover.
    pub cold: u64,
    /// Fresh mappings advised huge by [`SuperslabPool::acquire`].
    pub huge_fresh: u64,
    /// Heaps' first superslabs handed out with 4 KiB pages
    /// ([`SuperslabPool::acquire_for`]).
    pub small_first: u64,
    /// Small-paged superslabs collapsed into a huge page by
    /// [`SuperslabPool::densify`] (`failed`: the kernel refused).
    pub collapsed: u64,
    /// Collapses the kernel refused.
    pub collapse_failed: u64,
}

/// Limits of the pool (from the policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolLimits {
    /// Dirty superslabs kept at most (capped at 64).
    pub dirty: usize,
    /// Clean superslabs kept at most (capped at 256).
    pub clean: usize,
    /// A dirty superslab unused this long is purged; a clean one unused 8
    /// times as long is unmapped.
    pub decay_ms: u64,
}

#[derive(Clone, Copy)]
struct Pooled {
    base: usize,
    stamp: u64,
}

const NIL: Pooled = Pooled { base: 0, stamp: 0 };

/// Oldest first.
struct Fifo<const N: usize> {
    items: [Pooled; N],
    n: usize,
}

impl<const N: usize> Fifo<N> {
    const fn new() -> Self {
        Fifo {
            items: [NIL; N],
            n: 0,
        }
    }
    fn push(&mut self, p: Pooled) {
        debug_assert!(self.n < N);
        self.items[self.n] = p;
        self.n += 1;
    }
    fn pop_newest(&mut self) -> Option<Pooled> {
        if self.n == 0 {
            return None;
        }
        self.n -= 1;
        Some(self.items[self.n])
    }
    fn pop_oldest(&mut self) -> Option<Pooled> {
        if self.n == 0 {
            return None;
        }
        let p = self.items[0];
        self.items.copy_within(1..self.n, 0);
        self.n -= 1;
        Some(p)
    }
    fn oldest_age(&self, now: u64) -> Option<u64> {
        (self.n > 0).then(|| now.saturating_sub(self.items[0].stamp))
    }
}

struct Inner {
    dirty: Fifo<MAX_DIRTY>,
    clean: Fifo<MAX_CLEAN>,
    prepared: Fifo<MAX_PREPARED>,
    stats: PoolStats,
}

struct Work {
    purge: [Pooled; BATCH],
    n_purge: usize,
    unmap: [Pooled; BATCH],
    n_unmap: usize,
}

impl Work {
    const NONE: Work = Work {
        purge: [NIL; BATCH],
        n_purge: 0,
        unmap: [NIL; BATCH],
        n_unmap: 0,
    };
}

/// Empty superslabs waiting for reuse.
pub struct SuperslabPool<P: Pal> {
    inner: SpinLock<Inner>,
    /// A [`HugeMode`].
    huge: AtomicU8,
    /// Fresh mappings that may still be advised huge in `Gated` mode.
    huge_budget: AtomicU32,
    /// [`SuperslabPool::densify`]'s threshold in bytes (default
    /// [`DENSE_BYTES`]).
    dense: AtomicU32,
    _pal: PhantomData<P>,
}

// SAFETY: the pool's lists are only touched under the lock; pooled chunks
// are owned by the pool alone.
unsafe impl<P: Pal> Sync for SuperslabPool<P> {}
// SAFETY: the pool's lists are only touched under the lock and pooled
// chunks belong to the pool alone, so it may move between threads.
unsafe impl<P: Pal> Send for SuperslabPool<P> {}

impl<P: Pal> core::fmt::Debug for SuperslabPool<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SuperslabPool")
            .field("stats", &self.stats())
            .finish()
    }
}

impl<P: Pal> Default for SuperslabPool<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Pal> SuperslabPool<P> {
    const_fn_unless_loom! {
        /// An empty pool.
        pub fn new() -> Self {
            SuperslabPool {
                inner: SpinLock::new(Inner {
                    dirty: Fifo::new(),
                    clean: Fifo::new(),
                    prepared: Fifo::new(),
                    stats: PoolStats {
                        mapped: 0,
                        unmapped: 0,
                        reused: 0,
                        purged: 0,
                        dirty: 0,
                        clean: 0,
                        prepared: 0,
                        prepared_made: 0,
                        prepared_used: 0,
                        cold: 0,
                        huge_fresh: 0,
                        small_first: 0,
                        collapsed: 0,
                        collapse_failed: 0,
                    },
                }),
                huge: AtomicU8::new(HugeMode::Off as u8),
                huge_budget: AtomicU32::new(0),
                dense: AtomicU32::new(DENSE_BYTES as u32),
                _pal: PhantomData,
            }
        }
    }

    /// From now on, fresh superslab mappings are (or are not) advised
    /// transparent huge pages (`MADV_HUGEPAGE`): a superslab is one aligned
    /// 2 MiB chunk, so the kernel can back it with one huge page. Pooled
    /// chunks keep the advice they were mapped with. `true` is
    /// [`HugeMode::Direct`], `false` [`HugeMode::Off`].
    pub fn set_huge_pages(&self, on: bool) {
        self.set_huge_mode(if on { HugeMode::Direct } else { HugeMode::Off });
    }

    /// From now on, fresh superslab mappings follow `mode`.
    pub fn set_huge_mode(&self, mode: HugeMode) {
        self.huge.store(mode as u8, Ordering::Relaxed);
    }

    /// The current [`HugeMode`].
    pub fn huge_mode(&self) -> HugeMode {
        match self.huge.load(Ordering::Relaxed) {
            1 => HugeMode::Direct,
            2 => HugeMode::Gated,
            _ => HugeMode::Off,
        }
    }

    /// In [`HugeMode::Gated`], the next `n` fresh mappings (and no more,
    /// until the next grant) may be advised huge: the caller has seen at
    /// least that many free huge pages at hand. Replaces the previous grant.
    pub fn grant_huge(&self, n: u32) {
        self.huge_budget.store(n, Ordering::Relaxed);
    }

    /// Sets [`SuperslabPool::densify`]'s threshold: touched bytes from
    /// which a small-paged superslab is collapsed.
    pub fn set_dense_bytes(&self, bytes: usize) {
        self.dense
            .store(bytes.min(SUPERSLAB_SIZE) as u32, Ordering::Relaxed);
    }

    /// What is left of the last grant.
    pub fn huge_budget(&self) -> u32 {
        self.huge_budget.load(Ordering::Relaxed)
    }

    /// Whether a fresh mapping is to be advised huge (takes one from the
    /// budget in `Gated` mode).
    fn advise_fresh(&self) -> bool {
        match self.huge_mode() {
            HugeMode::Off => false,
            HugeMode::Direct => true,
            HugeMode::Gated => self
                .huge_budget
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
                .is_ok(),
        }
    }

    /// Hands out an empty superslab owned by the heap with `tag`, whose
    /// pending list is `owner`: a pooled dirty one, a prepared one, a
    /// pooled clean one, or a fresh mapping (advised huge as
    /// [`HugeMode`] says). `None` when the OS is out of memory.
    pub fn acquire(&self, map: &PageMap, tag: u32, owner: &PendingList) -> Option<OwnedSuperslab> {
        self.acquire_for(map, tag, owner, false)
    }

    /// [`SuperslabPool::acquire`], for a heap that owns no superslab yet
    /// when `first`: in [`HugeMode::Gated`] its first superslab is then a
    /// dirty pooled one (resident already) or a clean or fresh one with
    /// 4 KiB pages (advised `MADV_NOHUGEPAGE`, taking nothing from the
    /// grant), never a prepared one, and it is not counted as demand for
    /// prepared ones; [`SuperslabPool::densify`] collapses it once it is
    /// densely used. A superslab handed out with 4 KiB pages (first or not)
    /// is marked small ([`OwnedSuperslab::is_small`]).
    pub fn acquire_for(
        &self,
        map: &PageMap,
        tag: u32,
        owner: &PendingList,
        first: bool,
    ) -> Option<OwnedSuperslab> {
        let small_first = first && self.huge_mode() == HugeMode::Gated;
        // where it comes from: the clean list (purged, advised small), the
        // dirty list (its old header says whether it is small), prepared
        let mut clean = false;
        let mut dirty = false;
        let pooled = {
            let mut g = self.inner.lock();
            let p = match g.dirty.pop_newest() {
                Some(p) => {
                    g.stats.reused += 1;
                    dirty = true;
                    Some(p)
                }
                None => {
                    let prepared = if small_first {
                        None
                    } else {
                        g.stats.cold += 1;
                        g.prepared.pop_newest()
                    };
                    if let Some(p) = prepared {
                        g.stats.prepared_used += 1;
                        Some(p)
                    } else {
                        let p = g.clean.pop_newest();
                        if p.is_some() {
                            g.stats.reused += 1;
                            clean = true;
                        }
                        p
                    }
                }
            };
            g.stats.small_first += u64::from(small_first && !dirty);
            g.sync_counts();
            p
        };
        let (base, small) = match pooled {
            Some(p) => {
                // SAFETY: pooled bases are non-null chunk addresses.
                let b = unsafe { NonNull::new_unchecked(p.base as *mut u8) };
                let small = if dirty {
                    // SAFETY: a pooled dirty chunk is a former superslab
                    // whose header is intact, out of the pool and ours
                    // alone.
                    unsafe { Superslab::was_small(b) }
                } else {
                    clean
                };
                if clean && !small_first && self.advise_fresh() {
                    // SAFETY: out of the pool, ours alone: a whole
                    // superslab mapping.
                    unsafe { P::advise_huge(b, SUPERSLAB_SIZE) };
                }
                (b, small)
            }
            None => {
                let b = P::map(SUPERSLAB_SIZE, SUPERSLAB_SIZE)?;
                if !map.reserve::<P>(b.as_ptr() as usize, SUPERSLAB_SIZE) {
                    // SAFETY: we just mapped it and nobody knows about it.
                    unsafe { P::unmap(b, SUPERSLAB_SIZE) };
                    return None;
                }
                let huge = !small_first && self.advise_fresh();
                if huge {
                    // SAFETY: `b` is our fresh mapping of SUPERSLAB_SIZE bytes.
                    unsafe { P::advise_huge(b, SUPERSLAB_SIZE) };
                } else if small_first {
                    // (THP `enabled=always` would back it huge unadvised)
                    // SAFETY: `b` is our fresh mapping of SUPERSLAB_SIZE bytes.
                    unsafe { P::advise_small(b, SUPERSLAB_SIZE) };
                }
                let mut g = self.inner.lock();
                g.stats.mapped += 1;
                g.stats.huge_fresh += u64::from(huge);
                (b, !huge)
            }
        };
        // SAFETY: the chunk is empty, ours alone (fresh or from the pool) and
        // reserved in the map; formatting writes the header, then the entries.
        let mut ss = unsafe { OwnedSuperslab::format(base, map, tag, owner) };
        ss.set_small(small);
        Some(ss)
    }

    /// Called by the owner of `ss` when a refill has carved `fresh` blocks
    /// of `size` bytes from it: a superslab backed by 4 KiB pages
    /// ([`OwnedSuperslab::is_small`]) of which at least [`DENSE_BYTES`] are
    /// resident, counting the blocks just carved as about to be written
    /// (whole up to half a slot, a page each above; [`Pal::resident`], or
    /// where the platform cannot tell [`OwnedSuperslab::touched_bytes`],
    /// which also gates the `mincore` call), is advised huge and collapsed
    /// into one huge page (`MADV_COLLAPSE`, contents kept), in
    /// [`HugeMode::Gated`] only and only while the grant holds a huge page
    /// at hand (one is taken), so the collapse finds a free huge page and
    /// never compacts. Afterwards it counts as huge whether or not the
    /// kernel managed (advised, `khugepaged` may still collapse it), so a
    /// refused collapse is not retried. True when it was collapsed.
    pub fn densify(&self, ss: &mut OwnedSuperslab, fresh: u32, size: u32) -> bool {
        if !ss.is_small() || self.huge_mode() != HugeMode::Gated {
            return false;
        }
        // the blocks just carved are about to be written: whole ones of the
        // classes up to half a slot, a page (their list words) of bigger
        // ones, which a program may well not touch all of
        let per = if size as usize <= SLOT_SIZE / 2 {
            size as usize
        } else {
            hakmem_platform::PAGE_SIZE
        };
        let fresh = fresh as usize * per;
        let dense = self.dense.load(Ordering::Relaxed) as usize;
        let estimate = ss.touched_bytes().max(fresh);
        if estimate < dense {
            return false;
        }
        // SAFETY: a superslab base is a non-null chunk address.
        let b = unsafe { NonNull::new_unchecked(ss.base() as *mut u8) };
        // the estimate is an upper bound (big blocks are carved untouched):
        // the pages actually resident decide where the platform can tell
        // SAFETY: the token makes the whole superslab mapping ours.
        let resident = unsafe { P::resident(b, SUPERSLAB_SIZE) }.map_or(estimate, |r| r + fresh);
        if resident < dense || !self.advise_fresh() {
            return false;
        }
        // SAFETY: the token makes the whole superslab mapping ours; a
        // collapse keeps its contents, so live blocks are unaffected.
        let ok = unsafe {
            P::advise_huge(b, SUPERSLAB_SIZE);
            P::collapse(b, SUPERSLAB_SIZE)
        };
        ss.set_small(false);
        let mut g = self.inner.lock();
        if ok {
            g.stats.collapsed += 1;
        } else {
            g.stats.collapse_failed += 1;
        }
        ok
    }

    /// Prepares one superslab ahead of need, at time `now`: maps it,
    /// advises it huge and faults it in (`MADV_POPULATE_WRITE`, else one
    /// write), so that the huge-page fault, and any compaction it needs,
    /// happen on the calling thread (a background thread), then adds it to
    /// the prepared reserve. False (nothing kept) when the reserve is full
    /// ([`MAX_PREPARED`]) or the OS refused.
    pub fn prepare(&self, map: &PageMap, now: u64) -> bool {
        if self.inner.lock().prepared.n >= MAX_PREPARED {
            return false;
        }
        let Some(b) = P::map(SUPERSLAB_SIZE, SUPERSLAB_SIZE) else {
            return false;
        };
        if !map.reserve::<P>(b.as_ptr() as usize, SUPERSLAB_SIZE) {
            // SAFETY: we just mapped it and nobody knows about it.
            unsafe { P::unmap(b, SUPERSLAB_SIZE) };
            return false;
        }
        let base = b.as_ptr() as usize;
        map.set_slots(base, SUPERSLAB_SIZE / SLOT_SIZE, |_| {
            Entry::slot(Entry::FREE_TAG, Entry::NO_CLASS)
        });
        // SAFETY: `b` is our fresh mapping of SUPERSLAB_SIZE bytes, known
        // to nobody else yet (its entries say "pooled").
        unsafe {
            P::advise_huge(b, SUPERSLAB_SIZE);
            if !P::populate(b, SUPERSLAB_SIZE) {
                // an older kernel: one write faults the (huge) page in
                b.as_ptr().write_volatile(0);
            }
        }
        {
            let mut g = self.inner.lock();
            g.stats.mapped += 1;
            if g.prepared.n < MAX_PREPARED {
                g.prepared.push(Pooled { base, stamp: now });
                g.stats.prepared_made += 1;
                g.sync_counts();
                return true;
            }
        }
        // the reserve filled up meanwhile (another preparer)
        map.set_slots(base, SUPERSLAB_SIZE / SLOT_SIZE, |_| Entry::NONE);
        // SAFETY: never handed out, in no list, unregistered.
        unsafe { P::unmap(b, SUPERSLAB_SIZE) };
        self.inner.lock().stats.unmapped += 1;
        false
    }

    /// Takes back an empty superslab that has been idle since `stamp`, at
    /// time `now` (milliseconds of [`Pal::now_ms`]), and keeps the pool
    /// within `limits`: one idle for the decay time already is purged at once.
    ///
    /// The caller must have made sure no slab of it is waiting in a pending
    /// list and no block of it is live (an empty superslab: all slabs released).
    pub fn release(
        &self,
        map: &PageMap,
        mut ss: OwnedSuperslab,
        stamp: u64,
        now: u64,
        limits: &PoolLimits,
    ) {
        if !ss.is_empty() {
            hakmem_platform::fatal_at("internal error: releasing a busy superslab", ss.base());
        }
        ss.set_all_entries(Entry::slot(Entry::FREE_TAG, Entry::NO_CLASS));
        let base = ss.into_raw().as_ptr() as usize;
        let mut work = Work::NONE;
        {
            let mut g = self.inner.lock();
            let cap = limits.dirty.min(MAX_DIRTY);
            if cap == 0 {
                work.purge[0] = Pooled { base, stamp };
                work.n_purge = 1;
            } else {
                if g.dirty.n >= cap {
                    if let Some(old) = g.dirty.pop_oldest() {
                        work.purge[work.n_purge] = old;
                        work.n_purge += 1;
                    }
                }
                g.dirty.push(Pooled { base, stamp });
            }
            g.enforce(now, limits, &mut work);
            g.sync_counts();
        }
        self.run(map, now, limits, work);
    }

    /// Applies decay now (also done on every release), batch after batch
    /// until nothing is past its time.
    pub fn maintain(&self, map: &PageMap, now: u64, limits: &PoolLimits) {
        loop {
            let mut work = Work::NONE;
            {
                let mut g = self.inner.lock();
                g.enforce(now, limits, &mut work);
                g.sync_counts();
            }
            if work.n_purge + work.n_unmap == 0 {
                return;
            }
            self.run(map, now, limits, work);
        }
    }

    fn run(&self, map: &PageMap, now: u64, limits: &PoolLimits, mut work: Work) {
        loop {
            for p in &work.purge[..work.n_purge] {
                // SAFETY: the superslab is out of the pool and holds nothing
                // live, and its whole mapping is the pool's; the header's
                // pages stay (slot 0 past them holds nothing). It keeps
                // small pages while pooled clean (khugepaged would
                // collapse it around the header's resident pages).
                unsafe {
                    P::purge(
                        NonNull::new_unchecked((p.base + HEADER_END) as *mut u8),
                        SUPERSLAB_SIZE - HEADER_END,
                    );
                    P::advise_small(NonNull::new_unchecked(p.base as *mut u8), SUPERSLAB_SIZE);
                }
            }
            for p in &work.unmap[..work.n_unmap] {
                map.set_slots(p.base, SUPERSLAB_SIZE / SLOT_SIZE, |_| Entry::NONE);
                // SAFETY: out of the pool, empty and unregistered.
                unsafe { P::unmap(NonNull::new_unchecked(p.base as *mut u8), SUPERSLAB_SIZE) };
            }
            let mut g = self.inner.lock();
            g.stats.purged += work.n_purge as u64;
            g.stats.unmapped += work.n_unmap as u64;
            let purged = work.purge;
            let n = work.n_purge;
            work = Work::NONE;
            let cap = limits.clean.min(MAX_CLEAN);
            for p in &purged[..n] {
                if cap == 0 {
                    work.unmap[work.n_unmap] = *p;
                    work.n_unmap += 1;
                    continue;
                }
                if g.clean.n >= cap {
                    if let Some(old) = g.clean.pop_oldest() {
                        work.unmap[work.n_unmap] = old;
                        work.n_unmap += 1;
                    }
                }
                g.clean.push(Pooled {
                    base: p.base,
                    stamp: now,
                });
            }
            g.sync_counts();
            if work.n_unmap == 0 {
                return;
            }
        }
    }

    /// Returns every pooled superslab to the OS.
    pub fn trim(&self, map: &PageMap) {
        loop {
            let mut work = Work::NONE;
            {
                let mut g = self.inner.lock();
                while work.n_unmap < BATCH {
                    let Some(p) = g
                        .dirty
                        .pop_oldest()
                        .or_else(|| g.clean.pop_oldest())
                        .or_else(|| g.prepared.pop_oldest())
                    else {
                        break;
                    };
                    work.unmap[work.n_unmap] = p;
                    work.n_unmap += 1;
                }
                g.sync_counts();
            }
            if work.n_unmap == 0 {
                return;
            }
            for p in &work.unmap[..work.n_unmap] {
                map.set_slots(p.base, SUPERSLAB_SIZE / SLOT_SIZE, |_| Entry::NONE);
                // SAFETY: out of the pool, empty and unregistered.
                unsafe { P::unmap(NonNull::new_unchecked(p.base as *mut u8), SUPERSLAB_SIZE) };
            }
            self.inner.lock().stats.unmapped += work.n_unmap as u64;
        }
    }

    /// The counters.
    pub fn stats(&self) -> PoolStats {
        self.inner.lock().stats
    }

    /// The pool's lock, for the fork handlers.
    pub fn fork_lock(&self) -> &SpinLock<impl Sized> {
        &self.inner
    }
}

impl Inner {
    fn sync_counts(&mut self) {
        self.stats.dirty = self.dirty.n as u64;
        self.stats.clean = self.clean.n as u64;
        self.stats.prepared = self.prepared.n as u64;
    }

    /// Decay: the oldest dirty ones past the decay time go to be purged, the
    /// oldest clean ones past 8 times it and prepared ones unused for the
    /// decay time to be unmapped (a batch at most).
    fn enforce(&mut self, now: u64, limits: &PoolLimits, work: &mut Work) {
        while work.n_purge < BATCH
            && self
                .dirty
                .oldest_age(now)
                .is_some_and(|a| a >= limits.decay_ms)
        {
            let p = self.dirty.pop_oldest().expect("non-empty");
            work.purge[work.n_purge] = p;
            work.n_purge += 1;
        }
        while work.n_unmap < BATCH
            && self
                .clean
                .oldest_age(now)
                .is_some_and(|a| a >= limits.decay_ms.saturating_mul(8))
        {
            let p = self.clean.pop_oldest().expect("non-empty");
            work.unmap[work.n_unmap] = p;
            work.n_unmap += 1;
        }
        while work.n_unmap < BATCH
            && self
                .prepared
                .oldest_age(now)
                .is_some_and(|a| a >= limits.decay_ms)
        {
            let p = self.prepared.pop_oldest().expect("non-empty");
            work.unmap[work.n_unmap] = p;
            work.n_unmap += 1;
        }
    }
}
