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
mod tests;
