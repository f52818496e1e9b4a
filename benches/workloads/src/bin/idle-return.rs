//! idle-return: memory given back while the program does nothing. `--threads`
//! workers allocate `--total` bytes in all of mixed tiny (16 B-1 KiB, a
//! quarter of the bytes), mid (2-32 KiB, three eighths) and large (64 KiB-4
//! MiB, three eighths) blocks, each keeping at most `--live / threads` bytes
//! live (then freeing all of it and starting over), and free everything.
//! Then, for `--idle-ms`:
//!
//! * `--mode exited`: the workers exit; the main thread idles, making one
//!   small allocation every 250 ms;
//! * `--mode idle`: the workers stay alive, blocked on a barrier; nothing
//!   calls the allocator.
//!
//! Reports `kept_kb`, the RSS at the end of the idle time (the figure of
//! merit: what the allocator kept), `after_free_kb` (right after the last
//! free) and `base_kb` (before the workers started). `ops`/`secs` cover the
//! allocation phase only.
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bench_workloads::{current_rss_kb, Args, Block, Report, Rng, Sampler};

/// A block size: a quarter of the bytes tiny, three eighths mid, three
/// eighths large (by picking the class with probability inverse to its
/// mean size).
fn size(rng: &mut Rng) -> usize {
    // mean sizes: tiny ~520 B, mid ~17 KiB, large ~2 MiB
    let r = rng.below(1 << 20);
    let large_p = (1 << 20) * 3 / 8 * 520 / (2 << 20);
    let mid_p = (1 << 20) * 3 / 8 * 520 / (17 << 10);
    if r < large_p {
        rng.range(64 << 10, 4 << 20)
    } else if r < large_p + mid_p {
        rng.range(2 << 10, 32 << 10)
    } else {
        rng.range(16, 1024)
    }
}

/// One worker: allocates `total` bytes, at most `live` of them live at a
/// time, and frees everything. Returns its calls.
fn work(mut rng: Rng, total: usize, live: usize) -> u64 {
    let mut s = Sampler::disabled();
    let mut blocks: Vec<Block> = Vec::new();
    let (mut done, mut held) = (0usize, 0usize);
    while done < total {
        let n = size(&mut rng);
        blocks.push(Block::alloc(n, &mut s));
        done += n;
        held += n;
        if held >= live {
            for b in blocks.drain(..) {
                b.free(&mut s);
            }
            held = 0;
        }
    }
    for b in blocks.drain(..) {
        b.free(&mut s);
    }
    drop(blocks);
    s.calls()
}

fn main() {
    let a = Args::from_env(
        "idle-return",
        "threads allocate and free ~1 GiB of mixed blocks, then exit or block; RSS kept after idling",
    );
    let total = a.size("total", 1 << 30, "bytes allocated in all");
    let live = a.size("live", 256 << 20, "bytes live at most (all threads)");
    let idle_ms = a.count("idle-ms", 2000, "ms of idling before RSS is read");
    let mode: String = a.value("mode", "exited".to_string(), "exited | idle");
    let c = a.common(2);
    a.finish();
    let exited = match mode.as_str() {
        "exited" => true,
        "idle" => false,
        _ => {
            eprintln!("HAKMEM_BENCH_ERROR --mode must be exited or idle");
            std::process::exit(2);
        }
    };
    let n = c.threads;
    let (total, live) = (total / n, (live / n).max(1));
    let base_kb = current_rss_kb();
    let freed = Arc::new(Barrier::new(n + 1));
    let resume = Arc::new(Barrier::new(n + 1));
    let start = Instant::now();
    let mut workers: Vec<_> = (0..n)
        .map(|i| {
            let rng = c.rng(i as u64);
            let (freed, resume) = (freed.clone(), resume.clone());
            std::thread::spawn(move || {
                let calls = work(rng, total, live);
                if !exited {
                    freed.wait();
                    resume.wait();
                }
                calls
            })
        })
        .collect();
    let mut calls = 0;
    let (elapsed, after_free_kb);
    if exited {
        for w in workers.drain(..) {
            calls += w.join().unwrap_or(0);
        }
        elapsed = start.elapsed();
        after_free_kb = current_rss_kb();
        // a few small calls while idling
        let until = Instant::now() + Duration::from_millis(idle_ms);
        while Instant::now() < until {
            let b = std::hint::black_box(Block::alloc(64, &mut Sampler::disabled()));
            b.free(&mut Sampler::disabled());
            std::thread::sleep(Duration::from_millis(250).min(until - Instant::now()));
        }
    } else {
        freed.wait();
        elapsed = start.elapsed();
        // reading RSS allocates: read it once here and once at the end
        after_free_kb = current_rss_kb();
        std::thread::sleep(Duration::from_millis(idle_ms));
    }
    let kept_kb = current_rss_kb();
    if !exited {
        resume.wait();
        for w in workers {
            calls += w.join().unwrap_or(0);
        }
    }
    Report::new("idle-return", n, calls, elapsed)
        .extra("mode", mode)
        .extra("base_kb", base_kb)
        .extra("after_free_kb", after_free_kb)
        .extra("kept_kb", kept_kb)
        .print();
}
