//! `cargo xtask bench-matrix`: its command line (clap) and the options the
//! matrix, callgrind and A/B runs read.
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const ABOUT: &str = "\
Runs every benchmark workload (benches/workloads) under every allocator,
interleaved (A B C A B C ...), and reports the median with min-max and the
ratio to mimalloc. Writes target/bench-matrix/results.csv (one row per
workload and allocator), runs.csv (one row per run), results.md (also
printed), throughput.svg and peak-rss.svg. Builds what it needs first.";

const AFTER: &str = "\
tcmalloc and snmalloc are used when their shared library is on the system
(Debian: libtcmalloc-minimal4), or named by HAKMEM_BENCH_TCMALLOC /
HAKMEM_BENCH_SNMALLOC; otherwise they are skipped with a note.";

/// The command line of `bench-matrix`.
#[derive(Debug, Clone, clap::Args)]
#[command(long_about = ABOUT, after_help = AFTER)]
pub struct Args {
    /// Short runs (the whole matrix in under 3 minutes on 2 cores).
    #[arg(long)]
    quick: bool,
    /// Repetitions per cell.
    #[arg(long, value_name = "N", default_value = "5", value_parser = positive)]
    reps: usize,
    /// Only workloads whose name contains A or B (repeatable).
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    filter: Vec<String>,
    /// Threads of the multi-threaded workloads [default: all cores].
    #[arg(long, value_name = "N", value_parser = positive)]
    threads: Option<usize>,
    /// Any of system, hakmem, hakmem-inproc, mimalloc, jemalloc, tcmalloc,
    /// snmalloc [default: all that are available].
    #[arg(long, value_name = "A,B", value_parser = allocator_list)]
    allocators: Option<AllocList>,
    /// Limit per run in seconds (default 120, --quick 30, --ab 180); a run
    /// over it fails.
    #[arg(long, value_name = "SECS", value_parser = positive)]
    timeout: Option<usize>,
    /// Instead of the timing matrix: instructions per malloc+free pair of
    /// tiny-hot (size 32, 100 live blocks) under valgrind
    /// --tool=callgrind, for each allocator (and hakmem's fast mode and a
    /// FROZEN learner on a saved policy).
    #[arg(long)]
    callgrind: bool,
    /// Instead of the matrix: hakmem's learning mode against its default
    /// (balanced), a reload of the learned policy and mimalloc, on the
    /// workloads whose best policy differs from the default and on all the
    /// others; writes ab.md, ab.csv, ab-runs.csv and the learner logs
    /// (ab/logs).
    #[arg(long, conflicts_with = "callgrind")]
    ab: bool,
    /// --ab: learning window (HAKMEM_LEARN_WINDOW_MS).
    #[arg(long, value_name = "MS", default_value = "50", value_parser = positive)]
    window: usize,
    /// Use the binaries and libraries already built.
    #[arg(long)]
    no_build: bool,
    /// Output directory [default: target/bench-matrix].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// List the workloads and allocators, then exit.
    #[arg(long)]
    list: bool,
}

/// A checked `--allocators` list.
#[derive(Debug, Clone, PartialEq)]
pub struct AllocList(Vec<String>);

fn positive(v: &str) -> Result<usize, String> {
    v.parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{v}` is not a positive number"))
}

fn allocator_list(v: &str) -> Result<AllocList, String> {
    let names: Vec<String> = v
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if names.is_empty() {
        return Err("empty list".into());
    }
    for a in &names {
        if !crate::allocators::NAMES.contains(&a.as_str()) {
            return Err(format!(
                "unknown allocator `{a}` (known: {})",
                crate::allocators::NAMES.join(", ")
            ));
        }
    }
    Ok(AllocList(names))
}

/// Options of `bench-matrix`.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub quick: bool,
    pub reps: usize,
    pub filter: Vec<String>,
    pub threads: usize,
    pub allocators: Option<Vec<String>>,
    pub timeout: Duration,
    pub callgrind: bool,
    pub ab: bool,
    pub window_ms: u64,
    pub build: bool,
    pub out: Option<PathBuf>,
    pub list: bool,
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl From<Args> for Options {
    fn from(a: Args) -> Options {
        Options {
            quick: a.quick,
            reps: a.reps,
            filter: a
                .filter
                .into_iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            threads: a.threads.unwrap_or_else(default_threads),
            allocators: a.allocators.map(|l| l.0),
            timeout: Duration::from_secs(a.timeout.unwrap_or(match (a.ab, a.quick) {
                (true, _) => 180,
                (false, true) => 30,
                (false, false) => 120,
            }) as u64),
            callgrind: a.callgrind,
            ab: a.ab,
            window_ms: a.window as u64,
            build: !a.no_build,
            out: a.out,
            list: a.list,
        }
    }
}

impl Args {
    /// Runs the matrix (or the callgrind or A/B run) these options ask for.
    pub fn run(self) -> ExitCode {
        match crate::matrix::main(&self.into()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench-matrix: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        args: Args,
    }

    fn parse(s: &str) -> Result<Options, clap::Error> {
        let argv = std::iter::once("bench-matrix").chain(s.split_whitespace());
        Cmd::try_parse_from(argv).map(|c| c.args.into())
    }

    fn run(s: &str) -> Options {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn defaults_depend_on_quick() {
        let full = run("");
        assert!(!full.quick && full.build && !full.callgrind);
        assert_eq!((full.reps, full.timeout.as_secs()), (5, 120));
        let quick = run("--quick");
        assert_eq!((quick.reps, quick.timeout.as_secs()), (5, 30));
        assert_eq!(run("--quick --reps 7").reps, 7);
    }

    #[test]
    fn parses_values_lists_and_equals_forms() {
        let o = run("--filter larson,tiny --filter=json --threads=4 --allocators system,mimalloc --timeout 9 --no-build --out /tmp/x");
        assert_eq!(o.filter, ["larson", "tiny", "json"]);
        assert_eq!(o.threads, 4);
        assert_eq!(
            o.allocators.as_deref(),
            Some(&["system".to_string(), "mimalloc".to_string()][..])
        );
        assert_eq!(o.timeout.as_secs(), 9);
        assert!(!o.build);
        assert_eq!(o.out, Some(PathBuf::from("/tmp/x")));
        assert!(run("--callgrind").callgrind);
        let ab = run("--ab --window 100 --reps 3");
        assert!(ab.ab && !ab.callgrind);
        assert_eq!((ab.window_ms, ab.reps, ab.timeout.as_secs()), (100, 3, 180));
        assert_eq!(run("--ab").window_ms, 50);
        assert_eq!(run("--ab --timeout 60").timeout.as_secs(), 60);
        assert!(parse("--ab --callgrind").is_err());
        let help = parse("--help").unwrap_err();
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
        let text = help.to_string();
        for opt in [
            "--quick",
            "--reps",
            "--filter",
            "--threads",
            "--allocators",
            "--timeout",
            "--callgrind",
            "--ab",
            "--window",
            "--no-build",
            "--out",
            "--list",
        ] {
            assert!(text.contains(opt), "{opt} missing from the help:\n{text}");
        }
        assert!(text.contains("HAKMEM_BENCH_TCMALLOC"), "{text}");
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "--reps 0",
            "--reps x",
            "--reps",
            "--allocators tcmalloc,nope",
            "--allocators ,",
            "--bogus",
            "stray",
            "--window 0",
        ] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
    }
}
