//! The table, the reports and the capture API over `Profiled<System>` never
//! allocate through the global allocator: a counting `#[global_allocator]`
//! fails the test if anything allocates on a thread while it is inside a
//! marked region. And the table runs inside that global allocator, as it
//! will inside hakmem's `malloc`/`free`: every allocation of a thread that
//! turns recording on is recorded from within `alloc`/`dealloc`, and a
//! re-entry into the allocator from there is counted as a failure.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use hakmem_sites::{
    monotonic_ns, with_symbol, Order, Profiled, ReportOptions, SiteBox, SiteId, SiteTable, SiteVec,
    SliceWriter, Thresholds, Top,
};

struct Counting;

thread_local! {
    // Const-initialised `Cell`s: no lazy initialisation, no destructor, so
    // the allocator may read them.
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
    static RECORDING: Cell<bool> = const { Cell::new(false) };
    static INSIDE: Cell<bool> = const { Cell::new(false) };
    static REENTERED: Cell<usize> = const { Cell::new(0) };
}

/// The table the global allocator records into (sites: the request size,
/// standing in for a return address).
static INNER: SiteTable<256, 2> = SiteTable::new();

fn inner_site(layout: Layout) -> SiteId {
    SiteId::code(0x1000 + layout.size() * 16)
}

fn note() {
    if ARMED.with(Cell::get) {
        COUNT.with(|c| c.set(c.get() + 1));
    }
}

/// Runs `f` (a table operation) as the allocator would, inside `alloc` or
/// `dealloc`, when this thread records.
fn inside_allocator(f: impl FnOnce()) {
    if !RECORDING.with(Cell::get) {
        return;
    }
    if INSIDE.with(Cell::get) {
        // The table called back into the allocator.
        REENTERED.with(|c| c.set(c.get() + 1));
        return;
    }
    INSIDE.with(|c| c.set(true));
    f();
    INSIDE.with(|c| c.set(false));
}

