//! The large tier: mapping, registering, caching and resizing large blocks.

use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use hakmem_pagemap::{Entry, PageMap};
use hakmem_platform::{Pal, SpinLock, PAGE_SIZE};

use crate::cache::{BigCache, CacheLimits, CacheStats, Cached, Work};
use crate::header::{geometry, grown_len, LargeAlloc, LargeHeader};

/// The large tier.
pub struct Large<P: Pal> {
    cache: SpinLock<BigCache>,
    /// The next mapping family (see `LargeHeader::family`; 0 is none).
    next_family: AtomicU64,
    /// Whether extending fresh mappings to a huge-page boundary is gated
    /// by [`Large::grant_huge`] (see [`Large::set_huge_gated`]).
    huge_gated: AtomicBool,
    /// Huge pages the extensions may still fault in while gated.
    huge_budget: AtomicU32,
    _pal: PhantomData<P>,
}

// SAFETY: the cache is only touched under its lock; cached mappings belong
// to the cache alone.
unsafe impl<P: Pal> Sync for Large<P> {}

impl<P: Pal> core::fmt::Debug for Large<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Large")
            .field("cache", &self.stats())
            .finish()
    }
}

impl<P: Pal> Default for Large<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Pal> Large<P> {
    /// An empty large tier.
    pub const fn new() -> Self {
        Large {
            cache: SpinLock::new(BigCache::new()),
            next_family: AtomicU64::new(1),
            huge_gated: AtomicBool::new(false),
            huge_budget: AtomicU32::new(0),
            _pal: PhantomData,
        }
    }

    /// From now on (`true`), a fresh mapping is extended to a huge-page
    /// boundary ([`fresh_extra`]) only while the huge pages granted by
    /// [`Large::grant_huge`] last (one per 2 MiB of the whole mapping), so
    /// that the extension's huge-page faults find free huge pages and never
    /// compact on the allocating thread; without a grant a fresh mapping is
    /// made as before the extension existed. `false` (the default): always.
    pub fn set_huge_gated(&self, on: bool) {
        self.huge_gated.store(on, Ordering::Relaxed);
    }

    /// While gated, the next extensions may fault in `n` huge pages in all
    /// (replaces the previous grant).
    pub fn grant_huge(&self, n: u32) {
        self.huge_budget.store(n, Ordering::Relaxed);
    }

    /// What is left of the last grant.
    pub fn huge_budget(&self) -> u32 {
        self.huge_budget.load(Ordering::Relaxed)
    }

