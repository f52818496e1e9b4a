//! Call-site profiling: the allocator side of the `hakmem-sites` box.
//!
//! A *recorded* allocation (every `alloc_cs`/`hak_alloc_cs` call, and one
//! `malloc` in 2^N under `HAKMEM_SITES=1`) is served by one of a few shared
//! *recording heaps*, used under a lock: their blocks belong to no thread, so
//! every `free` of one reaches the free slow path, which recognises the
//! heap's tag and records the free. A recorded small block keeps its site
//! stamp, the allocating thread and the requested size in its last 16 bytes
//! (its usable size is its class minus those; see [`TAIL`]); a recorded large block keeps
//! them in its mapping's header. Unrecorded blocks pay nothing.
//!
//! Sampling is an observer of the allocation path (`observe.rs`): it asks
//! for a countdown period of about 2^N calls and records the call that
//! ends it, with its caller's return address as the site. It costs the
//! fast paths nothing while it is off, and a countdown while it is on.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use hakmem_large_cache::LargeHeader;
use hakmem_platform::SpinLock;
use hakmem_sites::{monotonic_ns, Lane, Placement, ReportOptions, SiteId, SiteTable, Stamp};

use crate::classes::{class_for_aligned, class_size, SLAB_MAX};
use crate::observe::{self, Call, Observer, Take};
use crate::state::{Heap, REGISTRY};
use crate::tls;

/// The site table.
pub(crate) static SITES: SiteTable = SiteTable::new();

/// Site-aware placement: which recording heaps a site's blocks go to.
pub(crate) static PLACEMENT: Placement = Placement::new();

static SHIFT: AtomicU32 = AtomicU32::new(12);

/// Bytes at the end of a recorded small block: the stamp, then the
/// allocating thread and the requested size in one word ([`pack_who`]).
/// Every byte here is a byte more per block (a 48-byte request takes a
/// 64-byte block), so the tail is as short as it can be.
pub(crate) const TAIL: usize = 16;

/// Bits of the requested size in a tail's second word: a small recorded
/// block's size plus [`TAIL`] fits [`SLAB_MAX`].
const SIZE_BITS: u32 = 20;
const _: () = assert!(SLAB_MAX <= 1 << SIZE_BITS);

/// The second word of a recorded small block's tail: the allocating
/// thread's id ([`thread_id`], a slot address: 8-aligned and, in practice,
/// below 2^47, so its bits 3..47 tell threads apart; a remote free
/// misread would only be miscounted) above the requested size.
fn pack_who(me: u64, size: usize) -> u64 {
    debug_assert!(size < 1 << SIZE_BITS);
    ((me >> 3) << SIZE_BITS) | size as u64
}

/// The thread id (as [`pack_who`] keeps it) and the size of a tail's
/// second word.
fn unpack_who(w: u64) -> (u64, usize) {
    (w >> SIZE_BITS, (w & ((1 << SIZE_BITS) - 1)) as usize)
}

const STRIPES: usize = 4;

/// A recording heap (null until first used) and the recorded allocations
/// it served, which time its maintenance ([`MAINTAIN_EVERY`]).
struct HeapPtr(*mut Heap, u32);
// SAFETY: a recording heap is only used under its lock.
unsafe impl Send for HeapPtr {}

/// A recording heap follows the policy and ages its idle slabs once in this
/// many recorded allocations (and on its refills, as every heap does), not
/// on each: the check reads the clock and the policy, which cost a recorded
/// call about as much as the rest of its heap work.
const MAINTAIN_EVERY: u32 = 64;

/// The recording heaps, `STRIPES` per [`Lane`]: lane `l`, stripe `s` is
/// `REC[l * STRIPES + s]`. Lanes never share a heap, so never a slab.
static REC: [SpinLock<HeapPtr>; REC_HEAPS] =
    [const { SpinLock::new(HeapPtr(core::ptr::null_mut(), 0)) }; REC_HEAPS];
static REC_TAGS: [AtomicU32; REC_HEAPS] = [const { AtomicU32::new(u32::MAX) }; REC_HEAPS];
/// Set (for good) before the first recording heap's tag is published in
/// `REC_TAGS`: frees in a process that never records skip the tag scan.
static REC_ANY: AtomicBool = AtomicBool::new(false);
const REC_HEAPS: usize = STRIPES * Lane::COUNT;

/// Turns sampled `malloc` on: one call in `2^shift` is recorded.
pub(crate) fn enable_sampling(shift: u32) {
    let shift = shift.min(30);
    SHIFT.store(shift, Ordering::Relaxed);
    SITES.set_sample_shift(shift);
    observe::set_active(observe::SITES, true);
}

/// Call-site sampling, as an observer of `malloc` calls.
#[derive(Debug)]
pub(crate) struct Sampler;

/// The sampler.
pub(crate) static SAMPLER: Sampler = Sampler;

impl Observer for Sampler {
    fn which(&self) -> u8 {
        observe::SITES
    }

