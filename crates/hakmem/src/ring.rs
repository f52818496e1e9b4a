//! The debug ring: the most recent allocations and frees (address, size,
//! caller, thread), so that a misuse report can say where the block was
//! allocated and where it was freed before.
//!
//! On in secure mode (2048 events a thread) and with `HAKMEM_TRACE=N` (N
//! events a thread, rounded up to a power of two, at most [`CAP`]); either
//! way small calls take the checked fast paths (the hand-written C
//! `malloc`/`free` of `hakmem-preload`, `api::malloc_checked`,
//! `api::free_checked_fast`; see `secure.rs`) and the rest the slow paths,
//! which all record their events. A `malloc(0)` the C `malloc` serves from
//! its bin is not recorded.
//!
//! One ring per thread (of [`RINGS`], handed out in turn), so that an event
//! is a few plain stores: no atomic read-modify-write, no clock. The
//! thread's slot points at its ring (null until the thread's first slow
//! path claims one, and while the ring is off); the ring's header holds the
//! next event's byte offset and the owner's kernel id. An event is two
//! words: the address with the kind in its low 4 bits (blocks are 16-byte
//! aligned) and the caller's return address, the size in the top 17 bits
//! of each (addresses fit in 47 bits). A reader (the report, just before
//! an abort) scans every claimed ring for the address. With more than
//! [`RINGS`] threads alive two threads share a ring (their events mix and
//! name the later thread); a slot rewritten while it is read can give a
//! mixed event: this is a debugging aid, and its words are atomics, so the
//! worst is a wrong line, never a data race. Nothing here allocates.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use hakmem_platform::Line;

/// The largest ring (events a thread).
pub const CAP: usize = 1 << 11;
/// Rings for the threads (the `.bss`: pages are touched only as rings fill).
pub const RINGS: usize = 64;

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    /// A block was handed out.
    Alloc = 1,
    /// A block was given back.
    Free = 2,
}

/// The addresses' bits (user space below 2^47).
const ADDR_BITS: u32 = 47;
const ADDR_MASK: u64 = (1 << ADDR_BITS) - 1;
/// The size bits each word holds above the address.
const SIZE_BITS: u32 = 64 - ADDR_BITS;
const SIZE_MASK: u64 = (1 << SIZE_BITS) - 1;

/// One thread's ring. The layout is read by the hand-written C `malloc`
/// and `free` ([`POS_OFFSET`], [`MASK_OFFSET`], [`EVENTS_OFFSET`]).
#[repr(C, align(64))]
pub struct Ring {
    /// The next event's byte offset in `events` (a multiple of 16).
    pos: AtomicUsize,
    /// The ring's size in bytes - 1 (`pos` wraps with it).
    mask: AtomicUsize,
    /// The owner's kernel id.
    tid: AtomicU64,
    _pad: AtomicU64,
    /// Two words an event: `addr | kind | (size >> 17) << 47` and
    /// `ra | (size & 0x1FFFF) << 47` (0: an empty slot).
    events: [[AtomicU64; 2]; CAP],
}

/// Byte offset of the next event's offset in a [`Ring`].
pub const POS_OFFSET: usize = core::mem::offset_of!(Ring, pos);
/// Byte offset of the wrap mask in a [`Ring`].
pub const MASK_OFFSET: usize = core::mem::offset_of!(Ring, mask);
/// Byte offset of the events in a [`Ring`].
pub const EVENTS_OFFSET: usize = core::mem::offset_of!(Ring, events);
/// The bit an event's kind word carries for an allocation ([`Kind::Alloc`]);
/// the address is or-ed in.
pub const KIND_ALLOC: u64 = Kind::Alloc as u64;
/// The same for a free.
pub const KIND_FREE: u64 = Kind::Free as u64;
/// The shift of the size in an event's second word (below 2^17 bytes).
pub const SIZE_SHIFT: u32 = ADDR_BITS;

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_EVENT: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Ring = Ring {
    pos: AtomicUsize::new(0),
    mask: AtomicUsize::new(0),
    tid: AtomicU64::new(0),
    _pad: AtomicU64::new(0),
    events: [EMPTY_EVENT; CAP],
};

