//! handoff: `--producers P` threads allocate blocks (`--min..=--max` bytes)
//! and hand them in batches of `--batch` (1: one block at a time) through one
//! locked, bounded queue to `--consumers C` threads, which check and free
//! them: every free is a cross-thread free, and each consumer frees blocks of
//! every producer. Each producer hands over `--blocks` blocks.
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use bench_workloads::{Args, Block, Report, Sampler};

struct State {
    batches: VecDeque<Vec<Block>>,
    producers_left: usize,
}

struct Queue {
    state: Mutex<State>,
    not_empty: Condvar,
    not_full: Condvar,
    cap: usize,
}

impl Queue {
    fn push(&self, batch: Vec<Block>) {
        let mut s = self.state.lock().unwrap();
        while s.batches.len() >= self.cap {
            s = self.not_full.wait(s).unwrap();
        }
        s.batches.push_back(batch);
        drop(s);
        self.not_empty.notify_one();
    }

    /// The next batch; `None` once every producer finished and the queue is
    /// empty.
    fn pop(&self) -> Option<Vec<Block>> {
        let mut s = self.state.lock().unwrap();
        loop {
            if let Some(b) = s.batches.pop_front() {
                drop(s);
                self.not_full.notify_one();
                return Some(b);
            }
            if s.producers_left == 0 {
                return None;
            }
            s = self.not_empty.wait(s).unwrap();
        }
    }

    fn producer_done(&self) {
        self.state.lock().unwrap().producers_left -= 1;
        self.not_empty.notify_all();
    }
}

fn main() {
    let a = Args::from_env(
        "handoff",
        "P producers hand blocks in batches through a locked queue to C consumers, which free them",
    );
    let producers = a.count("producers", 1, "producer threads").max(1) as usize;
    let consumers = a.count("consumers", 1, "consumer threads").max(1) as usize;
    let blocks = a.count("blocks", 1_000_000, "blocks per producer");
    let min = a.size("min", 16, "smallest block size");
    let max = a.size("max", 128, "largest block size");
    let batch = a
        .count("batch", 256, "blocks per hand-off (1: singly)")
        .max(1) as usize;
    let cap = a
        .count("queue", 64, "most batches waiting in the queue")
        .max(1) as usize;
    let c = a.common(producers + consumers);
    a.finish();
    assert!(min >= 8 && min <= max, "bad sizes (min >= 8)");

    let q = Arc::new(Queue {
        state: Mutex::new(State {
            batches: VecDeque::with_capacity(cap),
            producers_left: producers,
        }),
        not_empty: Condvar::new(),
        not_full: Condvar::new(),
        cap,
    });
    let per_consumer = blocks * producers as u64 / consumers as u64;
    let start = Instant::now();
    let results = bench_workloads::run_threads(producers + consumers, move |t| {
        if t < producers {
            let mut s = c.sampler(blocks);
            let mut rng = c.rng(t as u64);
            let mut left = blocks;
            while left > 0 {
                let n = (batch as u64).min(left) as usize;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(Block::alloc(rng.range(min, max), &mut s));
                }
                q.push(v);
                left -= n as u64;
            }
            q.producer_done();
            (s, 0u64)
        } else {
            let mut s = c.sampler(per_consumer);
            let mut freed = 0u64;
            while let Some(v) = q.pop() {
                freed += v.len() as u64;
                for b in v {
                    b.free(&mut s);
                }
            }
            (s, freed)
        }
    });
    let elapsed = start.elapsed();
    let freed: u64 = results.iter().map(|r| r.1).sum();
    assert_eq!(freed, blocks * producers as u64, "blocks lost in the queue");
    let samplers: Vec<Sampler> = results.into_iter().map(|r| r.0).collect();
    let total = samplers.iter().map(Sampler::calls).sum();
    bench_workloads::merge(
        Report::new("handoff", producers + consumers, total, elapsed),
        &samplers,
    )
    .extra("producers", producers)
    .extra("consumers", consumers)
    .extra("batch", batch)
    .extra("min", min)
    .extra("max", max)
    .print();
}
