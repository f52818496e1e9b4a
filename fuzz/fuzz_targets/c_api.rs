//! `c_api`: sequences of C allocation calls on hakmem's facade, checked
//! against a model of the live blocks.
//!
//! The input (through `arbitrary`) is a list of [`Op`]s: `malloc`, `calloc`
//! (and its overflow), `realloc` (grow, shrink, to 0, from null, to an
//! impossible size), `reallocarray` (and its overflow), `aligned_alloc`,
//! `posix_memalign` (and its `EINVAL` cases), `memalign`, `free`,
//! `malloc_usable_size`, `malloc_trim` (`collect`), and frees and
//! allocations on a short-lived second thread (remote frees, blocks of a
//! heap whose thread has exited). Sizes cover the tiny, mid and large tiers,
//! the class edges and sizes no mapping can hold (2^50 up to `SIZE_MAX`).
//! Misuse (double free, foreign pointers) is excluded: the model only frees
//! what is live.
//!
//! Checked at every step: every live block is filled with a pattern derived
//! from its id over its whole usable size (sampled for blocks over 64 KiB),
//! verified before it is freed and, up to the old size, after a realloc;
//! `calloc` memory reads zero; results are aligned and `usable_size >=
//! size`; no two live blocks overlap; an impossible request returns null
//! with `errno == ENOMEM` (or `EINVAL` for a bad alignment) and leaves the
//! block of a failed realloc intact; `free` and `usable_size` preserve
//! `errno`. Every [`CHECK_EVERY`] steps and at the end of each input,
//! `hakmem::check_now` validates the thread's whole heap, the heap registry
//! and the large tier (and, with the `check` feature this crate turns on,
//! every refill, spill and large call validates too).
//!
//! Why the facade is called directly and hakmem is *not* the
//! `#[global_allocator]`: libFuzzer, the model's `Vec`s and the `arbitrary`
//! decoding then allocate from glibc, so (1) the hakmem call sequence is
//! exactly the one the input describes, which keeps crashes reproducible and
//! minimisable, and (2) a hakmem bug cannot corrupt the model or libFuzzer's
//! own state and be reported somewhere misleading. The C adapters that live
//! in `crates/preload` (a cdylib, which cannot be linked into a Rust binary
//! without its exported `malloc` taking over libFuzzer's) are one-line
//! argument checks over the facade; [`c`] mirrors them.

#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

/// Run `hakmem::check_now` every this many steps.
const CHECK_EVERY: usize = 8;
/// At most this many live blocks, and this many live bytes (libFuzzer's
/// default RSS limit is 2 GiB).
const MAX_LIVE: usize = 512;
const MAX_LIVE_BYTES: usize = 256 << 20;
/// Blocks up to this size are filled and checked entirely; larger ones at
/// their first and last 4 KiB and the start of every page.
const FULL_FILL: usize = 64 << 10;
const PAGE: usize = 4096;
/// What errno is set to before calls that must preserve it.
const ERRNO_SENTINEL: i32 = 0x4a4b;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Size {
    /// 0..=255 bytes.
    Tiny(u8),
    /// up to 4 KiB.
    Small(u16),
    /// up to the mid tier's limit (1 MiB).
    Mid(u16),
    /// up to 64 MiB past the mid limit.
    Large(u16, u16),
    /// a class size plus or minus a little.
    Edge(u8, i8),
    /// the mid/large boundary plus or minus a little.
    SlabEdge(i16),
}

impl Size {
    fn get(self) -> usize {
        match self {
            Size::Tiny(b) => b as usize,
            Size::Small(v) => v as usize % (PAGE + 1),
            Size::Mid(v) => (v as usize * 16 + (v as usize >> 12)).min(hakmem::SLAB_MAX),
            Size::Large(pages, extra) => {
                hakmem::SLAB_MAX + (pages as usize % 16_384) * PAGE + extra as usize % PAGE
            }
            Size::Edge(class, d) => {
                let s = hakmem::class_size(class as usize % hakmem::NCLASSES) as isize;
                (s + d as isize).max(0) as usize
            }
            Size::SlabEdge(d) => (hakmem::SLAB_MAX as isize + d as isize) as usize,
        }
    }
}

/// A size no mapping can hold: 2^50 up to `SIZE_MAX`.
#[derive(Arbitrary, Debug, Clone, Copy)]
struct Impossible {
    shift: u8,
    low: u64,
}

