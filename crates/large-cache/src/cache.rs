//! The BigCache: freed large mappings kept for reuse, per size class.
//!
//! Entries are *dirty* (pages still resident: reuse costs nothing) or
//! *clean* (purged with `MADV_DONTNEED`: address space only; reuse faults in
//! zeroed pages, but saves the `mmap`/`munmap` pair and the VMA churn).
//!
//! Bounds, all from the policy ([`CacheLimits`]):
//! * dirty bytes never exceed `budget`: inserting beyond it purges the
//!   oldest dirty entries;
//! * a dirty entry unused for `decay_ms` is purged along a curve
//!   ([`kept_permille`]: whole until `decay_ms`, none left at 1.5 times it;
//!   the purged tail becomes a clean entry of its own), a clean one unused
//!   for 8 times `decay_ms` is unmapped; decay runs whenever the large tier
//!   is maintained (calls, or a periodic caller), at most 8 times per decay
//!   period;
//! * a request no dirty entry fits within W_MAX is carved from the head of
//!   a longer dirty entry (the tail stays cached); freed pieces of one
//!   mapping (one *family*) that adjoin are merged again;
//! * purging and unmapping happen in batches of at most `batch` mappings,
//!   outside the lock; an entry being purged is out of the cache meanwhile, so
//!   no thread can reuse memory under `madvise`.
//!
//! **Reservations.** A call-site that allocates one large size again and
//! again can have that mapping length *reserved* ([`BigCache::reserve`]):
//! up to `keep` dirty entries of exactly that length are exempt from decay
//! and from budget eviction for [`HOLD_PERIODS`] decay periods, so a program
//! that allocates in bursts further apart than the decay time finds its
//! mappings resident instead of faulting them in again. Each reservation
//! measures itself: a take of a reserved entry older than the decay time
//! (one decay would have purged) is a *hit*; a reserved entry that reaches
//! the end of its hold unused is a *miss*. When misses outnumber hits by
//! [`DROP_MARGIN`], the reservation is dropped. Reserved bytes are counted in
//! the dirty bytes and never exceed the budget.
//!
//! This module only does the bookkeeping: it returns the work (what to purge,
//! what to unmap) and the large tier carries it out.

use hakmem_platform::PAGE_SIZE as PAGE;

mod check;

/// Size classes: four per doubling of the mapping length, from 1 MiB.
const CLASSES: usize = 64;
/// Entries per class.
const WAYS: usize = 32;
/// Most mappings handed back for purging or unmapping by one call.
pub(crate) const MAX_BATCH: usize = 32;
/// Most cached pieces one in-place growth takes ([`BigCache::take_after`]).
pub(crate) const MAX_GROW_PIECES: usize = 8;
/// Reservations held at once.
pub const RESERVATIONS: usize = 8;
/// A reserved entry is kept at most this many decay periods.
pub const HOLD_PERIODS: u64 = 16;
/// A reservation is dropped when its misses exceed its hits by this much.
pub const DROP_MARGIN: u32 = 4;

/// Cache limits (from the policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Dirty bytes kept at most.
    pub budget: usize,
    /// Largest mapping kept.
    pub max_block: usize,
    /// A reused mapping may be at most this many thousandths of the request
    /// (the large tier's W_MAX).
    pub wmax_permille: u32,
    /// Time after which an unused dirty entry is purged.
    pub decay_ms: u64,
    /// Mappings purged or unmapped per batch.
    pub batch: usize,
    /// Clean (address-space-only) bytes kept at most.
    pub clean_budget: usize,
}

/// Counters of the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Dirty entries and their bytes.
    pub dirty: (usize, usize),
    /// Clean entries and their bytes.
    pub clean: (usize, usize),
    /// Allocations served from the cache.
    pub hits: u64,
    /// Mappings purged so far.
    pub purged: u64,
    /// Mappings unmapped by the cache so far.
    pub unmapped: u64,
    /// Reservations held now.
    pub reservations: usize,
    /// Takes of reserved entries that decay would have purged.
    pub reserved_hits: u64,
    /// Reserved entries that ended their hold unused.
    pub reserved_misses: u64,
    /// Reservations dropped for missing more than they hit.
    pub reservations_dropped: u64,
}

/// One reserved mapping length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Reservation {
    /// Mapping length (0: free slot).
    len: usize,
    /// Entries of this length kept past the decay.
    keep: usize,
    hits: u32,
    misses: u32,
}

