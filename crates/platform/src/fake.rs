//! A second [`Pal`] for tests: a fake platform that hands out memory from
//! one region reserved once, counts every call, and fails `map` or `purge`
//! at a chosen call, so that out-of-memory and purge paths can be tested
//! deterministically in process (no `RLIMIT_AS`, no other test disturbed).
//!
//! # Instances
//!
//! `Pal`'s functions take no `self`, so a platform is a type. Each test
//! declares its own instance type, which names its own [`Fake`] state; the
//! platform is [`FakePal<ThatType>`]:
//!
//! ```ignore
//! struct Mine;
//! impl FakeInstance for Mine {
//!     fn fake() -> &'static Fake {
//!         static F: Fake = Fake::new(64 << 20);
//!         &F
//!     }
//! }
//! type P = FakePal<Mine>;
//! ```
//!
//! Tests running on other threads of the same process use other instances,
//! so failure settings and counters of one test never leak into another.
//! Within one instance the controls are atomics and may be changed from any
//! thread.
//!
//! # Semantics
//!
//! * **Region**: `len` bytes (a multiple of [`CHUNK_SIZE`]) mapped from the
//!   real OS on the first call that needs memory, aligned to its size
//!   rounded up to a power of two (at most 16 GiB: one page-map leaf covers
//!   the region), and never unmapped (it lives as long as the process, like the `static` that
//!   holds the `Fake`).
//! * **`map(len, align)`**: first fit among returned ranges, else carved from
//!   the untouched end of the region (the gap skipped for alignment becomes
//!   a returned range). Memory handed out is always zero. `None` when a
//!   failure is injected ([`Fake::fail_map_after`]) or when the region is
//!   exhausted (then [`FakeCounts::exhausted`] counts it).
//! * **`unmap`**: the range is zero-filled (its pages are dropped) and
//!   returned to the fake for reuse; adjacent returned ranges merge. An
//!   address outside the region, or a range overlapping one already
//!   returned (a double unmap), is a fatal error: a test catches the bug.
//! * **`purge`**: zero-fills the range (its pages are dropped with
//!   `MADV_DONTNEED` on the reserved region), unless a purge failure is
//!   injected ([`Fake::fail_purge_after`]): then the range keeps its
//!   contents, as when `madvise` fails on the real system (hakmem ignores
//!   the result of a purge).
//! * **`remap`**: shrinking works in place (the tail is returned); growing in
//!   place fails; growing with `may_move` maps, copies and unmaps (and so can
//!   fail like `map`). **`remap_to`** copies into the target, zero-fills the
//!   rest of it, and returns the old range.
//! * **`advise_huge`**, **`populate`**, **`collapse`**: counted, nothing
//!   else (memory handed out is zero and "resident" already); the last two
//!   report success.
//! * **`now_ms`**: a clock that moves only by [`Fake::advance_ms`] (starts
//!   at 1000 ms).
//!
//! Everything is `no_std` and allocation-free, like the real platform.

use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::os::{Linux, Pal, CHUNK_SIZE, PAGE_SIZE};
use crate::spin::SpinLock;

/// Returned ranges a fake keeps at most; when a split would need more, the
/// allocation fails (counted in [`FakeCounts::exhausted`]).
const MAX_RANGES: usize = 256;

/// Never fail.
const NEVER: u64 = u64::MAX;

#[derive(Clone, Copy)]
struct Range {
    start: usize,
    len: usize,
}

struct Region {
    /// Start of the reserved region (0: not reserved yet).
    base: usize,
    /// Next untouched byte.
    bump: usize,
    /// Returned ranges, sorted by address, never adjacent.
    free: [Range; MAX_RANGES],
    nfree: usize,
}

/// Counters of a fake's calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FakeCounts {
    /// `map` calls (failed ones included).
    pub maps: u64,
    /// `map` calls that failed by injection.
    pub failed_maps: u64,
    /// `map` calls that failed because the region is exhausted.
    pub exhausted: u64,
    /// `unmap` calls.
    pub unmaps: u64,
    /// `purge` calls (failed ones included).
    pub purges: u64,
    /// `purge` calls that failed by injection (the range kept its contents).
    pub failed_purges: u64,
    /// `remap` and `remap_to` calls.
    pub remaps: u64,
    /// `advise_huge` calls.
    pub advises: u64,
    /// `advise_small` calls.
    pub small_advises: u64,
    /// `populate` calls.
    pub populates: u64,
    /// `collapse` calls.
    pub collapses: u64,
    /// Bytes handed out and not returned.
    pub mapped_bytes: u64,
}