    fn period(&self, rnd: u32) -> usize {
        // the calls left to the next sample, so that the countdown ends on
        // it (the thread's first call has started it)
        // SAFETY: the thread's own slot, touched by this thread alone.
        match unsafe { (*tls::slot()).site_left } {
            0 => jittered(rnd),
            n => n,
        }
    }

    fn on_call(&self, call: &Call) -> Take {
        let slot = tls::slot();
        // Two streams, each sampled one call in about 2^N: the small calls
        // counted down (`site_left`, which the countdown's period follows,
        // so a due call lands on the sample exactly) and the calls shown
        // one by one (`site_left_one`).
        // SAFETY: the thread's own slot, touched by this thread alone.
        let left = unsafe {
            if call.due {
                &mut (*slot).site_left
            } else {
                &mut (*slot).site_left_one
            }
        };
        if *left as u64 > call.calls {
            *left -= call.calls as usize;
            return Take::Pass;
        }
        // Not started yet (0: the thread's first call), or due. Calls of
        // the period past the sample count towards the next one (with the
        // countdown following `site_left` there are none; a period that
        // passes more than one sample point records one call).
        let started = *left != 0;
        let mut over = if started {
            call.calls - *left as u64
        } else {
            0
        };
        *left = loop {
            let n = jittered(tls::random()) as u64;
            if n > over {
                break (n - over) as usize;
            }
            over -= n;
        };
        // a Rust caller has no return address to label the site with
        if started && call.ra != 0 {
            Take::Record
        } else {
            Take::Pass
        }
    }

    fn on_timed(&self, _ns: u32) {}
}

/// A sampling period: 2^N calls, jittered by up to a quarter either way so
/// that loops with a period do not alias with the sampling.
fn jittered(rnd: u32) -> usize {
    let n = 1u64 << SHIFT.load(Ordering::Relaxed);
    let q = (n / 4).max(1);
    let j = (rnd as u64 * (2 * q)) >> 32;
    (n - q + j).max(1) as usize
}

/// True if `tag` is a recording heap's.
#[inline]
pub(crate) fn is_recording_tag(tag: u32) -> bool {
    // A block of a recording heap was handed out after its tag was stored
    // (under the stripe's lock), and REC_ANY before that: whoever frees the
    // block sees both.
    REC_ANY.load(Ordering::Relaxed) && REC_TAGS.iter().any(|t| t.load(Ordering::Relaxed) == tag)
}

/// The lane of the recording heap with `tag`.
fn lane_of_tag(tag: u32) -> Lane {
    match REC_TAGS
        .iter()
        .position(|t| t.load(Ordering::Relaxed) == tag)
    {
        Some(i) => Lane::from_index(i / STRIPES),
        None => Lane::Default,
    }
}

/// Turns site-aware placement on or off (the caller ran the set-up first,
/// which applies the option and must not undo this later).
pub(crate) fn set_placement(on: bool) {
    PLACEMENT.set_enabled(on);
}

/// What site-aware placement has done so far.
pub fn placement_stats() -> hakmem_sites::PlacementStats {
    PLACEMENT.stats()
}

fn thread_id() -> u64 {
    tls::slot() as u64
}

/// Allocates `size` bytes aligned to `align` and records the call for
/// `site`. Null (with `errno = ENOMEM`) on failure. The caller ran the
/// set-up (`api::alloc_recorded` is the entry point).
pub(crate) fn record_alloc(size: usize, align: usize, site: SiteId) -> *mut u8 {
    let align = align.max(crate::MIN_ALIGN);
    let now = monotonic_ns();
    let me = thread_id();
    let small = size
        .checked_add(TAIL)
        .filter(|&n| n <= SLAB_MAX && align <= hakmem_superslab::SLOT_SIZE);
    let slot = SITES.slot_or_insert(site);
    if let Some(class) = small.and_then(|n| class_for_aligned(n, align)) {
        let lane = PLACEMENT.lane_for(&SITES, slot, now);
        let stripe = lane.index() * STRIPES + (me as usize >> 6) % STRIPES;
        let p = {
            let mut g = REC[stripe].lock();
            if g.0.is_null() {
                match REGISTRY.acquire() {
                    Some(h) => {
                        // SAFETY: a new heap, ours under the lock.
                        unsafe {
                            (*h).mark = crate::state::free_mark();
                            REC_ANY.store(true, Ordering::Relaxed);
                            REC_TAGS[stripe].store((*h).tag, Ordering::Relaxed);
                        }
                        g.0 = h;
                    }
                    None => return fail(),
                }
            }
            // SAFETY: the recording heap is used under its lock only.
            let h = unsafe { &mut *g.0 };
            g.1 = g.1.wrapping_add(1);
            if g.1 % MAINTAIN_EVERY == 1 {
                // no thread owns a recording heap, so its idle slabs age
                // here (and on the background thread's visits)
                h.sync_policy();
                h.maintain(false);
            }
            h.alloc_class(class)
        };
        if p.is_null() {
            return fail();
        }
        let stamp = SITES.record_alloc_at(slot, size, now);
        // SAFETY: the block is ours and `class_size(class) >= size + TAIL`.
        unsafe {
            let t = p.add(class_size(class) - TAIL).cast::<u64>();
            t.write_unaligned(stamp.to_bits());
            t.add(1).write_unaligned(pack_who(me, size));
        }
        return p;
    }
    let p = crate::large::large_alloc(size, align.max(hakmem_platform::PAGE_SIZE), false);
    if !p.is_null() {
        let stamp = SITES.record_alloc_at(slot, size, now);
        if align <= hakmem_platform::PAGE_SIZE {
            consider_reservation(slot, size);
        }
        let e = crate::state::PAGE_MAP.get(p as usize);
        if let Some(h) = hakmem_large_cache::Large::<crate::state::Os>::lookup(e, p) {
            // the thread id (a TLS slot address) is never 0: it marks the
            // block as recorded
            h.set_aux(0, stamp.to_bits());
            h.set_aux(2, size as u64);
            h.set_aux(1, me);
        }
    }
    p
}

