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
use hakmem_tiny_sll::{Bin, TINY_MAX};

use crate::classes::{class_for_aligned, class_of, class_size, SLAB_MAX, TINY_BIN_OFFSET};
use crate::heap::{Heap, PLACEHOLDER};
use crate::report::invalid_pointer;
use crate::state::{cache_limits, Os, LARGE, LARGE_STATS, PAGE_MAP, POLICY};
use crate::thread::with_heap;
use crate::tls;

/// The alignment every `malloc` result has (for sizes above 8 bytes).
pub const MIN_ALIGN: usize = 16;

/// What a pointer handed to `free`/`realloc`/`malloc_usable_size` is.
enum Located {
    /// A superslab block of this class.
    Small(usize),
    /// A large block.
    Large(&'static LargeHeader),
}

/// Classifies `p` (non-null), or reports it as invalid on behalf of `op`.
fn locate(op: &str, p: *const u8) -> Located {
    locate_entry(op, p, PAGE_MAP.get(p as usize))
}

fn locate_entry(op: &str, p: *const u8, e: Entry) -> Located {
    if e.is_large() {
        return match Large::<Os>::lookup(e, p) {
            Some(h) => Located::Large(h),
            None => invalid_pointer(op, p, "not the start of a live large block"),
        };
    }
    if !e.is_live_superslab() {
        invalid_pointer(op, p, "not allocated by hakmem");
    }
    // SAFETY: the page map says the chunk is a live superslab.
    let ss = unsafe { &*Superslab::of(p) };
    let class = e.class();
    if class == NO_CLASS {
        invalid_pointer(op, p, "points into unused superslab space");
    }
    if !ss.is_block_start(p, class_size(class as usize)) {
        invalid_pointer(op, p, "interior pointer (not the start of a block)");
    }
    Located::Small(class as usize)
}

/// `malloc`: `size` bytes, aligned to 16 (8 for sizes ≤ 8); null with
/// `errno = ENOMEM` on failure. `malloc(0)` returns a unique pointer.
#[inline(always)]
pub fn malloc(size: usize) -> *mut u8 {
    if size <= TINY_MAX {
        let heap = tls::heap();
        // SAFETY: the index is at most TINY_MAX / 8.
        let off = unsafe { *TINY_BIN_OFFSET.get_unchecked((size + 7) >> 3) } as usize;
        // SAFETY: `heap` is this thread's heap or the placeholder; `off` is
        // a bin offset.
        let p = unsafe { Bin::pop_raw(Heap::bin_at(heap, off)) };
        if !p.is_null() {
            return p;
        }
    }
    malloc_slow(size)
}

#[cold]
#[inline(never)]
fn malloc_slow(size: usize) -> *mut u8 {
    if size > SLAB_MAX {
        return large_alloc(size, PAGE_SIZE, false);
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
    }
    p
}

/// `free`. Null is ignored; `errno` is preserved; a pointer hakmem did not
/// hand out is reported and the process aborts.
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
    // SAFETY: `heap` is this thread's heap or the placeholder; its key is
    // immutable while the thread lives.
    let off = e.0 as usize ^ unsafe { (*heap).key };
    if off < Entry::KEY_HIT as usize {
        // SAFETY: the slot is in a live superslab owned by this thread and
        // `off` is its class's bin offset; a full or disabled bin refuses.
        if unsafe { Bin::try_push_raw(Heap::bin_at(heap, off), p) } {
            return;
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
            LARGE_STATS.frees.add(1);
            LARGE_STATS.bytes_live.sub(h.map_len() as u64);
            // SAFETY: a live large block the caller gives up.
            unsafe { LARGE.free(&PAGE_MAP, h, &cache_limits(POLICY.load())) };
            decay_tick();
            return;
        }
        Located::Small(c) => c,
    };
    let heap = tls::heap();
    // SAFETY: the slot's heap is ours (or the placeholder, never written).
    if e.tag() == unsafe { (*heap).tag } {
        // SAFETY: our own heap.
        unsafe { (*heap).free_local(p, class) };
    } else {
        // SAFETY: the chunk is a live superslab holding this live block.
        unsafe { remote_free(&*Superslab::of(p), p) };
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

fn large_alloc(size: usize, align: usize, zero: bool) -> *mut u8 {
    if size > isize::MAX as usize {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    }
    decay_tick();
    let policy = POLICY.load();
    match LARGE.alloc(
        &PAGE_MAP,
        size,
        align,
        &cache_limits(policy),
        policy.thp_threshold,
    ) {
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
    if align <= MIN_ALIGN {
        return malloc(if align == MIN_ALIGN {
            size.max(MIN_ALIGN)
        } else {
            size
        });
    }
    if align <= SLOT_SIZE {
        if let Some(class) = class_for_aligned(size, align) {
            let p = with_heap(|h| h.alloc_class(class)).unwrap_or(ptr::null_mut());
            if p.is_null() {
                set_errno(libc::ENOMEM);
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
        Located::Small(c) => class_size(c),
        Located::Large(h) => h.usable(),
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
            let us = class_size(c);
            // In place when the new size maps to the same class, or shrinks
            // by less than half.
            if size <= us && (size * 2 > us || (size <= SLAB_MAX && class_of(size) == c)) {
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
    let _ = with_heap(|h| h.collect());
    crate::state::POOL.trim(&PAGE_MAP);
    LARGE.trim(&PAGE_MAP, &cache_limits(POLICY.load()));
    crate::stats::released_counter() != before
}
