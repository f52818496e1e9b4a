//! A model test of the heap box over the fake platform: random sequences of
//! allocations and frees over a few heaps (local and remote frees, thread
//! exits and new threads, collection, decay, map and purge failures). Every
//! live block is filled with its own pattern and checked when freed and
//! after each step that moves blocks around; at the end every block is
//! freed and every superslab must be back in the pool (a lost block would
//! keep its superslab out). After every step every heap passes
//! `Heap::check` and the registry `Registry::check`.

#[macro_use]
mod common;

use common::{
    assert_all_superslabs_pooled, check_heaps, check_registry, drain_orphans, remote_free, Live,
    TestEnv, ThreadHeap,
};
use hakmem_heap::HeapEnv;
use proptest::prelude::*;

const HEAPS: usize = 3;
const SIZES: [usize; 10] = [0, 8, 24, 100, 640, 1024, 1500, 9000, 40_000, 200_000];

#[derive(Debug, Clone)]
enum Op {
    Alloc {
        heap: usize,
        size: usize,
    },
    /// Frees the `pick`-th live block (modulo) from `heap`.
    Free {
        heap: usize,
        pick: usize,
    },
    /// Frees a block from a thread without a heap.
    FreeRemote {
        pick: usize,
    },
    /// The heap's thread exits; a new thread takes a heap.
    Exit {
        heap: usize,
    },
    Collect {
        heap: usize,
    },
    Maintain {
        heap: usize,
        force: bool,
    },
    Clock {
        ms: u64,
    },
    /// Maps fail after `after` more calls (until `MapOk`).
    MapFail {
        after: u64,
    },
    MapOk,
    PurgeFail,
    PurgeOk,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (0..HEAPS, 0..SIZES.len()).prop_map(|(heap, s)| Op::Alloc { heap, size: SIZES[s] }),
        20 => (0..HEAPS, any::<usize>()).prop_map(|(heap, pick)| Op::Free { heap, pick }),
        5 => any::<usize>().prop_map(|pick| Op::FreeRemote { pick }),
        2 => (0..HEAPS).prop_map(|heap| Op::Exit { heap }),
        1 => (0..HEAPS).prop_map(|heap| Op::Collect { heap }),
        2 => (0..HEAPS, any::<bool>()).prop_map(|(heap, force)| Op::Maintain { heap, force }),
        2 => (0u64..3000).prop_map(|ms| Op::Clock { ms }),
        1 => (0u64..4).prop_map(|after| Op::MapFail { after }),
        2 => Just(Op::MapOk),
        1 => Just(Op::PurgeFail),
        1 => Just(Op::PurgeOk),
    ]
}

test_env!(M, 1 << 30);

fn run(ops: &[Op]) {
    let f = M::fake();
    f.clear_failures();
    let mut heaps: Vec<Option<ThreadHeap<M>>> = (0..HEAPS).map(|_| ThreadHeap::try_new()).collect();
    let mut live = Live::new();
    let mut failing = false;
    for op in ops {
        match *op {
            Op::Alloc { heap, size } => {
                if heaps[heap].is_none() {
                    heaps[heap] = ThreadHeap::try_new();
                }
                let Some(t) = heaps[heap].as_mut() else {
                    assert!(failing, "no heap although the platform works");
                    continue;
                };
                let p = t.alloc(size);
                if p.is_null() {
                    assert!(
                        failing,
                        "allocation of {size} failed although the platform works"
                    );
                } else {
                    live.add(p, size);
                }
            }
            Op::Free { heap, pick } => {
                if live.is_empty() {
                    continue;
                }
                let p = live.remove(live.nth(pick % live.len()));
                match heaps[heap].as_mut() {
                    // SAFETY: a live block, freed once.
                    Some(t) => unsafe { t.free(p) },
                    None => remote_free::<M>(p),
                }
            }
            Op::FreeRemote { pick } => {
                if live.is_empty() {
                    continue;
                }
                remote_free::<M>(live.remove(live.nth(pick % live.len())));
            }
            Op::Exit { heap } => {
                if let Some(t) = heaps[heap].take() {
                    t.exit();
                    live.check_all();
                }
                heaps[heap] = ThreadHeap::try_new();
            }
            Op::Collect { heap } => {
                if let Some(t) = heaps[heap].as_mut() {
                    t.heap().collect();
                    live.check_all();
                }
            }
            Op::Maintain { heap, force } => {
                if let Some(t) = heaps[heap].as_mut() {
                    t.heap().maintain(force);
                }
            }
            Op::Clock { ms } => f.advance_ms(ms),
            Op::MapFail { after } => {
                f.fail_map_after(after);
                failing = true;
            }
            Op::MapOk => {
                f.map_works();
                failing = false;
            }
            Op::PurgeFail => f.fail_purge_after(0),
            Op::PurgeOk => f.purge_works(),
        }
        check_heaps(&mut heaps);
        check_registry::<M>();
    }
    live.check_all();
    f.clear_failures();
    for p in live.all() {
        let p = live.remove(p);
        match heaps[0].as_mut() {
            // SAFETY: a live block, freed once.
            Some(t) => unsafe { t.free(p) },
            None => remote_free::<M>(p),
        }
    }
    check_heaps(&mut heaps);
    for t in heaps.into_iter().flatten() {
        t.exit();
        check_registry::<M>();
    }
    drain_orphans::<M>();
    assert_all_superslabs_pooled::<M>();
    let (_, in_use) = M::registry().counts();
    assert_eq!(in_use, 0);
    assert!(M::orphanage().is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_allocations_over_heaps_keep_every_block(ops in prop::collection::vec(op(), 1..400)) {
        run(&ops);
    }
}
