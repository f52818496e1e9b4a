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

use crate::classes::{class_for_aligned, class_of, class_size, SLAB_MAX, TINY_BIN_OFFSET};
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
    if unsafe { (*p.cast::<Block>()).mark } == free_mark() {
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
    crate::init::free_mark()
}

/// `malloc`: `size` bytes, aligned to 16; null with `errno = ENOMEM` on
/// failure. `malloc(0)` returns a unique pointer.
#[inline(always)]
pub fn malloc(size: usize) -> *mut u8 {
    // The limit is TINY_MAX, or 0 while every call must reach the slow path
    // (call-site sampling, the learner's observation slices): a memory
    // operand instead of an immediate, the same instruction count.
    malloc_below(
        size,
        crate::sites::TINY_LIMIT.load(core::sync::atomic::Ordering::Relaxed),
    )
}

/// `malloc` with its fast path always on (for a caller that already did
/// what the slow path would: call-site sampling's unsampled calls).
#[inline(always)]
pub(crate) fn malloc_unsampled(size: usize) -> *mut u8 {
    malloc_below(size, TINY_MAX)
}

#[inline(always)]
fn malloc_below(size: usize, limit: usize) -> *mut u8 {
    pop_or(size, limit, malloc_slow)
}

/// The fast path: pop the bin of `size` if it is at most `limit` (never
/// above `TINY_MAX`) and the bin has a block, else `slow(size)`.
#[inline(always)]
fn pop_or(size: usize, limit: usize, slow: fn(usize) -> *mut u8) -> *mut u8 {
    if size <= limit {
        let heap = tls::heap();
        // SAFETY: the index is at most TINY_MAX (`limit` never exceeds it).
        let off = unsafe { *TINY_BIN_OFFSET.get_unchecked(size) } as usize;
        // SAFETY: `heap` is this thread's heap or the placeholder; `off` is
        // a bin offset.
        let p = unsafe { Bin::pop_raw(Heap::bin_at(heap, off)) };
        if !p.is_null() {
            return p;
        }
    }
    slow(size)
}

#[cold]
#[inline(never)]
fn malloc_slow(user_size: usize) -> *mut u8 {
    if crate::learner::observing() {
        return crate::learner::observed_malloc(user_size);
    }
    malloc_slow_uncounted(user_size)
}

/// `malloc` for a call the learner has counted already (or must not
/// count): the fast path, and a slow path that does not count.
#[inline(always)]
pub(crate) fn malloc_uncounted(size: usize) -> *mut u8 {
    pop_or(size, TINY_MAX, malloc_slow_uncounted)
}

/// The slow path of `malloc`, without the learner's counting.
#[cold]
#[inline(never)]
pub(crate) fn malloc_slow_uncounted(user_size: usize) -> *mut u8 {
    // the mode (secure or not) must be known before sizes are computed
    crate::init::ensure();
    let p = malloc_served(user_size);
    crate::learner::maybe_start();
    p
}

/// Serves a `malloc` that missed the fast path.
pub(crate) fn malloc_served(user_size: usize) -> *mut u8 {
    let size = crate::secure::request(user_size);
    if size > SLAB_MAX {
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
        if at_start && unsafe { (*p.cast::<Block>()).mark } != mark {
            // SAFETY: our bin and our block, which it takes if it has room.
            if unsafe { Bin::try_push_raw(bin, p, mark) } {
                return;
            }
        }
    }
    // SAFETY: forwarded contract.
    unsafe { free_slow(p, e) }
}

