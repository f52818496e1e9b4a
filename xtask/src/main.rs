//! `cargo xtask`: project automation.
//!
//! * `cargo xtask bench-matrix [--quick] [--reps N] [--filter A,B]
//!   [--threads N] [--allocators A,B] [--callgrind] ...`: runs the benchmark
//!   workloads of `benches/workloads` under every allocator, interleaved, and
//!   writes `target/bench-matrix/{results.csv,runs.csv,results.md,*.svg}`;
//!   `--ab` runs hakmem's learning mode against its default instead
//!   (`ab.md`, `ab.csv`, `ab-runs.csv`).
//! * `cargo xtask bench-real [--reps N] [--filter A,B]`: hakmem's learning
//!   mode on real programs (python3, perl, ruby, sqlite3, gcc) against its
//!   default and mimalloc (`bench_real.rs`; `target/bench-real/real.md`).
//! * `cargo xtask soak --minutes N`: the long mixed run under
//!   `libhakmem.so` with contents checks and RSS bounds (`soak.rs`).

mod ab;
mod allocators;
mod bench_matrix;
mod bench_real;
mod callgrind;
mod cargo_build;
mod flags;
mod learnlog;
mod matrix;
mod policyfile;
mod progress;
mod record;
mod report;
mod runner;
mod soak;
mod summary;
mod svg;
mod workloads;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match flags::Xtask::parse().command {
        flags::Command::BenchMatrix(args) => args.run(),
        flags::Command::BenchReal(args) => args.run(),
        flags::Command::Soak(a) => match soak::main(&a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("soak: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
