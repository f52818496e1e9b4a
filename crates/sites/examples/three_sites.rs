//! The prototype's demo: three call sites allocating 64 KiB × 1000,
//! 256 KiB × 100 and 2 MiB × 10 must come out as three distinct sites with
//! those counts and average sizes.
//!
//! `cargo run -p hakmem-sites --example three_sites [-- --json]` prints the
//! text report (or the JSON one). Allocations go through the capture API
//! over the system allocator ([`Profiled`]); each site is one line calling
//! the `#[track_caller]` helper `churn`, so the recorded site is that line.

use std::alloc::{Layout, System};
use std::time::Duration;

use hakmem_sites::{alloc_cs, free_cs, monotonic_ns, Profiled, ReportOptions, SiteTable};

static SITES: SiteTable<64, 4> = SiteTable::new();
static ALLOC: Profiled<System, 64, 4> = Profiled::new(System, &SITES, monotonic_ns);

/// `count` blocks of `size` bytes, recorded at the caller's line; at most
/// `keep` stay live (the oldest is freed first). Returns the live ones.
#[track_caller]
fn churn(size: usize, count: usize, keep: usize) -> Vec<(*mut u8, Layout)> {
    let layout = Layout::from_size_align(size, 16).expect("layout");
    let mut live = std::collections::VecDeque::new();
    for i in 0..count {
        // SAFETY: the size is not zero.
        let p = unsafe { alloc_cs(&ALLOC, layout) };
        assert!(!p.is_null(), "out of memory");
        // SAFETY: `p` has `size` bytes; touch one byte per page.
        unsafe {
            for off in (0..size).step_by(4096) {
                p.add(off).write(i as u8);
            }
        }
        live.push_back((p, layout));
        if live.len() > keep {
            let (p, l) = live.pop_front().unwrap();
            // SAFETY: from `alloc_cs` with `l`, freed once.
            unsafe { free_cs(&ALLOC, p, l) };
        }
    }
    live.into()
}

fn release(blocks: Vec<(*mut u8, Layout)>) {
    for (p, l) in blocks {
        // SAFETY: from `alloc_cs` with `l`, freed once.
        unsafe { free_cs(&ALLOC, p, l) };
    }
}

/// The demo: three sites, everything freed at the end. The 2 MiB blocks
/// are held for 30 ms (long-lived); the others die young.
fn demo() {
    let a = churn(64 << 10, 1000, 0); // site 1: 64 KiB × 1000
    let b = churn(256 << 10, 100, 4); // site 2: 256 KiB × 100
    let c = churn(2 << 20, 10, 10); // site 3: 2 MiB × 10
    release(a);
    release(b);
    std::thread::sleep(Duration::from_millis(30));
    release(c);
}

fn main() {
    demo();
    let opts = ReportOptions::new(monotonic_ns());
    let json = std::env::args().any(|a| a == "--json");
    let ok = if json {
        SITES.report_json_fd(1, &opts)
    } else {
        SITES.report_text_fd(1, &opts)
    };
    assert!(ok, "report written");
}

#[cfg(test)]
mod tests {
    use super::*;
    use hakmem_sites::{LifetimeClass, PolicyClass, SiteKind, Thresholds};

    #[test]
    fn three_distinct_sites_with_exact_counts_and_sizes() {
        demo();
        let now = monotonic_ns();
        let mut sites: Vec<_> = SITES.sites().collect();
        assert_eq!(sites.len(), 3, "three distinct sites: {sites:#?}");
        assert_eq!(SITES.other().allocs, 0);
        sites.sort_by_key(|s| s.avg_size());
        let want = [
            (1000, 64 << 10, PolicyClass::SmallFrequent),
            (100, 256 << 10, PolicyClass::Medium),
            (10, 2 << 20, PolicyClass::LargeInfrequent),
        ];
        let mut lines = Vec::new();
        for (s, (count, avg, class)) in sites.iter().zip(want) {
            assert_eq!(s.site.kind(), SiteKind::Location);
            let loc = s.site.as_location().unwrap();
            assert!(loc.file().ends_with("three_sites.rs"), "{}", loc.file());
            lines.push(loc.line());
            assert_eq!(s.allocs, count);
            assert_eq!(s.frees, count);
            assert_eq!(s.avg_size(), avg);
            assert_eq!(s.max_size, avg);
            assert_eq!(s.bytes, count * avg);
            assert_eq!(s.live_bytes(), 0);
            assert_eq!(s.remote_frees, 0);
            let cls = s.classify(&Thresholds::DEFAULT, now);
            assert_eq!(cls.policy, class);
            if count == 10 {
                // Held for at least 30 ms > 2^24 ns.
                assert_eq!(cls.lifetime, LifetimeClass::Long);
            }
        }
        lines.dedup();
        assert_eq!(lines.len(), 3, "three different lines: {lines:?}");

        let mut text = String::new();
        SITES
            .write_text(&mut text, &ReportOptions::new(now))
            .unwrap();
        println!("{text}");
        assert!(
            text.contains("3 of 64 slots used, 1110 allocations"),
            "{text}"
        );
        for name in ["SMALL_FREQUENT", "MEDIUM", "LARGE_INFREQUENT"] {
            assert!(text.contains(name), "{name} in\n{text}");
        }
    }
}