/// The rings.
static POOL: [Ring; RINGS] = [EMPTY; RINGS];
/// Rings claimed so far (the next is `CLAIMED % RINGS`).
static CLAIMED: AtomicUsize = AtomicUsize::new(0);
/// Ring size in bytes - 1; 0 while the ring is off.
static MASK: AtomicUsize = AtomicUsize::new(0);

/// Turns the ring on with room for `events` a thread (rounded up to a
/// power of two, at most [`CAP`]), or off with 0.
pub(crate) fn set(events: usize) {
    let mask = if events == 0 {
        0
    } else {
        events.clamp(2, CAP).next_power_of_two() * 16 - 1
    };
    MASK.store(mask, Ordering::Release);
}

/// True while the ring records.
#[inline(always)]
pub(crate) fn on() -> bool {
    MASK.load(Ordering::Relaxed) != 0
}

/// Byte offset of the ring word in the thread slot (`tls::ThreadSlot::ring`,
/// which asserts it; read here without importing `tls`).
pub const SLOT_RING_OFFSET: usize = 72;

/// The address of the calling thread's ring word.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[inline(always)]
fn ring_word() -> *mut *const Ring {
    crate::slot_addr::get()
        .wrapping_add(SLOT_RING_OFFSET)
        .cast()
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
std::thread_local! {
    static RING_WORD: core::cell::Cell<*const Ring> = const { core::cell::Cell::new(core::ptr::null()) };
}

/// The address of the calling thread's ring word.
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
#[inline(always)]
fn ring_word() -> *mut *const Ring {
    RING_WORD.with(|c| c.as_ptr())
}

/// The calling thread's ring, claimed now if the ring is on and the thread
/// has none yet; null while the ring is off.
fn own_ring() -> *const Ring {
    // SAFETY: the thread's own slot, touched by this thread alone.
    let r = unsafe { *ring_word() };
    if !r.is_null() || !on() {
        return r;
    }
    claim()
}

/// Gives the calling thread a ring of its own (the next one in turn,
/// emptied, named after the thread); null while the ring is off.
#[cold]
#[inline(never)]
fn claim() -> *const Ring {
    let mask = MASK.load(Ordering::Acquire);
    if mask == 0 {
        return core::ptr::null();
    }
    let r = &POOL[CLAIMED.fetch_add(1, Ordering::Relaxed) % RINGS];
    r.tid
        .store(hakmem_platform::thread::os_tid() as u64, Ordering::Relaxed);
    for e in &r.events[..=mask / 16] {
        e[0].store(0, Ordering::Relaxed);
        e[1].store(0, Ordering::Relaxed);
    }
    r.pos.store(0, Ordering::Relaxed);
    r.mask.store(mask, Ordering::Release);
    let p: *const Ring = r;
    // SAFETY: the thread's own slot, touched by this thread alone.
    unsafe { *ring_word() = p };
    p
}

/// In a forked child: the thread's kernel id changed; it takes a ring of
/// its own now (so that the fast paths, which record only into a claimed
/// ring, record from its first call on).
pub(crate) fn after_fork_in_child() {
    // SAFETY: the thread's own slot, touched by this thread alone.
    unsafe { *ring_word() = core::ptr::null() };
    if on() {
        claim();
    }
}

/// Writes one event into `r` (the calling thread's claimed ring).
#[inline(always)]
fn put(r: &Ring, w0: u64, w1: u64) {
    let pos = r.pos.load(Ordering::Relaxed);
    // SAFETY: `pos` is a multiple of 16 below `CAP * 16`: a ring's `pos`
    // is only ever stored as 0 (`claim`) or masked with its `mask` (here),
    // which is 0 or `MASK`, and `set` keeps that below `CAP * 16` (even
    // when two threads share the ring, each stores such a value).
    let e = unsafe {
        &*r.events
            .as_ptr()
            .cast::<u8>()
            .add(pos)
            .cast::<[AtomicU64; 2]>()
    };
    e[0].store(w0, Ordering::Relaxed);
    e[1].store(w1, Ordering::Relaxed);
    r.pos.store(
        (pos + 16) & r.mask.load(Ordering::Relaxed),
        Ordering::Relaxed,
    );
}

/// Records that the calling thread allocated or freed the small block
/// `addr` (of `size` bytes, below 2^17), called from `ra`: the checked fast
/// paths' event, a few stores, nothing when the thread has no ring (the
/// ring is off, or the thread's first slow path has not claimed one yet).
#[inline(always)]
pub(crate) fn record_small(kind: Kind, addr: *const u8, size: usize, ra: usize) {
    debug_assert!((size as u64) <= SIZE_MASK);
    // SAFETY: the thread's own slot, touched by this thread alone.
    let r = unsafe { *ring_word() };
    if r.is_null() {
        return;
    }
    // SAFETY: a claimed ring is one of `POOL`'s (static).
    let r = unsafe { &*r };
    // (a return address is below 2^47: not masked here, the reader masks)
    put(
        r,
        addr as u64 | kind as u64,
        ra as u64 | (size as u64) << SIZE_SHIFT,
    );
}

/// Records that the calling thread allocated or freed `addr` (of `size`
/// bytes), called from `ra` (0: not known); claims the thread's ring first
/// if it has none.
#[inline]
pub(crate) fn record(kind: Kind, addr: *const u8, size: usize, ra: usize) {
    if addr.is_null() || !on() {
        return;
    }
    let r = own_ring();
    if r.is_null() {
        return;
    }
    // SAFETY: a claimed ring is one of `POOL`'s (static).
    let r = unsafe { &*r };
    let size = (size as u64).min((1 << (2 * SIZE_BITS)) - 1);
    put(
        r,
        (addr as u64 & ADDR_MASK) | kind as u64 | (size >> SIZE_BITS) << ADDR_BITS,
        (ra as u64 & ADDR_MASK) | (size & SIZE_MASK) << ADDR_BITS,
    );
}

/// What the ring knows of one event of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    pub kind: Kind,
    pub size: usize,
    pub ra: usize,
    pub tid: u32,
    /// How many events of its thread's ring ago (0: the latest).
    pub age: usize,
}

