//! larson: the classic server simulation (Larson & Krishnan).
//!
//! Each of `--threads` lanes owns a window of `--chunks` blocks of random
//! sizes in `--min..=--max`. A thread of the lane replaces `chunks * rounds`
//! random blocks of the window (free the victim, allocate a new one), then
//! starts a successor thread, hands it the window and exits; the successor
//! frees blocks its predecessor allocated (cross-thread frees). Each lane runs
//! `--generations` threads. The initial windows are allocated by the main
//! thread before the clock starts. Presets of the prototype: burst
//! (`--chunks 10000 --rounds 1`) and loop (`--chunks 100 --rounds 100`),
//! sizes 8-1024 and 8-128.
use std::sync::mpsc;
use std::time::Instant;

use bench_workloads::{Args, Block, Report, Rng, Sampler};

struct Lane {
    window: Vec<Block>,
    rng: Rng,
    sampler: Sampler,
}

#[derive(Clone, Copy)]
struct Params {
    replacements: usize,
    min: usize,
    max: usize,
}

fn generation(mut lane: Lane, left: u64, p: Params, done: mpsc::Sender<Lane>) {
    let n = lane.window.len();
    for _ in 0..p.replacements {
        let v = lane.rng.below(n);
        let size = lane.rng.range(p.min, p.max);
        lane.window[v].free(&mut lane.sampler);
        lane.window[v] = Block::alloc(size, &mut lane.sampler);
    }
    if left > 1 {
        // The successor inherits the window; this thread exits right away.
        drop(std::thread::spawn(move || {
            generation(lane, left - 1, p, done)
        }));
    } else if done.send(lane).is_err() {
        std::process::abort();
    }
}

fn main() {
    let a = Args::from_env(
        "larson",
        "Larson server simulation: windows of random-size blocks replaced at random, handed from thread to successor thread",
    );
    let chunks = a.count("chunks", 10_000, "blocks in each thread's window") as usize;
    let rounds = a.count(
        "rounds",
        1,
        "replacements per generation, in windows (chunks*rounds)",
    ) as usize;
    let generations = a.count(
        "generations",
        100,
        "threads per lane (each hands its window to the next)",
    );
    let min = a.size("min", 8, "smallest block size");
    let max = a.size("max", 1024, "largest block size");
    let c = a.common(2);
    a.finish();
    assert!(
        chunks > 0 && generations > 0 && min <= max && min > 0,
        "bad parameters"
    );

    let p = Params {
        replacements: chunks * rounds,
        min,
        max,
    };
    let calls = 2 * p.replacements as u64 * generations;
    let mut warm = Sampler::disabled();
    let lanes: Vec<Lane> = (0..c.threads)
        .map(|t| {
            let mut rng = c.rng(t as u64);
            let window = (0..chunks)
                .map(|_| Block::alloc(rng.range(min, max), &mut warm))
                .collect();
            Lane {
                window,
                rng,
                sampler: c.sampler(calls),
            }
        })
        .collect();

    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    for lane in lanes {
        let tx = tx.clone();
        drop(std::thread::spawn(move || {
            generation(lane, generations, p, tx)
        }));
    }
    drop(tx);
    let finished: Vec<Lane> = rx.iter().collect();
    let elapsed = start.elapsed();
    assert_eq!(finished.len(), c.threads, "a lane was lost");

    let samplers: Vec<Sampler> = finished
        .into_iter()
        .map(|lane| {
            for b in lane.window {
                b.free(&mut warm);
            }
            lane.sampler
        })
        .collect();
    let ops = samplers.iter().map(Sampler::calls).sum();
    bench_workloads::merge(Report::new("larson", c.threads, ops, elapsed), &samplers)
        .extra("chunks", chunks)
        .extra("rounds", rounds)
        .extra("max", max)
        .print();
}
