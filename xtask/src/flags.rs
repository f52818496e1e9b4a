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
    /// Long mixed run under libhakmem.so with contents checks and RSS bounds
    /// (`cargo xtask soak --help` for its options).
    #[command(disable_help_flag = true)]
    Soak(SoakArgs),
}

/// The arguments of `soak`, parsed by `soak.rs` (`--minutes N`, ...).
#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}
