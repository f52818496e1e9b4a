//! Multi-threaded stress over the mid and large tiers with content checks.
//!
//! Threads allocate blocks from 1 KiB to 8 MiB (mid classes, the biggest
//! slab classes, BigCache sizes and direct mappings), some with alignments up
//! to 2 MiB, grow and shrink them with `realloc` (in place, mremap and
//! copying paths), hand a quarter of them to other threads through shared
//! slots (remote frees of mid blocks, foreign-thread frees of large ones),
//! and check every block's contents before each realloc and free. A block
//! records its own length and a pattern keyed by its identity, not its
//! address, so moves by realloc are checked too.
//!
//! Bounded to a few seconds; `HAKMEM_STRESS_SECS` makes it run longer.

mod common;
use common::Rng;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[global_allocator]
static A: hakmem::HakMem = hakmem::HakMem;

const THREADS: usize = 4;
const SLOTS: usize = 256;

/// A live block: `words` u64 words, word 0 = words, word 1 = id, the rest a
/// pattern of (id, index). Only the first and last 64 words and every 509th
/// word are written and checked, so multi-MiB blocks stay cheap while a
/// misplaced page or a lost tail is still caught.
#[derive(Clone, Copy)]
struct Block {
    p: *mut u64,
    words: usize,
    id: u64,
    align: usize,
}
// SAFETY: a Block is an owned allocation handed between threads whole.
unsafe impl Send for Block {}

fn probes(words: usize) -> impl Iterator<Item = usize> {
    let head = 2..words.min(66);
    let tail = words.saturating_sub(64).max(66)..words;
    let mid = (66..words.saturating_sub(64)).step_by(509);
    head.chain(mid).chain(tail)
}

fn pattern(id: u64, i: usize) -> u64 {
    (id.wrapping_mul(0x9E37_79B9_7F4A_7C15)) ^ (i as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93)
}

fn fill(b: &Block) {
    // SAFETY: the block holds `b.words` words.
    unsafe {
        b.p.write(b.words as u64);
        b.p.add(1).write(b.id);
        for i in probes(b.words) {
            b.p.add(i).write(pattern(b.id, i));
        }
    }
}

fn check(b: &Block, upto: usize) {
    // SAFETY: the block holds at least `upto` written words.
    unsafe {
        assert_eq!(b.p.read(), b.words as u64, "block {:?}: length word", b.p);
        assert_eq!(b.p.add(1).read(), b.id, "block {:?}: id word", b.p);
        for i in probes(b.words).filter(|&i| i < upto) {
            assert_eq!(
                b.p.add(i).read(),
                pattern(b.id, i),
                "block {:?} ({} words, id {}) word {i} corrupted",
                b.p,
                b.words,
                b.id
            );
        }
        assert!(hakmem::usable_size(b.p.cast()) >= b.words * 8);
    }
}

fn random_words(rng: &mut Rng) -> usize {
    let bytes = match rng.below(100) {
        0..=59 => 1024 + rng.below(31 * 1024),        // mid, 1..32 KiB
        60..=84 => 32 * 1024 + rng.below(992 * 1024), // mid, 32 KiB..1 MiB
        85..=96 => (1 << 20) + rng.below(3 << 20),    // large, 1..4 MiB
        _ => (4 << 20) + rng.below(4 << 20),          // large, 4..8 MiB
    };
    (bytes as usize / 8).max(3)
}

fn alloc(rng: &mut Rng, id: u64) -> Block {
    let words = random_words(rng);
    let align = match rng.below(10) {
        0 => 1 << (12 + rng.below(10)), // 4 KiB .. 2 MiB
        _ => 16,
    };
    let p = if align > 16 {
        hakmem::aligned_alloc(align, words * 8)
    } else {
        hakmem::malloc(words * 8)
    }
    .cast::<u64>();
    assert!(!p.is_null(), "allocation of {} bytes failed", words * 8);
    assert_eq!(p as usize % align, 0, "alignment {align}");
    let b = Block {
        p,
        words,
        id,
        align,
    };
    fill(&b);
    b
}

fn free(b: Block) {
    check(&b, b.words);
    // SAFETY: a live block from this allocator, freed once.
    unsafe { hakmem::free(b.p.cast()) };
}