/// The latest allocation and the latest free of `addr` still in the rings
/// (across rings, the one fewest events of its own ring ago).
pub(crate) fn find(addr: *const u8) -> (Option<Found>, Option<Found>) {
    let (mut alloc, mut free): (Option<Found>, Option<Found>) = (None, None);
    let claimed = CLAIMED.load(Ordering::Acquire).min(RINGS);
    for r in &POOL[..claimed] {
        let mask = r.mask.load(Ordering::Acquire);
        if mask == 0 {
            continue;
        }
        let tid = r.tid.load(Ordering::Relaxed) as u32;
        let pos = r.pos.load(Ordering::Relaxed);
        let events = (mask + 1) / 16;
        for age in 0..events {
            let e = &r.events[(pos.wrapping_sub(16 * (1 + age)) & mask) >> 4 & (CAP - 1)];
            let w0 = e[0].load(Ordering::Relaxed);
            if w0 & ADDR_MASK & !15 != addr as u64 || w0 == 0 {
                continue;
            }
            let w1 = e[1].load(Ordering::Relaxed);
            let kind = if w0 & 15 == Kind::Free as u64 {
                Kind::Free
            } else {
                Kind::Alloc
            };
            let found = Found {
                kind,
                size: ((w0 >> ADDR_BITS) << SIZE_BITS | w1 >> ADDR_BITS) as usize,
                ra: (w1 & ADDR_MASK) as usize,
                tid,
                age,
            };
            let slot = if kind == Kind::Free {
                &mut free
            } else {
                &mut alloc
            };
            if slot.is_none_or(|s| s.age > age) {
                *slot = Some(found);
            }
        }
    }
    (alloc, free)
}

