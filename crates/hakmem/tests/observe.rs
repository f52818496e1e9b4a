//! The learner's observation slices count `malloc` calls: small ones by a
//! countdown (a period of up to 48-72 calls credited at once, the fast path kept
//! in between), larger ones one by one on the slow path. The count must be
//! right to within a period per thread, whichever path a call took, and
//! nothing is counted outside a slice. (Balanced mode: no learner thread
//! turns slices on behind the test's back.)
use hakmem::learner_testing::{call_sizes, calls, latency_samples, observe};

/// `ace_learner::signature::size_bin`: ceil(log2(size)) - 3.
fn bin(size: usize) -> usize {
    (usize::BITS - (size - 1).leading_zeros()) as usize - 3
}

/// The most a thread's count may be off by: the countdown's period left
/// over from an earlier slice, plus the calls after its last credit.
const SLACK: u64 = 2 * 80;

fn churn(n: usize, size: usize) {
    let mut live = Vec::with_capacity(64);
    for i in 0..n {
        let p = hakmem::malloc(size);
        assert!(!p.is_null());
        // SAFETY: a live block of `size` bytes.
        unsafe { p.write(i as u8) };
        live.push(p);
        if live.len() == 64 {
            for p in live.drain(..) {
                // SAFETY: live blocks from hakmem::malloc.
                unsafe { hakmem::free(p) };
            }
        }
    }
    for p in live {
        // SAFETY: live blocks from hakmem::malloc, each freed once.
        unsafe { hakmem::free(p) };
    }
}

#[test]
fn slices_count_calls_on_every_path() {
    // warm up: this thread's heap exists, nothing observed
    churn(10_000, 32);
    let base = calls();
    assert_eq!(base, 0, "no slice yet");

    // small calls: the countdown (bins refill as they empty: both paths)
    observe(true);
    let lat0 = latency_samples();
    churn(100_000, 32);
    churn(50_000, 700);
    let small = calls();
    let timed = latency_samples() - lat0;
    observe(false);
    assert!(
        small.abs_diff(150_000) <= SLACK,
        "{small} small calls counted, 150000 made"
    );
    // and by size: each credited period goes to its due call's size
    let sizes = call_sizes();
    assert!(sizes[bin(32)].abs_diff(100_000) <= SLACK, "{sizes:?}");
    assert!(sizes[bin(700)].abs_diff(50_000) <= SLACK, "{sizes:?}");
    assert_eq!(sizes.iter().sum::<u64>(), small);
    // one timed call per period
    assert!(
        (150_000 / 80..=150_000 / 48 + 2).contains(&timed),
        "{timed} calls timed"
    );

    // outside a slice nothing counts
    churn(20_000, 32);
    assert_eq!(calls(), small);

    // mid sizes: each call on the slow path, counted exactly; another
    // thread's small calls count too
    observe(true);
    churn(3_000, 8 << 10);
    std::thread::spawn(|| churn(40_000, 48)).join().unwrap();
    observe(false);
    let more = calls() - small;
    assert!(
        more.abs_diff(43_000) <= 2 * SLACK,
        "{more} calls counted, 43000 made"
    );
    assert_eq!(call_sizes()[bin(8 << 10)] - sizes[bin(8 << 10)], 3_000);
}
