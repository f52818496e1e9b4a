//! Command line of `cargo xtask bench-matrix`.
use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str = "\
cargo xtask bench-matrix [options]

Runs every benchmark workload (benches/workloads) under every allocator,
interleaved (A B C A B C ...), and reports the median with min-max and the
ratio to mimalloc. Writes target/bench-matrix/results.csv (one row per
workload and allocator), runs.csv (one row per run), results.md (also
printed), throughput.svg and peak-rss.svg. Builds what it needs first.

Options:
  --quick             short runs (the whole matrix in under 3 minutes on 2 cores)
  --reps N            repetitions per cell (default 5)
  --filter A,B        only workloads whose name contains A or B
  --threads N         threads of the multi-threaded workloads (default: all cores)
  --allocators A,B    any of system, hakmem, hakmem-inproc, mimalloc, jemalloc,
                      tcmalloc, snmalloc (default: all that are available)
  --timeout SECS      limit per run (default 120, --quick 30); a run over it fails
  --callgrind         instead of the timing matrix: instructions per malloc+free
                      pair of tiny-hot (size 32, 100 live blocks) under
                      valgrind --tool=callgrind, for each allocator (and
                      hakmem's fast mode and a FROZEN learner on a saved
                      policy)
  --ab                instead of the matrix: hakmem's learning mode against its
                      default (balanced), a reload of the learned policy and
                      mimalloc, on the workloads whose best policy differs
                      from the default and on all the others; writes ab.md,
                      ab.csv, ab-runs.csv and the learner logs (ab/logs)
  --window MS         --ab: learning window (HAKMEM_LEARN_WINDOW_MS, default 50)
  --no-build          use the binaries and libraries already built
  --out DIR           output directory (default target/bench-matrix)
  --list              list the workloads and allocators, then exit
  -h, --help          this text

tcmalloc and snmalloc are used when their shared library is on the system
(Debian: libtcmalloc-minimal4), or named by HAKMEM_BENCH_TCMALLOC /
HAKMEM_BENCH_SNMALLOC; otherwise they are skipped with a note.
";

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

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    Help,
    Run(Options),
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

impl Options {
    /// Parses the arguments after `bench-matrix`.
    pub fn parse(args: &[String]) -> Result<Parsed, String> {
        let mut quick = false;
        let mut reps = None;
        let mut filter = Vec::new();
        let mut threads = None;
        let mut allocators = None;
        let mut timeout = None;
        let mut callgrind = false;
        let mut ab = false;
        let mut window = None;
        let mut build = true;
        let mut out = None;
        let mut list_only = false;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
                _ => (arg.as_str(), None),
            };
            let mut value = |what: &str| -> Result<String, String> {
                match inline.clone() {
                    Some(v) => Ok(v),
                    None => it
                        .next()
                        .cloned()
                        .ok_or_else(|| format!("{name} needs {what}")),
                }
            };
            let number = |v: String| -> Result<usize, String> {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{name}: `{v}` is not a positive number"))
            };
            match name {
                "-h" | "--help" => return Ok(Parsed::Help),
                "--quick" => quick = true,
                "--callgrind" => callgrind = true,
                "--ab" => ab = true,
                "--window" => window = Some(number(value("milliseconds")?)?),
                "--no-build" => build = false,
                "--list" => list_only = true,
                "--reps" => reps = Some(number(value("a count")?)?),
                "--threads" => threads = Some(number(value("a count")?)?),
                "--timeout" => timeout = Some(number(value("seconds")?)?),
                "--filter" => filter.extend(list(&value("workload names")?)),
                "--allocators" => {
                    let v = list(&value("allocator names")?);
                    for a in &v {
                        if !crate::allocators::NAMES.contains(&a.as_str()) {
                            return Err(format!(
                                "unknown allocator `{a}` (known: {})",
                                crate::allocators::NAMES.join(", ")
                            ));
                        }
                    }
                    if v.is_empty() {
                        return Err("--allocators: empty list".into());
                    }
                    allocators = Some(v);
                }
                "--out" => out = Some(PathBuf::from(value("a directory")?)),
                other => return Err(format!("unknown option `{other}`")),
            }
        }
        if ab && callgrind {
            return Err("--ab and --callgrind are different runs: pick one".into());
        }
        Ok(Parsed::Run(Options {
            quick,
            reps: reps.unwrap_or(5),
            filter,
            threads: threads.unwrap_or_else(default_threads),
            allocators,
            timeout: Duration::from_secs(timeout.unwrap_or(match (ab, quick) {
                (true, _) => 180,
                (false, true) => 30,
                (false, false) => 120,
            }) as u64),
            callgrind,
            ab,
            window_ms: window.unwrap_or(50) as u64,
            build,
            out,
            list: list_only,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Parsed, String> {
        let v: Vec<String> = s.split_whitespace().map(String::from).collect();
        Options::parse(&v)
    }

    fn run(s: &str) -> Options {
        match parse(s) {
            Ok(Parsed::Run(o)) => o,
            other => panic!("{s}: {other:?}"),
        }
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
        assert_eq!(parse("--help"), Ok(Parsed::Help));
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
