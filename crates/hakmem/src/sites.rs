//! Call-site profiling: the allocator side of the `hakmem-sites` box.
//!
//! A *recorded* allocation (every `alloc_cs`/`hak_alloc_cs` call, and one
//! `malloc` in 2^N under `HAKMEM_SITES=1`) is served by one of a few shared
//! *recording heaps*, used under a lock: their blocks belong to no thread, so
//! every `free` of one reaches the free slow path, which recognises the
//! heap's tag and records the free. A recorded small block keeps its site
//! stamp, the allocating thread and the requested size in its last 24 bytes
//! (its usable size is its class minus those); a recorded large block keeps
//! them in its mapping's header. Unrecorded blocks pay nothing.
//!
//! Sampling costs the C `malloc` nothing when it is off: its hand-written
//! fast path compares the size with [`TINY_LIMIT`], which is 1 KiB normally
//! and 0 while sampling, so that every call then reaches the slow path with
//! its caller's return address (see `hakmem-preload`), where a per-thread
//! countdown picks the calls to record.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use hakmem_large_cache::LargeHeader;
use hakmem_platform::SpinLock;
use hakmem_sites::{monotonic_ns, Lane, Placement, ReportOptions, SiteId, SiteTable, Stamp};
use hakmem_tiny_sll::TINY_MAX;

use crate::classes::{class_for_aligned, class_size, SLAB_MAX};
use crate::state::{Heap, REGISTRY};
use crate::tls;

/// The site table.
pub(crate) static SITES: SiteTable = SiteTable::new();

/// Site-aware placement: which recording heaps a site's blocks go to.
pub(crate) static PLACEMENT: Placement = Placement::new();

/// The largest size the C `malloc` fast path serves: [`TINY_MAX`], or 0
/// while `malloc` is sampled or observed by the learner.
pub static TINY_LIMIT: AtomicUsize = AtomicUsize::new(TINY_MAX);

/// While `malloc` is sampled (and not observed): [`TINY_MAX`], else 0. The
/// hand-written C `malloc` counts calls of sizes up to this down in the
/// thread slot (`tls::SAMPLE_LEFT_OFFSET`) and then takes its fast path, so
/// only the call that is due (or a thread's first) reaches
/// [`malloc_sample_due`].
pub static SAMPLE_LIMIT: AtomicUsize = AtomicUsize::new(0);

static SAMPLING: AtomicBool = AtomicBool::new(false);
static SHIFT: AtomicU32 = AtomicU32::new(12);
static JITTER: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);

/// Bytes at the end of a recorded small block: stamp, thread, size.
pub(crate) const TAIL: usize = 24;

const STRIPES: usize = 4;

struct HeapPtr(*mut Heap);
// SAFETY: a recording heap is only used under its lock.
unsafe impl Send for HeapPtr {}

/// The recording heaps, `STRIPES` per [`Lane`]: lane `l`, stripe `s` is
/// `REC[l * STRIPES + s]`. Lanes never share a heap, so never a slab.
static REC: [SpinLock<HeapPtr>; REC_HEAPS] =
    [const { SpinLock::new(HeapPtr(core::ptr::null_mut())) }; REC_HEAPS];
static REC_TAGS: [AtomicU32; REC_HEAPS] = [const { AtomicU32::new(u32::MAX) }; REC_HEAPS];
const REC_HEAPS: usize = STRIPES * Lane::COUNT;

/// Turns sampled `malloc` on: one call in `2^shift` is recorded.
pub(crate) fn enable_sampling(shift: u32) {
    let shift = shift.min(30);
    SHIFT.store(shift, Ordering::Relaxed);
    SITES.set_sample_shift(shift);
    SAMPLING.store(true, Ordering::Release);
    crate::learner::refresh_tiny_limit();
}

/// True while `malloc` is sampled.
#[inline]
pub(crate) fn sampling() -> bool {
    SAMPLING.load(Ordering::Relaxed)
}