/// The state of one fake platform: its region, counters and failure
/// settings. See the module documentation.
pub struct Fake {
    len: usize,
    region: SpinLock<Region>,
    maps: AtomicU64,
    failed_maps: AtomicU64,
    exhausted: AtomicU64,
    unmaps: AtomicU64,
    purges: AtomicU64,
    failed_purges: AtomicU64,
    remaps: AtomicU64,
    advises: AtomicU64,
    small_advises: AtomicU64,
    populates: AtomicU64,
    collapses: AtomicU64,
    mapped_bytes: AtomicU64,
    /// `map` calls number `fail_map_at` and later fail (counted in `maps`).
    fail_map_at: AtomicU64,
    /// `purge` calls number `fail_purge_at` and later fail.
    fail_purge_at: AtomicU64,
    clock: AtomicU64,
}

impl core::fmt::Debug for Fake {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Fake")
            .field("len", &self.len)
            .field("counts", &self.counts())
            .finish()
    }
}

impl Fake {
    /// A fake whose region will be `len` bytes (rounded up to a multiple of
    /// [`CHUNK_SIZE`]), reserved on first use.
    pub const fn new(len: usize) -> Fake {
        Fake {
            len: len.div_ceil(CHUNK_SIZE) * CHUNK_SIZE,
            region: SpinLock::new(Region {
                base: 0,
                bump: 0,
                free: [Range { start: 0, len: 0 }; MAX_RANGES],
                nfree: 0,
            }),
            maps: AtomicU64::new(0),
            failed_maps: AtomicU64::new(0),
            exhausted: AtomicU64::new(0),
            unmaps: AtomicU64::new(0),
            purges: AtomicU64::new(0),
            failed_purges: AtomicU64::new(0),
            remaps: AtomicU64::new(0),
            advises: AtomicU64::new(0),
            small_advises: AtomicU64::new(0),
            populates: AtomicU64::new(0),
            collapses: AtomicU64::new(0),
            mapped_bytes: AtomicU64::new(0),
            fail_map_at: AtomicU64::new(NEVER),
            fail_purge_at: AtomicU64::new(NEVER),
            clock: AtomicU64::new(1000),
        }
    }

    /// The next `n` `map` calls succeed (as far as the region allows), and
    /// every later one fails until [`Fake::clear_failures`].
    pub fn fail_map_after(&self, n: u64) {
        let done = self.maps.load(Ordering::SeqCst);
        self.fail_map_at.store(done + n, Ordering::SeqCst);
    }

    /// The next `n` `purge` calls work, and every later one fails (leaves
    /// the range as it was) until [`Fake::clear_failures`].
    pub fn fail_purge_after(&self, n: u64) {
        let done = self.purges.load(Ordering::SeqCst);
        self.fail_purge_at.store(done + n, Ordering::SeqCst);
    }

    /// `map` calls stop failing by injection (purge failures stay set).
    pub fn map_works(&self) {
        self.fail_map_at.store(NEVER, Ordering::SeqCst);
    }

    /// `purge` calls stop failing by injection (map failures stay set).
    pub fn purge_works(&self) {
        self.fail_purge_at.store(NEVER, Ordering::SeqCst);
    }

    /// No call fails by injection from now on.
    pub fn clear_failures(&self) {
        self.fail_map_at.store(NEVER, Ordering::SeqCst);
        self.fail_purge_at.store(NEVER, Ordering::SeqCst);
    }

    /// Moves the clock forward.
    pub fn advance_ms(&self, ms: u64) {
        self.clock.fetch_add(ms, Ordering::SeqCst);
    }

