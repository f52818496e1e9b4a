//! Call-site profiling through the Rust API: exact counts per site, sizes,
//! lifetimes, local and remote frees, large blocks, and the prototype's
//! three-site demo.

use std::alloc::Layout;
use std::sync::Mutex;

use hakmem::site_report::{table, PolicyClass};
use hakmem::SiteId;

static SERIAL: Mutex<()> = Mutex::new(());

#[track_caller]
fn here() -> SiteId {
    SiteId::caller()
}

fn layout(n: usize) -> Layout {
    Layout::from_size_align(n, 16).unwrap()
}

#[test]
fn the_three_site_demo_comes_out_as_three_sites() {
    let _g = SERIAL.lock().unwrap();
    let mut blocks = Vec::new();
    let mut sites = Vec::new();
    // three call sites: three source lines
    let json_site = here();
    let mir_site = here();
    let vm_site = here();
    for (site, size, count) in [
        (json_site, 64usize << 10, 1000usize),
        (mir_site, 256 << 10, 100),
        (vm_site, 2 << 20, 10),
    ] {
        sites.push((site, size, count));
        for _ in 0..count {
            let p = hakmem::alloc_recorded(size, 16, site);
            assert!(!p.is_null());
            // SAFETY: `size` bytes are ours.
            unsafe { p.write_bytes(7, size.min(4096)) };
            // SAFETY: live block.
            assert!(unsafe { hakmem::usable_size(p) } >= size);
            blocks.push(p);
        }
    }
    for p in blocks {
        // SAFETY: freed once.
        unsafe { hakmem::free(p) };
    }
    let classes = [
        PolicyClass::SmallFrequent,
        PolicyClass::Medium,
        PolicyClass::LargeInfrequent,
    ];
    for ((site, size, count), class) in sites.into_iter().zip(classes) {
        let s = table().site_stats(site).expect("a slot per site");
        assert_eq!(s.allocs, count as u64);
        assert_eq!(s.frees, count as u64);
        assert_eq!(s.avg_size(), size as u64);
        assert_eq!(s.live_blocks(), 0);
        assert_eq!(s.remote_frees, 0);
        assert_eq!(
            s.classify(&Default::default(), hakmem_sites_now()).policy,
            class,
            "site of {size} B"
        );
    }
}

fn hakmem_sites_now() -> u64 {
    // the same clock the allocator stamps with
    let mut ts = libc_timespec();
    // SAFETY: writing into our own timespec.
    unsafe { clock_gettime(1, &mut ts) };
    ts.0 as u64 * 1_000_000_000 + ts.1 as u64
}

#[repr(C)]
struct Timespec(i64, i64);
fn libc_timespec() -> Timespec {
    Timespec(0, 0)
}
extern "C" {
    fn clock_gettime(clk: i32, ts: *mut Timespec) -> i32;
}

#[test]
fn alloc_cs_records_the_callers_line_and_frees_from_other_threads() {
    let _g = SERIAL.lock().unwrap();
    let l = layout(100);
    let mut ptrs = Vec::new();
    for _ in 0..50 {
        ptrs.push(hakmem::alloc_cs(l) as usize); // one line: one site
    }
    let site = {
        // the site of the line above: find the slot with 50 allocations of 100 B
        table()
            .sites()
            .find(|s| {
                s.allocs == 50
                    && s.max_size == 100
                    && s.site
                        .as_location()
                        .is_some_and(|loc| loc.file().ends_with("sites.rs"))
            })
            .expect("the alloc_cs line is a site")
    };
    let loc = site.site.as_location().unwrap();
    assert!(loc.line() > 0);
    // half freed here, half by another thread
    let (mine, theirs) = ptrs.split_at(25);
    for &p in mine {
        // SAFETY: freed once.
        unsafe { hakmem::free_cs(p as *mut u8, l) };
    }
    let theirs = theirs.to_vec();
    std::thread::spawn(move || {
        for p in theirs {
            // SAFETY: freed once.
            unsafe { hakmem::free(p as *mut u8) };
        }
    })
    .join()
    .unwrap();
    let s = table().site_stats(site.site).unwrap();
    assert_eq!(s.frees, 50);
    assert_eq!(s.remote_frees, 25);
    assert_eq!(s.freed_bytes, 50 * 100);
}

#[test]
fn recorded_blocks_behave_like_any_other() {
    let _g = SERIAL.lock().unwrap();
    let site = here();
    // realloc keeps the contents; usable sizes hold; aligned requests align
    let p = hakmem::alloc_recorded(1000, 64, site);
    assert_eq!(p as usize % 64, 0);
    // SAFETY: 1000 bytes are ours.
    unsafe { p.write_bytes(0xAB, 1000) };
    // SAFETY: live block, moved by realloc.
    let q = unsafe { hakmem::realloc(p, 5000) };
    // SAFETY: the first 1000 bytes were copied.
    assert!(unsafe { std::slice::from_raw_parts(q, 1000) }
        .iter()
        .all(|&b| b == 0xAB));
    // SAFETY: freed once.
    unsafe { hakmem::free(q) };
    let s = table().site_stats(site).unwrap();
    assert_eq!(
        (s.allocs, s.frees),
        (1, 1),
        "the moved block leaves the site"
    );
    // SiteBox / SiteVec over hakmem
    let mut v = hakmem::SiteVec::new_in(hakmem::HakMem);
    for i in 0..1000u32 {
        v.push(i);
    }
    assert_eq!(v.len(), 1000);
    let vsite = v.site();
    drop(v);
    let vs = table().site_stats(vsite).unwrap();
    assert!(vs.allocs >= 1 && vs.allocs == vs.frees, "{vs:?}");
    let b = hakmem::SiteBox::new_in([1u64; 64], hakmem::HakMem);
    assert_eq!(b.into_inner()[63], 1);
}
