//! The allocation entry points, shared by the Rust `GlobalAlloc` and the C
//! API of `libhakmem.so`.
//!
//! `malloc` and `free` are split mimalloc-style: a tiny inlined fast path
//! with one unlikely exit to a `#[cold]` slow path.
//!
//! * `malloc(n)`, `n ≤ 1 KiB`: class from a table, pop the thread's bin.
//! * `free(p)`: one page-map load tells whether `p` is in a superslab this
//!   thread owns; if so, push it on the bin of the class its slot records.
//!
//! Everything else — refills, spills, mid and large sizes, foreign and
//! cross-thread pointers, a thread's first call — goes to the slow paths.

use core::ptr;

use hakmem_large_cache::{Large, LargeHeader};
use hakmem_pagemap::Entry;
use hakmem_platform::{set_errno, ErrnoGuard, PAGE_SIZE};
use hakmem_superslab::{remote_free, Superslab, NO_CLASS, SLOT_SIZE};
use hakmem_tiny_sll::{Bin, Block, TINY_MAX};

use hakmem_sites::SiteId;

use crate::classes::{class_for_aligned, class_of, class_size, BIN_BYTES, SLAB_MAX};
use crate::large::{beyond_any_mapping, decay_tick, large_alloc};
use crate::observe::{self, Call, Observer, Take, SAMPLE_LIMIT, TINY_LIMIT};
use crate::profile::Cat;
use crate::report::{misuse, Misuse};
use crate::state::{cache_limits, Os, LARGE, LARGE_STATS, PAGE_MAP, POLICY};
use crate::state::{Heap, PLACEHOLDER};
use crate::thread::with_heap;
use crate::tls;

/// The alignment every `malloc` result has (for sizes above 8 bytes).
pub const MIN_ALIGN: usize = 16;