fn resize(rng: &mut Rng, b: Block) -> Block {
    check(&b, b.words);
    let words = if rng.below(2) == 0 {
        // grow by up to 2x, or shrink to a quarter..all
        b.words + rng.below(b.words as u64 + 1) as usize
    } else {
        (b.words / 4 + rng.below(b.words as u64 * 3 / 4 + 1) as usize).max(3)
    };
    // SAFETY: a live block; on success the old pointer is dead.
    let p = unsafe {
        if b.align > 16 {
            hakmem::realloc_aligned(b.p.cast(), words * 8, b.align)
        } else {
            hakmem::realloc(b.p.cast(), words * 8)
        }
    }
    .cast::<u64>();
    assert!(!p.is_null());
    assert_eq!(
        p as usize % b.align,
        0,
        "realloc kept alignment {}",
        b.align
    );
    let kept = words.min(b.words);
    // The length word changed meaning; check the surviving prefix first.
    let nb = Block { p, words, ..b };
    // SAFETY: the first `kept` words were copied or kept in place.
    unsafe {
        assert_eq!(p.add(1).read(), b.id, "realloc lost the id word");
        for i in probes(b.words).filter(|&i| i < kept) {
            assert_eq!(p.add(i).read(), pattern(b.id, i), "realloc lost word {i}");
        }
    }
    fill(&nb);
    nb
}

#[test]
fn stress_mid_large_cross_thread() {
    let secs = common::stress_secs(3);
    let shared: Vec<std::sync::Mutex<Option<Block>>> =
        (0..SLOTS).map(|_| std::sync::Mutex::new(None)).collect();
    let ops = AtomicU64::new(0);
    let reallocs = AtomicU64::new(0);
    let handed = AtomicUsize::new(0);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut round = 0u64;
    while Instant::now() < deadline || round < 2 {
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (shared, ops, reallocs, handed) = (&shared, &ops, &reallocs, &handed);
                s.spawn(move || {
                    let seed = 0xA076_1D64_78BD_642F ^ (round * 1000 + t as u64 + 1);
                    let mut rng = Rng(seed);
                    let mut next_id = seed << 20;
                    let mut mine: Vec<Block> = Vec::new();
                    let n = 1500 + rng.below(1500) as usize;
                    for _ in 0..n {
                        next_id += 1;
                        mine.push(alloc(&mut rng, next_id));
                        // keep the live set near 40 blocks (~40 MiB worst case)
                        if mine.len() > 40 || rng.below(3) == 0 {
                            let i = rng.below(mine.len() as u64) as usize;
                            free(mine.swap_remove(i));
                        }
                        if rng.below(4) == 0 && !mine.is_empty() {
                            let i = rng.below(mine.len() as u64) as usize;
                            mine[i] = resize(&mut rng, mine[i]);
                            reallocs.fetch_add(1, Ordering::Relaxed);
                        }
                        if rng.below(4) == 0 && !mine.is_empty() {
                            let i = rng.below(mine.len() as u64) as usize;
                            let slot = rng.below(SLOTS as u64) as usize;
                            let old = shared[slot].lock().unwrap().replace(mine[i]);
                            handed.fetch_add(1, Ordering::Relaxed);
                            match old {
                                Some(o) => mine[i] = o,
                                None => {
                                    mine.swap_remove(i);
                                }
                            }
                        }
                    }
                    for b in mine {
                        free(b);
                    }
                    ops.fetch_add(n as u64, Ordering::Relaxed);
                });
            }
        });
        round += 1;
    }
    for s in &shared {
        if let Some(b) = s.lock().unwrap().take() {
            free(b);
        }
    }
    let st = hakmem::stats();
    let remote: u64 = st.classes.sum(0..hakmem::NCLASSES, |c| c.remote_frees);
    eprintln!(
        "stress_mid_large: {round} rounds, {} allocations, {} reallocs, {} hand-offs, {remote} remote frees",
        ops.load(Ordering::Relaxed),
        reallocs.load(Ordering::Relaxed),
        handed.load(Ordering::Relaxed),
    );
    assert!(
        remote > 100,
        "hand-offs must cause remote frees of mid blocks"
    );
    // Everything is freed: the allocator can give the memory back.
    hakmem::collect();
}