/// Writes what the ring knows of `addr` below a misuse report: where it was
/// last allocated and last freed (function+offset and object, from
/// `dladdr`), by which thread. Nothing when the ring is off; one line
/// saying so when it holds no event of `addr`.
pub(crate) fn report(addr: *const u8) {
    if !on() {
        return;
    }
    let (alloc, free) = find(addr);
    if alloc.is_none() && free.is_none() {
        Line::new()
            .str("hakmem:   no allocation or free of this address in the debug ring")
            .emit();
        return;
    }
    // the earlier event first: by age within one thread's ring; across
    // rings (no common clock) the allocation first
    let free_first = matches!((alloc, free), (Some(a), Some(f)) if a.tid == f.tid && f.age > a.age);
    let events = if free_first {
        [free, alloc]
    } else {
        [alloc, free]
    };
    for e in events.into_iter().flatten() {
        let mut l = Line::new();
        l.str("hakmem:   ")
            .str(if e.kind == Kind::Free {
                "freed"
            } else {
                "allocated"
            })
            .str(" by thread ")
            .dec(e.tid as u64);
        if e.kind == Kind::Alloc {
            l.str(" (").dec(e.size as u64).str(" B)");
        }
        if e.ra != 0 {
            l.str(" at ");
            site(&mut l, e.ra);
        }
        l.str(", ").dec(e.age as u64).str(" events ago");
        l.emit();
    }
}

/// `function+0xoff (object)` for a return address, or the address.
fn site(l: &mut Line, ra: usize) {
    // SAFETY: the names are used before this function returns, while the
    // object holding a recorded return address is still loaded (a program
    // that unloads code it allocated from gets the address only, since
    // dladdr then finds nothing).
    let info = unsafe { hakmem_platform::symbol::dladdr(ra.wrapping_sub(1)) };
    match info {
        Some(i) if i.symbol.is_some() => {
            let name = i.symbol.unwrap_or(b"?");
            l.str(core::str::from_utf8(name).unwrap_or("?"))
                .str("+")
                .hex(ra.wrapping_sub(i.symbol_addr));
            if let Some(o) = i.object.filter(|o| !o.is_empty()) {
                l.str(" (")
                    .str(core::str::from_utf8(o).unwrap_or("?"))
                    .str(")");
            }
        }
        Some(i) if i.object.is_some_and(|o| !o.is_empty()) => {
            let o = i.object.unwrap_or(b"?");
            l.str(core::str::from_utf8(o).unwrap_or("?"))
                .str("+")
                .hex(ra.wrapping_sub(i.object_base));
        }
        _ => {
            l.hex(ra);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_found_with_its_size_caller_and_thread_until_the_ring_wraps() {
        set(16);
        let a = 0x7f00_1234_5670usize as *const u8;
        // a slow-path event (any size) claims the thread's ring
        record(Kind::Alloc, a, 3_000_000, 0x5555_1234);
        // SAFETY: the thread's own slot.
        assert!(!unsafe { *ring_word() }.is_null());
        record_small(Kind::Free, a, 48, 0x5555_4321);
        for i in 1..=5usize {
            record_small(Kind::Alloc, (i << 12) as *const u8, 16, 0);
        }
        let tid = hakmem_platform::thread::os_tid() as u32;
        let (alloc, free) = find(a);
        assert_eq!(
            alloc,
            Some(Found {
                kind: Kind::Alloc,
                size: 3_000_000,
                ra: 0x5555_1234,
                tid,
                age: 6,
            })
        );
        assert_eq!(
            free,
            Some(Found {
                kind: Kind::Free,
                size: 48,
                ra: 0x5555_4321,
                tid,
                age: 5,
            })
        );
        // 16 events later both are overwritten
        for i in 1..=16usize {
            record_small(Kind::Free, (i << 12) as *const u8, 16, 0);
        }
        assert_eq!(find(a), (None, None));
    }
}