const NO_RESERVATION: Reservation = Reservation {
    len: 0,
    keep: 0,
    hits: 0,
    misses: 0,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cached {
    pub base: usize,
    pub len: usize,
    pub stamp: u64,
    pub dirty: bool,
    /// The mapping's family (0: none, never merged); see
    /// `LargeHeader::family`.
    pub family: u64,
    /// Dirty bytes the entry had when it was freed (the decay curve purges
    /// in proportion to them); its length while it is whole.
    pub full: usize,
}

const EMPTY: Cached = Cached {
    base: 0,
    len: 0,
    stamp: 0,
    dirty: false,
    family: 0,
    full: 0,
};

/// Smallest piece the cache splits off (a tail carved from a larger
/// mapping, or purged by the decay curve): smaller remainders stay with the
/// block. At least a page-map slot and a page, so that pieces' user
/// pointers never share a slot.
pub(crate) const MIN_PIECE: usize = 1 << 20;

/// Decay passes per decay period (each pass moves the curve on).
const PASSES: u64 = 8;

/// Thousandths of an entry's freed bytes that stay resident `age` ms after
/// it was freed: all of them until `decay` (a block reused within the decay
/// time is never purged), then less along a smoothstep curve, none from
/// one and a half times `decay` on.
pub(crate) fn kept_permille(age: u64, decay: u64) -> u64 {
    let decay = decay.max(1);
    if age < decay {
        return 1000;
    }
    let span = (decay / 2).max(1);
    if age >= decay + span {
        return 0;
    }
    // x in [0, 1) as thousandths; smoothstep = 3x^2 - 2x^3
    let x = ((age - decay) * 1000 / span) as u128;
    let s = (3 * x * x * 1000 - 2 * x * x * x) / 1_000_000;
    1000 - s as u64
}

/// Work for the caller, to do outside the lock.
#[derive(Debug)]
pub(crate) struct Work {
    pub purge: [Cached; MAX_BATCH],
    /// Bytes at the start of each purged entry that stay resident (0: the
    /// whole entry is purged); the decay curve purges tails.
    pub keep: [usize; MAX_BATCH],
    pub n_purge: usize,
    /// Twice a batch: re-filing a batch of purged entries may hand back
    /// up to two pieces of each for unmapping.
    pub unmap: [Cached; 2 * MAX_BATCH],
    pub n_unmap: usize,
}

impl Work {
    pub const NONE: Work = Work {
        purge: [EMPTY; MAX_BATCH],
        keep: [0; MAX_BATCH],
        n_purge: 0,
        unmap: [EMPTY; 2 * MAX_BATCH],
        n_unmap: 0,
    };
    fn purge(&mut self, c: Cached) {
        self.purge_tail(c, 0);
    }
    fn purge_tail(&mut self, c: Cached, keep: usize) {
        self.purge[self.n_purge] = c;
        self.keep[self.n_purge] = keep;
        self.n_purge += 1;
    }
    fn unmap(&mut self, c: Cached) {
        self.unmap[self.n_unmap] = c;
        self.n_unmap += 1;
    }
    fn room(&self, batch: usize) -> bool {
        self.n_purge < batch.min(MAX_BATCH) && self.n_unmap < MAX_BATCH
    }
}

/// Bookkeeping of the cache. [`BigCache::check`] states its invariants.
#[derive(Clone)]
pub(crate) struct BigCache {
    slots: [[Cached; WAYS]; CLASSES],
    counts: [u8; CLASSES],
    dirty_bytes: usize,
    clean_bytes: usize,
    dirty_n: usize,
    clean_n: usize,
    last_decay: u64,
    hits: u64,
    purged: u64,
    unmapped: u64,
    reservations: [Reservation; RESERVATIONS],
    reserved_hits: u64,
    reserved_misses: u64,
    reservations_dropped: u64,
}

/// Class of a mapping length (≥ 1 page).
fn class_of(len: usize) -> usize {
    let len = len.max(1 << 20);
    let lg = (usize::BITS - 1 - len.leading_zeros()) as usize; // ≥ 20
    let quarter = (len >> (lg - 2)) & 3;
    ((lg - 20) * 4 + quarter).min(CLASSES - 1)
}

impl BigCache {
    pub const fn new() -> Self {
        BigCache {
            slots: [[EMPTY; WAYS]; CLASSES],
            counts: [0; CLASSES],
            dirty_bytes: 0,
            clean_bytes: 0,
            dirty_n: 0,
            clean_n: 0,
            last_decay: 0,
            hits: 0,
            purged: 0,
            unmapped: 0,
            reservations: [NO_RESERVATION; RESERVATIONS],
            reserved_hits: 0,
            reserved_misses: 0,
            reservations_dropped: 0,
        }
    }

    /// Reserves mapping length `len`: up to `keep` dirty entries of exactly
    /// that length outlive the decay (see the module docs). An existing
    /// reservation's `keep` grows to `keep`. False when all reservation
    /// slots are taken or `keep` is 0.
    pub fn reserve(&mut self, len: usize, keep: usize) -> bool {
        if keep == 0 || len == 0 {
            return false;
        }
        if let Some(r) = self.reservations.iter_mut().find(|r| r.len == len) {
            r.keep = r.keep.max(keep).min(WAYS);
            return true;
        }
        match self.reservations.iter_mut().find(|r| r.len == 0) {
            Some(r) => {
                *r = Reservation {
                    len,
                    keep: keep.min(WAYS),
                    hits: 0,
                    misses: 0,
                };
                true
            }
            None => false,
        }
    }

    /// Drops the reservation of `len`, if any.
    pub fn unreserve(&mut self, len: usize) {
        if let Some(r) = self.reservations.iter_mut().find(|r| r.len == len) {
            *r = NO_RESERVATION;
        }
    }

    /// The reservation of `len`, if any.
    pub fn reserved(&self, len: usize) -> Option<usize> {
        self.reservations
            .iter()
            .position(|r| r.len == len && len != 0)
    }

    /// The dirty entries a reservation protects: the `keep` youngest dirty
    /// entries of its length, younger than the hold.
    fn protected(&self, e: &Cached, now: u64, limits: &CacheLimits) -> bool {
        let Some(r) = self.reserved(e.len) else {
            return false;
        };
        if !e.dirty || now.saturating_sub(e.stamp) >= HOLD_PERIODS * limits.decay_ms {
            return false;
        }
        let c = class_of(e.len);
        let younger = self.slots[c][..self.counts[c] as usize]
            .iter()
            .filter(|o| o.dirty && o.len == e.len && o.stamp > e.stamp)
            .count();
        younger < self.reservations[r].keep
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            dirty: (self.dirty_n, self.dirty_bytes),
            clean: (self.clean_n, self.clean_bytes),
            hits: self.hits,
            purged: self.purged,
            unmapped: self.unmapped,
            reservations: self.reservations.iter().filter(|r| r.len != 0).count(),
            reserved_hits: self.reserved_hits,
            reserved_misses: self.reserved_misses,
            reservations_dropped: self.reservations_dropped,
        }
    }

    pub fn note_purged(&mut self, n: usize) {
        self.purged += n as u64;
    }

    pub fn note_unmapped(&mut self, n: usize) {
        self.unmapped += n as u64;
    }

    fn account(&mut self, c: &Cached, add: bool) {
        let (bytes, n) = if c.dirty {
            (&mut self.dirty_bytes, &mut self.dirty_n)
        } else {
            (&mut self.clean_bytes, &mut self.clean_n)
        };
        if add {
            *bytes += c.len;
            *n += 1;
        } else {
            *bytes -= c.len;
            *n -= 1;
        }
    }

    fn remove_at(&mut self, class: usize, i: usize) -> Cached {
        let n = self.counts[class] as usize;
        let c = self.slots[class][i];
        self.slots[class][i] = self.slots[class][n - 1];
        self.slots[class][n - 1] = EMPTY;
        self.counts[class] -= 1;
        self.account(&c, false);
        c
    }

    /// Takes a mapping of at least `len` bytes and at most `len * wmax`,
    /// dirty ones first, the smallest fitting one within each kind. `now`
    /// scores the reservations.
    #[cfg(test)]
    pub fn take(&mut self, len: usize, now: u64, limits: &CacheLimits) -> Option<Cached> {
        self.take_or_carve(len, now, limits, |_| false)
    }

    /// As [`BigCache::take`], but when no dirty mapping fits within W_MAX,
    /// carves the head of the smallest larger dirty one: its first `len`
    /// bytes go out and its tail stays cached (dirty, with its stamp and
    /// family) once `split` has accepted it (`split` registers the tail
    /// and writes its header; false leaves the mapping whole). A dirty
    /// piece is reused before a clean (purged) one or a fresh mapping.
    pub fn take_or_carve(
        &mut self,
        len: usize,
        now: u64,
        limits: &CacheLimits,
        mut split: impl FnMut(&Cached) -> bool,
    ) -> Option<Cached> {
        let max_len = (len as u128 * limits.wmax_permille.max(1000) as u128 / 1000) as usize;
        let (lo, hi) = (class_of(len), class_of(max_len));
        let mut best: Option<(usize, usize)> = None;
        for c in lo..=hi {
            for i in 0..self.counts[c] as usize {
                let e = &self.slots[c][i];
                if e.len < len || e.len > max_len {
                    continue;
                }
                let better = match best {
                    None => true,
                    Some((bc, bi)) => {
                        let b = &self.slots[bc][bi];
                        (e.dirty && !b.dirty) || (e.dirty == b.dirty && e.len < b.len)
                    }
                };
                if better {
                    best = Some((c, i));
                }
            }
        }
        if best.is_none_or(|(c, i)| !self.slots[c][i].dirty) {
            if let Some(e) = self.carve(len, max_len, &mut split) {
                self.hits += 1;
                return Some(e);
            }
        }
        let (c, i) = best?;
        self.hits += 1;
        let e = self.remove_at(c, i);
        if e.dirty && now.saturating_sub(e.stamp) >= limits.decay_ms {
            if let Some(r) = self.reserved(e.len) {
                self.reservations[r].hits = self.reservations[r].hits.saturating_add(1);
                self.reserved_hits += 1;
            }
        }
        Some(e)
    }

    /// Takes the largest dirty mapping shorter than `len` whose start and
    /// length are multiples of `align` (a power of two), to be grown into a
    /// request nothing cached can hold.
    pub fn take_below(&mut self, len: usize, align: usize) -> Option<Cached> {
        let mut best: Option<(usize, usize)> = None;
        for c in 0..=class_of(len) {
            for i in 0..self.counts[c] as usize {
                let e = &self.slots[c][i];
                if e.dirty
                    && e.len < len
                    && (e.base | e.len) & (align - 1) == 0
                    && best.is_none_or(|(bc, bi)| e.len > self.slots[bc][bi].len)
                {
                    best = Some((c, i));
                }
            }
        }
        let (c, i) = best?;
        self.hits += 1;
        Some(self.remove_at(c, i))
    }

    /// Takes the cached pieces of family `family` that follow `end` back
    /// to back, up to `want` bytes, so that a live block of that family
    /// ending at `end` grows over them where it is (they lie in its kernel
    /// mapping: no system call, and their pages stay resident). `absorbed`
    /// is called with the base of every piece taken (the caller
    /// unregisters it). Of the last piece, a rest beyond `want` of at least
    /// [`MIN_PIECE`] stays cached (with its stamp, dirty or clean as it
    /// was) once `split` has accepted it, as in carving; a shorter rest, or
    /// one `split` refuses, goes with the block. Returns the bytes taken:
    /// 0 when no piece follows, less than `want` when the pieces there
    /// (at most [`MAX_GROW_PIECES`]) end first (the caller grows the rest
    /// some other way).
    pub fn take_after(
        &mut self,
        end: usize,
        family: u64,
        want: usize,
        mut split: impl FnMut(&Cached) -> bool,
        mut absorbed: impl FnMut(usize),
    ) -> usize {
        if family == 0 || want == 0 {
            return 0;
        }
        let mut total = 0usize;
        let mut last = EMPTY;
        for _ in 0..MAX_GROW_PIECES {
            if total >= want {
                break;
            }
            let at = end + total;
            let Some((c, i)) = self.find(|e| e.family == family && e.base == at) else {
                break;
            };
            last = self.remove_at(c, i);
            absorbed(last.base);
            total += last.len;
        }
        if total > want && total - want >= MIN_PIECE {
            let rest = total - want;
            let tail = Cached {
                base: last.base + last.len - rest,
                len: rest,
                full: rest,
                ..last
            };
            if (self.counts[class_of(rest)] as usize) < WAYS && split(&tail) {
                self.insert(tail);
                return want;
            }
        }
        total
    }

    /// The carving half of [`BigCache::take_or_carve`].
    fn carve(
        &mut self,
        len: usize,
        max_len: usize,
        split: &mut impl FnMut(&Cached) -> bool,
    ) -> Option<Cached> {
        let mut best: Option<(usize, usize)> = None;
        for c in class_of(max_len)..CLASSES {
            for i in 0..self.counts[c] as usize {
                let e = &self.slots[c][i];
                if !e.dirty || e.len <= max_len || e.len - len < MIN_PIECE {
                    continue;
                }
                if best.is_none_or(|(bc, bi)| e.len < self.slots[bc][bi].len) {
                    best = Some((c, i));
                }
            }
        }
        let (c, i) = best?;
        let e = self.slots[c][i];
        let tail = Cached {
            base: e.base + len,
            len: e.len - len,
            full: e.len - len,
            ..e
        };
        let tc = class_of(tail.len);
        if (tc != c && self.counts[tc] as usize == WAYS) || !split(&tail) {
            return None;
        }
        let mut head = self.remove_at(c, i);
        head.len = len;
        head.full = len;
        self.insert(tail);
        Some(head)
    }

    fn insert(&mut self, e: Cached) {
        let c = class_of(e.len);
        let n = self.counts[c] as usize;
        self.slots[c][n] = e;
        self.counts[c] += 1;
        self.account(&e, true);
    }

    /// Inserts a freed mapping of family `family` as dirty at time `now`,
    /// merged with the dirty pieces of its family that adjoin it (those
    /// are in the same kernel mapping). `absorbed` is called with the base
    /// of every piece that stops starting an entry (so the caller
    /// unregisters its user pointer); returns the merged entry's base and
    /// length (the caller rewrites its header), then the work that keeps
    /// the cache within its limits.
    #[allow(clippy::too_many_arguments)]
    pub fn put_merging(
        &mut self,
        base: usize,
        len: usize,
        family: u64,
        now: u64,
        limits: &CacheLimits,
        work: &mut Work,
        mut absorbed: impl FnMut(usize),
    ) -> (usize, usize) {
        let (mut base, mut len) = (base, len);
        if family != 0 {
            let mut merged = true;
            while merged {
                merged = false;
                let found = self.find(|e| {
                    e.dirty
                        && e.family == family
                        && (e.base == base + len || e.base + e.len == base)
                });
                if let Some((c, i)) = found {
                    let e = self.remove_at(c, i);
                    if e.base == base + len {
                        absorbed(e.base);
                    } else {
                        absorbed(base);
                        base = e.base;
                    }
                    len += e.len;
                    merged = true;
                }
            }
        }
        self.put_family(base, len, family, now, limits, work);
        (base, len)
    }

    /// Whether the class of mapping length `len` has a free way.
    pub fn has_room_for(&self, len: usize) -> bool {
        (self.counts[class_of(len)] as usize) < WAYS
    }

    /// Inserts `e` (the unused tail of a fresh mapping, filed dirty so that
    /// it is carved and merged like a freed piece; the class must have
    /// room, see [`BigCache::has_room_for`]) and returns the work that
    /// keeps the cache within its limits.
    pub fn put_piece(&mut self, e: Cached, limits: &CacheLimits, work: &mut Work) {
        debug_assert!(self.has_room_for(e.len));
        self.insert(e);
        self.enforce(e.stamp, limits, work);
    }

    fn find(&self, f: impl Fn(&Cached) -> bool) -> Option<(usize, usize)> {
        for c in 0..CLASSES {
            for i in 0..self.counts[c] as usize {
                if f(&self.slots[c][i]) {
                    return Some((c, i));
                }
            }
        }
        None
    }

    /// Inserts a freed mapping as dirty at time `now`, and returns the work
    /// that keeps the cache within its limits (and any entry that did not
    /// fit, to unmap).
    #[cfg(test)]
    pub fn put(
        &mut self,
        base: usize,
        len: usize,
        now: u64,
        limits: &CacheLimits,
        work: &mut Work,
    ) {
        self.put_family(base, len, 0, now, limits, work);
    }

    fn put_family(
        &mut self,
        base: usize,
        len: usize,
        family: u64,
        now: u64,
        limits: &CacheLimits,
        work: &mut Work,
    ) {
        let c = class_of(len);
        if self.counts[c] as usize == WAYS {
            // evict the oldest of the class
            let (i, _) = self.slots[c]
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.stamp)
                .expect("a full class has entries");
            let old = self.remove_at(c, i);
            work.unmap(old);
        }
        self.insert(Cached {
            base,
            len,
            stamp: now,
            dirty: true,
            family,
            full: len,
        });
        self.enforce(now, limits, work);
    }

    /// Re-files an entry of which the first `keep` bytes stayed resident
    /// and the rest was purged: the head as dirty (its stamp kept, so the
    /// curve goes on), the tail as clean. `keep` 0 is [`BigCache::put_clean`].
    pub fn put_purged(&mut self, e: Cached, keep: usize, limits: &CacheLimits, work: &mut Work) {
        if keep == 0 {
            return self.put_clean(e, limits, work);
        }
        let tail = Cached {
            base: e.base + keep,
            len: e.len - keep,
            ..e
        };
        let head = Cached { len: keep, ..e };
        let hc = class_of(keep);
        if self.counts[hc] as usize == WAYS {
            work.unmap(head);
        } else {
            self.insert(head);
        }
        self.put_clean(tail, limits, work);
    }

    /// Re-inserts a mapping that was purged (clean), keeping its stamp, and
    /// hands back the oldest clean entries beyond the clean budget.
    pub fn put_clean(&mut self, mut e: Cached, limits: &CacheLimits, work: &mut Work) {
        e.dirty = false;
        let c = class_of(e.len);
        if self.counts[c] as usize == WAYS || e.len > limits.clean_budget {
            work.unmap(e);
            return;
        }
        let n = self.counts[c] as usize;
        self.slots[c][n] = e;
        self.counts[c] += 1;
        self.account(&e, true);
        while self.clean_bytes > limits.clean_budget && work.n_unmap < MAX_BATCH {
            let Some((c, i)) = self.oldest(|e| !e.dirty) else {
                break;
            };
            let old = self.remove_at(c, i);
            work.unmap(old);
        }
    }

    /// Budget and decay: moves entries out to be purged or unmapped.
    pub fn enforce(&mut self, now: u64, limits: &CacheLimits, work: &mut Work) {
        // over budget: purge the oldest dirty entries, unreserved ones
        // first
        while self.dirty_bytes > limits.budget && work.room(limits.batch) {
            let Some((c, i)) = self
                .oldest(|e| e.dirty && self.reserved(e.len).is_none())
                .or_else(|| self.oldest(|e| e.dirty))
            else {
                break;
            };
            let e = self.remove_at(c, i);
            work.purge(e);
        }
        while self.clean_bytes > limits.clean_budget && work.room(limits.batch) {
            let Some((c, i)) = self.oldest(|e| !e.dirty) else {
                break;
            };
            let e = self.remove_at(c, i);
            work.unmap(e);
        }
        // decay, at most PASSES times per period (a pass cut short by a
        // full batch is resumed by the next call)
        if now.saturating_sub(self.last_decay) * PASSES >= limits.decay_ms {
            for c in 0..CLASSES {
                let mut i = 0;
                while i < self.counts[c] as usize {
                    let e = self.slots[c][i];
                    let age = now.saturating_sub(e.stamp);
                    if !work.room(limits.batch) {
                        return;
                    }
                    if e.dirty && age >= limits.decay_ms && self.protected(&e, now, limits) {
                        i += 1;
                    } else if e.dirty && age >= limits.decay_ms {
                        if let Some(r) = self.reserved(e.len) {
                            if age >= HOLD_PERIODS * limits.decay_ms {
                                self.miss(r);
                            }
                            work.purge(self.remove_at(c, i));
                            continue;
                        }
                        // the curve: keep a share of the freed bytes, in
                        // whole pieces; purge the tail beyond it
                        let want = (e.full as u128 * kept_permille(age, limits.decay_ms) as u128
                            / 1000) as usize;
                        let keep = want & !(MIN_PIECE - 1);
                        if keep >= MIN_PIECE && keep + MIN_PIECE > e.len {
                            i += 1; // nothing worth a piece to purge yet
                        } else if keep >= MIN_PIECE {
                            work.purge_tail(self.remove_at(c, i), keep);
                        } else {
                            work.purge(self.remove_at(c, i));
                        }
                    } else if !e.dirty && age >= 8 * limits.decay_ms {
                        work.unmap(self.remove_at(c, i));
                    } else {
                        i += 1;
                    }
                }
            }
            self.last_decay = now;
        }
    }

    /// A reserved entry ended its hold unused; too many of those drop the
    /// reservation.
    fn miss(&mut self, r: usize) {
        let res = &mut self.reservations[r];
        res.misses = res.misses.saturating_add(1);
        self.reserved_misses += 1;
        if res.misses >= res.hits.saturating_add(DROP_MARGIN) {
            *res = NO_RESERVATION;
            self.reservations_dropped += 1;
        }
    }

    /// Takes every entry out (dirty and clean) for unmapping, up to a batch.
    pub fn drain(&mut self, work: &mut Work) {
        for c in 0..CLASSES {
            while self.counts[c] > 0 && work.n_unmap < MAX_BATCH {
                let e = self.remove_at(c, 0);
                work.unmap(e);
            }
        }
    }

    fn oldest(&self, f: impl Fn(&Cached) -> bool) -> Option<(usize, usize)> {
        let mut best: Option<(usize, usize, u64)> = None;
        for c in 0..CLASSES {
            for i in 0..self.counts[c] as usize {
                let e = &self.slots[c][i];
                if f(e) && best.is_none_or(|(_, _, s)| e.stamp < s) {
                    best = Some((c, i, e.stamp));
                }
            }
        }
        best.map(|(c, i, _)| (c, i))
    }

    /// True if a cached entry starts at `base`.
    pub fn holds(&self, base: usize) -> bool {
        self.entries().any(|e| e.base == base)
    }

    pub fn is_empty(&self) -> bool {
        self.dirty_n + self.clean_n == 0
    }

    /// Every cached entry (dirty and clean), class by class.
    pub fn entries(&self) -> impl Iterator<Item = &Cached> {
        self.slots
            .iter()
            .zip(&self.counts)
            .flat_map(|(class, &n)| class.iter().take(n as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(super) const L: CacheLimits = CacheLimits {
        budget: 16 << 20,
        max_block: 8 << 20,
        wmax_permille: 1250,
        decay_ms: 1000,
        batch: 8,
        clean_budget: 64 << 20,
    };

    /// Limits with room for a 64 MiB mapping.
    const L_BIG: CacheLimits = CacheLimits {
        budget: 64 << 20,
        max_block: 64 << 20,
        ..L
    };

    #[test]
    fn classes_are_monotonic() {
        let mut last = 0;
        for mib in 1..200usize {
            let c = class_of(mib << 20);
            assert!(c >= last);
            last = c;
        }
        assert_eq!(class_of(1 << 20), 0);
        assert_eq!(class_of(2 << 20), 4);
    }

    #[test]
    fn take_respects_wmax_and_prefers_dirty() {
        let mut bc = BigCache::new();
        let mut w = Work::NONE;
        bc.put(0x1000_0000, 4 << 20, 0, &L, &mut w);
        bc.put_clean(
            Cached {
                base: 0x2000_0000,
                len: 4 << 20,
                stamp: 0,
                dirty: true,
                family: 0,
                full: 4 << 20,
            },
            &L,
            &mut w,
        );
        assert!(
            bc.take(3 << 20, 0, &L).is_none(),
            "4 MiB is more than 1.25 x 3 MiB"
        );
        let e = bc.take(4 << 20, 0, &L).unwrap();
        assert!(e.dirty && e.base == 0x1000_0000);
        let e = bc.take((4 << 20) - 4096, 0, &L).unwrap();
        assert!(!e.dirty);
        assert!(bc.is_empty());
        assert_eq!(bc.stats().hits, 2);
    }

    #[test]
    fn decay_purges_then_unmaps() {
        let mut bc = BigCache::new();
        let mut w = Work::NONE;
        bc.put(0x1000_0000, 2 << 20, 0, &L, &mut w);
        assert_eq!((w.n_purge, w.n_unmap), (0, 0));
        bc.enforce(1000, &L, &mut w);
        assert_eq!(w.n_purge, 0, "reusable for a whole decay period");
        bc.enforce(1500, &L, &mut w);
        assert_eq!(w.n_purge, 1, "idle for 1.5 times the decay time: all of it");
        assert_eq!(w.keep[0], 0);
        let e = w.purge[0];
        let mut w2 = Work::NONE;
        bc.put_clean(e, &L, &mut w2);
        assert_eq!(bc.stats().clean, (1, 2 << 20));
        bc.enforce(8000, &L, &mut w2);
        assert_eq!(w2.n_unmap, 1, "clean for 8 periods");
        assert!(bc.is_empty());
    }

    #[test]
    fn reserved_entries_outlive_the_decay_and_score_hits() {
        let mut bc = BigCache::new();
        let mut w = Work::NONE;
        assert!(bc.reserve(2 << 20, 2));
        bc.put(0x1000_0000, 2 << 20, 0, &L, &mut w);
        bc.put(0x2000_0000, 3 << 20, 0, &L, &mut w);
        bc.enforce(2000, &L, &mut w);
        assert_eq!(w.n_purge, 1, "only the unreserved 3 MiB entry decays");
        assert_eq!(w.purge[0].len, 3 << 20);
        let e = bc.take(2 << 20, 5000, &L).unwrap();
        assert!(e.dirty, "still resident after 5 decay periods");
        let st = bc.stats();
        assert_eq!(
            (st.reserved_hits, st.reserved_misses, st.reservations),
            (1, 0, 1)
        );
    }

    #[test]
    fn a_reservation_keeps_only_its_youngest_entries() {
        let mut bc = BigCache::new();
        let mut w = Work::NONE;
        bc.reserve(2 << 20, 2);
        for (k, t) in [0u64, 10, 20, 30].into_iter().enumerate() {
            bc.put(0x1000_0000 * (k + 1), 2 << 20, t, &L, &mut w);
        }
        bc.enforce(2000, &L, &mut w);
        assert_eq!(w.n_purge, 2);
        let mut purged: Vec<u64> = w.purge[..2].iter().map(|e| e.stamp).collect();
        purged.sort();
        assert_eq!(purged, [0, 10], "the two oldest go");
    }

    #[test]
    fn unused_reservations_are_dropped() {
        let mut bc = BigCache::new();
        bc.reserve(2 << 20, 1);
        let hold = HOLD_PERIODS * L.decay_ms;
        let mut now = 0;
        for k in 0..DROP_MARGIN as usize {
            let mut w = Work::NONE;
            bc.put(0x1000_0000 * (k + 1), 2 << 20, now, &L, &mut w);
            now += hold;
            bc.enforce(now, &L, &mut w);
            assert_eq!(w.n_purge, 1, "the hold ends: purged");
        }
        let st = bc.stats();
        assert_eq!(st.reserved_misses, u64::from(DROP_MARGIN));
        assert_eq!((st.reservations, st.reservations_dropped), (0, 1));
        // without the reservation the next entry decays normally
        let mut w = Work::NONE;
        bc.put(0x9000_0000, 2 << 20, now, &L, &mut w);
        bc.enforce(now + 2 * L.decay_ms, &L, &mut w);
        assert_eq!(w.n_purge, 1);
    }

    #[test]
    fn the_curve_keeps_everything_for_the_decay_time_then_falls_smoothly() {
        let d = 1000;
        let mut last = 1000;
        for age in (0..=2 * d).step_by(10) {
            let k = kept_permille(age, d);
            assert!(k <= last, "not monotonic at {age}");
            if age < d {
                assert_eq!(k, 1000);
            }
            // smoothstep: no step bigger than its steepest slope allows
            assert!(last - k <= 40, "a cliff at {age}: {last} -> {k}");
            if age > d + 10 && age < d + d / 2 - 10 {
                assert!(k < last, "flat at {age}");
            }
            last = k;
        }
        assert_eq!(kept_permille(d + d / 2, d), 0);
        assert_eq!(kept_permille(d + d / 4, d), 500);
    }

    #[test]
    fn decay_purges_big_entries_in_proportion() {
        let mut bc = BigCache::new();
        let mut w = Work::NONE;
        bc.put(0x1000_0000, 8 << 20, 0, &L, &mut w);
        // half way along the curve: half of it (whole pieces) stays
        bc.enforce(1250, &L, &mut w);
        assert_eq!(w.n_purge, 1);
        assert_eq!(w.keep[0], 4 << 20);
        let (e, keep) = (w.purge[0], w.keep[0]);
        let mut w2 = Work::NONE;
        bc.put_purged(e, keep, &L, &mut w2);
        assert_eq!(bc.check(), Ok(()));
        assert_eq!(bc.stats().dirty, (1, 4 << 20));
        assert_eq!(bc.stats().clean, (1, 4 << 20));
        // further along, the kept head shrinks again, then goes
        let mut w3 = Work::NONE;
        bc.enforce(1375, &L, &mut w3);
        assert_eq!(w3.n_purge, 1);
        assert!(w3.keep[0] > 0 && w3.keep[0] < 4 << 20);
        let mut w4 = Work::NONE;
        bc.put_purged(w3.purge[0], w3.keep[0], &L, &mut w4);
        bc.enforce(1500, &L, &mut w4);
        assert_eq!((w4.n_purge, w4.keep[0]), (1, 0));
        let e = w4.purge[0];
        bc.put_purged(e, 0, &L, &mut w4);
        assert_eq!(bc.stats().dirty, (0, 0));
        assert_eq!(bc.stats().clean.1, 8 << 20, "all of it, in pieces");
        assert_eq!(bc.check(), Ok(()));
    }

    #[test]
    fn carving_serves_a_smaller_request_and_freeing_merges_back() {
        let mut bc = BigCache::new();
        let mut w = Work::NONE;
        let base = 0x1000_0000;
        bc.put_merging(base, 32 << 20, 7, 0, &L_BIG, &mut w, |_| {
            panic!("nothing to merge")
        });
        // a 3 MiB request is far below W_MAX of 32 MiB: carved
        let mut tails = Vec::new();
        let e = bc
            .take_or_carve(3 << 20, 10, &L_BIG, |t| {
                tails.push(*t);
                true
            })
            .unwrap();
        assert_eq!((e.base, e.len, e.dirty, e.family), (base, 3 << 20, true, 7));
        assert_eq!(tails.len(), 1);
        assert_eq!((tails[0].base, tails[0].len), (base + (3 << 20), 29 << 20));
        assert_eq!(bc.stats().dirty, (1, 29 << 20));
        assert_eq!(bc.check(), Ok(()));
        // a refused split leaves the mapping whole and cached
        assert!(bc.take_or_carve(2 << 20, 10, &L_BIG, |_| false).is_none());
        assert_eq!(bc.stats().dirty, (1, 29 << 20));
        // freeing the head merges it with its tail
        let mut absorbed = Vec::new();
        let merged = bc.put_merging(base, 3 << 20, 7, 20, &L_BIG, &mut w, |b| absorbed.push(b));
        assert_eq!(merged, (base, 32 << 20));
        assert_eq!(absorbed, [base + (3 << 20)]);
        assert_eq!(bc.stats().dirty, (1, 32 << 20));
        // another family never merges, even when adjacent
        let merged = bc.put_merging(base + (32 << 20), 2 << 20, 8, 20, &L_BIG, &mut w, |_| {
            panic!("another family")
        });
        assert_eq!(merged, (base + (32 << 20), 2 << 20));
        assert_eq!(bc.check(), Ok(()));
        assert_eq!(w.n_purge + w.n_unmap, 0);
    }

    #[test]
    fn a_block_grows_over_the_pieces_of_its_family_that_follow_it() {
        let mut bc = BigCache::new();
        let mut w = Work::NONE;
        let base = 0x1000_0000;
        // a live block [base, base + 2 MiB) of family 7; its mapping's
        // next 8 MiB are cached, dirty, and then 3 MiB clean
        bc.put_merging(base + (2 << 20), 8 << 20, 7, 5, &L_BIG, &mut w, |_| {});
        bc.put_clean(
            Cached {
                base: base + (10 << 20),
                len: 3 << 20,
                stamp: 5,
                dirty: false,
                family: 7,
                full: 3 << 20,
            },
            &L_BIG,
            &mut w,
        );
        let none = |_: &Cached| -> bool { panic!("nothing to split") };
        // another family, or not right behind the block: nothing
        assert_eq!(bc.take_after(base + (2 << 20), 8, 1 << 20, none, |_| {}), 0);
        assert_eq!(bc.take_after(base + (3 << 20), 7, 1 << 20, none, |_| {}), 0);
        assert_eq!(bc.stats().dirty, (1, 8 << 20));
        // 2 MiB of the dirty piece; its rest stays cached, dirty, stamped
        let (mut tails, mut gone) = (Vec::new(), Vec::new());
        let got = bc.take_after(
            base + (2 << 20),
            7,
            2 << 20,
            |t| {
                tails.push(*t);
                true
            },
            |b| gone.push(b),
        );
        assert_eq!(got, 2 << 20);
        assert_eq!(gone, [base + (2 << 20)]);
        assert_eq!(tails.len(), 1);
        assert_eq!((tails[0].base, tails[0].len), (base + (4 << 20), 6 << 20));
        assert!(tails[0].dirty && tails[0].stamp == 5 && tails[0].family == 7);
        assert_eq!(bc.stats().dirty, (1, 6 << 20));
        assert_eq!(bc.check(), Ok(()));
        // a rest below a piece goes with the block
        let got = bc.take_after(base + (4 << 20), 7, (5 << 20) + 4096, none, |_| {});
        assert_eq!(got, 6 << 20);
        assert_eq!(bc.stats().dirty, (0, 0));
        // a split the caller refuses: all of it
        let got = bc.take_after(base + (10 << 20), 7, 1 << 20, |_| false, |_| {});
        assert_eq!(got, 3 << 20);
        assert!(bc.is_empty());
        // pieces that end first: what there is
        bc.put_merging(base + (20 << 20), 4 << 20, 9, 5, &L_BIG, &mut w, |_| {});
        bc.put_merging(base + (30 << 20), 4 << 20, 9, 5, &L_BIG, &mut w, |_| {});
        let got = bc.take_after(base + (20 << 20), 9, 16 << 20, none, |_| {});
        assert_eq!(got, 4 << 20, "the gap ends the run");
        assert_eq!(bc.stats().dirty, (1, 4 << 20));
        assert_eq!(bc.check(), Ok(()));
        assert_eq!(w.n_purge + w.n_unmap, 0);
    }

    #[test]
    fn reservation_slots_are_bounded() {
        let mut bc = BigCache::new();
        for k in 0..RESERVATIONS {
            assert!(bc.reserve((k + 1) << 20, 1));
        }
        assert!(!bc.reserve(100 << 20, 1));
        assert!(bc.reserve(1 << 20, 4), "an existing one can grow");
        bc.unreserve(1 << 20);
        assert!(bc.reserve(100 << 20, 1));
        assert!(!bc.reserve(101 << 20, 0), "keep 0 is no reservation");
    }

    proptest! {
        /// With reservations: accounting stays exact, dirty bytes stay
        /// within the budget, and nothing dirty outlives the hold.
        #[test]
        fn reservations_respect_the_limits(
            ops in proptest::collection::vec((0u8..4, 1usize..6, 0u64..3000), 1..200)
        ) {
            let mut bc = BigCache::new();
            let mut now = 0u64;
            let mut next_base = 0x1000_0000usize;
            let mut outstanding: std::collections::HashSet<usize> = Default::default();
            for (op, mib, dt) in ops {
                now += dt;
                let len = mib << 20;
                let mut w = Work::NONE;
                match op {
                    0 => {
                        bc.reserve(len, mib);
                    }
                    1 => {
                        if let Some(e) = bc.take(len, now, &L) {
                            prop_assert!(outstanding.remove(&e.base));
                        }
                    }
                    _ => {
                        next_base += 64 << 20;
                        outstanding.insert(next_base);
                        bc.put(next_base, len, now, &L, &mut w);
                    }
                }
                bc.enforce(now, &L, &mut w);
                for e in &w.unmap[..w.n_unmap] {
                    prop_assert!(outstanding.remove(&e.base));
                }
                for e in &w.purge[..w.n_purge] {
                    prop_assert!(outstanding.remove(&e.base));
                }
                let st = bc.stats();
                prop_assert_eq!(bc.check(), Ok(()));
                prop_assert!(st.dirty.1 <= L.budget || w.n_purge == L.batch);
                prop_assert_eq!(st.dirty.0 + st.clean.0, outstanding.len());
                prop_assert!(st.reservations <= RESERVATIONS);
                if w.n_purge < L.batch && now.saturating_sub(bc.last_decay) == 0 {
                    for c in 0..CLASSES {
                        for e in &bc.slots[c][..bc.counts[c] as usize] {
                            prop_assert!(
                                !e.dirty || now - e.stamp < HOLD_PERIODS * L.decay_ms,
                                "a dirty entry outlived the hold"
                            );
                        }
                    }
                }
            }
        }

        /// Carving, merging and the decay curve: every byte of every
        /// mapping is in exactly one place (cached, handed out, or handed
        /// back for unmapping), handed-out blocks never overlap the cache,
        /// the bookkeeping checks, and dirty bytes stay within the budget.
        #[test]
        fn carving_merging_and_the_curve_keep_every_byte(
            ops in proptest::collection::vec((0u8..4, 1usize..40, 0u64..700), 1..150)
        ) {
            let mut bc = BigCache::new();
            let mut now = 0u64;
            let mut next = (0x1000_0000usize, 1u64);
            let mut taken: Vec<Cached> = Vec::new();
            let (mut mapped, mut unmapped) = (0usize, 0usize);
            let l = CacheLimits { budget: 96 << 20, max_block: 64 << 20, ..L };
            for (op, n, dt) in ops {
                now += dt;
                let len = (n << 20) / 2 + PAGE; // 1.5 MiB .. 20 MiB, page multiples
                let mut w = Work::NONE;
                match op {
                    0 => {
                        // a fresh mapping, freed at once
                        let big = len * 3;
                        next.0 += 128 << 20;
                        next.1 += 1;
                        mapped += big;
                        bc.put_merging(next.0, big, next.1, now, &l, &mut w, |_| {});
                    }
                    1 | 2 => {
                        if let Some(e) = bc.take_or_carve(len, now, &l, |_| true) {
                            prop_assert!(e.len >= len);
                            for t in &taken {
                                prop_assert!(e.base + e.len <= t.base || t.base + t.len <= e.base);
                            }
                            taken.push(e);
                        }
                    }
                    _ => {
                        if !taken.is_empty() {
                            let e = taken.swap_remove(n % taken.len());
                            bc.put_merging(e.base, e.len, e.family, now, &l, &mut w, |_| {});
                        }
                    }
                }
                bc.enforce(now, &l, &mut w);
                let purged: Vec<(Cached, usize)> =
                    (0..w.n_purge).map(|k| (w.purge[k], w.keep[k])).collect();
                unmapped += w.unmap[..w.n_unmap].iter().map(|e| e.len).sum::<usize>();
                let mut w2 = Work::NONE;
                for (e, keep) in purged {
                    prop_assert!(keep == 0 || (keep % PAGE == 0 && keep < e.len));
                    bc.put_purged(e, keep, &l, &mut w2);
                }
                unmapped += w2.unmap[..w2.n_unmap].iter().map(|e| e.len).sum::<usize>();
                prop_assert_eq!(bc.check(), Ok(()));
                let st = bc.stats();
                prop_assert!(st.dirty.1 <= l.budget || w.n_purge == l.batch);
                let held: usize = taken.iter().map(|e| e.len).sum();
                prop_assert_eq!(st.dirty.1 + st.clean.1 + held + unmapped, mapped);
                for t in &taken {
                    for e in bc.entries() {
                        prop_assert!(e.base + e.len <= t.base || t.base + t.len <= e.base);
                    }
                }
            }
        }

        /// The dirty bytes never exceed the budget once the returned work
        /// is done, every mapping put is accounted for exactly once (still
        /// cached, taken, or handed back for purge/unmap), and clean bytes
        /// stay within their budget.
        #[test]
        fn cache_stays_within_limits(ops in proptest::collection::vec((any::<bool>(), 1usize..12, 0u64..400), 1..200)) {
            let mut bc = BigCache::new();
            let mut now = 0u64;
            let mut next_base = 0x1000_0000usize;
            let mut outstanding: std::collections::HashSet<usize> = Default::default();
            for (put, mib, dt) in ops {
                now += dt;
                let len = mib << 20;
                let mut w = Work::NONE;
                if put {
                    next_base += 64 << 20;
                    outstanding.insert(next_base);
                    bc.put(next_base, len, now, &L, &mut w);
                } else if let Some(e) = bc.take(len, now, &L) {
                    prop_assert!(e.len >= len && e.len * 1000 <= len * 1250);
                    prop_assert!(outstanding.remove(&e.base));
                }
                let purged: Vec<Cached> = w.purge[..w.n_purge].to_vec();
                for e in &w.unmap[..w.n_unmap] {
                    prop_assert!(outstanding.remove(&e.base));
                }
                let mut w2 = Work::NONE;
                for e in purged {
                    bc.put_clean(e, &L, &mut w2);
                }
                for e in &w2.unmap[..w2.n_unmap] {
                    prop_assert!(outstanding.remove(&e.base));
                }
                let st = bc.stats();
                prop_assert_eq!(bc.check(), Ok(()));
                prop_assert!(st.dirty.1 <= L.budget || w.n_purge == L.batch);
                prop_assert!(st.clean.1 <= L.clean_budget);
                prop_assert_eq!(st.dirty.0 + st.clean.0, outstanding.len());
            }
        }
    }
}
