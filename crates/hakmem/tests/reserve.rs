//! Reserved BigCache room for a call-site that allocates one large size in
//! bursts further apart than the decay time: its mappings stay resident, so
//! later bursts take no page faults, while another size (and the same
//! pattern with placement off) is purged and faulted in again. Runs with a
//! 40 ms decay (set before the allocator starts), alone in its binary.

use std::time::Duration;

const DECAY_MS: u64 = 40;

fn minflt() -> u64 {
    // SAFETY: an all-zero rusage is a valid value to be overwritten.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    ru.ru_minflt as u64
}

/// `bursts` bursts of `n` blocks of `size` bytes from `site`, each written
/// in full, freed, then a pause of three decay periods. Returns the page
/// faults of each burst.
fn bursts(site: hakmem::SiteId, size: usize, n: usize, bursts: usize) -> Vec<u64> {
    let mut faults = Vec::new();
    for _ in 0..bursts {
        let before = minflt();
        let blocks: Vec<*mut u8> = (0..n)
            .map(|_| {
                let p = hakmem::alloc_recorded(size, 16, site);
                assert!(!p.is_null());
                // SAFETY: `size` bytes are ours.
                unsafe { p.write_bytes(0x77, size) };
                p
            })
            .collect();
        faults.push(minflt() - before);
        for p in blocks {
            // SAFETY: live blocks.
            unsafe { hakmem::free(p) };
        }
        std::thread::sleep(Duration::from_millis(3 * DECAY_MS));
    }
    faults
}

#[test]
fn a_bursty_large_site_keeps_its_mappings_resident() {
    // SAFETY: no other thread runs yet; the allocator reads this once.
    unsafe { std::env::set_var("HAKMEM_DECAY_MS", DECAY_MS.to_string()) };
    let size = 3 << 20;

    hakmem::set_site_placement(false);
    let off = bursts(hakmem::SiteId::code(0x5e1f_0001), size, 4, 6);
    let st = hakmem::stats().large_cache;
    assert_eq!(st.reservations, 0, "no reservation while placement is off");

    hakmem::set_site_placement(true);
    let on = bursts(hakmem::SiteId::code(0x5e1f_0002), size, 4, 6);
    let st = hakmem::stats().large_cache;
    eprintln!("faults per burst: off {off:?}, on {on:?}; {st:?}");
    assert_eq!(st.reservations, 1);
    assert!(st.reserved_hits >= 3 * 4, "later bursts hit: {st:?}");
    // without the reservation every burst faults its pages in again (one
    // fault per huge page where transparent huge pages serve them: fresh
    // mappings of unreserved lengths end on a huge-page boundary, so at
    // least one per block)
    let least = *off.iter().min().unwrap();
    assert!(least >= 4, "bursts off fault their memory in: {off:?}");
    // with it, the bursts after the reservation (made in the second) are
    // served from resident mappings
    // (the burst that made it mapped some blocks before it existed, ending
    // on a huge-page boundary, so not of the reserved length: the next
    // burst maps those afresh once; from then on all are resident)
    for (i, f) in on.iter().enumerate().skip(3) {
        assert!(*f * 10 < least, "burst {i} on: {f} faults vs {least} off");
    }
}
