//! Site-aware placement through the facade: a fragmentation workload whose
//! long-lived blocks come from one call site and short-lived ones from
//! another. With placement on, once the long site is seen to be long-lived
//! its blocks go to separate slabs, so the slabs the long-lived blocks pin
//! when everything short-lived is freed are few and dense; with placement
//! off they are spread over every slab the phase used.

use std::alloc::Layout;
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

/// Placement is process-wide: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Slabs are carved from 64 KiB slots.
const SLOT: usize = 64 << 10;

struct Run {
    /// Long-lived blocks still live at the end.
    long: Vec<(*mut u8, Layout)>,
}

impl Run {
    /// The distinct slots holding long-lived blocks.
    fn pinned_slots(&self) -> usize {
        self.long
            .iter()
            .map(|&(p, _)| p as usize / SLOT)
            .collect::<HashSet<_>>()
            .len()
    }

    fn free(self) {
        for (p, l) in self.long {
            // SAFETY: live blocks from alloc_cs.
            unsafe { hakmem::free_cs(p, l) };
        }
    }
}

/// Phases of `n` blocks each, in a new size per phase; one block in 32 is
/// long-lived (kept to the end), the rest are freed when the phase ends.
/// The two `alloc_cs` lines are the two sites.
fn fragmenting_workload(phases: usize, n: usize) -> Run {
    let sizes = [48usize, 96, 160, 256, 384, 512, 768, 200];
    let mut long = Vec::new();
    for ph in 0..phases {
        let l = Layout::from_size_align(sizes[ph % sizes.len()], 16).unwrap();
        let mut short = Vec::with_capacity(n);
        for i in 0..n {
            if i % 32 == 0 {
                let p = hakmem::alloc_cs(l); // the long-lived site
                assert!(!p.is_null());
                // SAFETY: `l.size()` bytes are ours.
                unsafe { p.write_bytes(0xA5, l.size()) };
                long.push((p, l));
            } else {
                let p = hakmem::alloc_cs(l); // the short-lived site
                assert!(!p.is_null());
                // SAFETY: a live block of `l.size()` bytes from alloc_cs, ours.
                unsafe { p.write_bytes(0x5A, l.size()) };
                short.push(p);
            }
        }
        for p in short {
            // SAFETY: live blocks from alloc_cs.
            unsafe { hakmem::free_cs(p, l) };
        }
        // the program's own work between phases: the long-lived blocks age
        std::thread::sleep(Duration::from_millis(20));
    }
    for &(p, l) in &long {
        // SAFETY: live long-lived blocks; their contents must be intact.
        let ok = unsafe { std::slice::from_raw_parts(p, l.size()) }
            .iter()
            .all(|&b| b == 0xA5);
        assert!(ok, "long-lived block {p:?} corrupted");
    }
    Run { long }
}

#[test]
fn long_lived_sites_get_their_own_slabs_and_pin_fewer_of_them() {
    let _g = SERIAL.lock().unwrap();
    let start = hakmem::placement_stats();
    // Off: one lane for everything.
    hakmem::set_site_placement(false);
    let off = fragmenting_workload(8, 20_000);
    let pinned_off = off.pinned_slots();
    let before = hakmem::placement_stats();
    assert_eq!(
        before.promotions, start.promotions,
        "no decisions while off"
    );
    off.free();
    hakmem::site_report::reset();

    // On: the long site is promoted after the first phase or two.
    hakmem::set_site_placement(true);
    let on = fragmenting_workload(8, 20_000);
    let pinned_on = on.pinned_slots();
    let st = hakmem::placement_stats();
    eprintln!(
        "placement: pinned slots off {pinned_off}, on {pinned_on}; {st:?} ({} long blocks)",
        on.long.len()
    );
    assert!(
        st.promotions > start.promotions,
        "the long-lived site is promoted: {st:?}"
    );
    assert_eq!(st.long_sites, 1, "only the long-lived site: {st:?}");
    assert_eq!(st.reverts, start.reverts);
    assert!(
        pinned_on * 3 < pinned_off,
        "segregation packs long-lived blocks: {pinned_on} vs {pinned_off} slots"
    );
    on.free();
    let st = hakmem::placement_stats();
    assert!(st.long_frees > 0, "long-lane frees are measured: {st:?}");
    assert_eq!(
        st.reverts, start.reverts,
        "old long-lane frees confirm the decision"
    );
}

#[test]
fn a_site_that_turns_short_lived_is_moved_back() {
    let _g = SERIAL.lock().unwrap();
    let start = hakmem::placement_stats();
    hakmem::set_site_placement(true);
    let l = Layout::from_size_align(64, 16).unwrap();
    // the program's typical blocks live about a millisecond
    let temp = hakmem::SiteId::code(0xbeef_0000);
    for _ in 0..4 {
        let ps: Vec<_> = (0..64)
            .map(|_| hakmem::alloc_recorded(l.size(), 16, temp))
            .collect();
        std::thread::sleep(Duration::from_millis(1));
        for p in ps {
            // SAFETY: live blocks.
            unsafe { hakmem::free(p) };
        }
    }
    let site = hakmem::SiteId::code(0xdead_0000);
    let mut kept = Vec::new();
    // phase 1: blocks kept for a long time
    for _ in 0..512 {
        kept.push(hakmem::alloc_recorded(l.size(), 16, site));
    }
    std::thread::sleep(Duration::from_millis(50));
    for _ in 0..256 {
        kept.push(hakmem::alloc_recorded(l.size(), 16, site));
    }
    let promoted = hakmem::placement_stats().promotions;
    assert!(
        promoted > start.promotions,
        "{:?}",
        hakmem::placement_stats()
    );
    // phase 2: the same site now frees its blocks at once
    for _ in 0..4096 {
        let p = hakmem::alloc_recorded(l.size(), 16, site);
        // SAFETY: a live block.
        unsafe { hakmem::free(p) };
    }
    let st = hakmem::placement_stats();
    assert!(st.reverts > start.reverts, "the decision is undone: {st:?}");
    assert_eq!(st.long_sites, start.long_sites);
    for p in kept {
        // SAFETY: live blocks.
        unsafe { hakmem::free(p) };
    }
}