#[cold]
#[inline(never)]
unsafe fn free_slow(p: *mut u8, e: Entry) {
    if p.is_null() {
        return;
    }
    let class = match locate_entry("free", p, e) {
        Located::Large(h) => {
            let _errno = ErrnoGuard::new();
            crate::sites::on_free_large(h);
            LARGE_STATS.frees.add(1);
            LARGE_STATS.bytes_live.sub(h.map_len() as u64);
            // SAFETY: a live large block the caller gives up.
            unsafe { LARGE.free(&PAGE_MAP, h, &cache_limits(POLICY.load())) };
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
    let heap = tls::heap();
    // SAFETY: the slot's heap is ours (or the placeholder, never written).
    if e.tag() == unsafe { (*heap).tag } {
        // SAFETY: our own heap; a live block of ours.
        unsafe { (*heap).free_local(p, class) };
    } else {
        // SAFETY: the slot is in a live superslab holding this block.
        if !unsafe { remote_free(&*Superslab::of(p), p, free_mark()) } {
            // another thread freed it at the same time
            misuse(Misuse::DoubleFree, "free", p, class_size(class));
            return;
        }
        if heap != PLACEHOLDER.get() {
            // SAFETY: our own heap's counters.
            unsafe { (*heap).stats.classes[class].remote_frees.inc() };
        }
    }
}

/// Decay on the large paths: the shared caches, and the calling thread's
/// idle slots if it has a heap (small-block paths do this on refills).
fn decay_tick() {
    crate::state::decay_tick();
    let heap = tls::heap();
    if heap != PLACEHOLDER.get() {
        // SAFETY: the thread's own heap.
        unsafe { (*heap).maintain(false) };
    }
}

pub(crate) fn large_alloc(size: usize, align: usize, zero: bool) -> *mut u8 {
    if size > isize::MAX as usize {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    }
    decay_tick();
    let policy = POLICY.load();
    let try_alloc = || {
        LARGE.alloc(
            &PAGE_MAP,
            size,
            align,
            &cache_limits(policy),
            policy.thp_threshold,
        )
    };
    // The OS said no: give back what the caches hold (address space may be
    // what ran out) and retry once.
    let got = try_alloc().or_else(|| collect().then(try_alloc).flatten());
    match got {
        Some(a) => {
            LARGE_STATS.allocs.add(1);
            LARGE_STATS.bytes_live.add(a.map_len as u64);
            if zero && !a.zeroed {
                // SAFETY: the block has at least `size` bytes.
                unsafe { ptr::write_bytes(a.ptr.as_ptr(), 0, size) };
            }
            a.ptr.as_ptr()
        }
        None => {
            set_errno(libc::ENOMEM);
            ptr::null_mut()
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
        // SAFETY: the block has at least `size` bytes.
        unsafe { ptr::write_bytes(p, 0, size) };
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
        Located::Large(h) => h.usable(),
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
    if p.is_null() {
        return aligned_alloc(align, size);
    }
    if size == 0 {
        // SAFETY: forwarded.
        unsafe { free(p) };
        return ptr::null_mut();
    }
    let usable = match locate("realloc", p) {
        Located::Small(c) => {
            let us = small_usable(p, c);
            // In place when the new size maps to the same class, or shrinks
            // by less than half.
            let same_class = size <= SLAB_MAX && class_of(crate::secure::request(size)) == c;
            if size <= us && (size * 2 > us || same_class) {
                return p;
            }
            us
        }
        Located::Large(h) => {
            let us = h.usable();
            // Stay in place while the block is at most half empty; otherwise
            // a large block is resized (its tail unmapped, or its pages moved
            // by the kernel: no copy), a small request moves to a slab.
            if size <= us && size * 2 > us {
                return p;
            }
            if size > SLAB_MAX && h.alignment() >= align {
                let old_len = h.map_len();
                let thp = POLICY.load().thp_threshold;
                // SAFETY: our live block; on success the old pointer is dead.
                if let Some((q, new_len)) = unsafe { LARGE.resize(&PAGE_MAP, h, size, thp) } {
                    LARGE_STATS.resizes.add(1);
                    LARGE_STATS.bytes_live.add(new_len as u64);
                    LARGE_STATS.bytes_live.sub(old_len as u64);
                    return q.as_ptr();
                }
            }
            us
        }
        Located::Bad => {
            set_errno(libc::EINVAL);
            return ptr::null_mut();
        }
    };
    let q = aligned_alloc(align, size);
    if q.is_null() {
        return q;
    }
    // SAFETY: both blocks are live and distinct; we copy what fits in both.
    unsafe {
        ptr::copy_nonoverlapping(p, q, usable.min(size));
        free(p);
    }
    q
}

/// Returns what hakmem can to the OS now: the calling thread's cached
/// blocks, its empty superslabs, the pool and the large cache. (Without it,
/// cached memory is returned by decay as the allocator keeps being used.)
/// Returns true if anything was released.
pub fn collect() -> bool {
    let before = crate::stats::released_counter();
    let _errno = ErrnoGuard::new();
    let _ = crate::thread::with_own_heap(|h| h.collect());
    crate::state::POOL.trim(&PAGE_MAP);
    LARGE.trim(&PAGE_MAP, &cache_limits(POLICY.load()));
    crate::stats::released_counter() != before
}
