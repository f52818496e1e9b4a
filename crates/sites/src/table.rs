//! The site table: a fixed-size, lock-free open-addressing hash table of
//! sites, each with striped relaxed-atomic counters (see [`SiteTable`]).

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::hist::{life_bucket, size_bucket, LIFE_BUCKETS, SIZE_BUCKETS};
use crate::id::{SiteId, SiteKind};
use crate::os::thread_hint;
use crate::stats::SiteStats;

/// Default number of site slots.
pub const DEFAULT_SITES: usize = 1024;
/// Default number of counter stripes per site.
pub const DEFAULT_STRIPES: usize = 8;
/// The longest probe sequence (slots) before a site falls into "other".
pub const MAX_PROBE: usize = 64;

// Counter words of a stripe.
const ALLOCS: usize = 0;
const BYTES: usize = 1;
const FREES: usize = 2;
const FREED_BYTES: usize = 3;
const REMOTE: usize = 4;
const LIFE_SUM: usize = 5;
const LIVE_TIME_SUM: usize = 6;
const SIZE_HIST: usize = 7;
const LIFE_HIST: usize = SIZE_HIST + SIZE_BUCKETS;
const WORDS: usize = LIFE_HIST + LIFE_BUCKETS;
const _: () = assert!(WORDS == 32);

/// One thread-stripe of a site's counters: four cache lines.
#[repr(C, align(64))]
struct Stripe([AtomicU64; WORDS]);

impl Stripe {
    const fn new() -> Self {
        Stripe([const { AtomicU64::new(0) }; WORDS])
    }

    #[inline(always)]
    fn add(&self, word: usize, n: u64) {
        self.0[word].fetch_add(n, Ordering::Relaxed);
    }
}

/// The read-mostly part of a slot.
#[repr(C, align(64))]
struct Head {
    key: AtomicUsize,
    max_size: AtomicU64,
}

#[repr(C)]
struct Entry<const S: usize> {
    head: Head,
    stripes: [Stripe; S],
}

impl<const S: usize> Entry<S> {
    const fn new() -> Self {
        Entry {
            head: Head {
                key: AtomicUsize::new(0),
                max_size: AtomicU64::new(0),
            },
            stripes: [const { Stripe::new() }; S],
        }
    }

    #[inline(always)]
    fn stripe(&self) -> &Stripe {
        if S == 1 {
            return &self.stripes[0];
        }
        let h = (thread_hint() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        &self.stripes[(h >> 40) as usize & (S - 1)]
    }
}

const SLOT_BITS: u32 = 16;
const TIME_MASK: u64 = (1 << (64 - SLOT_BITS)) - 1;

/// What [`SiteTable::record_alloc`] hands back for the allocator to keep
/// with the block and give back to [`SiteTable::record_free`]: the site's
/// slot (16 bits) and the allocation time (the low 48 bits of the clock).
///
/// One `u64` ([`to_bits`](Self::to_bits)/[`from_bits`](Self::from_bits)),
/// so it fits one header word. A lifetime is taken modulo 2^48 clock units
/// (≈ 3.3 days of nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
pub struct Stamp(u64);

impl Stamp {
    /// The slot index (the table's capacity for "other").
    #[inline]
    pub const fn slot(self) -> usize {
        (self.0 & ((1 << SLOT_BITS) - 1)) as usize
    }

    /// The low 48 bits of the allocation time.
    #[inline]
    pub const fn time48(self) -> u64 {
        self.0 >> SLOT_BITS
    }

    /// The full allocation time, given a later `now` of the same clock
    /// (exact when the block lived less than 2^48 units).
    #[inline]
    pub const fn alloc_time(self, now: u64) -> u64 {
        now.wrapping_sub(now.wrapping_sub(self.time48()) & TIME_MASK)
    }

    /// The packed value.
    #[inline]
    pub const fn to_bits(self) -> u64 {
        self.0
    }