impl Impossible {
    fn get(self) -> usize {
        let shift = 50 + self.shift as u32 % 14;
        (1usize << shift) | (self.low as usize & ((1usize << shift) - 1))
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    Malloc(Size),
    Calloc(u8, Size),
    /// `calloc(n, size)` whose product overflows.
    CallocOverflow(u32, u64),
    Realloc(u16, Size),
    ReallocFromNull(Size),
    ReallocToZero(u16),
    ReallocImpossible(u16, Impossible),
    /// `reallocarray(p, n, size)` with `n * size` in range.
    ReallocArray(u16, u8, Size),
    /// `reallocarray` whose product overflows.
    ReallocArrayOverflow(u16, u32, u64),
    /// alignment `2^(log % 23)`.
    AlignedAlloc(u8, Size),
    /// alignment `2^(log % 23)`.
    PosixMemalign(u8, Size),
    /// an alignment `posix_memalign` must refuse with `EINVAL`.
    PosixMemalignBad(u16, Size),
    /// any alignment up to 2^16 (rounded up to a power of two).
    Memalign(u16, Size),
    /// `entry` picks the entry point.
    Impossible(u8, Impossible),
    /// an alignment no mapping can honour.
    ImpossibleAlign(u8, Size),
    Free(u16),
    FreeNull,
    UsableSize(u16),
    Collect,
    /// free this block on a new thread (a remote free).
    FreeOnThread(u16),
    /// allocate on a new thread that then exits (its heap is given back
    /// with this block live in it).
    AllocOnThread(Size),
}

#[derive(Debug, Clone, Copy)]
struct Block {
    addr: usize,
    size: usize,
    align: usize,
    id: u64,
    /// bytes filled with the pattern (the usable size for small blocks,
    /// `size` for sampled ones)
    filled: usize,
}

struct Model {
    blocks: Vec<Block>,
    /// start -> end of every live block
    ranges: BTreeMap<usize, usize>,
    live_bytes: usize,
    next_id: u64,
}

fn errno() -> i32 {
    // SAFETY: errno is thread-local and always readable.
    unsafe { *libc::__errno_location() }
}

fn set_errno(v: i32) {
    // SAFETY: errno is thread-local and always writable.
    unsafe { *libc::__errno_location() = v }
}

fn seed(id: u64) -> u64 {
    let mut z = id.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[inline]
fn pattern(seed: u64, i: usize) -> u8 {
    (seed >> ((i & 7) * 8)) as u8 ^ (i >> 3) as u8
}

/// The byte ranges a fill of `len` bytes covers.
fn fill_ranges(len: usize, mut f: impl FnMut(core::ops::Range<usize>)) {
    if len <= FULL_FILL {
        f(0..len);
        return;
    }
    f(0..PAGE);
    let mut at = PAGE;
    while at + PAGE < len {
        f(at..at + 8);
        at += PAGE;
    }
    f(len - PAGE..len);
}

fn fill(addr: usize, len: usize, id: u64) {
    let s = seed(id);
    fill_ranges(len, |r| {
        for i in r {
            // SAFETY: `i < len`, inside a live block we own.
            unsafe { *((addr + i) as *mut u8) = pattern(s, i) };
        }
    });
}

/// Verifies the pattern of a fill of `len` bytes with `id`, up to `upto`.
fn verify(addr: usize, len: usize, id: u64, upto: usize, what: &str) {
    let s = seed(id);
    fill_ranges(len, |r| {
        for i in r.start..r.end.min(upto) {
            // SAFETY: `i < upto <= ` the block's size, inside a live block.
            let got = unsafe { *((addr + i) as *const u8) };
            assert_eq!(
                got,
                pattern(s, i),
                "{what}: block {id} ({len} bytes filled) corrupted at offset {i}"
            );
        }
    });
}

fn verify_zero(addr: usize, len: usize) {
    fill_ranges(len, |r| {
        for i in r {
            // SAFETY: inside a live block of `len` bytes.
            let got = unsafe { *((addr + i) as *const u8) };
            assert_eq!(got, 0, "calloc: byte {i} of {len} is not zero");
        }
    });
}

/// The C adapters of `crates/preload/src/lib.rs`, over the facade.
mod c {
    use core::ptr::null_mut;

    use super::set_errno;

    pub unsafe fn reallocarray(p: *mut u8, n: usize, size: usize) -> *mut u8 {
        match n.checked_mul(size) {
            // SAFETY: forwarded contract.
            Some(total) => unsafe { hakmem::realloc(p, total) },
            None => {
                set_errno(libc::ENOMEM);
                null_mut()
            }
        }
    }

    pub fn posix_memalign(out: &mut *mut u8, align: usize, size: usize) -> i32 {
        if !align.is_power_of_two() || !align.is_multiple_of(core::mem::size_of::<usize>()) {
            return libc::EINVAL;
        }
        let saved = super::errno();
        let p = hakmem::aligned_alloc(align, size);
        if p.is_null() {
            set_errno(libc::ENOMEM);
            return libc::ENOMEM;
        }
        set_errno(saved);
        *out = p;
        0
    }

    pub fn aligned_alloc(align: usize, size: usize) -> *mut u8 {
        if !align.is_power_of_two() {
            set_errno(libc::EINVAL);
            return null_mut();
        }
        hakmem::aligned_alloc(align, size)
    }

    pub fn memalign(align: usize, size: usize) -> *mut u8 {
        let align = if align <= hakmem::MIN_ALIGN {
            hakmem::MIN_ALIGN
        } else {
            match align.checked_next_power_of_two() {
                Some(a) => a,
                None => {
                    set_errno(libc::EINVAL);
                    return null_mut();
                }
            }
        };
        hakmem::aligned_alloc(align, size)
    }
}

/// Sends a pointer to another thread (the model hands the block over).
struct SendPtr(usize);

impl Model {
    fn new() -> Model {
        Model {
            blocks: Vec::new(),
            ranges: BTreeMap::new(),
            live_bytes: 0,
            next_id: 1,
        }
    }

    fn room_for(&self, size: usize) -> bool {
        self.blocks.len() < MAX_LIVE && self.live_bytes + size <= MAX_LIVE_BYTES
    }

    fn pick(&self, idx: u16) -> Option<usize> {
        (!self.blocks.is_empty()).then(|| idx as usize % self.blocks.len())
    }

    /// Checks a fresh block and adds it (filled) to the model.
    fn add(&mut self, p: *mut u8, size: usize, align: usize, what: &str) -> Block {
        assert!(!p.is_null(), "{what}({size}, align {align}) failed");
        let addr = p as usize;
        assert_eq!(addr % align, 0, "{what}({size}) not aligned to {align}");
        let natural = if size >= 16 { 16 } else { 8 };
        assert_eq!(addr % natural, 0, "{what}({size}) not aligned to {natural}");
        // SAFETY: a live block just returned.
        let usable = unsafe { hakmem::usable_size(p) };
        assert!(usable >= size, "{what}({size}): usable_size {usable}");
        let end = addr + usable.max(1);
        if let Some((&s, &e)) = self.ranges.range(..end).next_back() {
            assert!(
                e <= addr,
                "{what}: [{addr:#x}, {end:#x}) overlaps [{s:#x}, {e:#x})"
            );
        }
        self.ranges.insert(addr, end);
        let filled = if usable <= FULL_FILL { usable } else { size };
        let id = self.next_id;
        self.next_id += 1;
        fill(addr, filled, id);
        if filled < usable {
            // the last usable byte is ours too
            // SAFETY: inside the block's usable size.
            unsafe { *((addr + usable - 1) as *mut u8) = 0xa5 };
        }
        let b = Block {
            addr,
            size,
            align,
            id,
            filled,
        };
        self.blocks.push(b);
        self.live_bytes += size;
        b
    }

    /// Removes block `i` from the model after verifying its contents.
    fn take(&mut self, i: usize, what: &str) -> Block {
        let b = self.blocks.swap_remove(i);
        verify(b.addr, b.filled, b.id, b.filled, what);
        self.ranges.remove(&b.addr);
        self.live_bytes -= b.size;
        b
    }

    fn free(&mut self, i: usize) {
        let b = self.take(i, "free");
        set_errno(ERRNO_SENTINEL);
        // SAFETY: a live block, removed from the model.
        unsafe { hakmem::free(b.addr as *mut u8) };
        assert_eq!(errno(), ERRNO_SENTINEL, "free changed errno");
    }

    /// `realloc`-like call `f` on block `i` to `size` bytes.
    fn realloc_with(
        &mut self,
        i: usize,
        size: usize,
        what: &str,
        f: impl FnOnce(*mut u8) -> *mut u8,
    ) {
        let old = self.blocks[i];
        if !self.room_for(size.saturating_sub(old.size)) {
            return;
        }
        let old = self.take(i, what);
        let q = f(old.addr as *mut u8);
        if size == 0 {
            assert!(q.is_null(), "{what}(p, 0) returned a block");
            return;
        }
        let align = old.align.min(hakmem::MIN_ALIGN);
        assert!(!q.is_null(), "{what}({size}) failed");
        verify(q as usize, old.filled, old.id, old.size.min(size), what);
        self.add(q, size, align, what);
    }

    /// An impossible `realloc`: null, ENOMEM, block unchanged.
    fn realloc_fails(&mut self, i: usize, what: &str, f: impl FnOnce(*mut u8) -> *mut u8) {
        let b = self.blocks[i];
        set_errno(0);
        let q = f(b.addr as *mut u8);
        assert!(q.is_null(), "{what}: an impossible size succeeded");
        assert_eq!(errno(), libc::ENOMEM, "{what}: errno after failure");
        verify(b.addr, b.filled, b.id, b.filled, what);
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Malloc(s) => {
                let size = s.get();
                if self.room_for(size) {
                    let p = hakmem::malloc(size);
                    self.add(p, size, 1, "malloc");
                }
            }
            Op::Calloc(n, s) => {
                let (n, size) = (n as usize % 8, s.get());
                if self.room_for(n * size) {
                    let p = hakmem::calloc(n, size);
                    assert!(!p.is_null(), "calloc({n}, {size}) failed");
                    verify_zero(p as usize, n * size);
                    self.add(p, n * size, 1, "calloc");
                }
            }
            Op::CallocOverflow(n, size) => {
                let (n, size) = (n as usize | 2, size as usize | (1 << 63));
                set_errno(0);
                assert!(
                    hakmem::calloc(n, size).is_null(),
                    "calloc overflow succeeded"
                );
                assert_eq!(errno(), libc::ENOMEM, "calloc overflow: errno");
            }
            Op::Realloc(i, s) => {
                if let Some(i) = self.pick(i) {
                    let size = s.get();
                    // SAFETY: a live block of the model, which `realloc_with` retires.
                    self.realloc_with(i, size, "realloc", |p| unsafe { hakmem::realloc(p, size) });
                }
            }
            Op::ReallocFromNull(s) => {
                let size = s.get();
                if self.room_for(size) {
                    // SAFETY: realloc of null is malloc.
                    let p = unsafe { hakmem::realloc(core::ptr::null_mut(), size) };
                    self.add(p, size, 1, "realloc(NULL)");
                }
            }
            Op::ReallocToZero(i) => {
                if let Some(i) = self.pick(i) {
                    // SAFETY: as for `Realloc`.
                    self.realloc_with(i, 0, "realloc", |p| unsafe { hakmem::realloc(p, 0) });
                }
            }
            Op::ReallocImpossible(i, s) => {
                if let Some(i) = self.pick(i) {
                    // SAFETY: a live block; it stays live (the call fails).
                    self.realloc_fails(i, "realloc", |p| unsafe { hakmem::realloc(p, s.get()) });
                }
            }
            Op::ReallocArray(i, n, s) => {
                if let Some(i) = self.pick(i) {
                    let (n, size) = (n as usize % 4 + 1, s.get());
                    self.realloc_with(i, n * size, "reallocarray", |p| {
                        // SAFETY: as for `Realloc`.
                        unsafe { c::reallocarray(p, n, size) }
                    });
                }
            }
            Op::ReallocArrayOverflow(i, n, size) => {
                if let Some(i) = self.pick(i) {
                    let (n, size) = (n as usize | 2, size as usize | (1 << 63));
                    self.realloc_fails(i, "reallocarray", |p| {
                        // SAFETY: a live block; it stays live (the call fails).
                        unsafe { c::reallocarray(p, n, size) }
                    });
                }
            }
            Op::AlignedAlloc(log, s) => {
                let (align, size) = (1usize << (log % 23), s.get());
                if self.room_for(size) {
                    let p = c::aligned_alloc(align, size);
                    self.add(p, size, align, "aligned_alloc");
                }
            }
            Op::PosixMemalign(log, s) => {
                let (align, size) = (1usize << (log % 23).max(3), s.get());
                if self.room_for(size) {
                    let mut p = core::ptr::null_mut();
                    set_errno(ERRNO_SENTINEL);
                    assert_eq!(c::posix_memalign(&mut p, align, size), 0, "posix_memalign");
                    assert_eq!(
                        errno(),
                        ERRNO_SENTINEL,
                        "posix_memalign success changed errno"
                    );
                    self.add(p, size, align, "posix_memalign");
                }
            }
            Op::PosixMemalignBad(a, s) => {
                // not a power of two, or below sizeof(void *)
                let align = match a % 3 {
                    0 => a as usize % 8,
                    1 => 8 * ((a as usize >> 2) * 2 + 3),
                    _ => a as usize | 1,
                };
                let mut p = 0x1234 as *mut u8;
                set_errno(ERRNO_SENTINEL);
                assert_eq!(c::posix_memalign(&mut p, align, s.get()), libc::EINVAL);
                assert_eq!(p as usize, 0x1234, "posix_memalign wrote *out on EINVAL");
                assert_eq!(
                    errno(),
                    ERRNO_SENTINEL,
                    "posix_memalign EINVAL changed errno"
                );
            }
            Op::Memalign(a, s) => {
                let size = s.get();
                if self.room_for(size) {
                    let align = (a as usize).max(hakmem::MIN_ALIGN).next_power_of_two();
                    let p = c::memalign(a as usize, size);
                    self.add(p, size, align, "memalign");
                }
            }
            Op::Impossible(entry, s) => {
                let size = s.get();
                set_errno(0);
                let (what, failed) = match entry % 7 {
                    0 => ("malloc", hakmem::malloc(size).is_null()),
                    1 => ("calloc", hakmem::calloc(1, size).is_null()),
                    // SAFETY: realloc of null is malloc.
                    2 => (
                        "realloc(NULL)",
                        unsafe { hakmem::realloc(core::ptr::null_mut(), size) }.is_null(),
                    ),
                    3 => ("aligned_alloc", c::aligned_alloc(64, size).is_null()),
                    4 => ("memalign", c::memalign(1 << 16, size).is_null()),
                    5 => (
                        "aligned_alloc(page)",
                        c::aligned_alloc(PAGE, size).is_null(),
                    ),
                    _ => {
                        let mut p = core::ptr::null_mut();
                        let rc = c::posix_memalign(&mut p, 32, size);
                        assert_eq!(rc, libc::ENOMEM, "posix_memalign({size}) returned {rc}");
                        ("posix_memalign", p.is_null())
                    }
                };
                assert!(failed, "{what}({size}) succeeded");
                assert_eq!(errno(), libc::ENOMEM, "{what}({size}): errno after failure");
            }
            Op::ImpossibleAlign(log, s) => {
                let (align, size) = (1usize << (50 + log % 14), s.get());
                set_errno(0);
                assert!(
                    c::aligned_alloc(align, size).is_null(),
                    "aligned_alloc(2^{}) succeeded",
                    align.trailing_zeros()
                );
                assert_eq!(errno(), libc::ENOMEM, "aligned_alloc(huge align): errno");
            }
            Op::Free(i) => {
                if let Some(i) = self.pick(i) {
                    self.free(i);
                }
            }
            Op::FreeNull => {
                set_errno(ERRNO_SENTINEL);
                // SAFETY: freeing null is a no-op.
                unsafe { hakmem::free(core::ptr::null_mut()) };
                assert_eq!(errno(), ERRNO_SENTINEL, "free(NULL) changed errno");
            }
            Op::UsableSize(i) => {
                if let Some(i) = self.pick(i) {
                    let b = self.blocks[i];
                    set_errno(ERRNO_SENTINEL);
                    // SAFETY: a live block.
                    let u = unsafe { hakmem::usable_size(b.addr as *const u8) };
                    assert!(u >= b.size, "usable_size {u} < size {}", b.size);
                    assert_eq!(errno(), ERRNO_SENTINEL, "usable_size changed errno");
                    // SAFETY: null is allowed.
                    assert_eq!(unsafe { hakmem::usable_size(core::ptr::null()) }, 0);
                }
            }
            Op::Collect => {
                hakmem::collect();
            }
            Op::FreeOnThread(i) => {
                if let Some(i) = self.pick(i) {
                    let b = self.take(i, "free on another thread");
                    let p = SendPtr(b.addr);
                    std::thread::spawn(move || {
                        let p = p;
                        // SAFETY: a live block the model gave up.
                        unsafe { hakmem::free(p.0 as *mut u8) };
                    })
                    .join()
                    .expect("remote free thread");
                }
            }
            Op::AllocOnThread(s) => {
                let size = s.get();
                if self.room_for(size) {
                    let p = std::thread::spawn(move || SendPtr(hakmem::malloc(size) as usize))
                        .join()
                        .expect("allocating thread")
                        .0;
                    self.add(p as *mut u8, size, 1, "malloc on another thread");
                }
            }
        }
    }

    fn free_all(&mut self) {
        while !self.blocks.is_empty() {
            let i = self.blocks.len() - 1;
            self.free(i);
        }
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut m = Model::new();
    for (n, op) in ops.into_iter().enumerate() {
        m.step(op);
        if n % CHECK_EVERY == CHECK_EVERY - 1 {
            hakmem::check_now();
        }
    }
    m.free_all();
    hakmem::check_now();
});