    /// The counters so far.
    pub fn counts(&self) -> FakeCounts {
        let l = |a: &AtomicU64| a.load(Ordering::SeqCst);
        FakeCounts {
            maps: l(&self.maps),
            failed_maps: l(&self.failed_maps),
            exhausted: l(&self.exhausted),
            unmaps: l(&self.unmaps),
            purges: l(&self.purges),
            failed_purges: l(&self.failed_purges),
            remaps: l(&self.remaps),
            advises: l(&self.advises),
            small_advises: l(&self.small_advises),
            populates: l(&self.populates),
            collapses: l(&self.collapses),
            mapped_bytes: l(&self.mapped_bytes),
        }
    }

    /// True if `p` lies in this fake's region.
    pub fn contains(&self, p: usize) -> bool {
        let g = self.region.lock();
        g.base != 0 && p >= g.base && p < g.base + self.len
    }

    fn map(&self, len: usize, align: usize) -> Option<NonNull<u8>> {
        debug_assert!(len.is_multiple_of(PAGE_SIZE) && len > 0);
        debug_assert!(align.is_power_of_two());
        let n = self.maps.fetch_add(1, Ordering::SeqCst);
        if n >= self.fail_map_at.load(Ordering::SeqCst) {
            self.failed_maps.fetch_add(1, Ordering::SeqCst);
            return None;
        }
        let align = align.max(PAGE_SIZE);
        let mut g = self.region.lock();
        if g.base == 0 {
            // aligned to its size (a power of two up to 16 GiB), so that it
            // never straddles a page-map leaf: the leaves it needs are mapped
            // at the first superslab, never at a later map
            let align = self.len.next_power_of_two().min(1 << 34);
            let base = Linux::map(self.len, align)?;
            g.base = base.as_ptr() as usize;
            g.bump = g.base;
        }
        let got = g.take_free(len, align).or_else(|| {
            let end = g.base + self.len;
            let a = g.bump.checked_next_multiple_of(align)?;
            if a.checked_add(len)? > end {
                return None;
            }
            if a > g.bump {
                let gap = Range {
                    start: g.bump,
                    len: a - g.bump,
                };
                if !g.give(gap) {
                    return None;
                }
            }
            g.bump = a + len;
            Some(a)
        });
        drop(g);
        match got {
            Some(a) => {
                self.mapped_bytes.fetch_add(len as u64, Ordering::SeqCst);
                NonNull::new(a as *mut u8)
            }
            None => {
                self.exhausted.fetch_add(1, Ordering::SeqCst);
                None
            }
        }
    }

