//! What the allocator calls during its initialisation must not allocate:
//! the options parse (`from_env`, `from_lookup`, warning lines) and the
//! policy file (`parse`, `serialize`). A counting global allocator checks it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use hakmem_options::Options;
use hakmem_policy_rcu::{FrozenPolicy, DEFAULT_POLICY, POLICY_FILE_MAX};

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Allocations `f` makes on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCS.with(Cell::get);
    f();
    ALLOCS.with(Cell::get) - before
}

#[test]
fn the_counter_counts() {
    assert!(allocations(|| drop(std::hint::black_box(vec![1u8; 10]))) > 0);
}

#[test]
fn parsing_options_and_policies_does_not_allocate() {
    let vars: [(&str, &[u8]); 4] = [
        ("HAKMEM_MODE", b"bogus"),
        ("HAKMEM_DECAY_MS", b"250"),
        ("HAKMEM_POLICY", b"/tmp/p"),
        ("HAKMEM_SITES_SAMPLE", b"99"),
    ];
    let mut text = [0u8; POLICY_FILE_MAX];
    let mut lines = 0;
    let n = allocations(|| {
        let (o, w) =
            Options::from_lookup(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| *v));
        assert_eq!(o.decay_ms, Some(250));
        for warning in w.iter() {
            lines += warning.line().as_bytes().len();
        }
        // SAFETY: nothing in this test binary changes the environment.
        let (_, w) = unsafe { Options::from_env() };
        for warning in w.iter() {
            lines += warning.line().as_bytes().len();
        }
        let len = DEFAULT_POLICY.serialize(&mut text).unwrap();
        assert_eq!(FrozenPolicy::parse(&text[..len]), Ok(DEFAULT_POLICY));
        let err = FrozenPolicy::parse(b"hakmem-policy v1\nbogus = 1\n").unwrap_err();
        assert_eq!(err.line, 2);
    });
    assert!(lines > 0);
    assert_eq!(n, 0, "allocations during parsing");
}
