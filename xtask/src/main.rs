//! `cargo xtask`: project automation.
//!
//! * `cargo xtask bench-matrix [--quick] [--reps N] [--filter A,B]
//!   [--threads N] [--allocators A,B] [--callgrind] ...`: runs the benchmark
//!   workloads of `benches/workloads` under every allocator, interleaved, and
//!   writes `target/bench-matrix/{results.csv,runs.csv,results.md,*.svg}`;
//!   `--ab` runs hakmem's learning mode against its default instead
//!   (`ab.md`, `ab.csv`, `ab-runs.csv`).
//! * `cargo xtask soak --minutes N`: the long mixed run under
//!   `libhakmem.so` with contents checks and RSS bounds (`soak.rs`).

mod ab;
mod allocators;
mod callgrind;
mod cargo_build;
mod cli;
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

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("bench-matrix") => match cli::Options::parse(&args[1..]) {
            Ok(cli::Parsed::Help) => {
                print!("{}", cli::USAGE);
                ExitCode::SUCCESS
            }
            Ok(cli::Parsed::Run(opts)) => match matrix::main(&opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("bench-matrix: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("bench-matrix: {e}\n\n{}", cli::USAGE);
                ExitCode::from(2)
            }
        },
        Some("soak") => match soak::main(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("soak: {e}");
                ExitCode::FAILURE
            }
        },
        Some("help" | "--help" | "-h") | None => {
            print!("cargo xtask <command>\n\nCommands:\n  bench-matrix   workloads x allocators benchmark (see `cargo xtask bench-matrix --help`)\n  soak           long mixed run under libhakmem.so (see `cargo xtask soak --help`)\n");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("xtask: unknown command `{other}` (try `cargo xtask help`)");
            ExitCode::from(2)
        }
    }
}