    /// Unpacks a value from [`to_bits`](Self::to_bits). Any value is
    /// accepted; a slot out of range is counted in "other".
    #[inline]
    pub const fn from_bits(bits: u64) -> Stamp {
        Stamp(bits)
    }
}

/// The call-site table.
///
/// # Layout and memory
///
/// `SiteTable<N, S>` is one flat value (a `static` in practice, zero
/// initialised, so it sits in `.bss` and costs RSS only for the pages that
/// are touched). Each of the `N` slots and the "other" bucket is an
/// `Entry`: a 64-byte head (key, max size) followed by `S` stripes of 256
/// bytes (4 cache lines, 32 `u64` counters). With the defaults (`N` = 1024,
/// `S` = 8) that is 1025 × 2112 B ≈ 2.1 MiB of address space; a site used by
/// one thread touches its head and one stripe.
///
/// # Contention
///
/// A recording thread adds to the stripe chosen by hashing its thread
/// pointer ([`thread_hint`]), so threads allocating at the same site mostly
/// write to different cache lines; two threads that hash to one stripe still
/// count exactly (every add is a `fetch_add`), they only share a line. The
/// head is written once (the key, by CAS, when the site is inserted) and
/// then only when a site sees a new maximum size, so after warm-up it is a
/// read-mostly line that every thread can cache. The cost is memory (`S`
/// stripes per site) and a report that sums `S` stripes per site, which
/// only happens at report time.
///
/// # Keys
///
/// A key is a [`SiteId`]'s bits; 0 marks a free slot. A site's home slot is
/// a multiplicative hash of its key; it probes linearly up to
/// `min(N, 64)` slots and takes the first slot that holds its key or that it
/// wins with a CAS from 0. Keys are never removed (a reset zeroes counters
/// only), so a site keeps its slot forever and two threads inserting one
/// site always agree on the slot. A site that finds no slot in its probe
/// window is counted in the "other" bucket.
///
/// `N` (slots) must be a power of two no larger than 2^15; `S` (stripes)
/// a power of two no larger than 256.
pub struct SiteTable<const N: usize = DEFAULT_SITES, const S: usize = DEFAULT_STRIPES> {
    entries: [Entry<S>; N],
    other: Entry<S>,
    sample_shift: AtomicU32,
    epoch: AtomicU64,
}

impl<const N: usize, const S: usize> core::fmt::Debug for SiteTable<N, S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SiteTable")
            .field("capacity", &N)
            .field("stripes", &S)
            .field("used", &self.used())
            .field("sample_shift", &self.sample_shift())
            .finish()
    }
}

impl<const N: usize, const S: usize> Default for SiteTable<N, S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize, const S: usize> SiteTable<N, S> {
    const CHECK: () = assert!(
        N.is_power_of_two() && N <= 1 << 15 && S.is_power_of_two() && S <= 256,
        "SiteTable: N must be a power of two <= 32768 and S a power of two <= 256"
    );
    const PROBE: usize = if N < MAX_PROBE { N } else { MAX_PROBE };

