//! The debug ring: the most recent allocations and frees (address, size,
//! caller, thread), so that a misuse report can say where the block was
//! allocated and where it was freed before.
//!
//! On in secure mode (4096 events) and with `HAKMEM_TRACE=N` (N events,
//! rounded up to a power of two, at most [`CAP`]); either way small calls
//! take the checked fast paths (`api::malloc_checked`,
//! `api::free_checked_fast`; see `secure.rs`) and the rest the slow paths,
//! which all record their events. An event costs about 30 instructions (a
//! `fetch_add` and five stores; callgrind: 180 instructions per 32-byte
//! `malloc`+`free` pair with the ring alone, 61 in the default mode). A
//! `malloc(0)` the C `malloc` serves from its bin is not recorded.
//!
//! One ring for the process, not one per thread: a block freed twice by
//! two threads, or allocated by one and freed by another, is found in one
//! place. A writer claims a slot with one `fetch_add` and fills its words
//! with relaxed stores, the address last (Release); a reader (the report,
//! which runs just before an abort) matches on the address and reads the
//! rest. A slot rewritten while it is read can give a mixed event: this is
//! a debugging aid, and its words are atomics, so the worst is a wrong
//! line, never a data race. Nothing here allocates.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use hakmem_platform::Line;

/// The largest ring (events).
pub const CAP: usize = 1 << 16;

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    /// A block was handed out.
    Alloc = 1,
    /// A block was given back.
    Free = 2,
}

struct Event {
    /// The block (0: an empty slot).
    addr: AtomicUsize,
    /// `size << 8 | kind`.
    info: AtomicU64,
    /// The caller's return address (0: not known, e.g. Rust callers).
    ra: AtomicUsize,
    /// The thread's kernel id.
    tid: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Event = Event {
    addr: AtomicUsize::new(0),
    info: AtomicU64::new(0),
    ra: AtomicUsize::new(0),
    tid: AtomicU64::new(0),
};

/// The events (the `.bss`: pages are touched only as the ring fills).
static EVENTS: [Event; CAP] = [EMPTY; CAP];
/// Events recorded so far (the next slot is `NEXT & MASK`).
static NEXT: AtomicUsize = AtomicUsize::new(0);
/// Ring size - 1; 0 while the ring is off.
static MASK: AtomicUsize = AtomicUsize::new(0);

/// Turns the ring on with room for `events` (rounded up to a power of two,
/// at most [`CAP`]), or off with 0.
pub(crate) fn set(events: usize) {
    let mask = if events == 0 {
        0
    } else {
        events.clamp(2, CAP).next_power_of_two() - 1
    };
    MASK.store(mask, Ordering::Release);
}

/// True while the ring records.
#[inline(always)]
pub(crate) fn on() -> bool {
    MASK.load(Ordering::Relaxed) != 0
}

/// Records that `addr` (of `size` bytes) was allocated or freed by the
/// thread whose kernel id is `tid` (the caller's: `tls::os_tid`), called
/// from `ra`.
#[inline]
pub(crate) fn record(kind: Kind, addr: *const u8, size: usize, ra: usize, tid: u32) {
    let mask = MASK.load(Ordering::Relaxed);
    if mask == 0 || addr.is_null() {
        return;
    }
    // (`mask < CAP` always; the second mask spares a bounds check)
    let e = &EVENTS[NEXT.fetch_add(1, Ordering::Relaxed) & mask & (CAP - 1)];
    e.addr.store(0, Ordering::Relaxed);
    e.info
        .store((size as u64) << 8 | kind as u64, Ordering::Relaxed);
    e.ra.store(ra, Ordering::Relaxed);
    e.tid.store(tid as u64, Ordering::Relaxed);
    e.addr.store(addr as usize, Ordering::Release);
}

/// What the ring knows of one event of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    pub kind: Kind,
    pub size: usize,
    pub ra: usize,
    pub tid: u32,
    /// How many events ago (0: the latest event recorded).
    pub age: usize,
}

/// The latest allocation and the latest free of `addr` still in the ring.
pub(crate) fn find(addr: *const u8) -> (Option<Found>, Option<Found>) {
    let mask = MASK.load(Ordering::Acquire);
    let (mut alloc, mut free) = (None, None);
    if mask == 0 {
        return (alloc, free);
    }
    let next = NEXT.load(Ordering::Relaxed);
    for age in 0..=mask.min(next.wrapping_sub(1)) {
        let e = &EVENTS[next.wrapping_sub(1 + age) & mask];
        if e.addr.load(Ordering::Acquire) != addr as usize {
            continue;
        }
        let info = e.info.load(Ordering::Relaxed);
        let kind = if info & 0xFF == Kind::Free as u64 {
            Kind::Free
        } else {
            Kind::Alloc
        };
        let found = Found {
            kind,
            size: (info >> 8) as usize,
            ra: e.ra.load(Ordering::Relaxed),
            tid: e.tid.load(Ordering::Relaxed) as u32,
            age,
        };
        let slot = if kind == Kind::Free {
            &mut free
        } else {
            &mut alloc
        };
        if slot.is_none() {
            *slot = Some(found);
        }
        if alloc.is_some() && free.is_some() {
            break;
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
    // the earlier event first
    let mut events = [alloc, free];
    events.sort_by_key(|e| core::cmp::Reverse(e.map_or(0, |e| e.age)));
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