    /// Whether a fresh mapping of `len` bytes may be extended (takes its
    /// huge pages from the grant while gated).
    fn may_extend(&self, len: usize) -> bool {
        if !self.huge_gated.load(Ordering::Relaxed) {
            return true;
        }
        let n = len.div_ceil(hakmem_platform::CHUNK_SIZE);
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.huge_budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(n))
            .is_ok()
    }

    /// Allocates `size` bytes aligned to `align` (a power of two). Mappings
    /// of at least `huge_from` bytes are 2 MiB aligned and advised for
    /// transparent huge pages. `None` means out of memory (or an impossible
    /// size).
    pub fn alloc(
        &self,
        map: &PageMap,
        size: usize,
        align: usize,
        limits: &CacheLimits,
        huge_from: usize,
    ) -> Option<LargeAlloc> {
        self.alloc_with(map, size, align, limits, huge_from, false)
    }

    /// [`Large::alloc`] for a block that is growing (a `realloc` moving a
    /// smaller block up to `size`): its mapping ends on a huge-page
    /// boundary once it is `huge_from` long (see [`Large::resize`]), so the
    /// growth that is likely to follow stays in place and in huge pages.
    pub fn alloc_growing(
        &self,
        map: &PageMap,
        size: usize,
        align: usize,
        limits: &CacheLimits,
        huge_from: usize,
    ) -> Option<LargeAlloc> {
        self.alloc_with(map, size, align, limits, huge_from, true)
    }

    fn alloc_with(
        &self,
        map: &PageMap,
        size: usize,
        align: usize,
        limits: &CacheLimits,
        huge_from: usize,
        growing: bool,
    ) -> Option<LargeAlloc> {
        let (offset, mut len, mut map_align) = geometry(size, align, huge_from)?;
        if growing {
            len = grown_len(0, len, huge_from);
            if len >= huge_from {
                map_align = map_align.max(hakmem_platform::CHUNK_SIZE);
            }
        }
        if offset == PAGE_SIZE {
            let hit = self
                .cache
                .lock()
                .take_or_carve(len, P::now_ms(), limits, |tail| {
                    Self::register_piece(map, tail)
                });
            if let Some(c) = hit {
                // SAFETY: the cached mapping (or the head carved from one)
                // is ours now. Only page-offset mappings are cached, so the
                // page-map entry of the user pointer was left in place and
                // still fits; only the header (whose `user` was cleared)
                // needs rewriting.
                unsafe { LargeHeader::write(c.base, c.len, offset, c.family) };
                self.maintain(map, limits);
                return Some(LargeAlloc {
                    // SAFETY: inside the mapping, non-null.
                    ptr: unsafe { NonNull::new_unchecked((c.base + offset) as *mut u8) },
                    zeroed: !c.dirty,
                    map_len: c.len,
                });
            }
            if let Some(a) = self.grow_cached(map, size, limits, huge_from) {
                return Some(a);
            }
        }
        let mut extra = if offset == PAGE_SIZE && !growing {
            fresh_extra(len, huge_from, limits)
        } else {
            0
        };
        // a reserved length stays as it is: its freed mappings must keep
        // exactly that length to be held (not merged with a tail)
        if extra > 0 && (self.cache.lock().reserved(len).is_some() || !self.may_extend(len + extra))
        {
            extra = 0;
        }
        if extra > 0 {
            map_align = map_align.max(hakmem_platform::CHUNK_SIZE);
        }
        let base = P::map(len + extra, map_align)?;
        let b = base.as_ptr() as usize;
        let user = b + offset;
        if !map.reserve::<P>(user, 1) {
            // SAFETY: just mapped, unknown to anyone.
            unsafe { P::unmap(base, len + extra) };
            return None;
        }
        if len + extra >= huge_from {
            // SAFETY: our fresh mapping.
            unsafe { P::advise_huge(base, len + extra) };
        }
        let family = self.next_family.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the mapping is ours and at least one page long.
        unsafe { LargeHeader::write(b, len, offset, family) };
        map.set(user, Entry::large(user, (offset / PAGE_SIZE) as u32));
        if extra > 0 {
            self.cache_fresh_tail(map, b + len, extra, family, limits);
        }
        Some(LargeAlloc {
            // SAFETY: inside the mapping, non-null.
            ptr: unsafe { NonNull::new_unchecked(user as *mut u8) },
            zeroed: true,
            map_len: len,
        })
    }

    /// Files the unused tail `base..base + len` of a fresh mapping of
    /// `family` (see [`fresh_extra`]) as a dirty cached piece, so that the
    /// next request carves it (its first pages share the block's last huge
    /// page) and the block merges with it when freed; unmapped (never
    /// touched) if the cache has no room for it.
    fn cache_fresh_tail(
        &self,
        map: &PageMap,
        base: usize,
        len: usize,
        family: u64,
        limits: &CacheLimits,
    ) {
        let piece = Cached {
            base,
            len,
            stamp: P::now_ms(),
            dirty: true,
            family,
            full: len,
        };
        let mut work = Work::NONE;
        let filed = {
            let mut g = self.cache.lock();
            g.has_room_for(len) && Self::register_piece(map, &piece) && {
                g.put_piece(piece, limits, &mut work);
                true
            }
        };
        if !filed {
            // SAFETY: the tail lies in our fresh mapping, past the block,
            // and nobody knows of it (no page-map entry).
            unsafe { P::unmap(NonNull::new_unchecked(base as *mut u8), len) };
        }
        self.run(map, limits, work);
    }

    /// Finds the header of the large block `p`, if `p` is exactly a pointer
    /// this tier handed out and has not been freed. `entry` must be the
    /// page-map entry of `p`'s slot.
    #[inline]
    pub fn lookup(entry: Entry, p: *const u8) -> Option<&'static LargeHeader> {
        LargeHeader::find(entry, p)
    }

    /// True if `p` was a large block that has been freed and whose mapping
    /// is still cached: a second `free` of it is a double free.
    #[inline]
    pub fn is_freed(entry: Entry, p: *const u8) -> bool {
        LargeHeader::is_cached_user(entry, p)
    }

    /// Frees a large block whose header [`Large::lookup`] returned: into the
    /// cache when it fits, else back to the OS.
    ///
    /// # Safety
    /// `h` must come from `lookup` for a block the caller may free, and must
    /// not be used afterwards.
    pub unsafe fn free(&self, map: &PageMap, h: &LargeHeader, limits: &CacheLimits) {
        let base = h.base();
        let mut len = h.map_len();
        let cap = limits.max_block.min(limits.budget);
        if h.offset == PAGE_SIZE && len > cap {
            // Too long for the cache: its head stays cached, up to the
            // cache's limit (a program that frees and allocates such blocks
            // in turn keeps that much resident), its tail goes back now.
            let keep = if cap >= hakmem_platform::CHUNK_SIZE {
                cap & !(hakmem_platform::CHUNK_SIZE - 1)
            } else {
                cap & !(PAGE_SIZE - 1)
            };
            if keep >= crate::cache::MIN_PIECE {
                // SAFETY: the tail lies in the block being freed, which
                // nobody references any more.
                unsafe { P::unmap(NonNull::new_unchecked((base + keep) as *mut u8), len - keep) };
                h.map_len.store(keep, Ordering::Relaxed);
                len = keep;
            }
        }
        let cacheable = h.offset == PAGE_SIZE && len <= cap;
        if !cacheable {
            Self::unmap(map, base, len, h.offset);
            self.maintain(map, limits);
            return;
        }
        // A freed block's header says so: a second free of the pointer is
        // recognised while the mapping sits in the cache.
        h.user.store(0, Ordering::Release);
        let now = P::now_ms();
        let mut work = Work::NONE;
        let family = h.family();
        {
            let mut g = self.cache.lock();
            let (mb, ml) = g.put_merging(base, len, family, now, limits, &mut work, |b| {
                map.set(b + PAGE_SIZE, Entry::NONE)
            });
            if (mb, ml) != (base, len) && g.holds(mb) {
                // SAFETY: the merged pieces are one cached mapping (of one
                // kernel mapping), owned by the cache whose lock we hold;
                // its first page is the first piece's header page.
                unsafe { LargeHeader::write_cached(mb, ml, family) };
            }
        }
        self.run(map, limits, work);
    }

    /// Serves a request no cached mapping can hold by growing the largest
    /// smaller dirty one (`mremap`: its resident pages move, only the rest
    /// is new), so that a program cycling through ever other sizes keeps
    /// one mapping resident instead of a fresh one per size. `None` (the
    /// mapping cached again) if there is none or the OS refuses.
    fn grow_cached(
        &self,
        map: &PageMap,
        size: usize,
        limits: &CacheLimits,
        huge_from: usize,
    ) -> Option<LargeAlloc> {
        let (_, len, _) = geometry(size, 16, huge_from)?;
        // A grown mapping bound for huge pages grows only from one that
        // starts and ends on huge-page boundaries: pages moved or kept in a
        // partly filled 2 MiB range pin it to 4 KiB pages, so the rest of
        // that range would fault page by page (a fresh mapping faults whole
        // huge pages, its tail cached for the next request).
        let align = if len >= huge_from {
            hakmem_platform::CHUNK_SIZE
        } else {
            PAGE_SIZE
        };
        let c = self.cache.lock().take_below(len, align)?;
        // SAFETY: the cached mapping is ours now and dirty (its header page
        // is mapped); its page-map entry was left in place.
        unsafe { LargeHeader::write(c.base, c.len, PAGE_SIZE, c.family) };
        // SAFETY: just written: the live header of a block we own.
        let h = unsafe { &*(c.base as *const LargeHeader) };
        // SAFETY: `h` is the live header of a block we own, not used after
        // a move.
        match unsafe { self.resize(map, h, size, huge_from) } {
            Some((ptr, map_len)) => Some(LargeAlloc {
                ptr,
                zeroed: false,
                map_len,
            }),
            None => {
                // SAFETY: our block, freed once, not used afterwards.
                unsafe { self.free(map, h, limits) };
                None
            }
        }
    }

    /// Takes the cached pieces of `family` that start at `end` (the end of
    /// a live block of that family), up to `want` bytes, out of the cache
    /// for the block to grow over: their page-map entries are cleared, and
    /// a long enough rest of the last one stays cached as a piece of its
    /// own. Returns the bytes taken (0: none).
    fn grow_over_cached(&self, map: &PageMap, end: usize, family: u64, want: usize) -> usize {
        let mut g = self.cache.lock();
        if g.is_empty() {
            return 0;
        }
        g.take_after(
            end,
            family,
            want,
            |tail| Self::register_piece(map, tail),
            |b| map.set(b + PAGE_SIZE, Entry::NONE),
        )
    }

    /// Registers a piece split off a cached mapping as a cached mapping of
    /// its own: its page-map entry and its header. False (nothing changed)
    /// if the page map has no room.
    fn register_piece(map: &PageMap, piece: &Cached) -> bool {
        let user = piece.base + PAGE_SIZE;
        if !map.reserve::<P>(user, 1) {
            return false;
        }
        if piece.dirty {
            // SAFETY: the piece lies in a mapping the cache owns (the
            // caller holds it out of reach or holds the cache lock).
            unsafe { LargeHeader::write_cached(piece.base, piece.len, piece.family) };
        }
        map.set(user, Entry::large(user, 1));
        true
    }

    /// Runs decay and budget enforcement now, batch after batch until
    /// nothing is past its time (also done on large-tier calls).
    pub fn maintain(&self, map: &PageMap, limits: &CacheLimits) {
        let now = P::now_ms();
        loop {
            let mut work = Work::NONE;
            {
                let mut g = self.cache.lock();
                if g.is_empty() {
                    return;
                }
                g.enforce(now, limits, &mut work);
            }
            if work.n_purge + work.n_unmap == 0 {
                return;
            }
            self.run(map, limits, work);
        }
    }

    /// Carries out cache work outside the lock: purges (then re-files the
    /// mappings as clean) and unmaps.
    fn run(&self, map: &PageMap, limits: &CacheLimits, mut work: Work) {
        loop {
            for k in 0..work.n_purge {
                let e = work.purge[k];
                let mut keep = work.keep[k];
                if keep > 0 {
                    let tail = Cached {
                        base: e.base + keep,
                        len: e.len - keep,
                        dirty: false,
                        ..e
                    };
                    if Self::register_piece(map, &tail) {
                        // SAFETY: the entry is out of the cache: its head
                        // is ours; it stays cached as a mapping of `keep`.
                        unsafe { LargeHeader::write_cached(e.base, keep, e.family) };
                    } else {
                        keep = 0; // no room for the tail's entry: all of it
                        work.keep[k] = 0;
                    }
                }
                // SAFETY: the entry is out of the cache and unreferenced; the
                // header page is kept (it is rewritten on reuse anyway), and
                // so is a kept head.
                unsafe {
                    P::purge(
                        NonNull::new_unchecked((e.base + keep) as *mut u8),
                        e.len - keep,
                    )
                };
            }
            for e in &work.unmap[..work.n_unmap] {
                Self::unmap(map, e.base, e.len, PAGE_SIZE);
            }
            if work.n_purge == 0 {
                if work.n_unmap > 0 {
                    self.cache.lock().note_unmapped(work.n_unmap);
                }
                return;
            }
            let purged: [Cached; crate::cache::MAX_BATCH] = work.purge;
            let keeps = work.keep;
            let n = work.n_purge;
            let n_unmapped = work.n_unmap;
            work = Work::NONE;
            let mut g = self.cache.lock();
            g.note_purged(n);
            g.note_unmapped(n_unmapped);
            for (e, &keep) in purged[..n].iter().zip(&keeps) {
                g.put_purged(*e, keep, limits, &mut work);
            }
        }
    }

    /// Unregisters and unmaps a mapping whose user pointer sat `offset`
    /// bytes in. (Cached mappings always have a one-page offset; their
    /// header may have been purged, so it is not read.)
    fn unmap(map: &PageMap, base: usize, len: usize, offset: usize) {
        map.set(base + offset, Entry::NONE);
        // SAFETY: the mapping is unreferenced and unregistered.
        unsafe { P::unmap(NonNull::new_unchecked(base as *mut u8), len) };
    }

    /// Resizes a large block so that it holds `new_size` bytes, keeping its
    /// contents: in place over the cached pieces of its own mapping that
    /// follow it (no system call), else where the mapping can grow (or
    /// shrink), otherwise by moving its pages to a new mapping (`mremap`, no
    /// copy). A grown mapping ends on a huge-page boundary once it is
    /// `huge_from` long (`grown_len`). Returns the block's (possibly new)
    /// pointer and its mapping's new length, or `None` if the OS refused:
    /// the block keeps its pointer and contents then, though it may have
    /// grown over cached pieces (its header's `map_len` says by how much).
    ///
    /// # Safety
    /// `h` must be the live header of a block the caller owns; after a move
    /// the old pointer and `h` are invalid.
    pub unsafe fn resize(
        &self,
        map: &PageMap,
        h: &LargeHeader,
        new_size: usize,
        huge_from: usize,
    ) -> Option<(NonNull<u8>, usize)> {
        let base = h.base();
        let offset = h.offset;
        let user = base + offset;
        let old_len = h.map_len();
        let need = offset.checked_add(new_size)?.checked_add(PAGE_SIZE - 1)? & !(PAGE_SIZE - 1);
        if need > isize::MAX as usize {
            return None;
        }
        // SAFETY: non-null: inside a live mapping.
        let base_nn = unsafe { NonNull::new_unchecked(base as *mut u8) };
        if need <= old_len {
            let new_len = need;
            if new_len < old_len {
                // SAFETY: the tail beyond the new length holds nothing the
                // caller still wants.
                unsafe {
                    P::unmap(
                        NonNull::new_unchecked((base + new_len) as *mut u8),
                        old_len - new_len,
                    )
                };
                h.map_len.store(new_len, Ordering::Relaxed);
            }
            // SAFETY: non-null.
            return Some((unsafe { NonNull::new_unchecked(user as *mut u8) }, new_len));
        }
        // Growing: over the cached pieces of its own mapping that follow
        // it, if any (no system call, their pages stay); the rest where it
        // is or by moving, to a length that ends on a huge-page boundary.
        let new_len = grown_len(base, need, huge_from);
        let got = self.grow_over_cached(map, base + old_len, h.family(), new_len - old_len);
        let old_len = old_len + got;
        if got > 0 {
            h.map_len.store(old_len, Ordering::Relaxed);
            if old_len >= need {
                // SAFETY: non-null.
                return Some((unsafe { NonNull::new_unchecked(user as *mut u8) }, old_len));
            }
        }
        // SAFETY: our mapping; without MAYMOVE it only grows where it is.
        if unsafe { P::remap(base_nn, old_len, new_len, false) }.is_some() {
            h.map_len.store(new_len, Ordering::Relaxed);
            // grown: the mapping may now span another kernel mapping's
            // pieces' neighbours, so it starts a family of its own
            h.family.store(
                self.next_family.fetch_add(1, Ordering::Relaxed),
                Ordering::Relaxed,
            );
            if new_len >= huge_from && old_len < huge_from {
                // SAFETY: our mapping (huge pages where it is aligned).
                unsafe { P::advise_huge(base_nn, new_len) };
            }
            // SAFETY: non-null.
            return Some((unsafe { NonNull::new_unchecked(user as *mut u8) }, new_len));
        }
        let new_len = grown_len(0, need, huge_from);
        let align = if new_len >= huge_from {
            offset.max(hakmem_platform::CHUNK_SIZE)
        } else {
            offset
        };
        let target = P::map(new_len, align)?;
        let t = target.as_ptr() as usize;
        if !map.reserve::<P>(t + offset, 1) {
            // SAFETY: unused target.
            unsafe { P::unmap(target, new_len) };
            return None;
        }
        // The old entry goes before the old range does: once `remap_to`
        // returns, the kernel may hand those addresses to another thread's
        // fresh mapping, whose entry a late clear would wipe out.
        let old_entry = map.get(user);
        map.set(user, Entry::NONE);
        // SAFETY: both ranges are ours and disjoint; on success the old range
        // is gone and its pages (header included) live at the target.
        if !unsafe { P::remap_to(base_nn, old_len, new_len, target) } {
            map.set(user, old_entry);
            // SAFETY: unused target.
            unsafe { P::unmap(target, new_len) };
            return None;
        }
        // SAFETY: the header moved with its page to the target.
        let nh = unsafe { &*(t as *const LargeHeader) };
        nh.map_len.store(new_len, Ordering::Relaxed);
        nh.family.store(
            self.next_family.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        nh.user.store(t + offset, Ordering::Release);
        if new_len >= huge_from {
            // SAFETY: our mapping.
            unsafe { P::advise_huge(target, new_len) };
        }
        map.set(
            t + offset,
            Entry::large(t + offset, (offset / PAGE_SIZE) as u32),
        );
        // SAFETY: non-null.
        Some((
            unsafe { NonNull::new_unchecked((t + offset) as *mut u8) },
            new_len,
        ))
    }

    /// Returns every cached mapping to the OS.
    pub fn trim(&self, map: &PageMap, limits: &CacheLimits) {
        loop {
            let mut work = Work::NONE;
            let done = {
                let mut g = self.cache.lock();
                g.drain(&mut work);
                g.is_empty()
            };
            self.run(map, limits, work);
            if done {
                return;
            }
        }
    }

    /// Reserves cache room for blocks of `size` bytes (default alignment):
    /// up to `keep` freed mappings of that length stay resident past the
    /// decay (see the BigCache's reservations). False if no reservation
    /// slot is free or the size is not cacheable.
    pub fn reserve(
        &self,
        size: usize,
        keep: usize,
        limits: &CacheLimits,
        huge_from: usize,
    ) -> bool {
        match geometry(size, 16, huge_from) {
            Some((offset, len, _)) if offset == PAGE_SIZE && len <= limits.max_block => {
                self.cache.lock().reserve(len, keep)
            }
            _ => false,
        }
    }

    /// The mapping length a block of `size` bytes (default alignment) gets.
    pub fn mapping_len(size: usize, huge_from: usize) -> Option<usize> {
        geometry(size, 16, huge_from).map(|(_, len, _)| len)
    }

    /// Drops the reservation for blocks of `size` bytes, if any.
    pub fn unreserve(&self, size: usize, huge_from: usize) {
        if let Some(len) = Self::mapping_len(size, huge_from) {
            self.cache.lock().unreserve(len);
        }
    }

    /// Checks the large cache's invariants and returns the first one
    /// broken. Allocates nothing and is compiled in every build, so release
    /// builds and tests alike can run it:
    ///
    /// * the cache's bookkeeping: per-class lists well formed (no entry
    ///   listed twice, no overlap, every entry in its size class), the
    ///   dirty and clean totals equal to the sums of the entries, the
    ///   reservations consistent;
    /// * `limits` hold: dirty bytes within `budget`, clean bytes within
    ///   `clean_budget`, no cached mapping longer than `max_block`;
    /// * every cached mapping is still registered: the page-map entry of
    ///   its user pointer's slot is the one [`Large::alloc`] set (the
    ///   header a page back), and a dirty one's header says it is cached
    ///   (no user pointer, the cached length, a one-page offset).
    ///
    /// The limits are those the tier has been called with; they hold once
    /// every call has returned (after [`Large::free`], [`Large::alloc`],
    /// [`Large::maintain`] or [`Large::trim`]). While other threads use the
    /// tier, a check made between two of their calls' batches may see a
    /// limit exceeded that the next batch restores.
    pub fn check(&self, map: &PageMap, limits: &CacheLimits) -> Result<(), &'static str> {
        let g = self.cache.lock();
        g.check()?;
        g.check_limits(limits)?;
        for e in g.entries() {
            let user = e.base + PAGE_SIZE;
            if map.get(user) != Entry::large(user, 1) {
                return Err("a cached mapping's page-map entry does not name its header");
            }
            if e.dirty {
                // SAFETY: the entry is in the cache, whose lock we hold, so
                // the mapping stays mapped for the call (only the cache
                // unmaps cached mappings, after taking them out); it is at
                // least a page long (checked by `g.check()`).
                unsafe { LargeHeader::check_cached(e.base, e.len, e.family) }?;
            }
        }
        Ok(())
    }

    /// The cache's counters.
    pub fn stats(&self) -> CacheStats {
        self.cache.lock().stats()
    }

    /// The cache lock, for the fork handlers.
    pub fn fork_lock(&self) -> &SpinLock<impl Sized> {
        &self.cache
    }
}

