//! The command line of `cargo xtask`: one subcommand per module (adding a
//! command is one variant here and its module's `Args`).
use clap::{Parser, Subcommand};

/// Project automation for hakmem.
#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    arg_required_else_help = true
)]
pub struct Xtask {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Workloads x allocators benchmark (interleaved runs, tables and charts).
    BenchMatrix(crate::bench_matrix::Args),
    /// Learning mode on real programs (python3, perl, ruby, sqlite3, gcc)
    /// against balanced and mimalloc (interleaved runs, median times).
    BenchReal(crate::bench_real::Args),
    /// Long mixed run under libhakmem.so with contents checks and RSS bounds.
    Soak(crate::soak::Args),
}
