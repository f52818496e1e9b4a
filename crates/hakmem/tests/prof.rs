//! The profiler of hakmem's own paths (`HAKMEM_PROF`): each path category
//! is seen when the program takes that path, estimated counts follow the
//! calls made, and off it records nothing.

use std::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn row(p: &hakmem::Profile, name: &str) -> hakmem::ProfileRow {
    *p.row(name).unwrap_or_else(|| panic!("no category {name}"))
}

#[test]
fn every_path_taken_is_a_category() {
    let _g = serial();
    // time every call (one in 2^0)
    hakmem::set_profiling(true, 0);
    hakmem::reset_profile();
    let mut small = Vec::new();
    for i in 0..20_000usize {
        small.push(hakmem::malloc(16 + i % 200));
    }
    let mid: Vec<_> = (0..200).map(|_| hakmem::malloc(8 << 10)).collect();
    let large: Vec<_> = (0..4).map(|_| hakmem::malloc(4 << 20)).collect();
    for p in small.iter().chain(&mid).chain(&large) {
        assert!(!p.is_null());
        // SAFETY: a live block of ours.
        unsafe { hakmem::free(*p) };
    }
    // large again: the cache serves it
    let again = hakmem::malloc(4 << 20);
    // SAFETY: a live block of ours.
    unsafe { hakmem::free(again) };
    // realloc in place and moved; calloc
    let r = hakmem::malloc(100);
    // SAFETY: live blocks of ours, each used once.
    let r = unsafe { hakmem::realloc(r, 110) };
    // SAFETY: the live block the first realloc returned, used once.
    let r = unsafe { hakmem::realloc(r, 5000) };
    let c = hakmem::calloc(10, 100);
    // SAFETY: live blocks of ours.
    unsafe {
        hakmem::free(r);
        hakmem::free(c);
    }
    // blocks freed by another thread
    let blocks: Vec<usize> = (0..2000).map(|_| hakmem::malloc(48) as usize).collect();
    std::thread::spawn(move || {
        // a thread with a heap of its own (its first malloc), and one
        // without (the first frees)
        // SAFETY: a live block of ours.
        unsafe { hakmem::free(blocks[0] as *mut u8) };
        let own = hakmem::malloc(16);
        // SAFETY: a live block of ours.
        unsafe { hakmem::free(own) };
        for &p in &blocks[1..] {
            // SAFETY: live blocks handed to this thread, freed once.
            unsafe { hakmem::free(p as *mut u8) };
        }
    })
    .join()
    .unwrap();
    let p = hakmem::profile();
    hakmem::set_profiling(false, 10);
    assert!(p.on);
    assert_eq!(p.sample_shift, 0);
    for name in [
        "tiny pop",
        "tiny refill",
        "tiny spill",
        "mid hit",
        "large map",
        "large cache hit",
        "large free",
        "mmap",
        "remote free",
        "realloc in place",
        "realloc move",
        "calloc zeroing",
    ] {
        let r = row(&p, name);
        assert!(r.samples > 0, "{name}: {r:?}");
        assert!(r.calls >= r.samples, "{name}: {r:?}");
        assert!(r.total_ns > 0 && r.avg_ns > 0.0, "{name}: {r:?}");
        assert!(r.p99_ns >= r.p50_ns * 0.5, "{name}: {r:?}");
    }
    // every small malloc was timed: pops and refills add up to them (the
    // realloc and calloc above add a few)
    let small_mallocs = row(&p, "tiny pop").calls
        + row(&p, "tiny refill").calls
        + row(&p, "remote drain").calls
        + row(&p, "adopt").calls;
    assert!(
        (22_000..22_100).contains(&small_mallocs),
        "small mallocs seen: {small_mallocs}"
    );
    assert_eq!(
        row(&p, "large map").calls + row(&p, "large cache hit").calls,
        5
    );
}

#[test]
fn sampled_counts_estimate_the_calls() {
    let _g = serial();
    hakmem::set_profiling(true, 4);
    hakmem::reset_profile();
    let n = 200_000usize;
    for _ in 0..n {
        let p = hakmem::malloc(32);
        // SAFETY: a live block of ours.
        unsafe { hakmem::free(p) };
    }
    let p = hakmem::profile();
    hakmem::set_profiling(false, 10);
    let seen = row(&p, "tiny pop").calls + row(&p, "tiny refill").calls;
    // one call in 16 timed, each standing for its countdown period
    assert!(row(&p, "tiny pop").samples < (n / 8) as u64);
    assert!(
        (n as u64 * 9 / 10..n as u64 * 11 / 10).contains(&seen),
        "estimated {seen} small mallocs of {n}"
    );
}

#[test]
fn the_default_rate_estimates_the_calls() {
    let _g = serial();
    let shift = hakmem::PROF_DEFAULT_SHIFT;
    hakmem::set_profiling(true, shift);
    hakmem::reset_profile();
    // about 250 due calls at the default rate
    let n = 250usize << shift;
    for _ in 0..n {
        let p = hakmem::malloc(32);
        // SAFETY: a live block of ours.
        unsafe { hakmem::free(p) };
    }
    let p = hakmem::profile();
    hakmem::set_profiling(false, shift);
    assert_eq!(
        p.sample_shift, 12,
        "the documented default (README, options)"
    );
    let seen = row(&p, "tiny pop").calls + row(&p, "tiny refill").calls;
    let samples = row(&p, "tiny pop").samples + row(&p, "tiny refill").samples;
    assert!((125..500).contains(&samples), "{samples} samples");
    assert!(
        (n as u64 * 9 / 10..n as u64 * 11 / 10).contains(&seen),
        "estimated {seen} small mallocs of {n}"
    );
}

#[test]
fn off_records_nothing() {
    let _g = serial();
    hakmem::set_profiling(false, 10);
    hakmem::reset_profile();
    for _ in 0..10_000 {
        let p = hakmem::malloc(64);
        // SAFETY: a live block of ours.
        unsafe { hakmem::free(p) };
    }
    let big = hakmem::malloc(3 << 20);
    // SAFETY: a live block of ours.
    unsafe { hakmem::free(big) };
    let p = hakmem::profile();
    assert!(!p.on);
    assert!(p.rows.iter().all(|r| r.samples == 0), "{p:?}");
}