    /// Checks that `start..start+len` is a page-aligned part of the region
    /// (a fatal report otherwise).
    fn check(&self, what: &str, start: usize, len: usize) {
        let g = self.region.lock();
        let inside = g.base != 0 && start >= g.base && start + len <= g.bump;
        if !inside || !start.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
            drop(g);
            crate::fatal_at(what, start);
        }
    }

    /// Returns a range (zero-filled first).
    ///
    /// # Safety
    /// The range must be handed out by this fake and unreferenced.
    unsafe fn unmap(&self, ptr: NonNull<u8>, len: usize) {
        self.unmaps.fetch_add(1, Ordering::SeqCst);
        let start = ptr.as_ptr() as usize;
        self.check("fake pal: unmap outside the region", start, len);
        // SAFETY: inside the real reserved mapping (checked above) and no
        // longer referenced (caller's contract): dropping its pages zeroes it.
        unsafe { Linux::purge(ptr, len) };
        let ok = self.region.lock().give(Range { start, len });
        if !ok {
            crate::fatal_at("fake pal: unmap of a range already returned", start);
        }
        self.mapped_bytes.fetch_sub(len as u64, Ordering::SeqCst);
    }

    /// # Safety
    /// The range must be handed out by this fake and hold nothing live.
    unsafe fn purge(&self, ptr: NonNull<u8>, len: usize) {
        let n = self.purges.fetch_add(1, Ordering::SeqCst);
        self.check(
            "fake pal: purge outside the region",
            ptr.as_ptr() as usize,
            len,
        );
        if n >= self.fail_purge_at.load(Ordering::SeqCst) {
            self.failed_purges.fetch_add(1, Ordering::SeqCst);
            return;
        }
        // SAFETY: inside the real reserved mapping (checked above), holding
        // nothing live (caller's contract).
        unsafe { Linux::purge(ptr, len) };
    }

    /// # Safety
    /// `ptr..ptr+old_len` must be handed out by this fake and owned by the
    /// caller.
    unsafe fn remap(
        &self,
        ptr: NonNull<u8>,
        old_len: usize,
        new_len: usize,
        may_move: bool,
    ) -> Option<NonNull<u8>> {
        self.remaps.fetch_add(1, Ordering::SeqCst);
        if new_len <= old_len {
            if new_len < old_len {
                // SAFETY: the tail is part of the caller's range, and
                // page aligned (both lengths are page multiples).
                unsafe {
                    self.unmap(
                        NonNull::new_unchecked(ptr.as_ptr().add(new_len)),
                        old_len - new_len,
                    )
                };
            }
            return Some(ptr);
        }
        if !may_move {
            return None;
        }
        let to = self.map(new_len, PAGE_SIZE)?;
        // SAFETY: both ranges are ours and disjoint (`to` was just handed
        // out); the old one is returned after the copy.
        unsafe {
            core::ptr::copy_nonoverlapping(ptr.as_ptr(), to.as_ptr(), old_len);
            self.unmap(ptr, old_len);
        }
        Some(to)
    }

    /// # Safety
    /// Both ranges must be handed out by this fake, owned by the caller and
    /// disjoint.
    unsafe fn remap_to(
        &self,
        ptr: NonNull<u8>,
        old_len: usize,
        new_len: usize,
        target: NonNull<u8>,
    ) -> bool {
        self.remaps.fetch_add(1, Ordering::SeqCst);
        let keep = old_len.min(new_len);
        // SAFETY: the caller owns both disjoint ranges; the target holds
        // `new_len` bytes.
        unsafe {
            core::ptr::copy_nonoverlapping(ptr.as_ptr(), target.as_ptr(), keep);
            core::ptr::write_bytes(target.as_ptr().add(keep), 0, new_len - keep);
            self.unmap(ptr, old_len);
        }
        true
    }
}

impl Region {
    /// First fit among the returned ranges.
    fn take_free(&mut self, len: usize, align: usize) -> Option<usize> {
        for i in 0..self.nfree {
            let r = self.free[i];
            let a = r.start.next_multiple_of(align);
            if a + len > r.start + r.len {
                continue;
            }
            let head = Range {
                start: r.start,
                len: a - r.start,
            };
            let tail = Range {
                start: a + len,
                len: r.start + r.len - a - len,
            };
            let pieces = (head.len > 0) as usize + (tail.len > 0) as usize;
            if pieces == 2 && self.nfree == MAX_RANGES {
                continue;
            }
            self.remove(i);
            for p in [head, tail] {
                if p.len > 0 {
                    let ok = self.give(p);
                    debug_assert!(ok);
                }
            }
            return Some(a);
        }
        None
    }

    fn remove(&mut self, i: usize) {
        self.free.copy_within(i + 1..self.nfree, i);
        self.nfree -= 1;
    }

    /// Adds a returned range, merging with its neighbours. False if it
    /// overlaps one already returned, or if there is no room left.
    fn give(&mut self, r: Range) -> bool {
        let i = self.free[..self.nfree].partition_point(|f| f.start < r.start);
        if i > 0 {
            let p = self.free[i - 1];
            if p.start + p.len > r.start {
                return false;
            }
        }
        if i < self.nfree && r.start + r.len > self.free[i].start {
            return false;
        }
        let merge_prev = i > 0 && self.free[i - 1].start + self.free[i - 1].len == r.start;
        let merge_next = i < self.nfree && r.start + r.len == self.free[i].start;
        match (merge_prev, merge_next) {
            (true, true) => {
                self.free[i - 1].len += r.len + self.free[i].len;
                self.remove(i);
            }
            (true, false) => self.free[i - 1].len += r.len,
            (false, true) => {
                self.free[i].start = r.start;
                self.free[i].len += r.len;
            }
            (false, false) => {
                if self.nfree == MAX_RANGES {
                    return false;
                }
                self.free.copy_within(i..self.nfree, i + 1);
                self.free[i] = r;
                self.nfree += 1;
            }
        }
        true
    }
}

