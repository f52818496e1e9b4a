//! producer-consumer: one thread allocates blocks (`--min..=--max` bytes) and
//! passes them through a bounded single-producer/single-consumer ring to
//! another thread, which frees them: every free is a cross-thread free.
//! `--threads N` runs N/2 independent pairs (at least one).
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bench_workloads::{Args, Block, Report, Sampler};

#[repr(align(128))]
struct Padded(AtomicUsize);

struct Ring {
    slots: Box<[AtomicUsize]>,
    head: Padded,
    tail: Padded,
}

impl Ring {
    fn new(cap: usize) -> Self {
        let cap = cap.next_power_of_two();
        Self {
            slots: (0..cap).map(|_| AtomicUsize::new(0)).collect(),
            head: Padded(AtomicUsize::new(0)),
            tail: Padded(AtomicUsize::new(0)),
        }
    }

    fn push(&self, v: usize) {
        let t = self.tail.0.load(Ordering::Relaxed);
        let mut spins = 0u32;
        while t - self.head.0.load(Ordering::Acquire) == self.slots.len() {
            backoff(&mut spins);
        }
        self.slots[t & (self.slots.len() - 1)].store(v, Ordering::Relaxed);
        self.tail.0.store(t + 1, Ordering::Release);
    }

    fn pop(&self) -> usize {
        let h = self.head.0.load(Ordering::Relaxed);
        let mut spins = 0u32;
        while self.tail.0.load(Ordering::Acquire) == h {
            backoff(&mut spins);
        }
        let v = self.slots[h & (self.slots.len() - 1)].load(Ordering::Relaxed);
        self.head.0.store(h + 1, Ordering::Release);
        v
    }
}

fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins < 64 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

fn main() {
    let a = Args::from_env(
        "producer-consumer",
        "one thread allocates, another frees, through a bounded ring",
    );
    let blocks = a.count("blocks", 2_000_000, "blocks per pair");
    let min = a.size("min", 16, "smallest block size");
    let max = a.size("max", 1024, "largest block size");
    let cap = a.count("ring", 1024, "ring capacity").max(2) as usize;
    let c = a.common(2);
    a.finish();
    assert!(min >= 8 && min <= max, "bad sizes (min >= 8)");

    let pairs = (c.threads / 2).max(1);
    let rings: Arc<Vec<Ring>> = Arc::new((0..pairs).map(|_| Ring::new(cap)).collect());
    let start = Instant::now();
    let samplers = bench_workloads::run_threads(2 * pairs, move |t| {
        let ring = &rings[t / 2];
        let mut s = c.sampler(blocks);
        if t % 2 == 0 {
            let mut rng = c.rng(t as u64);
            for _ in 0..blocks {
                let b = Block::alloc(rng.range(min, max), &mut s);
                ring.push(b.as_ptr() as usize);
            }
        } else {
            for _ in 0..blocks {
                let p = ring.pop() as *mut u8;
                // SAFETY: the producer pushed a live block of at least 8
                // bytes; the Release/Acquire pair on `tail` publishes its tag.
                unsafe { Block::from_raw(p) }.free(&mut s);
            }
        }
        s
    });
    let elapsed = start.elapsed();
    let total = samplers.iter().map(Sampler::calls).sum();
    bench_workloads::merge(
        Report::new("producer-consumer", 2 * pairs, total, elapsed),
        &samplers,
    )
    .print();
}