    /// An empty table (usable as a `static` initialiser).
    pub const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::CHECK;
        SiteTable {
            entries: [const { Entry::new() }; N],
            other: Entry::new(),
            sample_shift: AtomicU32::new(0),
            epoch: AtomicU64::new(0),
        }
    }

    /// Number of site slots; also the slot index of the "other" bucket.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Counter stripes per site.
    pub const fn stripes(&self) -> usize {
        S
    }

    /// Size of the table in bytes.
    pub const fn memory_bytes(&self) -> usize {
        core::mem::size_of::<Self>()
    }

    /// Sets the sampling rate of [`SiteKind::SampledCode`] sites: each of
    /// their records stands for 2^`shift` calls in reports and in
    /// classification.
    pub fn set_sample_shift(&self, shift: u32) {
        self.sample_shift.store(shift.min(63), Ordering::Relaxed);
    }

    /// See [`set_sample_shift`](Self::set_sample_shift).
    pub fn sample_shift(&self) -> u32 {
        self.sample_shift.load(Ordering::Relaxed)
    }

    #[inline(always)]
    fn home(key: usize) -> usize {
        ((key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & (N - 1)
    }

    #[inline(always)]
    fn entry(&self, slot: usize) -> &Entry<S> {
        if slot < N {
            &self.entries[slot]
        } else {
            &self.other
        }
    }

    /// The slot of `site`, inserting it if it has none; `capacity()` (the
    /// "other" bucket) when its probe window is full or `site` is 0 or
    /// [`SiteId::OTHER`]. Lock-free: at most `min(N, 64)` loads and CASes.
    #[inline]
    pub fn slot_or_insert(&self, site: SiteId) -> usize {
        let key = site.to_bits();
        if key == 0 || site.kind() == SiteKind::Other {
            return N;
        }
        let mut i = Self::home(key);
        for _ in 0..Self::PROBE {
            let k = &self.entries[i].head.key;
            let cur = k.load(Ordering::Acquire);
            if cur == key {
                return i;
            }
            if cur == 0 {
                match k.compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return i,
                    Err(won) if won == key => return i,
                    Err(_) => {}
                }
            }
            i = (i + 1) & (N - 1);
        }
        N
    }

    /// The slot of `site` if it has one (no insertion).
    #[inline]
    pub fn slot_of(&self, site: SiteId) -> Option<usize> {
        let key = site.to_bits();
        if key == 0 || site.kind() == SiteKind::Other {
            return None;
        }
        let mut i = Self::home(key);
        for _ in 0..Self::PROBE {
            let cur = self.entries[i].head.key.load(Ordering::Acquire);
            if cur == key {
                return Some(i);
            }
            if cur == 0 {
                return None;
            }
            i = (i + 1) & (N - 1);
        }
        None
    }

    /// Records an allocation of `size` bytes at `site` at time `now` (the
    /// caller's clock; nanoseconds by convention). Returns the stamp to
    /// keep with the block and pass to [`record_free`](Self::record_free).
    ///
    /// Never allocates, never blocks: a probe (usually one load), four
    /// relaxed `fetch_add`s on this thread's stripe, one load of the max.
    #[inline]
    pub fn record_alloc(&self, site: SiteId, size: usize, now: u64) -> Stamp {
        let slot = self.slot_or_insert(site);
        self.record_alloc_slot(slot, size, now);
        Stamp(((now & TIME_MASK) << SLOT_BITS) | slot as u64)
    }

    /// [`record_alloc`](Self::record_alloc) for a caller that already has
    /// the site's slot from [`slot_or_insert`](Self::slot_or_insert) (slots
    /// out of range count in "other").
    #[inline]
    pub fn record_alloc_at(&self, slot: usize, size: usize, now: u64) -> Stamp {
        let slot = slot.min(N);
        self.record_alloc_slot(slot, size, now);
        Stamp(((now & TIME_MASK) << SLOT_BITS) | slot as u64)
    }

    #[inline(always)]
    fn record_alloc_slot(&self, slot: usize, size: usize, now: u64) {
        let e = self.entry(slot);
        let size = size as u64;
        let st = e.stripe();
        st.add(ALLOCS, 1);
        st.add(BYTES, size);
        st.add(SIZE_HIST + size_bucket(size), 1);
        st.add(LIVE_TIME_SUM, now);
        if size > e.head.max_size.load(Ordering::Relaxed) {
            e.head.max_size.fetch_max(size, Ordering::Relaxed);
        }
    }

    /// Records the free of a block that [`record_alloc`](Self::record_alloc)
    /// stamped: `size` as at allocation, `now` from the same clock, `remote`
    /// when the freeing thread is not the one that allocated it.
    ///
    /// A block allocated before the last [`reset`](Self::reset) is ignored.
    #[inline]
    pub fn record_free(&self, stamp: Stamp, size: usize, now: u64, remote: bool) {
        let slot = stamp.slot().min(N);
        self.record_free_slot(slot, size, stamp.alloc_time(now), now, remote);
    }

    /// [`record_free`](Self::record_free) for a caller that kept the site and
    /// the full allocation time instead of the stamp (one more probe).
    #[inline]
    pub fn record_free_at(
        &self,
        site: SiteId,
        size: usize,
        alloc_time: u64,
        now: u64,
        remote: bool,
    ) {
        let slot = self.slot_of(site).unwrap_or(N);
        self.record_free_slot(slot, size, alloc_time, now, remote);
    }

    #[inline(always)]
    fn record_free_slot(&self, slot: usize, size: usize, alloc_time: u64, now: u64, remote: bool) {
        if alloc_time < self.epoch.load(Ordering::Relaxed) {
            return;
        }
        let e = self.entry(slot);
        let life = now.wrapping_sub(alloc_time);
        let st = e.stripe();
        st.add(FREES, 1);
        st.add(FREED_BYTES, size as u64);
        if remote {
            st.add(REMOTE, 1);
        }
        st.add(LIFE_SUM, life);
        st.add(LIFE_HIST + life_bucket(life), 1);
        st.add(LIVE_TIME_SUM, alloc_time.wrapping_neg());
    }

    /// Zeroes every counter (sites keep their slots) and ignores from now on
    /// the frees of blocks allocated before `now`. Not atomic with respect
    /// to concurrent records: events racing with the reset may be lost or
    /// half counted.
    pub fn reset(&self, now: u64) {
        self.epoch.store(now, Ordering::Relaxed);
        for e in self.entries.iter().chain(core::iter::once(&self.other)) {
            e.head.max_size.store(0, Ordering::Relaxed);
            for st in &e.stripes {
                for w in &st.0 {
                    w.store(0, Ordering::Relaxed);
                }
            }
        }
    }

    /// Number of occupied slots.
    pub fn used(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.head.key.load(Ordering::Relaxed) != 0)
            .count()
    }

    /// The merged counters of slot `slot` (`capacity()` for "other"); `None`
    /// for a free slot or one out of range.
    pub fn stats(&self, slot: usize) -> Option<SiteStats> {
        let (site, e) = if slot < N {
            let key = self.entries[slot].head.key.load(Ordering::Acquire);
            if key == 0 {
                return None;
            }
            // SAFETY: keys are only written from `SiteId::to_bits`.
            (unsafe { SiteId::from_bits(key) }, &self.entries[slot])
        } else if slot == N {
            (SiteId::OTHER, &self.other)
        } else {
            return None;
        };
        let mut w = [0u64; WORDS];
        for st in &e.stripes {
            for (acc, c) in w.iter_mut().zip(st.0.iter()) {
                *acc = acc.wrapping_add(c.load(Ordering::Relaxed));
            }
        }
        let mut size_hist = [0; SIZE_BUCKETS];
        size_hist.copy_from_slice(&w[SIZE_HIST..SIZE_HIST + SIZE_BUCKETS]);
        let mut life_hist = [0; LIFE_BUCKETS];
        life_hist.copy_from_slice(&w[LIFE_HIST..LIFE_HIST + LIFE_BUCKETS]);
        let weight = if site.kind() == SiteKind::SampledCode {
            1u64 << self.sample_shift()
        } else {
            1
        };
        Some(SiteStats {
            site,
            slot,
            weight,
            allocs: w[ALLOCS],
            frees: w[FREES],
            bytes: w[BYTES],
            freed_bytes: w[FREED_BYTES],
            remote_frees: w[REMOTE],
            max_size: e.head.max_size.load(Ordering::Relaxed),
            lifetime_sum: w[LIFE_SUM],
            live_time_sum: w[LIVE_TIME_SUM],
            size_hist,
            life_hist,
        })
    }

    /// The "other" bucket's counters.
    pub fn other(&self) -> SiteStats {
        match self.stats(N) {
            Some(s) => s,
            None => unreachable!("the other bucket always exists"),
        }
    }

    /// The stats of `site`, if it has a slot.
    pub fn site_stats(&self, site: SiteId) -> Option<SiteStats> {
        self.stats(self.slot_of(site)?)
    }

    /// The occupied slots' stats, in slot order (not "other").
    pub fn sites(&self) -> Sites<'_, N, S> {
        Sites {
            table: self,
            next: 0,
        }
    }
}