/// A type naming one [`Fake`]: the instance behind a [`FakePal`].
pub trait FakeInstance: 'static {
    /// The instance's state.
    fn fake() -> &'static Fake;
}

/// The fake platform of instance `I` (see the module documentation).
pub struct FakePal<I>(PhantomData<I>);

impl<I> core::fmt::Debug for FakePal<I> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("FakePal")
    }
}

impl<I: FakeInstance> Pal for FakePal<I> {
    fn map(len: usize, align: usize) -> Option<NonNull<u8>> {
        I::fake().map(len, align)
    }

    unsafe fn unmap(ptr: NonNull<u8>, len: usize) {
        // SAFETY: forwarded contract: a range this platform handed out, no
        // longer referenced.
        unsafe { I::fake().unmap(ptr, len) }
    }

    unsafe fn purge(ptr: NonNull<u8>, len: usize) {
        // SAFETY: forwarded contract: a range this platform handed out,
        // holding nothing live.
        unsafe { I::fake().purge(ptr, len) }
    }

    unsafe fn remap(
        ptr: NonNull<u8>,
        old_len: usize,
        new_len: usize,
        may_move: bool,
    ) -> Option<NonNull<u8>> {
        // SAFETY: forwarded contract: a mapping of this platform the caller
        // owns.
        unsafe { I::fake().remap(ptr, old_len, new_len, may_move) }
    }

    unsafe fn remap_to(
        ptr: NonNull<u8>,
        old_len: usize,
        new_len: usize,
        target: NonNull<u8>,
    ) -> bool {
        // SAFETY: forwarded contract: two disjoint ranges of this platform
        // the caller owns.
        unsafe { I::fake().remap_to(ptr, old_len, new_len, target) }
    }

    unsafe fn advise_huge(_ptr: NonNull<u8>, _len: usize) {
        I::fake().advises.fetch_add(1, Ordering::SeqCst);
    }

    unsafe fn advise_small(_ptr: NonNull<u8>, _len: usize) {
        I::fake().small_advises.fetch_add(1, Ordering::SeqCst);
    }

    unsafe fn populate(_ptr: NonNull<u8>, _len: usize) -> bool {
        I::fake().populates.fetch_add(1, Ordering::SeqCst);
        true
    }

    unsafe fn collapse(_ptr: NonNull<u8>, _len: usize) -> bool {
        I::fake().collapses.fetch_add(1, Ordering::SeqCst);
        true
    }

    fn now_ms() -> u64 {
        I::fake().clock.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! instance {
        ($name:ident, $len:expr) => {
            struct $name;
            impl FakeInstance for $name {
                fn fake() -> &'static Fake {
                    static F: Fake = Fake::new($len);
                    &F
                }
            }
        };
    }

    #[test]
    fn maps_are_aligned_zeroed_inside_and_reused() {
        instance!(I1, 16 << 20);
        type P = FakePal<I1>;
        let a = P::map(CHUNK_SIZE, CHUNK_SIZE).unwrap();
        assert_eq!(a.as_ptr() as usize % CHUNK_SIZE, 0);
        let b = P::map(5 * PAGE_SIZE, PAGE_SIZE).unwrap();
        let c = P::map(CHUNK_SIZE, CHUNK_SIZE).unwrap();
        assert_eq!(c.as_ptr() as usize % CHUNK_SIZE, 0);
        for p in [a, b, c] {
            assert!(I1::fake().contains(p.as_ptr() as usize));
        }
        // SAFETY: `a` is ours, CHUNK_SIZE bytes.
        unsafe {
            assert_eq!(a.as_ptr().read(), 0);
            a.as_ptr().add(100).write(7);
            P::unmap(a, CHUNK_SIZE);
        }
        let d = P::map(CHUNK_SIZE, CHUNK_SIZE).unwrap();
        assert_eq!(d, a, "the returned range is reused first");
        // SAFETY: `d` is ours.
        assert_eq!(unsafe { d.as_ptr().add(100).read() }, 0, "reuse is zeroed");
        let k = I1::fake().counts();
        assert_eq!((k.maps, k.unmaps), (4, 1));
        assert_eq!(k.mapped_bytes, (2 * CHUNK_SIZE + 5 * PAGE_SIZE) as u64);
    }