/// True if `tag` is a recording heap's.
#[inline]
pub(crate) fn is_recording_tag(tag: u32) -> bool {
    REC_TAGS.iter().any(|t| t.load(Ordering::Relaxed) == tag)
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

/// Turns site-aware placement on or off (`HAKMEM_SITE_PLACEMENT`, default
/// on). Off, every recorded allocation shares the default lane's heaps.
pub fn set_site_placement(on: bool) {
    // start-up applies the option: it must not undo this call later
    crate::init::ensure();
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
/// `site`. Null (with `errno = ENOMEM`) on failure.
pub fn alloc_recorded(size: usize, align: usize, site: SiteId) -> *mut u8 {
    crate::init::ensure();
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
                            (*h).mark = crate::init::free_mark();
                            REC_TAGS[stripe].store((*h).tag, Ordering::Relaxed);
                        }
                        g.0 = h;
                    }
                    None => return fail(),
                }
            }
            // SAFETY: the recording heap is used under its lock only.
            let h = unsafe { &mut *g.0 };
            h.sync_policy();
            // no thread owns a recording heap, so its idle slabs age here
            h.maintain(false);
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
            t.add(1).write_unaligned(me);
            t.add(2).write_unaligned(size as u64);
        }
        return p;
    }
    let p = crate::api::large_alloc(size, align.max(hakmem_platform::PAGE_SIZE), false);
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
    let (stamp, who, size) = unsafe {
        let t = p.add(block_size - TAIL).cast::<u64>();
        (
            t.read_unaligned(),
            t.add(1).read_unaligned(),
            t.add(2).read_unaligned(),
        )
    };
    let stamp = Stamp::from_bits(stamp);
    let now = monotonic_ns();
    PLACEMENT.on_free(
        stamp.slot(),
        lane_of_tag(tag),
        now.wrapping_sub(stamp.alloc_time(now)),
    );
    SITES.record_free(stamp, size as usize, now, who != thread_id());
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

/// The C `malloc`'s countdown ran out: `sample_left` went from 1 to 0
/// (this call is the sample) or wrapped from 0 (the thread's first call
/// since sampling began). Starts the next period either way.
pub fn malloc_sample_due(size: usize, ra: usize) -> *mut u8 {
    if !sampling() {
        // the learner's countdown (it observes), not ours
        return crate::learner::due(size);
    }
    let slot = tls::slot();
    // SAFETY: the thread's own slot.
    let left = unsafe { (*slot).sample_left };
    // SAFETY: as above.
    unsafe { (*slot).sample_left = next_period() };
    if left == 0 && sampling() {
        return alloc_recorded(size, crate::MIN_ALIGN, SiteId::sampled(ra));
    }
    crate::api::malloc(size)
}

/// The `malloc` slow path of the C API, with the caller's return address.
/// While sampling, every call above [`TINY_LIMIT`] comes here: those up to
/// [`SAMPLE_LIMIT`] were counted by the caller already (their bin was
/// empty), the rest are counted here. So are the small calls while the
/// learner observes (and sampling is off): they were counted down already.
pub fn malloc_with_caller(size: usize, ra: usize) -> *mut u8 {
    if sampling() {
        if size <= SAMPLE_LIMIT.load(Ordering::Relaxed) {
            return crate::api::malloc_unsampled(size);
        }
        let slot = tls::slot();
        // SAFETY: the thread's own slot.
        let left = unsafe { (*slot).sample_left };
        if left <= 1 {
            // SAFETY: as above.
            unsafe { (*slot).sample_left = next_period() };
            if left == 1 {
                return alloc_recorded(size, crate::MIN_ALIGN, SiteId::sampled(ra));
            }
        } else {
            // SAFETY: as above.
            unsafe { (*slot).sample_left = left - 1 };
        }
        if crate::learner::observing() {
            return crate::api::malloc(size);
        }
        return crate::api::malloc_unsampled(size);
    }
    if size <= SAMPLE_LIMIT.load(Ordering::Relaxed) {
        // the learner observes: the caller counted this call down already
        // (its bin was empty)
        return crate::api::malloc_uncounted(size);
    }
    crate::api::malloc(size)
}

/// The next countdown: 2^N calls, jittered by up to a quarter either way so
/// that loops with a period do not alias with the sampling.
fn next_period() -> usize {
    let n = 1usize << SHIFT.load(Ordering::Relaxed);
    // splitmix64 over a global counter; the high half picks the jitter
    let mut x = JITTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    let q = (n / 4).max(1) as u64;
    let j = ((x >> 32) * (2 * q)) >> 32;
    (n as u64 - q + j).max(1) as usize
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