/// A site that allocates one large size again and again, and frees its
/// blocks (so they can be reused), gets a BigCache reservation for that size
/// sized to the blocks it has live: its mappings stay resident across pauses
/// longer than the decay. The cache scores the reservation and drops it if it
/// keeps memory nobody takes (see `hakmem-large-cache`).
fn consider_reservation(slot: usize, size: usize) {
    if !PLACEMENT.enabled() {
        return;
    }
    let Some(st) = SITES.stats(slot) else {
        return;
    };
    let size64 = size as u64;
    let one_size = st.max_size == size64 && st.bytes == st.allocs.wrapping_mul(size64);
    if one_size && st.allocs >= 4 && st.frees >= 2 {
        let policy = crate::state::POLICY.load();
        crate::state::LARGE.reserve(
            size,
            st.live_blocks().max(1) as usize,
            &crate::state::cache_limits(policy),
            policy.thp_threshold,
        );
    }
}

fn fail() -> *mut u8 {
    hakmem_platform::set_errno(libc::ENOMEM);
    core::ptr::null_mut()
}

/// A recorded small block of `block_size` bytes at `p`, of the recording
/// heap with `tag`, is being freed.
///
/// # Safety
/// `p` must be a live block of a recording heap.
pub(crate) unsafe fn on_free_small(p: *const u8, block_size: usize, tag: u32) {
    // SAFETY: per the contract the tail was written at allocation.
    let (stamp, w) = unsafe {
        let t = p.add(block_size - TAIL).cast::<u64>();
        (t.read_unaligned(), t.add(1).read_unaligned())
    };
    let (who, size) = unpack_who(w);
    let stamp = Stamp::from_bits(stamp);
    let now = monotonic_ns();
    PLACEMENT.on_free(
        stamp.slot(),
        lane_of_tag(tag),
        now.wrapping_sub(stamp.alloc_time(now)),
    );
    SITES.record_free(
        stamp,
        size,
        now,
        who != unpack_who(pack_who(thread_id(), 0)).0,
    );
}

/// A large block is being freed: record it if it was recorded.
pub(crate) fn on_free_large(h: &LargeHeader) {
    let who = h.aux(1);
    if who == 0 {
        return;
    }
    let stamp = Stamp::from_bits(h.aux(0));
    SITES.record_free(stamp, h.aux(2) as usize, monotonic_ns(), who != thread_id());
}

/// Writes the site report (top sites by bytes and by count) to `fd`.
pub fn report(fd: i32) -> bool {
    SITES.report_text_fd(fd, &ReportOptions::new(monotonic_ns()))
}

/// Writes the whole site table as JSON to `fd`.
pub fn report_json(fd: i32) -> bool {
    SITES.report_json_fd(fd, &ReportOptions::new(monotonic_ns()))
}

/// The site table (to read statistics directly).
pub fn table() -> &'static SiteTable {
    &SITES
}

/// Clears the site counters.
pub fn reset() {
    SITES.reset(monotonic_ns())
}

/// The recording heaps' locks, for the fork handlers.
pub(crate) fn fork_locks() -> &'static [SpinLock<impl Sized>] {
    &REC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_keeps_the_thread_and_every_small_size() {
        let me = thread_id();
        let other = me + 64;
        for size in [0, 1, 48, 4096, SLAB_MAX - TAIL] {
            let (who, s) = unpack_who(pack_who(me, size));
            assert_eq!(s, size);
            assert_eq!(who, unpack_who(pack_who(me, 0)).0);
            assert_ne!(who, unpack_who(pack_who(other, size)).0);
        }
    }

    #[test]
    fn a_recorded_small_block_is_its_size_and_the_tail() {
        // a 48-byte request keeps its 16-byte tail in a 64-byte block
        let p = crate::alloc_cs(core::alloc::Layout::from_size_align(48, 16).unwrap());
        assert!(!p.is_null());
        let e = crate::state::PAGE_MAP.get(p as usize);
        assert!(is_recording_tag(e.tag()));
        assert_eq!(class_size(e.class() as usize), 64);
        // SAFETY: a live block of ours, freed once.
        unsafe {
            assert_eq!(crate::usable_size(p), 64 - TAIL);
            crate::free(p);
        }
    }
}