    #[test]
    fn region_exhaustion_fails_cleanly() {
        instance!(I2, 4 << 20);
        type P = FakePal<I2>;
        assert!(P::map(CHUNK_SIZE, CHUNK_SIZE).is_some());
        assert!(P::map(CHUNK_SIZE, CHUNK_SIZE).is_some());
        assert!(P::map(PAGE_SIZE, PAGE_SIZE).is_none());
        assert_eq!(I2::fake().counts().exhausted, 1);
    }

    #[test]
    fn map_failure_is_injected_at_the_chosen_call_until_cleared() {
        instance!(I3, 16 << 20);
        type P = FakePal<I3>;
        let f = I3::fake();
        f.fail_map_after(2);
        assert!(P::map(PAGE_SIZE, PAGE_SIZE).is_some());
        assert!(P::map(PAGE_SIZE, PAGE_SIZE).is_some());
        assert!(P::map(PAGE_SIZE, PAGE_SIZE).is_none());
        assert!(P::map(PAGE_SIZE, PAGE_SIZE).is_none());
        f.clear_failures();
        assert!(P::map(PAGE_SIZE, PAGE_SIZE).is_some());
        let k = f.counts();
        assert_eq!((k.maps, k.failed_maps, k.exhausted), (5, 2, 0));
    }

    #[test]
    fn purge_zeroes_unless_it_fails() {
        instance!(I4, 8 << 20);
        type P = FakePal<I4>;
        let f = I4::fake();
        let a = P::map(4 * PAGE_SIZE, PAGE_SIZE).unwrap();
        // SAFETY: `a` is ours, four pages.
        unsafe {
            a.as_ptr().write_bytes(0xAB, 4 * PAGE_SIZE);
            P::purge(a, 2 * PAGE_SIZE);
            assert_eq!(a.as_ptr().read(), 0);
            assert_eq!(a.as_ptr().add(2 * PAGE_SIZE).read(), 0xAB);
            a.as_ptr().write(1);
            f.fail_purge_after(0);
            P::purge(a, PAGE_SIZE);
            assert_eq!(a.as_ptr().read(), 1, "a failed purge keeps the contents");
        }
        let k = f.counts();
        assert_eq!((k.purges, k.failed_purges), (2, 1));
    }

    #[test]
    fn neighbours_merge_and_remap_moves_contents() {
        instance!(I5, 8 << 20);
        type P = FakePal<I5>;
        let a = P::map(PAGE_SIZE, PAGE_SIZE).unwrap();
        let b = P::map(PAGE_SIZE, PAGE_SIZE).unwrap();
        // SAFETY: both ours; unmapped once each.
        unsafe {
            P::unmap(a, PAGE_SIZE);
            P::unmap(b, PAGE_SIZE);
        }
        let c = P::map(2 * PAGE_SIZE, PAGE_SIZE).unwrap();
        assert_eq!(c, a, "two returned neighbours form one range");
        // SAFETY: `c` is ours, two pages; remap hands back a new range.
        unsafe {
            c.as_ptr().add(5).write(9);
            assert!(P::remap(c, 2 * PAGE_SIZE, 8 * PAGE_SIZE, false).is_none());
            let d = P::remap(c, 2 * PAGE_SIZE, 8 * PAGE_SIZE, true).unwrap();
            assert_eq!(d.as_ptr().add(5).read(), 9);
            assert_eq!(d.as_ptr().add(7 * PAGE_SIZE).read(), 0);
            let e = P::remap(d, 8 * PAGE_SIZE, PAGE_SIZE, false).unwrap();
            assert_eq!(e, d);
        }
        assert_eq!(I5::fake().counts().mapped_bytes, PAGE_SIZE as u64);
    }

    #[test]
    fn clock_moves_only_when_told() {
        instance!(I6, 2 << 20);
        type P = FakePal<I6>;
        let t = P::now_ms();
        assert_eq!(P::now_ms(), t);
        I6::fake().advance_ms(250);
        assert_eq!(P::now_ms(), t + 250);
    }
}