/// Iterator over a table's occupied slots; see [`SiteTable::sites`].
#[derive(Debug)]
pub struct Sites<'a, const N: usize, const S: usize> {
    table: &'a SiteTable<N, S>,
    next: usize,
}

impl<const N: usize, const S: usize> Iterator for Sites<'_, N, S> {
    type Item = SiteStats;

    fn next(&mut self) -> Option<SiteStats> {
        while self.next < N {
            let i = self.next;
            self.next += 1;
            if let Some(s) = self.table.stats(i) {
                return Some(s);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_cache_line_sized() {
        assert_eq!(core::mem::size_of::<Stripe>(), 256);
        assert_eq!(core::mem::align_of::<Stripe>(), 64);
        assert_eq!(core::mem::size_of::<Head>(), 64);
        assert_eq!(core::mem::size_of::<Entry<8>>(), 64 + 8 * 256);
        static T: SiteTable = SiteTable::new();
        assert_eq!(T.memory_bytes(), 1025 * 2112 + 64);
    }

    #[test]
    fn stamp_packs_slot_and_time() {
        let t = SiteTable::<16, 1>::new();
        let site = SiteId::code(0x1234);
        let now = 0xABCD_0000_1234_5678u64;
        let s = t.record_alloc(site, 10, now);
        assert_eq!(s.slot(), t.slot_of(site).unwrap());
        assert_eq!(s.alloc_time(now + 100), now);
        assert_eq!(Stamp::from_bits(s.to_bits()), s);
        // Across a wrap of the low 48 bits.
        let now = (1u64 << 48) - 5;
        let s = t.record_alloc(site, 10, now);
        assert_eq!(s.alloc_time(now + 10), now);
    }

    #[test]
    fn records_and_merges() {
        let t = SiteTable::<16, 4>::new();
        let a = SiteId::code(0x1000);
        let s1 = t.record_alloc(a, 100, 1_000);
        let s2 = t.record_alloc(a, 300, 2_000);
        t.record_free(s1, 100, 1_500, false);
        let st = t.site_stats(a).unwrap();
        assert_eq!(
            (st.allocs, st.frees, st.bytes, st.freed_bytes),
            (2, 1, 400, 100)
        );
        assert_eq!(st.max_size, 300);
        assert_eq!(st.avg_size(), 200);
        assert_eq!(st.live_blocks(), 1);
        assert_eq!(st.live_bytes(), 300);
        assert_eq!(st.lifetime_sum, 500);
        assert_eq!(st.mean_live_age(5_000), Some(3_000));
        t.record_free(s2, 300, 9_000, true);
        let st = t.site_stats(a).unwrap();
        assert_eq!(st.remote_frees, 1);
        assert_eq!(st.local_frees(), 1);
        assert_eq!(st.live_blocks(), 0);
        assert_eq!(st.mean_live_age(10_000), None);
        assert_eq!(t.used(), 1);
    }

    #[test]
    fn zero_and_other_ids_go_to_other() {
        let t = SiteTable::<8, 1>::new();
        let s = t.record_alloc(SiteId::code(0), 8, 0);
        assert_eq!(s.slot(), 8);
        let s = t.record_alloc(SiteId::OTHER, 8, 0);
        assert_eq!(s.slot(), 8);
        assert_eq!(t.other().allocs, 2);
        assert_eq!(t.used(), 0);
        // A bogus stamp is counted in other, not out of bounds.
        t.record_free(Stamp::from_bits(0xffff), 8, 1, false);
        assert_eq!(t.other().frees, 1);
    }

    #[test]
    fn full_table_spills_into_other() {
        let t = SiteTable::<8, 2>::new();
        for k in 1..=8usize {
            let s = t.record_alloc(SiteId::code(k * 16), k, 0);
            assert!(s.slot() < 8, "site {k} got a slot");
        }
        assert_eq!(t.used(), 8);
        let s = t.record_alloc(SiteId::code(9 * 16), 9, 0);
        assert_eq!(s.slot(), 8, "ninth site goes to other");
        let s = t.record_alloc(SiteId::code(3 * 16), 3, 0);
        assert!(s.slot() < 8, "known sites keep their slot");
        assert_eq!(t.other().allocs, 1);
        assert_eq!(t.sites().map(|s| s.allocs).sum::<u64>(), 9);
        assert!(t.slot_of(SiteId::code(9 * 16)).is_none());
    }

    #[test]
    fn reset_zeroes_counts_and_ignores_older_blocks() {
        let t = SiteTable::<8, 2>::new();
        let a = SiteId::code(0x40);
        let old = t.record_alloc(a, 64, 100);
        t.reset(200);
        let st = t.site_stats(a).unwrap();
        assert_eq!((st.allocs, st.bytes, st.max_size), (0, 0, 0));
        t.record_free(old, 64, 300, false);
        assert_eq!(t.site_stats(a).unwrap().frees, 0, "pre-reset block ignored");
        let new = t.record_alloc(a, 32, 400);
        t.record_free(new, 32, 500, false);
        let st = t.site_stats(a).unwrap();
        assert_eq!((st.allocs, st.frees, st.live_blocks()), (1, 1, 0));
    }

    #[test]
    fn sampled_sites_are_weighted() {
        let t = SiteTable::<8, 1>::new();
        t.set_sample_shift(12);
        let _ = t.record_alloc(SiteId::sampled(0x99), 8, 0);
        let _ = t.record_alloc(SiteId::code(0x99), 8, 0);
        let s = t.site_stats(SiteId::sampled(0x99)).unwrap();
        assert_eq!(s.weight, 4096);
        assert_eq!(s.est_allocs(), 4096);
        let c = t.site_stats(SiteId::code(0x99)).unwrap();
        assert_eq!(c.weight, 1);
        assert_ne!(s.slot, c.slot);
    }
}