// SAFETY: forwards to `System`.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        inside_allocator(|| {
            let _ = INNER.record_alloc(inner_site(layout), layout.size(), monotonic_ns());
        });
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        inside_allocator(|| {
            let _ = INNER.record_alloc(inner_site(layout), layout.size(), monotonic_ns());
        });
        // SAFETY: forwarded contract.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        inside_allocator(|| {
            let now = monotonic_ns();
            INNER.record_free_at(inner_site(layout), layout.size(), now, now, false);
            let new = Layout::from_size_align(new_size, layout.align()).unwrap_or(layout);
            let _ = INNER.record_alloc(inner_site(new), new_size, now);
        });
        // SAFETY: forwarded contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note();
        inside_allocator(|| {
            let now = monotonic_ns();
            INNER.record_free_at(inner_site(layout), layout.size(), now, now, false);
        });
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` as a marked region and returns how many global allocator calls
/// it made on this thread.
fn allocations_in<R>(f: impl FnOnce() -> R) -> (R, usize) {
    COUNT.with(|c| c.set(0));
    ARMED.with(|a| a.set(true));
    let r = f();
    ARMED.with(|a| a.set(false));
    (r, COUNT.with(Cell::get))
}

static TABLE: SiteTable<64, 4> = SiteTable::new();
// `System` directly: the blocks themselves do not go through the counting
// global allocator, so only the box's own behaviour is measured.
static SYS: Profiled<System, 64, 4> = Profiled::new(System, &TABLE, monotonic_ns);

/// Every table operation, many sites (more than fit), text and JSON
/// reports into a buffer and a file descriptor, symbolisation.
fn exercise(buf: &mut [u8], fd: i32) -> usize {
    let mut stamps = [None; 100];
    for (i, s) in stamps.iter_mut().enumerate() {
        let site = if i % 2 == 0 {
            SiteId::code(libc::write as *const () as usize + i)
        } else {
            SiteId::sampled(0x4000 + i * 16)
        };
        *s = Some(TABLE.record_alloc(site, i * 1000, monotonic_ns()));
    }
    let here = SiteId::caller();
    let st = TABLE.record_alloc(here, 24, monotonic_ns());
    for (i, s) in stamps.iter().enumerate() {
        if i % 3 != 0 {
            TABLE.record_free(s.unwrap(), i * 1000, monotonic_ns(), i % 2 == 0);
        }
    }
    TABLE.record_free_at(
        here,
        24,
        st.alloc_time(monotonic_ns()),
        monotonic_ns(),
        false,
    );
    TABLE.set_sample_shift(12);
    let now = monotonic_ns();
    let mut n = 0;
    for s in TABLE.sites() {
        n += s.classify(&Thresholds::DEFAULT, now).policy as usize;
        n += with_symbol(s.site, |sym| {
            matches!(sym, hakmem_sites::Symbol::Code { .. }) as usize
        });
    }
    n += TABLE.other().allocs as usize;
    n += Top::select(&TABLE, Order::Bytes, 32).slots().len();
    let opts = ReportOptions::new(now);
    let mut w = SliceWriter::new(buf);
    TABLE.write_text(&mut w, &opts).unwrap();
    TABLE.write_json(&mut w, &opts).unwrap();
    assert!(TABLE.report_text_fd(fd, &opts));
    assert!(TABLE.report_json_fd(fd, &opts));
    n += w.len();

    // The capture API over a non-global allocator.
    let b = SiteBox::new_in([1u64; 16], &SYS);
    n += b.iter().sum::<u64>() as usize;
    let mut v = SiteVec::new_in(&SYS);
    for i in 0..1000u32 {
        v.push(i);
    }
    n += v.len();
    drop(v);
    drop(b);
    TABLE.reset(monotonic_ns());
    n
}

#[test]
fn the_box_never_allocates() {
    let mut buf = vec![0u8; 1 << 20];
    let path = c"/dev/null";
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY) };
    assert!(fd >= 0);

    // The counter works.
    let (_, n) = allocations_in(|| drop(std::hint::black_box(vec![1u8; 10])));
    assert_eq!(n, 2, "alloc and dealloc of a Vec are seen");

    // Twice: the first run inserts sites, the second finds them.
    for round in 0..2 {
        let (work, n) = allocations_in(|| exercise(&mut buf, fd));
        assert!(work > 0);
        assert_eq!(n, 0, "round {round}: the box allocated {n} times");
    }

    // From several threads at once, each with its own marked region.
    let hs: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 20];
                let (_, n) = allocations_in(|| exercise(&mut buf, fd));
                n
            })
        })
        .collect();
    for h in hs {
        assert_eq!(h.join().unwrap(), 0, "a thread's region allocated");
    }
    // SAFETY: our descriptor.
    unsafe { libc::close(fd) };
}

#[test]
fn the_table_runs_inside_the_global_allocator() {
    RECORDING.with(|c| c.set(true));
    let mut keep = Vec::new();
    for i in 0..2000usize {
        let v = vec![0u8; 1 + i % 300];
        let s = std::hint::black_box(Box::new(i));
        if i % 10 == 0 {
            keep.push(v);
        }
        drop(s);
    }
    drop(keep);
    // Reports and symbolisation from inside the allocator too.
    inside_allocator(|| {
        let mut buf = [0u8; 4096];
        let mut w = SliceWriter::new(&mut buf);
        let _ = INNER.write_text(&mut w, &ReportOptions::new(monotonic_ns()));
    });
    RECORDING.with(|c| c.set(false));
    assert_eq!(
        REENTERED.with(Cell::get),
        0,
        "the table re-entered the allocator"
    );
    let allocs: u64 = INNER.sites().map(|s| s.allocs).sum::<u64>() + INNER.other().allocs;
    let frees: u64 = INNER.sites().map(|s| s.frees).sum::<u64>() + INNER.other().frees;
    assert!(allocs >= 4000, "{allocs} allocations recorded");
    assert!(frees >= 4000, "{frees} frees recorded");
}