/// What a pointer handed to `free`/`realloc`/`malloc_usable_size` is.
enum Located {
    /// A live superslab block of this class.
    Small(usize),
    /// A live large block.
    Large(&'static LargeHeader),
    /// A misuse, already reported (in warn mode the caller ignores the call).
    Bad,
}

/// Classifies `p` (non-null) for `op`, reporting misuse: a pointer hakmem
/// did not hand out, an interior pointer, a block that is free already.
fn locate(op: &str, p: *const u8) -> Located {
    locate_entry(op, p, PAGE_MAP.get(p as usize))
}

fn locate_entry(op: &str, p: *const u8, e: Entry) -> Located {
    if e.is_large() {
        return match Large::<Os>::lookup(e, p) {
            Some(h) => Located::Large(h),
            None if Large::<Os>::is_freed(e, p) => {
                let kind = if op == "free" {
                    Misuse::DoubleFree
                } else {
                    Misuse::UseOfFreed
                };
                misuse(kind, op, p, 0);
                Located::Bad
            }
            None => {
                misuse(Misuse::NotOurs, op, p, 0);
                Located::Bad
            }
        };
    }
    if !e.is_live_superslab() {
        misuse(Misuse::NotOurs, op, p, 0);
        return Located::Bad;
    }
    // SAFETY: the page map says the slot is in a live superslab.
    let ss = unsafe { &*Superslab::of(p) };
    let class = e.class();
    if class == NO_CLASS {
        misuse(Misuse::NoBlock, op, p, 0);
        return Located::Bad;
    }
    let size = class_size(class as usize);
    if !ss.is_block_start(p, size) {
        misuse(Misuse::Interior, op, p, size);
        return Located::Bad;
    }
    // SAFETY: a block start in a live slab: at least 16 readable bytes.
    if unsafe { (*p.cast::<Block>()).mark.load() } == free_mark() {
        let kind = if op == "free" {
            Misuse::DoubleFree
        } else {
            Misuse::UseOfFreed
        };
        misuse(kind, op, p, size);
        return Located::Bad;
    }
    Located::Small(class as usize)
}

/// The usable size of the live small block `p` of class `c`: its class
/// size, less what secure mode or call-site recording keep at its end.
fn small_usable(p: *const u8, c: usize) -> usize {
    if crate::sites::is_recording_tag(PAGE_MAP.get(p as usize).tag()) {
        class_size(c) - crate::sites::TAIL
    } else {
        crate::secure::usable(class_size(c))
    }
}

/// The free mark of this process (see `Heap::mark`).
#[inline]
fn free_mark() -> u64 {
    crate::state::free_mark()
}

/// The observers of `malloc` calls, by their bit (`observe.rs`).
static OBSERVERS: [&dyn Observer; observe::COUNT] = [
    &crate::sites::SAMPLER,
    &crate::learner::SLICES,
    &crate::prof::PROFILER,
];

/// `malloc`: `size` bytes, aligned to 16; null with `errno = ENOMEM` on
/// failure. `malloc(0)` returns a unique pointer.
///
/// The fast path: a size up to [`TINY_LIMIT`] pops the thread's bin for
/// it. The limit is `TINY_MAX`, or 0 while observers are on (a memory
/// operand instead of an immediate: the same instruction count); then
/// [`malloc_observed`] counts small calls down.
#[inline(always)]
pub fn malloc(size: usize) -> *mut u8 {
    if size > TINY_LIMIT.get() {
        return if size > SAMPLE_LIMIT.get() {
            malloc_slow(size, 0)
        } else {
            malloc_observed(size, 0)
        };
    }
    pop_or_slow(size, 0)
}

/// `malloc` while secure mode or the debug ring is on
/// ([`crate::secure::checked`]; the default fast paths then send every
/// call here: the hand-written C `malloc` directly, the compiled one
/// through [`malloc_slow`]): the checked fast path. A small request pops
/// the thread's bin as the default fast path does, then checks the block
/// (in secure mode: no write since it was poisoned, and its canary set)
/// and records the event in the ring; the rest goes on to the slow paths.
/// While observers are on, small calls are counted down here (the C
/// `malloc`'s countdown is off: its limits are 0).
#[inline(never)]
pub fn malloc_checked(size: usize, ra: usize) -> *mut u8 {
    if observe::any_active() {
        return malloc_checked_observed(size, ra);
    }
    pop_checked(size, ra)
}

/// [`malloc_checked`] while observers are on.
#[cold]
#[inline(never)]
fn malloc_checked_observed(size: usize, ra: usize) -> *mut u8 {
    if size <= TINY_MAX {
        malloc_observed(size, ra)
    } else {
        malloc_unchecked(size, ra)
    }
}

/// The checked fast path of a `malloc` of `size` (see [`malloc_checked`]),
/// or the slow path. Every call it makes is its last step (a tail call), so
/// that it saves no registers.
#[inline(always)]
fn pop_checked(size: usize, ra: usize) -> *mut u8 {
    let secure = crate::secure::on();
    // secure::request's class, with the secure flag read once
    let small = if secure {
        size <= crate::secure::SECURE_TINY_MAX
    } else {
        size <= TINY_MAX
    };
    if small {
        let heap = tls::heap();
        let off = if secure {
            crate::secure::secure_bin(size)
        } else {
            // SAFETY: `size <= TINY_MAX`; the heap (ours or the
            // placeholder) is live.
            unsafe { size_bin(heap, size) }
        };
        // SAFETY: `heap` is this thread's heap or the placeholder (whose
        // bins are empty: the pop writes nothing); `off` is a bin offset
        // from its size table.
        let p = unsafe { Bin::pop_raw(Heap::bin_at(heap, off)) };
        if !p.is_null() {
            if secure {
                // (the bin at `off` is that of class `off / BIN_BYTES`, a
                // tiny class: the size table holds nothing else)
                let bs = crate::secure::tiny_info_of(off).size;
                // SAFETY: a block of `bs` bytes (at least 32: secure
                // requests are) being handed out.
                if !unsafe { crate::secure::alloc_ok(p, bs) } {
                    return written_after_free(p, bs, size, ra);
                }
            }
            return record_alloc(p, size, ra);
        }
    }
    serve_cold(size, ra)
}

/// The secure fast path of the hand-written C `malloc` (`hakmem-preload`)
/// found a write into the free block `p` of `bs` bytes it popped for a
/// request of `size` bytes from `ra`: [`written_after_free`].
///
/// # Safety
/// `p` is a block of `bs` bytes (a tiny class's, at least 32) the calling
/// thread just took from its bin to hand out.
#[doc(hidden)]
#[cold]
#[inline(never)]
pub unsafe fn malloc_written_after_free(size: usize, ra: usize, p: *mut u8, bs: usize) -> *mut u8 {
    written_after_free(p, bs, size, ra)
}

/// [`pop_checked`] found a write into the free block `p` of `bs` bytes:
/// reports it, then hands the block out as usual (in warn mode).
#[cold]
#[inline(never)]
fn written_after_free(p: *mut u8, bs: usize, size: usize, ra: usize) -> *mut u8 {
    misuse(Misuse::WriteAfterFree, "malloc", p, bs);
    // SAFETY: a block of `bs` bytes being handed out.
    unsafe { crate::secure::set_canary(p, bs) };
    record_alloc(p, size, ra)
}

/// Records the allocation of `p` (a small block, `size` bytes asked for)
/// in the thread's debug ring; returns `p`.
#[inline(always)]
fn record_alloc(p: *mut u8, size: usize, ra: usize) -> *mut u8 {
    crate::ring::record_small(crate::ring::Kind::Alloc, p, size, ra);
    p
}

/// [`serve`], out of line.
#[inline(never)]
fn serve_cold(size: usize, ra: usize) -> *mut u8 {
    serve(size, ra)
}

/// The pop of a counted-down small `malloc` ([`malloc_observed`]): the
/// checked one in the checked modes.
#[inline(always)]
fn pop_small(size: usize, ra: usize) -> *mut u8 {
    if crate::secure::checked() {
        pop_checked(size, ra)
    } else {
        pop_or_slow(size, ra)
    }
}

/// The offset of the bin (`class * BIN_BYTES`) that serves `size` bytes,
/// from `heap`'s size table.
///
/// # Safety
/// `size <= TINY_MAX` (the table has `TINY_MAX + 1` entries), and `heap` is
/// live (this thread's heap or the placeholder).
#[inline(always)]
unsafe fn size_bin(heap: *mut Heap, size: usize) -> usize {
    // SAFETY: the caller's: `size` indexes the size table of a live heap,
    // which is never written after construction.
    let off = unsafe {
        core::ptr::addr_of!((*heap).size_bins)
            .cast::<u16>()
            .add(size)
            .read()
    };
    off as usize
}

/// Pops the bin of `size` (at most `TINY_MAX`), or takes the slow path.
#[inline(always)]
fn pop_or_slow(size: usize, ra: usize) -> *mut u8 {
    debug_assert!(size <= TINY_MAX);
    let heap = tls::heap();
    // SAFETY: `size <= TINY_MAX`: every caller compared it with a `Limit`,
    // whose value is 0 or TINY_MAX by construction, or with TINY_MAX; the
    // heap (ours or the placeholder) is live.
    let off = unsafe { size_bin(heap, size) };
    // SAFETY: `heap` is this thread's heap or the placeholder; `off` is
    // a bin offset.
    let p = unsafe { Bin::pop_raw(Heap::bin_at(heap, off)) };
    if !p.is_null() {
        return p;
    }
    malloc_slow(size, ra)
}

/// The slow path of `malloc` (the bin was empty, or the size is above the
/// small sizes), with the caller's return address (0 if unknown). While
/// observers are on, a call above the small sizes is shown to them here
/// (small ones were counted down before they got here).
#[cold]
#[inline(never)]
pub fn malloc_slow(size: usize, ra: usize) -> *mut u8 {
    if crate::secure::checked() {
        return malloc_checked(size, ra);
    }
    if size > TINY_MAX && size <= crate::budget::slab_max() && !observe::any_active() {
        let p = pop_mid(size);
        if !p.is_null() {
            return p;
        }
    }
    malloc_unchecked(size, ra)
}

/// The mid fast path: pops the thread's bin for a mid `size` (above
/// `TINY_MAX`, at most the slab limit), or returns null when the bin is
/// empty or the thread has no heap yet (the placeholder's bins are empty).
/// It is what [`serve`] does with a bin that has a block, less the set-up
/// check (a heap with blocks exists only after the set-up), the checked
/// modes' and observers' work (the caller ruled them out) and the lazy
/// start of the background threads (the first call of a thread, and every
/// refill, go through [`serve`]).
#[inline(always)]
fn pop_mid(size: usize) -> *mut u8 {
    debug_assert!(size > TINY_MAX && size <= SLAB_MAX);
    let heap = tls::heap();
    let off = class_of(size) * BIN_BYTES;
    // SAFETY: `heap` is this thread's heap or the placeholder (whose bins
    // are empty: the pop writes nothing); `off` is the bin offset of a mid
    // class, which every heap has.
    unsafe { Bin::pop_raw(Heap::bin_at(heap, off)) }
}

/// [`malloc_slow`]'s work outside the checked modes (and the checked
/// modes' calls above the small sizes while observers are on).
fn malloc_unchecked(size: usize, ra: usize) -> *mut u8 {
    if size > TINY_MAX && observe::any_active() {
        let call = Call {
            calls: 1,
            due: false,
            size,
            ra,
        };
        let (take, timed) = show(&call);
        return serve_observed(&call, take, timed, serve);
    }
    serve(size, ra)
}

/// A small `malloc` while observers are on (above [`TINY_LIMIT`], at most
/// [`SAMPLE_LIMIT`]): counts it down in the thread's countdown; the call
/// that ends the countdown (the *due* call) is shown to the observers,
/// standing for the whole period, and starts the next one. The C `malloc`
/// counts down on its own and comes here only with a due call, its
/// countdown as it was before the call (1, or 0 for a thread's first).
#[cold]
#[inline(never)]
pub fn malloc_observed(size: usize, ra: usize) -> *mut u8 {
    if size > TINY_MAX {
        return malloc_slow(size, ra);
    }
    let slot = tls::slot();
    // SAFETY: the thread's own slot, touched by this thread alone.
    let (left, period) = unsafe { ((*slot).left, (*slot).period) };
    if left > 1 {
        // SAFETY: the thread's own slot, touched by this thread alone.
        unsafe { (*slot).left = left - 1 };
        return pop_small(size, ra);
    }
    // due (1 -> 0), or never started (0): this call stands for the period
    // the countdown last started with
    let call = Call {
        calls: if left == 1 { period as u64 } else { 0 },
        due: true,
        size,
        ra,
    };
    let (take, timed) = show(&call);
    // the next period: the shortest any observer wants now that it saw
    // this call
    let rnd = tls::random();
    let next = OBSERVERS
        .iter()
        .filter(|o| observe::is_active(o.which()))
        .map(|o| o.period(rnd))
        .min()
        .unwrap_or(0);
    // SAFETY: the thread's own slot, touched by this thread alone.
    unsafe {
        (*slot).left = next;
        (*slot).period = next;
    }
    serve_observed(&call, take, timed, pop_small)
}

/// Shows `call` to every observer that is on: what they want done with it,
/// and which of them want it timed (a bit each).
fn show(call: &Call) -> (Take, u8) {
    let mut take = Take::Pass;
    let mut timed = 0u8;
    for o in OBSERVERS.iter().filter(|o| observe::is_active(o.which())) {
        let t = o.on_call(call);
        if t == Take::Time {
            timed |= 1 << o.which();
        }
        take = take.max(t);
    }
    (take, timed)
}

/// Serves an observed call as its observers want: recorded at its
/// call-site, or as usual (`serve(size, ra)`), timed for those in `timed`.
fn serve_observed(
    call: &Call,
    take: Take,
    timed: u8,
    serve: impl FnOnce(usize, usize) -> *mut u8,
) -> *mut u8 {
    // the profiler classifies its timed calls by what the thread's
    // counters did meanwhile
    let before = (timed & (1 << observe::PROF) != 0).then(crate::prof::before);
    let started = (timed != 0).then(crate::profile::now_ns);
    let p = if take == Take::Record {
        alloc_recorded(call.size, MIN_ALIGN, SiteId::sampled(call.ra))
    } else {
        serve(call.size, call.ra)
    };
    if let Some(t) = started {
        let ns = crate::profile::now_ns().saturating_sub(t).max(1);
        if let Some(b) = before {
            crate::prof::after_malloc(call, b, ns);
        }
        let ns = ns.min(u32::MAX as u64) as u32;
        for o in OBSERVERS.iter().filter(|o| timed & (1 << o.which()) != 0) {
            o.on_timed(ns);
        }
    }
    p
}

/// Allocates `size` bytes aligned to `align` and records the call for
/// `site`: the call-site entry point (`alloc_cs`, `hak_alloc_cs`, and
/// sampled `malloc` calls). Null (with `errno = ENOMEM`) on failure.
pub fn alloc_recorded(size: usize, align: usize, site: SiteId) -> *mut u8 {
    crate::init::ensure();
    crate::sites::record_alloc(size, align, site)
}

/// Serves a `malloc` that missed the fast path (after the set-up); `ra`
/// is the caller's return address (0 if unknown), for the debug ring.
#[inline]
fn serve(size: usize, ra: usize) -> *mut u8 {
    // the mode (secure or not) must be known before sizes are computed
    crate::init::ensure();
    let p = malloc_served(size);
    if crate::ring::on() {
        crate::ring::record(crate::ring::Kind::Alloc, p, size, ra);
    }
    crate::learner::maybe_start();
    crate::background::maybe_start();
    p
}

/// Serves a `malloc` that missed the fast path.
fn malloc_served(user_size: usize) -> *mut u8 {
    let size = crate::secure::request(user_size);
    if size > crate::budget::slab_max() {
        return large_alloc(user_size, PAGE_SIZE, false);
    }
    let class = class_of(size);
    let p = with_heap(|h| {
        if size <= TINY_MAX {
            h.alloc_class(class)
        } else {
            match h.bins[class].pop() {
                Some(p) => p,
                None => h.alloc_mid_wmax(class, size),
            }
        }
    })
    .unwrap_or(ptr::null_mut());
    if p.is_null() {
        set_errno(libc::ENOMEM);
    } else if crate::secure::on() {
        // (a mid request may be served a block of a larger class: W_MAX)
        let class = if size <= TINY_MAX {
            class
        } else {
            PAGE_MAP.get(p as usize).class() as usize
        };
        // SAFETY: a block of this class being handed out.
        unsafe { crate::secure::on_alloc(p, class_size(class)) };
    }
    p
}

/// `free`. Null is ignored; `errno` is preserved; a pointer hakmem did not
/// hand out, an interior pointer or a block that is free already is
/// reported (and by default the process aborts).
///
/// # Safety
/// `p` must be null or a live block from this allocator that the caller
/// gives up.
#[inline(always)]
pub unsafe fn free(p: *mut u8) {
    let Some(e) = PAGE_MAP.lookup(p as usize) else {
        // SAFETY: forwarded contract.
        return unsafe { free_slow(p, Entry::NONE) };
    };
    let heap = tls::heap();
    // SAFETY: `heap` is this thread's heap or the placeholder; its key and
    // mark are immutable while the thread lives.
    let (key, mark) = unsafe { ((*heap).key, (*heap).mark) };
    let off = e.0 as usize ^ key;
    if off < Entry::KEY_HIT as usize {
        // The slot is in a live superslab owned by this thread and `off` is
        // its class's bin offset.
        // SAFETY: `off` is a bin offset of our heap.
        let bin = unsafe { Heap::bin_at(heap, off) };
        // Only the start of a block (told apart by its offset in the slot)
        // whose free mark is not set may go in the bin.
        // SAFETY: a valid bin.
        let at_start = unsafe { Bin::block_start_raw(bin, (p as usize & 0xFFFF) as u64) };
        // SAFETY: (evaluated only at a block start) the pointer lies in a slab
        // slot of ours with at least 16 readable bytes.
        if at_start && unsafe { (*p.cast::<Block>()).mark.load() } != mark {
            // SAFETY: our bin and our block, which it takes if it has room.
            if unsafe { Bin::try_push_raw(bin, p, mark) } {
                return;
            }
        }
    }
    // SAFETY: forwarded contract.
    unsafe { free_slow(p, e) }
}

/// The slow path of `free` for the hand-written C `free` of
/// `hakmem-preload` when it misses before its page-map lookup (an address
/// beyond the 47-bit map).
///
/// # Safety
/// As for [`free`].
#[cold]
#[inline(never)]
pub unsafe fn free_slow_path(p: *mut u8, ra: usize) {
    let heap = tls::heap();
    let e = PAGE_MAP.get(p as usize);
    // SAFETY: forwarded contract; `heap` is this thread's heap or the
    // placeholder, whose key is immutable while the thread lives.
    unsafe { free_keyed(p, e.0 as usize ^ (*heap).key, heap, ra) }
}

/// The slow path of the compiled `free` (`hakmem::free`), with the entry
/// it looked up.
///
/// # Safety
/// As for [`free`]; `e` is `p`'s page-map entry.
#[cold]
#[inline(never)]
unsafe fn free_slow(p: *mut u8, e: Entry) {
    let heap = tls::heap();
    // SAFETY: forwarded contract; `heap` is this thread's heap or the
    // placeholder, whose key is immutable while the thread lives.
    unsafe { free_keyed(p, e.0 as usize ^ (*heap).key, heap, 0) }
}

/// [`free_keyed`] for the hand-written C `free` of `hakmem-preload`, which
/// hands over the heap pointer it read from the thread slot.
///
/// # Safety
/// As for [`free`]; `heap` is what [`tls::heap`] returns on this thread,
/// and `x` is `p`'s page-map entry XOR that heap's key.
#[inline(always)]
pub unsafe fn free_after_lookup(p: *mut u8, x: usize, heap: *mut u8, ra: usize) {
    // SAFETY: forwarded contract (`heap` is the thread's heap pointer).
    unsafe { free_keyed(p, x, heap.cast(), ra) }
}

/// `free` after the fast path missed, given what it looked up: `heap` is
/// the thread's heap (or the placeholder) and `x` is `p`'s page-map entry
/// XOR `heap`'s key. This is the entry of the hand-written C `free` of
/// `hakmem-preload` once it has made its lookup.
///
/// Its common case is a cross-thread free: a small block of another heap's
/// superslab, freed by a thread that has a heap of its own, with neither
/// secure mode nor a recording heap to serve. That goes to the thread's
/// batches (`Heap::free_remote`) after the checks `locate_entry` makes: a
/// live superslab slot (`x` says whose: not ours) with a class, a block
/// start (the thread's own bin for that class carries the fast path's test:
/// exact for blocks that never straddle a slot, always failing for bigger
/// ones and for classes without a bin); the free mark is swapped
/// atomically, so a double free, racing or not, is caught. Anything else
/// (or any doubt: a big block) goes to
/// [`free_general`], which validates and reports.
///
/// # Safety
/// As for [`free`]; `heap` is [`tls::heap`] and `x` as above.
#[inline(always)]
unsafe fn free_keyed(p: *mut u8, x: usize, heap: *mut Heap, ra: usize) {
    if x < Entry::KEY_HIT as usize {
        if crate::secure::checked() {
            // SAFETY: forwarded contract; `x` is a slot of ours.
            return unsafe { free_checked_fast(p, x, heap, ra) };
        }
        // a slot of ours: the fast path refused it (its bin is full, or no
        // block start, or free already)
        if x < crate::secure::TINY_BIN_BYTES && !crate::profile::on() {
            // SAFETY: forwarded contract; `x` is a tiny bin offset of the
            // thread's own heap.
            if unsafe { free_to_full_bin(p, x, heap) } {
                return;
            }
        }
        // SAFETY: `heap` is this thread's heap or the placeholder; its key
        // is immutable while the thread lives.
        let e = Entry((x ^ unsafe { (*heap).key }) as u32);
        // SAFETY: forwarded contract; `e` is `p`'s entry.
        return unsafe { free_general(p, e, ra) };
    }
    // SAFETY: forwarded contract; `x` is not a slot of ours.
    unsafe { free_not_ours(p, x, heap, ra) }
}

/// `free` of a tiny block of the thread's own heap that the fast path
/// refused only because its bin is full (the most common refusal: a
/// program freeing more than its bins hold): the fast path's own tests
/// again (a block start by the bin's test, its free mark not set, no room),
/// then [`Heap::free_local`], which spills half the bin and pushes the
/// block, without [`free_general`]'s full validation (which finds nothing
/// more for such a block: its slot is a live slab slot of ours). Returns
/// false, having done nothing, for anything else: that goes to
/// [`free_general`], which validates and reports.
///
/// # Safety
/// As for [`free_keyed`], and `x` is below
/// [`crate::secure::TINY_BIN_BYTES`]: the bin offset of a tiny class in
/// `heap`, the thread's own heap (the placeholder's key matches no entry).
#[inline(never)]
unsafe fn free_to_full_bin(p: *mut u8, x: usize, heap: *mut Heap) -> bool {
    // SAFETY: `x` is a bin offset of our heap (caller's contract).
    let bin = unsafe { Heap::bin_at(heap, x) };
    let off = (p as usize & (SLOT_SIZE - 1)) as u64;
    // SAFETY: a bin of our own heap, which only this thread touches.
    if !unsafe { Bin::block_start_raw(bin, off) } || unsafe { (*bin).room() } > 0 {
        return false;
    }
    // SAFETY: `heap` is this thread's own heap; its mark is immutable while
    // the thread lives.
    let mark = unsafe { (*heap).mark };
    // SAFETY: a block start of the slot's class (the bin's test, set only
    // for classes whose blocks never straddle a slot): the pointer lies in
    // a slab slot of ours with at least 16 readable bytes.
    if unsafe { (*p.cast::<Block>()).mark.load() } == mark {
        return false; // free already: reported by the general path
    }
    // SAFETY: a live block of class `x / BIN_BYTES` (a block start in a
    // live slab of our own heap, not free), which the caller gives up.
    unsafe { (*heap).free_local(p, x / BIN_BYTES) };
    true
}

/// `free` of a block in a slot of the thread's own heap while secure mode
/// or the debug ring is on ([`crate::secure::checked`]: the bins' own
/// block tests are off, so every such `free` misses the default fast paths
/// and comes here): the checked fast path. A tiny block that passes the
/// default fast path's tests (a block start, by [`crate::secure::TINY_INFO`];
/// its free mark not set; room in its bin) is checked (secure mode: its
/// canary, then it is poisoned), recorded in the ring and pushed on the bin
/// with its free mark set. Anything else goes to [`free_general`], which
/// validates and reports.
///
/// # Safety
/// As for [`free_keyed`], and `x` is below [`Entry::KEY_HIT`] (a slot of
/// `heap`, which is then the thread's own heap, not the placeholder, whose
/// key matches no entry): `x` is the bin offset of the slot's class.
#[inline(never)]
unsafe fn free_checked_fast(p: *mut u8, x: usize, heap: *mut Heap, ra: usize) {
    if x < crate::secure::TINY_BIN_BYTES {
        let info = crate::secure::tiny_info_of(x);
        let off = (p as usize & (SLOT_SIZE - 1)) as u64;
        if info.mul.wrapping_mul(off) < info.limit {
            // SAFETY: `heap` is this thread's own heap; its mark is
            // immutable while the thread lives.
            let mark = unsafe { (*heap).mark };
            // SAFETY: a block start of the slot's class: the pointer lies
            // in a slab slot of ours with at least 16 readable bytes.
            let not_free = unsafe { (*p.cast::<Block>()).mark.load() } != mark;
            // SAFETY: `x` is a bin offset of our heap (caller's contract).
            let bin = unsafe { Heap::bin_at(heap, x) };
            // SAFETY: the bin is our own heap's, which only this thread
            // touches.
            let room = not_free && unsafe { (*bin).room() } > 0;
            // (no recording heap: an own slot is the thread's own heap's,
            // and no thread owns a recording heap)
            if room {
                let size = info.size;
                // SAFETY: a live block of this class (a block start in a
                // live slab of ours, not free), which the caller gives up.
                if crate::secure::on() && !unsafe { crate::secure::checked_free(p, size) } {
                    // overwritten canary: reported (and the block still
                    // freed, in warn mode) by the checked path
                    // SAFETY: `heap` is this thread's own heap; its key is
                    // immutable while the thread lives.
                    let e = Entry((x ^ unsafe { (*heap).key }) as u32);
                    // SAFETY: forwarded contract; `e` is `p`'s entry.
                    return unsafe { free_general(p, e, ra) };
                }
                // SAFETY: our bin, which has room, and our block of its
                // class.
                let pushed = unsafe { Bin::try_push_raw(bin, p, mark) };
                debug_assert!(pushed);
                record_free(p, size, ra);
                return;
            }
        }
    }
    // SAFETY: `heap` is this thread's own heap; its key is immutable while
    // the thread lives.
    let e = Entry((x ^ unsafe { (*heap).key }) as u32);
    // SAFETY: forwarded contract; `e` is `p`'s entry.
    unsafe { free_general(p, e, ra) }
}

/// Records the free of `p` (a small block of `size` bytes) in the thread's
/// debug ring.
#[inline(always)]
fn record_free(p: *mut u8, size: usize, ra: usize) {
    crate::ring::record_small(crate::ring::Kind::Free, p, size, ra);
}

/// [`free_after_lookup`] for a pointer whose entry is not a slot of the
/// thread's heap (`x` is at least [`Entry::KEY_HIT`]): the miss of the C
/// `free` at its key test.
///
/// # Safety
/// As for [`free_after_lookup`].
#[inline(always)]
pub unsafe fn free_after_key_miss(p: *mut u8, x: usize, heap: *mut u8, ra: usize) {
    // SAFETY: forwarded contract.
    unsafe { free_not_ours(p, x, heap.cast(), ra) }
}

/// [`free_keyed`] when `x` is at least [`Entry::KEY_HIT`] (were it not, an
/// own block would be batched as a remote free into its own slab: slower,
/// still correct).
///
/// # Safety
/// As for [`free_keyed`].
#[inline(always)]
unsafe fn free_not_ours(p: *mut u8, x: usize, heap: *mut Heap, ra: usize) {
    // SAFETY: `heap` is this thread's heap or the placeholder; its key is
    // immutable while the thread lives.
    let e = Entry((x ^ unsafe { (*heap).key }) as u32);
    // a slot of some heap's superslab (tag >= FIRST_TAG, not large), or an
    // orphan's
    const LO: u32 = Entry::FIRST_TAG << 13;
    let live = e.0.wrapping_sub(LO) < Entry::LARGE_BIT - LO || e.tag() == Entry::ORPHAN_TAG;
    if live {
        // SAFETY: the low 13 bits of an entry are its class's bin offset
        // (`class * 32`, any class byte has a bin), a bin of our heap or of
        // the placeholder.
        let bin = unsafe { Heap::bin_at(heap, e.0 as usize & (Entry::KEY_HIT as usize - 1)) };
        // SAFETY: a valid bin.
        let mut start = unsafe { Bin::block_start_raw(bin, (p as usize & (SLOT_SIZE - 1)) as u64) };
        if start {
            let special = crate::secure::special();
            if special != 0 {
                match diverted(special) {
                    Divert::Batch => {}
                    Divert::Check => start = false,
                    // SAFETY: forwarded contract; `e` is `p`'s entry.
                    Divert::Profile => return unsafe { free_profiled(p, e, ra) },
                }
            }
        }
        if start && !crate::sites::is_recording_tag(e.tag()) {
            debug_assert!(heap != PLACEHOLDER.get());
            // the class byte (bits 5-12), as the bin offset's multiple
            let class = (e.0 as usize & (Entry::KEY_HIT as usize - 1)) / BIN_BYTES;
            debug_assert_eq!(class, e.class() as usize);
            // SAFETY: the heap is this thread's own, not the placeholder:
            // the placeholder's bins are `Bin::DISABLED`, whose block test
            // (limit 0) refuses every offset, and it is never written
            // (`placeholder_bins_refuse_every_block` checks it). `p` is a
            // block start of `class` (its bin's test passed, which no class
            // without a slab passes) in a live superslab slot of another
            // heap or the orphanage, which the caller gives up.
            if !unsafe { (*heap).free_remote(p, class) } {
                remote_double_free(p, class);
            }
            return;
        }
    }
    // SAFETY: forwarded contract; `e` is `p`'s entry.
    unsafe { free_general(p, e, ra) }
}

/// What a cross-thread free does while [`crate::secure::special`] is set.
enum Divert {
    /// The batched short cut, as usual.
    Batch,
    /// [`free_general`]: secure mode checks it, the debug ring records it.
    Check,
    /// Timed by the profiler (one in 2^shift); the others keep the short
    /// cut, so that profiling does not change what it measures.
    Profile,
}

/// What a cross-thread free does, given [`crate::secure::special`]'s bits
/// (not 0).
#[inline(always)]
fn diverted(special: u8) -> Divert {
    if special & crate::secure::CHECK != 0 {
        Divert::Check
    } else if crate::prof::sampled() {
        Divert::Profile
    } else {
        Divert::Batch
    }
}

/// A remote free found the block free already (maybe freed by another
/// thread at the same time).
#[cold]
#[inline(never)]
fn remote_double_free(p: *mut u8, class: usize) {
    misuse(Misuse::DoubleFree, "free", p, class_size(class));
}

/// Every free the fast path and [`free_keyed`]'s remote case did not take:
/// validates `p`, reports misuse, and frees large blocks, own blocks whose
/// bin is full, and remote frees in secure mode, of recording heaps or from
/// threads without a heap.
///
/// # Safety
/// As for [`free`]; `e` is `p`'s page-map entry.
#[cold]
#[inline(never)]
unsafe fn free_general(p: *mut u8, e: Entry, ra: usize) {
    if crate::profile::on() && crate::prof::sampled() {
        // SAFETY: forwarded contract; `e` is `p`'s entry.
        return unsafe { free_profiled(p, e, ra) };
    }
    // SAFETY: forwarded contract; `e` is `p`'s entry.
    unsafe { free_checked(p, e, ra) }
}

/// A `free` the profiler times (`HAKMEM_PROF`): [`free_checked`], put in a
/// category (spill, remote free, large free) by `prof::after_free`.
///
/// # Safety
/// As for [`free_general`].
#[cold]
unsafe fn free_profiled(p: *mut u8, e: Entry, ra: usize) {
    let class = if e.is_large() {
        None
    } else {
        Some(e.class() as usize)
    };
    // SAFETY: the slot's heap is ours or the placeholder, both live.
    let remote = class.is_some() && e.tag() != unsafe { (*tls::heap()).tag };
    let before = crate::prof::before();
    let t = crate::profile::now_ns();
    // SAFETY: forwarded contract; `e` is `p`'s entry.
    unsafe { free_checked(p, e, ra) };
    let ns = crate::profile::now_ns().saturating_sub(t).max(1);
    crate::prof::after_free(class, remote, before, ns);
}

/// [`free_general`]'s work: validate, report, free.
///
/// # Safety
/// As for [`free_general`].
unsafe fn free_checked(p: *mut u8, e: Entry, ra: usize) {
    if p.is_null() {
        return;
    }
    let class = match locate_entry("free", p, e) {
        Located::Large(h) => {
            let _errno = ErrnoGuard::new();
            // SAFETY: `h` is the header of the live large block `p`.
            unsafe { crate::secure::check_large(h, p, "free") };
            if crate::ring::on() {
                crate::ring::record(
                    crate::ring::Kind::Free,
                    p,
                    crate::secure::large_usable(h),
                    ra,
                );
            }
            crate::sites::on_free_large(h);
            LARGE_STATS.frees.add(1);
            LARGE_STATS.bytes_live.sub(h.map_len() as u64);
            // SAFETY: a live large block the caller gives up.
            unsafe { LARGE.free(&PAGE_MAP, h, &cache_limits(POLICY.load())) };
            crate::large::check_large();
            decay_tick();
            return;
        }
        Located::Small(c) => c,
        Located::Bad => return,
    };
    if crate::sites::is_recording_tag(e.tag()) {
        // SAFETY: a live block of a recording heap (validated above).
        unsafe { crate::sites::on_free_small(p, class_size(class), e.tag()) };
    } else if crate::secure::on() {
        // SAFETY: a live block of this class (validated above).
        unsafe { crate::secure::on_free(p, class_size(class)) };
    }
    // (after the secure checks: an overflow report shows the block's past,
    // not this free)
    if crate::ring::on() {
        crate::ring::record(crate::ring::Kind::Free, p, class_size(class), ra);
    }
    let heap = tls::heap();
    // SAFETY: the slot's heap is ours (or the placeholder, never written).
    if e.tag() == unsafe { (*heap).tag } {
        // SAFETY: our own heap; a live block of ours.
        unsafe { (*heap).free_local(p, class) };
    } else if heap != PLACEHOLDER.get() {
        // Batched per destination slab in our own heap (flushed on its slow
        // paths and at thread exit).
        // SAFETY: the slot's heap is this thread's own; `p` is a live block
        // of `class` in a live superslab (validated above) that the caller
        // gives up.
        if !unsafe { (*heap).free_remote(p, class) } {
            // freed already (maybe by another thread at the same time)
            misuse(Misuse::DoubleFree, "free", p, class_size(class));
        }
    } else {
        // SAFETY: the slot is in a live superslab holding this block.
        if !unsafe { remote_free(&*Superslab::of(p), p, free_mark()) } {
            // another thread freed it at the same time
            misuse(Misuse::DoubleFree, "free", p, class_size(class));
        }
    }
}

/// `size` bytes aligned to `align` (any power of two); null with `ENOMEM`
/// on failure. The caller validates `align`.
pub fn aligned_alloc(align: usize, size: usize) -> *mut u8 {
    debug_assert!(align.is_power_of_two());
    crate::init::ensure();
    if align <= MIN_ALIGN {
        return malloc(if align == MIN_ALIGN {
            size.max(MIN_ALIGN)
        } else {
            size
        });
    }
    if align <= SLOT_SIZE {
        if let Some(class) = class_for_aligned(crate::secure::request(size), align) {
            let p = with_heap(|h| h.alloc_class(class)).unwrap_or(ptr::null_mut());
            if p.is_null() {
                set_errno(libc::ENOMEM);
            } else if crate::secure::on() {
                // SAFETY: a block of this class being handed out.
                unsafe { crate::secure::on_alloc(p, class_size(class)) };
            }
            if crate::ring::on() {
                crate::ring::record(crate::ring::Kind::Alloc, p, size, 0);
            }
            return p;
        }
    }
    large_alloc(size, align, false)
}

/// `size` zeroed bytes aligned to `align`.
pub fn zeroed_alloc(size: usize, align: usize) -> *mut u8 {
    if size > SLAB_MAX {
        return large_alloc(size, align.max(PAGE_SIZE), true);
    }
    let p = aligned_alloc(align, size);
    if !p.is_null() {
        let timed = crate::profile::on() && crate::prof::sampled();
        let t = if timed { crate::profile::now_ns() } else { 0 };
        // SAFETY: the block has at least `size` bytes.
        unsafe { ptr::write_bytes(p, 0, size) };
        if timed {
            let ns = crate::profile::now_ns().saturating_sub(t).max(1);
            crate::profile::record(Cat::CallocZero, ns, crate::profile::weight());
        }
    }
    p
}

/// `calloc`: overflow of `n * size` gives null with `ENOMEM`.
pub fn calloc(n: usize, size: usize) -> *mut u8 {
    match n.checked_mul(size) {
        Some(total) => zeroed_alloc(total, MIN_ALIGN),
        None => {
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

/// Usable size of a live block (0 for null).
///
/// # Safety
/// `p` must be null or a live block from this allocator.
pub unsafe fn usable_size(p: *const u8) -> usize {
    if p.is_null() {
        return 0;
    }
    match locate("malloc_usable_size", p) {
        Located::Small(c) => small_usable(p, c),
        Located::Large(h) => crate::secure::large_usable(h),
        Located::Bad => 0,
    }
}

/// `realloc` with C semantics: null `p` is `malloc`; size 0 frees and
/// returns null (as glibc does); failure returns null with `ENOMEM` and
/// leaves the block untouched. The result keeps `MIN_ALIGN` alignment; use
/// [`realloc_aligned`] for more.
///
/// # Safety
/// `p` must be null or a live block from this allocator; on success the
/// caller must use the returned pointer instead.
pub unsafe fn realloc(p: *mut u8, size: usize) -> *mut u8 {
    // SAFETY: forwarded contract.
    unsafe { realloc_aligned(p, size, MIN_ALIGN) }
}

/// [`realloc`] keeping an alignment of `align` (a power of two).
///
/// # Safety
/// As for [`realloc`], and the block must have been allocated with at least
/// `align` alignment.
pub unsafe fn realloc_aligned(p: *mut u8, size: usize, align: usize) -> *mut u8 {
    if crate::profile::on() && crate::prof::sampled() {
        let t = crate::profile::now_ns();
        // SAFETY: forwarded contract.
        let (q, cat) = unsafe { realloc_inner(p, size, align) };
        if let Some(cat) = cat {
            let ns = crate::profile::now_ns().saturating_sub(t).max(1);
            crate::profile::record(cat, ns, crate::profile::weight());
        }
        return q;
    }
    // SAFETY: forwarded contract.
    unsafe { realloc_inner(p, size, align).0 }
}

/// [`realloc_aligned`], and what it did for the profiler: in place, moved,
/// or neither (a `malloc`, a `free`, or a failure).
///
/// # Safety
/// As for [`realloc_aligned`].
#[inline(always)]
unsafe fn realloc_inner(p: *mut u8, size: usize, align: usize) -> (*mut u8, Option<Cat>) {
    let in_place = Some(Cat::ReallocInPlace);
    if p.is_null() {
        return (aligned_alloc(align, size), None);
    }
    if size == 0 {
        // SAFETY: forwarded.
        unsafe { free(p) };
        return (ptr::null_mut(), None);
    }
    let usable = match locate("realloc", p) {
        Located::Small(c) => {
            let us = small_usable(p, c);
            // In place when the new size maps to the same class, or shrinks
            // by less than half.
            let same_class = size <= SLAB_MAX && class_of(crate::secure::request(size)) == c;
            if size <= us && (size * 2 > us || same_class) {
                return (p, in_place);
            }
            us
        }
        Located::Large(h) => {
            // SAFETY: `h` is the header of the live large block `p`.
            unsafe { crate::secure::check_large(h, p, "realloc") };
            let us = crate::secure::large_usable(h);
            // Stay in place while the block is at most half empty; otherwise
            // a large block is resized (its tail unmapped, or its pages moved
            // by the kernel: no copy), a small request moves to a slab.
            if size <= us && size * 2 > us {
                if crate::secure::large_size(h).is_some() {
                    // SAFETY: our live block, of at least `us + 8` bytes.
                    unsafe { crate::large::set_large_canary(p, size) };
                }
                return (p, in_place);
            }
            // (a size no mapping can hold skips the mremap attempt: the
            // allocation below fails before any system call)
            if size > SLAB_MAX && h.alignment() >= align && !beyond_any_mapping(size, align) {
                let old_len = h.map_len();
                let thp = POLICY.load().thp_threshold;
                let canary = crate::secure::large_size(h).is_some();
                let want = if canary {
                    crate::secure::large_request(size)
                } else {
                    size
                };
                // SAFETY: our live block; on success the old pointer is dead.
                if let Some((q, new_len)) = unsafe { LARGE.resize(&PAGE_MAP, h, want, thp) } {
                    LARGE_STATS.resizes.add(1);
                    LARGE_STATS.bytes_live.add(new_len as u64);
                    LARGE_STATS.bytes_live.sub(old_len as u64);
                    if canary {
                        // SAFETY: our live block, of at least `size + 8`
                        // bytes.
                        unsafe { crate::large::set_large_canary(q.as_ptr(), size) };
                    }
                    return (q.as_ptr(), in_place);
                }
                // refused, though it may have grown over cached pieces
                let now_len = h.map_len();
                LARGE_STATS.bytes_live.add(now_len as u64);
                LARGE_STATS.bytes_live.sub(old_len as u64);
            }
            us
        }
        Located::Bad => {
            set_errno(libc::EINVAL);
            return (ptr::null_mut(), None);
        }
    };
    let q = if size > usable && crate::secure::request(size) > SLAB_MAX {
        // growing into the large tier: a mapping that can keep growing
        realloc_grow_large(size, align)
    } else {
        aligned_alloc(align, size)
    };
    if q.is_null() {
        return (q, None);
    }
    // SAFETY: both blocks are live and distinct; we copy what fits in both.
    unsafe {
        ptr::copy_nonoverlapping(p, q, usable.min(size));
        free(p);
    }
    (q, Some(Cat::ReallocMove))
}

/// The new block of a `realloc` that grows a block into the large tier
/// (what `aligned_alloc(align, size)` gives, with a mapping that ends on a
/// huge-page boundary: see `Large::alloc_growing`).
#[cold]
fn realloc_grow_large(size: usize, align: usize) -> *mut u8 {
    let p = crate::large::large_alloc_growing(size, align);
    if crate::ring::on() {
        crate::ring::record(crate::ring::Kind::Alloc, p, size, 0);
    }
    p
}

/// Turns site-aware placement on or off (`HAKMEM_SITE_PLACEMENT`, default
/// on). Off, every recorded allocation shares the default lane's heaps.
pub fn set_site_placement(on: bool) {
    // start-up applies the option: it must not undo this call later
    crate::init::ensure();
    crate::sites::set_placement(on);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The remote case of [`free_not_ours`] takes no separate placeholder
    /// test: it relies on the placeholder's bins refusing every offset.
    #[test]
    fn placeholder_bins_refuse_every_block() {
        let heap = PLACEHOLDER.get();
        for class in 0..=usize::from(u8::MAX) {
            // SAFETY: a bin offset of the placeholder heap.
            let bin = unsafe { Heap::bin_at(heap, class * BIN_BYTES) };
            for off in (0..SLOT_SIZE as u64).step_by(8) {
                // SAFETY: a valid bin of the placeholder.
                let start = unsafe { Bin::block_start_raw(bin, off) };
                assert!(!start, "class {class} offset {off}");
            }
        }
    }
}
