//! `hakmem`: run a program under the hakmem allocator and read what it
//! reports.
//!
//! * `hakmem run [OPTIONS] -- PROGRAM ARGS`: finds `libhakmem.so`, sets
//!   `LD_PRELOAD` and the `HAKMEM_*` variables the options ask for, and
//!   execs the program (its exit status is the program's).
//! * `hakmem sites REPORT.json`: a site report (`HAKMEM_SITES_JSON`) as a
//!   table, sorted by bytes or by calls.
//! * `hakmem policy show FILE` / `hakmem policy diff A B`: saved policies
//!   (`HAKMEM_POLICY_SAVE`), read with the allocator's own parser.
//!
//! Errors are one line on stderr (`hakmem: ...`) and exit status 2.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod policy;
mod run;
mod sites;

#[derive(Debug, Parser)]
#[command(
    name = "hakmem",
    version,
    about = "Run programs under the hakmem allocator and read its reports"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a program with libhakmem.so preloaded.
    Run(run::Args),
    /// Print a call-site report (HAKMEM_SITES_JSON) as a table.
    Sites(sites::Args),
    /// Show or compare saved policies (HAKMEM_POLICY_SAVE).
    #[command(subcommand)]
    Policy(policy::Command),
}

/// A failure: the one line printed after `hakmem: `.
#[derive(Debug)]
pub struct Error(String);

impl<T: std::fmt::Display> From<T> for Error {
    fn from(e: T) -> Error {
        Error(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Sites(args) => sites::run(args),
        Command::Policy(cmd) => policy::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(Error(line)) => {
            eprintln!("hakmem: {line}");
            ExitCode::from(2)
        }
    }
}