/// How far past a fresh block of mapping length `len` its mapping goes,
/// so that it ends on a huge-page boundary: a block whose mapping would
/// reach `huge_from` once rounded up to a huge-page multiple gets a
/// 2 MiB-aligned, huge-page-advised mapping that ends on a boundary;
/// without it, its last partial huge page (or, below `huge_from`, all of
/// it) would fault in 4 KiB pages, up to 511 faults per 2 MiB. Only when
/// the block uses at least a quarter of that last huge page: a huge page is
/// resident whole once touched, so a block that ends just past a boundary
/// would double its resident size for a few faults. The extra bytes become a cached piece of the block's family
/// ([`Large::cache_fresh_tail`]): at least [`MIN_PIECE`] (a huge page more
/// when the distance to the boundary is shorter), never touched until a
/// request carves or takes it, merged back when the block is freed. 0 when
/// the block is below `huge_from`, already ends on a boundary, or the
/// cache could not hold the piece.
///
/// [`MIN_PIECE`]: crate::cache::MIN_PIECE
pub(crate) fn fresh_extra(len: usize, huge_from: usize, limits: &CacheLimits) -> usize {
    let chunk = hakmem_platform::CHUNK_SIZE;
    let Some(end) = len.checked_next_multiple_of(chunk) else {
        return 0;
    };
    if end < huge_from || end == len {
        return 0;
    }
    let mut extra = end - len;
    if extra > chunk / 4 * 3 {
        // The block would use less than a quarter of its last huge page,
        // which is resident whole once touched (a block of 2 MiB and a
        // header page would take 4 MiB): its few 4 KiB faults cost less.
        return 0;
    }
    if extra < crate::cache::MIN_PIECE {
        extra += chunk;
    }
    let fits = extra <= limits.max_block.min(limits.budget)
        && len
            .checked_add(extra)
            .is_some_and(|t| t <= isize::MAX as usize);
    if fits {
        extra
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hakmem_platform::{Linux, CHUNK_SIZE};
    use proptest::prelude::*;

    const LIMITS: CacheLimits = CacheLimits {
        budget: 16 << 20,
        max_block: 8 << 20,
        wmax_permille: 1250,
        decay_ms: 60_000,
        batch: 8,
        clean_budget: 64 << 20,
    };
    const NO_CACHE: CacheLimits = CacheLimits {
        budget: 0,
        max_block: 0,
        ..LIMITS
    };
    const HUGE: usize = 4 << 20;

    fn setup() -> (&'static PageMap, Large<Linux>) {
        (Box::leak(Box::new(PageMap::new())), Large::new())
    }

    fn header(map: &PageMap, p: *const u8) -> &'static LargeHeader {
        Large::<Linux>::lookup(map.get(p as usize), p).expect("registered")
    }

    #[test]
    fn blocks_are_registered_aligned_and_writable() {
        let (map, large) = setup();
        for &(size, align) in &[
            (1 << 20, 16),
            (3 << 20, 4096),
            (5 << 20, 1 << 16),
            (1 << 20, 4 << 20),
            (100, 64 << 20),
        ] {
            let a = large.alloc(map, size, align, &LIMITS, HUGE).unwrap();
            let p = a.ptr.as_ptr();
            assert_eq!(p as usize % align, 0, "size {size} align {align}");
            assert!(a.zeroed);
            // SAFETY: size bytes are ours.
            unsafe { core::ptr::write_bytes(p, 0xcd, size) };
            let h = header(map, p);
            assert!(h.usable() >= size);
            assert!(h.alignment() >= align);
            assert!(
                h.offset() < align.max(4096) + 1,
                "at most one alignment of address space spent"
            );
            if size >= HUGE {
                assert_eq!(
                    h.base() % CHUNK_SIZE,
                    0,
                    "huge-page-sized mappings are 2 MiB aligned"
                );
            }
            for q in [
                p.wrapping_add(16),
                p.wrapping_add(4096),
                p.wrapping_sub(4096),
                p.wrapping_add(size / 2),
            ] {
                assert!(
                    Large::<Linux>::lookup(map.get(q as usize), q).is_none(),
                    "{q:?} is not the block"
                );
            }
            // SAFETY: freeing our block once.
            unsafe { large.free(map, h, &NO_CACHE) };
            assert_eq!(map.get(p as usize), Entry::NONE);
        }
    }

    #[test]
    fn mappings_just_short_of_a_huge_page_multiple_are_rounded_up_to_it() {
        let (map, large) = setup();
        let two = CHUNK_SIZE;
        // (size, mapping length) with the THP threshold at 2 MiB
        for (size, len) in [
            (two - (200 << 10), two),
            (two - 4096, two),
            (2 * two - (100 << 10), 2 * two),
            (two - (300 << 10), two - (300 << 10) + 4096),
            (two + 4096, two + 8192),
        ] {
            let a = large.alloc(map, size, 16, &NO_CACHE, two).unwrap();
            let h = header(map, a.ptr.as_ptr());
            assert_eq!((size, h.map_len()), (size, len));
            if len % two == 0 {
                assert_eq!(h.base() % two, 0, "{size}: huge-page aligned");
            }
            // SAFETY: ours; freeing once.
            unsafe {
                core::ptr::write_bytes(a.ptr.as_ptr(), 1, h.usable());
                large.free(map, h, &NO_CACHE);
            }
        }
        // below the THP threshold nothing is rounded
        let a = large
            .alloc(map, two - 4096, 16, &NO_CACHE, 2 * two)
            .unwrap();
        let h = header(map, a.ptr.as_ptr());
        assert_eq!(h.map_len(), two);
        // SAFETY: freeing once.
        unsafe { large.free(map, h, &NO_CACHE) };
        let a = large
            .alloc(map, two - 8192, 16, &NO_CACHE, 2 * two)
            .unwrap();
        let h = header(map, a.ptr.as_ptr());
        assert_eq!(h.map_len(), two - 4096);
        // SAFETY: freeing once.
        unsafe { large.free(map, h, &NO_CACHE) };
    }

    #[test]
    fn fresh_mappings_end_on_a_huge_page_boundary() {
        let two = CHUNK_SIZE;
        let mib = 1 << 20;
        // below the threshold, or already on a boundary: nothing more
        assert_eq!(fresh_extra(two - 4096, 2 * two, &BIG), 0);
        assert_eq!(fresh_extra(2 * two, two, &BIG), 0);
        // short of a boundary that reaches the threshold: up to it
        assert_eq!(fresh_extra(mib + 4096, two, &BIG), two + mib - 4096);
        // a block that would use less than a quarter of its last huge
        // page: no extension (the huge page would be resident whole)
        assert_eq!(fresh_extra(two + 4096, two, &BIG), 0);
        assert_eq!(fresh_extra(two + mib / 2 - 4096, two, &BIG), 0);
        assert_eq!(fresh_extra(two + mib / 2, two, &BIG), mib + mib / 2);
        // at least a piece's worth: a huge page more when closer
        assert_eq!(fresh_extra(3 * mib + 4096, two, &BIG), 3 * mib - 4096);
        assert_eq!(fresh_extra(5 * mib, two, &BIG), mib);
        // never more than the cache could hold
        assert_eq!(fresh_extra(two + 4096, two, &NO_CACHE), 0);
        let small = CacheLimits { budget: mib, ..BIG };
        assert_eq!(fresh_extra(5 * mib, two, &small), mib);
        assert_eq!(fresh_extra(3 * mib + 4096, two, &small), 0);

        let (map, large) = setup();
        let a = large.alloc(map, 3 * mib, 16, &BIG, two).unwrap();
        let h = header(map, a.ptr.as_ptr());
        assert_eq!(h.base() % two, 0);
        assert_eq!(a.map_len, 3 * mib + 4096, "the block's own length");
        // the rest up to the boundary is one dirty piece right after it
        assert_eq!(large.stats().dirty, (1, 3 * mib - 4096));
        assert_eq!((h.base() + a.map_len + 3 * mib - 4096) % two, 0);
        assert_eq!(large.check(map, &BIG), Ok(()));
        // SAFETY: ours.
        unsafe { core::ptr::write_bytes(a.ptr.as_ptr(), 0x5a, 3 * mib) };
        // the next request that fits takes it: right behind the block
        let b = large.alloc(map, 5 * mib / 2, 16, &BIG, two).unwrap();
        assert_eq!(b.ptr.as_ptr() as usize, a.ptr.as_ptr() as usize + a.map_len);
        assert!(
            !b.zeroed,
            "filed dirty: it shares the block's last huge page"
        );
        assert_eq!(large.stats().dirty.0, 0);
        // SAFETY: ours; the first block is untouched by the second.
        unsafe {
            core::ptr::write_bytes(b.ptr.as_ptr(), 0xa5, 5 * mib / 2);
            let s = core::slice::from_raw_parts(a.ptr.as_ptr(), 3 * mib);
            assert!(s.iter().all(|&x| x == 0x5a));
        }
        // freed, the two merge back into the whole huge-page-aligned mapping
        // SAFETY: freeing each once.
        unsafe {
            large.free(map, header(map, b.ptr.as_ptr()), &BIG);
            large.free(map, header(map, a.ptr.as_ptr()), &BIG);
        }
        assert_eq!(large.stats().dirty, (1, 6 * mib));
        assert_eq!(large.check(map, &BIG), Ok(()));
        large.trim(map, &BIG);
        assert_eq!(large.stats().dirty.0 + large.stats().clean.0, 0);
    }

    #[test]
    fn gated_extensions_take_their_huge_pages_from_the_grant() {
        let (map, large) = setup();
        let (two, mib) = (CHUNK_SIZE, 1 << 20);
        large.set_huge_gated(true);
        // no grant: made as without extensions (no piece cached)
        let a = large.alloc(map, 3 * mib, 16, &LIMITS, two).unwrap();
        assert_eq!(large.stats().dirty.0, 0);
        // a grant short of the 6 MiB mapping's three huge pages: the same
        large.grant_huge(2);
        let b = large.alloc(map, 3 * mib, 16, &LIMITS, two).unwrap();
        assert_eq!(large.stats().dirty.0, 0);
        assert_eq!(large.huge_budget(), 2);
        // enough: extended, the grant spent
        large.grant_huge(3);
        let c = large.alloc(map, 3 * mib, 16, &LIMITS, two).unwrap();
        assert_eq!(large.stats().dirty, (1, 3 * mib - 4096));
        assert_eq!(large.huge_budget(), 0);
        // ungated: always
        large.set_huge_gated(false);
        let d = large.alloc(map, 7 * mib / 2, 16, &LIMITS, two).unwrap();
        assert_eq!(large.stats().dirty.0, 2);
        assert_eq!(large.check(map, &LIMITS), Ok(()));
        for x in [a, b, c, d] {
            // SAFETY: freeing each once.
            unsafe { large.free(map, header(map, x.ptr.as_ptr()), &LIMITS) };
        }
        large.trim(map, &LIMITS);
    }

    #[test]
    fn cache_reuses_and_stays_within_budget() {
        let (map, large) = setup();
        let a = large.alloc(map, 3 << 20, 16, &LIMITS, HUGE).unwrap();
        let p = a.ptr.as_ptr();
        // SAFETY: freeing once.
        unsafe { large.free(map, header(map, p), &LIMITS) };
        assert!(
            Large::<Linux>::lookup(map.get(p as usize), p).is_none(),
            "a freed block is no longer valid"
        );
        assert_eq!(large.stats().dirty.0, 1);
        let b = large.alloc(map, 3 << 20, 16, &LIMITS, HUGE).unwrap();
        assert_eq!(b.ptr, a.ptr);
        assert!(!b.zeroed);
        assert_eq!(large.stats().hits, 1);
        let blocks: Vec<_> = (0..10)
            .map(|_| large.alloc(map, 3 << 20, 16, &LIMITS, HUGE).unwrap())
            .collect();
        for x in blocks.iter().chain(std::iter::once(&b)) {
            let p = x.ptr.as_ptr();
            // SAFETY: each freed once.
            unsafe { large.free(map, header(map, p), &LIMITS) };
            assert!(large.stats().dirty.1 <= LIMITS.budget);
        }
        let st = large.stats();
        assert!(st.purged > 0, "overflowing the budget purges");
        assert!(
            st.clean.0 > 0,
            "purged mappings stay cached as address space"
        );
        // a clean mapping comes back zeroed
        let c = large.alloc(map, 3 << 20, 16, &LIMITS, HUGE).unwrap();
        large.trim(map, &LIMITS);
        assert_eq!(large.stats().dirty.0 + large.stats().clean.0, 0);
        // SAFETY: freeing once.
        unsafe { large.free(map, header(map, c.ptr.as_ptr()), &NO_CACHE) };
    }

    #[test]
    fn other_sizes_are_carved_merged_and_grown_from_cached_memory() {
        let (map, large) = setup();
        let big = BIG;
        // (15 MiB: its mapping uses most of its last huge page, so it is
        // extended to the boundary)
        let a = large.alloc(map, 15 << 20, 16, &big, HUGE).unwrap();
        let p = a.ptr.as_ptr();
        // SAFETY: ours; freeing once.
        unsafe {
            core::ptr::write_bytes(p, 0x11, 15 << 20);
            large.free(map, header(map, p), &big);
        }
        // merged with the tail its fresh mapping had (up to a huge page)
        let whole = large.stats().dirty;
        assert_eq!(whole.0, 1);
        assert_eq!(whole.1, a.map_len + fresh_extra(a.map_len, HUGE, &big));
        // a much smaller request is carved from its head
        let b = large.alloc(map, 2 << 20, 16, &big, HUGE).unwrap();
        assert_eq!(b.ptr, a.ptr, "carved from the cached mapping");
        assert!(!b.zeroed);
        assert_eq!(large.stats().dirty.0, 1, "the tail stays cached");
        assert_eq!(large.check(map, &big), Ok(()));
        // ... and a second one from the tail
        let c = large.alloc(map, 5 << 20, 16, &big, HUGE).unwrap();
        assert_eq!(c.ptr.as_ptr() as usize, p as usize + b.map_len);
        assert_eq!(large.check(map, &big), Ok(()));
        // SAFETY: freeing each once.
        unsafe {
            large.free(map, header(map, b.ptr.as_ptr()), &big);
            large.free(map, header(map, c.ptr.as_ptr()), &big);
        }
        let st = large.stats();
        assert_eq!(st.dirty, whole, "the pieces merged back");
        assert_eq!(large.check(map, &big), Ok(()));
        // a bigger request grows the cached mapping: its pages move
        let d = large.alloc(map, 24 << 20, 16, &big, HUGE).unwrap();
        assert!(!d.zeroed);
        assert_eq!(large.stats().dirty.0, 0, "grown, not mapped afresh");
        // SAFETY: 18 MiB of it were the old pages (15 MiB written).
        let s = unsafe { core::slice::from_raw_parts(d.ptr.as_ptr().add(8 << 20), 7 << 20) };
        assert!(
            s.iter().all(|&x| x == 0x11),
            "the resident pages came along"
        );
        assert_eq!(large.check(map, &big), Ok(()));
        // SAFETY: freeing once.
        unsafe { large.free(map, header(map, d.ptr.as_ptr()), &big) };
        large.trim(map, &big);
        assert_eq!(large.check(map, &big), Ok(()));
    }

    /// Limits that cache mappings up to 64 MiB.
    const BIG: CacheLimits = CacheLimits {
        budget: 64 << 20,
        max_block: 64 << 20,
        ..LIMITS
    };

    #[test]
    fn purged_entries_read_zero() {
        let (map, large) = setup();
        let tight = CacheLimits {
            budget: 4 << 20,
            ..LIMITS
        };
        let a = large.alloc(map, 3 << 20, 16, &tight, HUGE).unwrap();
        let b = large.alloc(map, 3 << 20, 16, &tight, HUGE).unwrap();
        for x in [&a, &b] {
            // SAFETY: ours.
            unsafe { core::ptr::write_bytes(x.ptr.as_ptr(), 0xAA, 3 << 20) };
        }
        for x in [&a, &b] {
            // SAFETY: freeing once.
            unsafe { large.free(map, header(map, x.ptr.as_ptr()), &tight) };
        }
        // one of them was purged to stay within 4 MiB: take both back
        let c = large.alloc(map, 3 << 20, 16, &tight, HUGE).unwrap();
        let d = large.alloc(map, 3 << 20, 16, &tight, HUGE).unwrap();
        let clean = [c, d]
            .into_iter()
            .find(|x| x.zeroed)
            .expect("one came back purged");
        // SAFETY: ours.
        let s = unsafe { core::slice::from_raw_parts(clean.ptr.as_ptr(), 3 << 20) };
        assert!(s.iter().all(|&x| x == 0));
    }

    #[test]
    fn aligned_blocks_are_not_recycled_under_another_offset() {
        let (map, large) = setup();
        let a = large.alloc(map, 3 << 20, 1 << 16, &LIMITS, HUGE).unwrap();
        let p = a.ptr.as_ptr();
        // SAFETY: freeing once.
        unsafe { large.free(map, header(map, p), &LIMITS) };
        assert_eq!(map.get(p as usize), Entry::NONE);
        let b = large.alloc(map, 3 << 20, 16, &LIMITS, HUGE).unwrap();
        header(map, b.ptr.as_ptr());
    }

    #[test]
    fn resize_grows_moves_and_shrinks_keeping_contents() {
        let (map, large) = setup();
        let a = large.alloc(map, 2 << 20, 16, &LIMITS, HUGE).unwrap();
        let mut p = a.ptr.as_ptr();
        // SAFETY: ours.
        unsafe { core::ptr::write_bytes(p, 0x5a, 2 << 20) };
        // block the space after it so the growth has to move
        let blocker = large.alloc(map, 2 << 20, 16, &LIMITS, HUGE).unwrap();
        for &size in &[3 << 20, 40 << 20, 64 << 20, 5 << 20] {
            // SAFETY: our live block.
            let q = unsafe { large.resize(map, header(map, p), size, HUGE) }
                .unwrap()
                .0
                .as_ptr();
            let h = header(map, q);
            assert!(h.usable() >= size);
            // SAFETY: at least 2 MiB are ours and were preserved.
            let s = unsafe { core::slice::from_raw_parts(q, 2 << 20) };
            assert!(
                s.iter().all(|&x| x == 0x5a),
                "contents survive resize to {size}"
            );
            if q != p {
                assert_eq!(
                    map.get(p as usize),
                    Entry::NONE,
                    "the old pointer is unregistered"
                );
            }
            p = q;
        }
        // SAFETY: freeing once each.
        unsafe {
            large.free(map, header(map, p), &NO_CACHE);
            large.free(map, header(map, blocker.ptr.as_ptr()), &NO_CACHE);
        }
    }

    #[test]
    fn neighbouring_mappings_never_share_an_entry() {
        // small aligned blocks make small mappings; the kernel tends to place
        // the next mapping right next to them
        let (map, large) = setup();
        let mut live = Vec::new();
        for i in 0..64 {
            let (size, align) = if i % 2 == 0 {
                (41, 128 << 10)
            } else {
                ((1 << 20) + 1, 16)
            };
            let a = large.alloc(map, size, align, &NO_CACHE, HUGE).unwrap();
            live.push(a.ptr.as_ptr());
            for &p in &live {
                assert!(
                    Large::<Linux>::lookup(map.get(p as usize), p).is_some(),
                    "{p:?} lost its entry"
                );
            }
        }
        for p in live {
            // SAFETY: freeing once.
            unsafe { large.free(map, header(map, p), &NO_CACHE) };
        }
    }

    #[test]
    fn check_reports_a_corrupted_cache() {
        let (map, large) = setup();
        let a = large.alloc(map, 3 << 20, 16, &LIMITS, HUGE).unwrap();
        let p = a.ptr.as_ptr();
        let base = header(map, p).base();
        // SAFETY: freeing once.
        unsafe { large.free(map, header(map, p), &LIMITS) };
        assert_eq!(large.stats().dirty.0, 1);
        assert_eq!(large.check(map, &LIMITS), Ok(()));
        // the cached mapping's page-map entry is lost
        let entry = map.get(p as usize);
        map.set(p as usize, Entry::NONE);
        assert!(large.check(map, &LIMITS).is_err());
        map.set(p as usize, entry);
        assert_eq!(large.check(map, &LIMITS), Ok(()));
        // its header names a user again, as if it had not been freed
        // SAFETY: the mapping is cached (mapped) and its header is ours.
        let h = unsafe { &*(base as *const LargeHeader) };
        h.user.store(p as usize, Ordering::Release);
        assert!(large.check(map, &LIMITS).is_err());
        h.user.store(0, Ordering::Release);
        // ... or another length (the block merged with its fresh tail)
        let cached_len = large.stats().dirty.1;
        h.map_len.store(cached_len + 4096, Ordering::Relaxed);
        assert!(large.check(map, &LIMITS).is_err());
        h.map_len.store(cached_len, Ordering::Relaxed);
        assert_eq!(large.check(map, &LIMITS), Ok(()));
        // a mapping listed twice (on a copy of the cache's bookkeeping)
        {
            let g = large.cache.lock();
            let e = *g.entries().next().expect("one entry");
            let mut bad = g.clone();
            let mut w = Work::NONE;
            bad.put(e.base, e.len, 0, &LIMITS, &mut w);
            assert_eq!(bad.check(), Err("a mapping is listed twice"));
        }
        assert_eq!(large.check(map, &LIMITS), Ok(()));
        // limits other than those the cache was run with
        let small = CacheLimits {
            max_block: 2 << 20,
            ..LIMITS
        };
        assert!(large.check(map, &small).is_err());
        large.trim(map, &LIMITS);
        assert_eq!(large.check(map, &LIMITS), Ok(()));
    }

    #[test]
    fn impossible_sizes_fail() {
        let (map, large) = setup();
        assert!(large
            .alloc(map, usize::MAX - 10, 16, &LIMITS, HUGE)
            .is_none());
        assert!(large
            .alloc(map, isize::MAX as usize, 16, &LIMITS, HUGE)
            .is_none());
        assert!(large.alloc(map, 1 << 50, 16, &LIMITS, HUGE).is_none());
        assert!(large.alloc(map, 1 << 20, 1 << 40, &LIMITS, HUGE).is_none());
    }

    /// Fake platforms (counting every call), one per test: tests run at
    /// the same time.
    macro_rules! fake_pal {
        ($name:ident, $pal:ident) => {
            struct $name;
            impl hakmem_platform::fake::FakeInstance for $name {
                fn fake() -> &'static hakmem_platform::fake::Fake {
                    static F: hakmem_platform::fake::Fake =
                        hakmem_platform::fake::Fake::new(1 << 30);
                    &F
                }
            }
            type $pal = hakmem_platform::fake::FakePal<$name>;
        };
    }
    fake_pal!(ChainFake, ChainPal);
    fake_pal!(PieceFake, PiecePal);

    fn counts<I: hakmem_platform::fake::FakeInstance>() -> hakmem_platform::fake::FakeCounts {
        I::fake().counts()
    }

    /// One chain of growing reallocations, 1.5 MiB to about 40 MiB by
    /// 1.5x, contents checked at every step; returns the block, freed.
    fn grow_chain<P: Pal>(map: &PageMap, large: &Large<P>, limits: &CacheLimits, tag: u8) {
        let mut size = 3 << 19;
        let a = large
            .alloc_growing(map, size, 16, limits, CHUNK_SIZE)
            .unwrap();
        let mut p = a.ptr.as_ptr();
        // SAFETY: `size` bytes are ours.
        unsafe { core::ptr::write_bytes(p, tag, size) };
        while size < 36 << 20 {
            let next = size * 3 / 2;
            let h = Large::<P>::lookup(map.get(p as usize), p).expect("registered");
            if next <= h.usable() {
                // as the facade's realloc does: it fits, nothing to do
                // SAFETY: `next` bytes are ours.
                unsafe { core::ptr::write_bytes(p.add(size), tag, next - size) };
                size = next;
                continue;
            }
            // SAFETY: our live block.
            let (q, len) = unsafe { large.resize(map, h, next, CHUNK_SIZE) }.unwrap();
            p = q.as_ptr();
            let h = Large::<P>::lookup(map.get(p as usize), p).expect("registered");
            assert_eq!(h.map_len(), len);
            assert_eq!(
                (h.base() + len) % CHUNK_SIZE,
                0,
                "a grown mapping ends on a huge-page boundary"
            );
            // SAFETY: the first `size` bytes were kept.
            let s = unsafe { core::slice::from_raw_parts(p, size) };
            assert!(s.iter().step_by(4093).all(|&x| x == tag), "contents kept");
            // SAFETY: `next` bytes are ours now.
            unsafe { core::ptr::write_bytes(p.add(size), tag, next - size) };
            assert_eq!(large.check(map, limits), Ok(()));
            size = next;
        }
        let h = Large::<P>::lookup(map.get(p as usize), p).expect("registered");
        // SAFETY: freeing once.
        unsafe { large.free(map, h, limits) };
        assert_eq!(large.check(map, limits), Ok(()));
    }

    #[test]
    fn a_repeated_realloc_chain_grows_over_cached_memory_without_system_calls() {
        let map = Box::new(PageMap::new());
        let map: &PageMap = &map;
        let large = Large::<ChainPal>::new();
        grow_chain(map, &large, &BIG, 1);
        let first = counts::<ChainFake>();
        assert!(first.maps > 1, "the first chain maps");
        assert_eq!(large.stats().dirty.0, 1, "the last block is cached");
        for tag in 2..5 {
            grow_chain(map, &large, &BIG, tag);
            let k = counts::<ChainFake>();
            assert_eq!(
                (k.maps, k.remaps, k.unmaps, k.purges),
                (first.maps, first.remaps, first.unmaps, first.purges),
                "chain {tag} grew over the cached mapping alone"
            );
            assert_eq!(large.stats().dirty.0, 1, "and it is cached whole again");
        }
        large.trim(map, &BIG);
        assert_eq!(large.check(map, &BIG), Ok(()));
    }

    #[test]
    fn growth_takes_the_following_pieces_it_finds_and_maps_the_rest() {
        let map = Box::new(PageMap::new());
        let map: &PageMap = &map;
        let large = Large::<PiecePal>::new();
        let a = large.alloc(map, 7 << 20, 16, &BIG, CHUNK_SIZE).unwrap();
        // SAFETY: ours.
        unsafe { core::ptr::write_bytes(a.ptr.as_ptr(), 0x77, 7 << 20) };
        let h =
            Large::<PiecePal>::lookup(map.get(a.ptr.as_ptr() as usize), a.ptr.as_ptr()).unwrap();
        // SAFETY: freeing once.
        unsafe { large.free(map, h, &BIG) };
        // merged with its fresh mapping's tail (up to a huge page boundary)
        let whole = (7 << 20) + 4096 + fresh_extra((7 << 20) + 4096, CHUNK_SIZE, &BIG);
        assert_eq!(whole % CHUNK_SIZE, 0);
        assert_eq!(large.stats().dirty, (1, whole));
        // a 2 MiB head carved from the cached mapping, the rest stays cached
        let b = large
            .alloc(map, (2 << 20) - 4096, 16, &BIG, CHUNK_SIZE)
            .unwrap();
        assert_eq!(b.ptr, a.ptr);
        assert_eq!(large.stats().dirty, (1, whole - (2 << 20)));
        let mut p = b.ptr.as_ptr();
        // SAFETY: ours.
        unsafe { core::ptr::write_bytes(p, 0x78, (2 << 20) - 4096) };
        // 5 MiB: over the cached piece, its rest stays cached
        let h = Large::<PiecePal>::lookup(map.get(p as usize), p).unwrap();
        let before = counts::<PieceFake>();
        // SAFETY: our live block.
        let (q, len) = unsafe { large.resize(map, h, 5 << 20, CHUNK_SIZE) }.unwrap();
        assert_eq!(q.as_ptr(), p, "grown in place");
        assert_eq!(counts::<PieceFake>().maps, before.maps, "no mapping");
        assert_eq!(large.stats().dirty.1, whole - len);
        assert_eq!(large.check(map, &BIG), Ok(()));
        // 20 MiB: the rest of the cached piece, then a move (the fake never
        // grows in place)
        p = q.as_ptr();
        let h = Large::<PiecePal>::lookup(map.get(p as usize), p).unwrap();
        // SAFETY: our live block.
        let (q, len) = unsafe { large.resize(map, h, 20 << 20, CHUNK_SIZE) }.unwrap();
        assert!(len >= 20 << 20);
        assert_eq!(large.stats().dirty.0, 0, "the cached piece was taken");
        // SAFETY: the block's first bytes came along.
        let s = unsafe { core::slice::from_raw_parts(q.as_ptr(), (2 << 20) - 4096) };
        assert!(s.iter().all(|&x| x == 0x78));
        assert_eq!(large.check(map, &BIG), Ok(()));
        let h = Large::<PiecePal>::lookup(map.get(q.as_ptr() as usize), q.as_ptr()).unwrap();
        // SAFETY: freeing once.
        unsafe { large.free(map, h, &BIG) };
        large.trim(map, &BIG);
    }

    #[test]
    fn a_block_longer_than_the_cache_takes_leaves_its_head_cached() {
        let (map, large) = setup();
        let a = large.alloc(map, 70 << 20, 16, &BIG, HUGE).unwrap();
        let p = a.ptr.as_ptr();
        // SAFETY: ours; freeing once.
        unsafe {
            core::ptr::write_bytes(p, 0x42, 70 << 20);
            large.free(map, header(map, p), &BIG);
        }
        assert_eq!(
            large.stats().dirty,
            (1, 64 << 20),
            "its head, up to the limit"
        );
        assert_eq!(large.check(map, &BIG), Ok(()));
        let b = large.alloc(map, 60 << 20, 16, &BIG, HUGE).unwrap();
        assert_eq!(b.ptr, a.ptr, "reused");
        assert!(!b.zeroed);
        // SAFETY: freeing once.
        unsafe { large.free(map, header(map, b.ptr.as_ptr()), &BIG) };
        // without room for a piece of a MiB, all of it goes back
        let tiny = CacheLimits {
            budget: 512 << 10,
            max_block: 512 << 10,
            ..BIG
        };
        large.trim(map, &BIG);
        let c = large.alloc(map, 3 << 20, 16, &tiny, HUGE).unwrap();
        // SAFETY: freeing once.
        unsafe { large.free(map, header(map, c.ptr.as_ptr()), &tiny) };
        assert_eq!(large.stats().dirty.0 + large.stats().clean.0, 0);
        assert_eq!(map.get(c.ptr.as_ptr() as usize), Entry::NONE);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// Model test: live blocks never overlap, keep their contents, and the
        /// cache stays within its budget.
        #[test]
        fn large_matches_model(ops in proptest::collection::vec((0u8..4, 1usize..(6 << 20), 0usize..8), 1..40)) {
            let (map, large) = setup();
            let mut live: Vec<(usize, usize, u8)> = Vec::new();
            for (i, (op, size, pick)) in ops.into_iter().enumerate() {
                if op == 0 || op == 3 || live.is_empty() {
                    // (3: a block that will grow, its mapping rounded up)
                    let a = if op == 3 {
                        large.alloc_growing(map, size, 16, &LIMITS, HUGE).unwrap()
                    } else {
                        large.alloc(map, size, 16, &LIMITS, HUGE).unwrap()
                    };
                    let p = a.ptr.as_ptr() as usize;
                    for &(q, n, _) in &live {
                        prop_assert!(p + size <= q || q + n <= p, "overlap");
                    }
                    // SAFETY: size bytes are ours.
                    unsafe { core::ptr::write_bytes(p as *mut u8, i as u8, size) };
                    live.push((p, size, i as u8));
                } else if op == 1 {
                    let (p, n, tag) = live.swap_remove(pick % live.len());
                    // SAFETY: reading our own live block.
                    let s = unsafe { core::slice::from_raw_parts(p as *const u8, n) };
                    prop_assert!(s.iter().all(|&b| b == tag));
                    // SAFETY: freeing once.
                    unsafe { large.free(map, header(map, p as *const u8), &LIMITS) };
                } else {
                    let k = pick % live.len();
                    let (p, n, tag) = live[k];
                    // SAFETY: our live block.
                    let q = unsafe { large.resize(map, header(map, p as *const u8), size, HUGE) }.unwrap().0.as_ptr() as usize;
                    let keep = n.min(size);
                    // SAFETY: keep bytes preserved.
                    let s = unsafe { core::slice::from_raw_parts(q as *const u8, keep) };
                    prop_assert!(s.iter().all(|&b| b == tag));
                    // SAFETY: size bytes are ours now.
                    unsafe { core::ptr::write_bytes(q as *mut u8, tag, size) };
                    live[k] = (q, size, tag);
                }
                prop_assert!(large.stats().dirty.1 <= LIMITS.budget);
                prop_assert_eq!(large.check(map, &LIMITS), Ok(()));
            }
            for (p, _, _) in live {
                // SAFETY: freeing once.
                unsafe { large.free(map, header(map, p as *const u8), &LIMITS) };
                prop_assert_eq!(large.check(map, &LIMITS), Ok(()));
            }
            large.maintain(map, &LIMITS);
            prop_assert_eq!(large.check(map, &LIMITS), Ok(()));
            large.trim(map, &LIMITS);
            prop_assert_eq!(large.check(map, &LIMITS), Ok(()));
            prop_assert!(large.stats().dirty.0 + large.stats().clean.0 == 0);
        }
    }
}
