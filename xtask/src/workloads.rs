//! The cells of the matrix: which workload program runs with which
//! parameters, in the full and the `--quick` matrix.

/// One row of the matrix.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Row name.
    pub name: &'static str,
    /// Program in `benches/workloads/src/bin`.
    pub bin: &'static str,
    /// Whether `--threads` applies.
    pub threads: bool,
    /// Arguments of both matrices.
    pub args: &'static [&'static str],
    /// Extra arguments of the full matrix.
    pub full: &'static [&'static str],
    /// Extra arguments of the `--quick` matrix.
    pub quick: &'static [&'static str],
}

impl Workload {
    /// The program's arguments.
    pub fn argv(&self, quick: bool, threads: usize) -> Vec<String> {
        let mut v: Vec<String> = self.args.iter().map(|s| s.to_string()).collect();
        v.extend(
            (if quick { self.quick } else { self.full })
                .iter()
                .map(|s| s.to_string()),
        );
        if self.threads {
            v.push("--threads".into());
            v.push(threads.to_string());
        }
        v
    }

    /// Environment variables the row sets for every allocator (only hakmem
    /// reads `HAKMEM_*`): see [`ENV`].
    pub fn env(&self) -> &'static [(&'static str, &'static str)] {
        ENV.iter()
            .find(|(n, _)| *n == self.name)
            .map_or(&[], |(_, e)| *e)
    }
}

/// Rows that run with environment variables: the memory-budget row runs
/// hakmem with `HAKMEM_MEM_BUDGET_MB` equal to the workload's
/// `--budget-mb` (the peers have no such control and ignore it).
pub const ENV: &[(&str, &[(&str, &str)])] =
    &[("cache-budget-128", &[("HAKMEM_MEM_BUDGET_MB", "128")])];

const fn w(
    name: &'static str,
    bin: &'static str,
    threads: bool,
    args: &'static [&'static str],
    full: &'static [&'static str],
    quick: &'static [&'static str],
) -> Workload {
    Workload {
        name,
        bin,
        threads,
        args,
        full,
        quick,
    }
}

/// Every workload, in table order: name, program, whether `--threads`
/// applies, common arguments, full-matrix arguments, `--quick` arguments.
/// A `--quick` run takes about 0.1-0.5 s on 2 cores, a full one about 3x that.
#[rustfmt::skip]
pub const ALL: &[Workload] = &[
    w("larson-burst-1k", "larson", true, &["--chunks", "10000", "--rounds", "1", "--min", "8", "--max", "1024"], &["--generations", "300"], &["--generations", "100"]),
    w("larson-burst-128", "larson", true, &["--chunks", "10000", "--rounds", "1", "--min", "8", "--max", "128"], &["--generations", "400"], &["--generations", "160"]),
    w("larson-loop-1k", "larson", true, &["--chunks", "100", "--rounds", "100", "--min", "8", "--max", "1024"], &["--generations", "1200"], &["--generations", "400"]),
    w("larson-loop-128", "larson", true, &["--chunks", "100", "--rounds", "100", "--min", "8", "--max", "128"], &["--generations", "2000"], &["--generations", "600"]),
    w("tiny-hot", "tiny-hot", false, &["--size", "32", "--live", "100"], &["--iters", "60M"], &["--iters", "20M"]),
    w("random-mixed", "random-mixed", false, &["--min", "16", "--max", "1024"], &["--ops", "30M"], &["--ops", "10M"]),
    w("mid-mt", "mid-mt", true, &["--min", "8K", "--max", "32K"], &["--ops", "2M"], &["--ops", "800k"]),
    w("json", "json", false, &[], &["--iters", "30"], &["--iters", "10"]),
    w("mir", "mir", false, &[], &["--iters", "60"], &["--iters", "24"]),
    w("vm", "vm", false, &[], &["--iters", "100"], &["--iters", "40"]),
    w("mixed", "mixed", false, &[], &["--iters", "15"], &["--iters", "5"]),
    w("realloc-chain", "realloc-chain", false, &["--start", "16", "--max", "64M"], &["--iters", "12"], &["--iters", "4"]),
    w("fragmentation", "fragmentation", false, &[], &["--blocks", "400k"], &["--blocks", "200k"]),
    w("large-working-set", "large-working-set", false, &[], &["--mib", "256", "--ops", "5M"], &["--mib", "64", "--ops", "2M"]),
    w("cache-scratch", "cache-scratch", true, &["--size", "8", "--writes", "50"], &["--iters", "4M"], &["--iters", "1500k"]),
    w("cache-thrash", "cache-thrash", true, &["--size", "8", "--writes", "50"], &["--iters", "6M"], &["--iters", "2M"]),
    w("producer-consumer", "producer-consumer", true, &["--min", "16", "--max", "1024"], &["--blocks", "3M"], &["--blocks", "1M"]),
    w("handoff-small-1x1", "handoff", false, &["--producers", "1", "--consumers", "1", "--min", "16", "--max", "128", "--batch", "256"], &["--blocks", "6M"], &["--blocks", "2M"]),
    w("handoff-small-1x3", "handoff", false, &["--producers", "1", "--consumers", "3", "--min", "16", "--max", "128", "--batch", "256"], &["--blocks", "6M"], &["--blocks", "2M"]),
    w("handoff-small-3x1", "handoff", false, &["--producers", "3", "--consumers", "1", "--min", "16", "--max", "128", "--batch", "256"], &["--blocks", "2M"], &["--blocks", "700k"]),
    w("handoff-small-single-2x2", "handoff", false, &["--producers", "2", "--consumers", "2", "--min", "16", "--max", "128", "--batch", "1"], &["--blocks", "600k"], &["--blocks", "200k"]),
    w("handoff-mid-1x1", "handoff", false, &["--producers", "1", "--consumers", "1", "--min", "1K", "--max", "32K", "--batch", "16"], &["--blocks", "600k"], &["--blocks", "200k"]),
    w("handoff-mid-single-1x3", "handoff", false, &["--producers", "1", "--consumers", "3", "--min", "1K", "--max", "32K", "--batch", "1"], &["--blocks", "300k"], &["--blocks", "100k"]),
    w("site-lifetimes", "site-lifetimes", false, &[], &["--phases", "16"], &["--phases", "8"]),
    w("site-lifetimes-noplace", "site-lifetimes", false, &["--placement", "off"], &["--phases", "16"], &["--phases", "8"]),
    w("cache-budget", "cache-budget", false, &["--budget-mb", "128", "--threads", "2"], &["--requests", "40000"], &["--requests", "10000"]),
    w("cache-budget-128", "cache-budget", false, &["--budget-mb", "128", "--threads", "2"], &["--requests", "40000"], &["--requests", "10000"]),
    w("exited-threads", "idle-return", false, &["--mode", "exited", "--total", "1G", "--live", "256M", "--idle-ms", "2000"], &[], &[]),
    w("idle-threads", "idle-return", false, &["--mode", "idle", "--total", "1G", "--live", "256M", "--idle-ms", "2000"], &[], &[]),
];

/// The workloads of the learning A/B (`--ab`) whose best policy differs
/// from hakmem's default: a request handler whose per-request trees
/// overflow the default per-thread bins, an indexer whose large-block cache
/// holds memory that is rarely reused, and a service that loads (like the
/// indexer) then serves (like the handler). Each runs for seconds (the
/// full arguments about 10-20 s under hakmem's default policy, `--quick`
/// about half), long enough for the learner to converge and pay off.
#[rustfmt::skip]
pub const SPECIAL: &[Workload] = &[
    w("request-burst", "request-burst", false, &["--objects", "20000"], &["--requests", "20000"], &["--requests", "10000"]),
    w("index-build", "index-build", false, &["--record-every", "64K"], &["--chunks", "6000"], &["--chunks", "3000"]),
    w("phase-shift", "phase-shift", false, &["--record-every", "64K"], &["--chunks", "3000", "--requests", "30000"], &["--chunks", "1500", "--requests", "6000"]),
];

/// The A/B's workloads whose name contains one of `filter` (all when
/// empty): the special ones first (flagged `true`), then the rest.
pub fn select_ab(filter: &[String]) -> Result<Vec<(Workload, bool)>, String> {
    let keep =
        |w: &Workload| filter.is_empty() || filter.iter().any(|f| w.name.contains(f.as_str()));
    let v: Vec<(Workload, bool)> = SPECIAL
        .iter()
        .filter(|w| keep(w))
        .map(|w| (*w, true))
        .chain(ALL.iter().filter(|w| keep(w)).map(|w| (*w, false)))
        .collect();
    if v.is_empty() {
        return Err(format!("--filter {} matches no workload", filter.join(",")));
    }
    Ok(v)
}

/// The distinct programs the matrix needs.
#[cfg(test)]
pub fn bins() -> Vec<&'static str> {
    let mut v: Vec<&str> = ALL.iter().chain(SPECIAL).map(|w| w.bin).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The workloads whose name contains one of `filter` (all when empty).
pub fn select(filter: &[String]) -> Result<Vec<Workload>, String> {
    let v: Vec<Workload> = ALL
        .iter()
        .filter(|w| filter.is_empty() || filter.iter().any(|f| w.name.contains(f.as_str())))
        .copied()
        .collect();
    if v.is_empty() {
        let names: Vec<&str> = ALL.iter().map(|w| w.name).collect();
        return Err(format!(
            "--filter {} matches no workload (workloads: {})",
            filter.join(","),
            names.join(", ")
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_programs_exist() {
        let mut names: Vec<&str> = ALL.iter().chain(SPECIAL).map(|w| w.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len() + SPECIAL.len());
        let bin_dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/workloads/src/bin");
        for b in bins() {
            assert!(bin_dir.join(format!("{b}.rs")).exists(), "no program {b}");
        }
    }

    #[test]
    fn argv_adds_threads_only_where_it_applies() {
        let larson = ALL[0];
        let a = larson.argv(true, 3);
        assert!(a.windows(2).any(|p| p == ["--generations", "100"]));
        assert_eq!(a[a.len() - 2..], ["--threads", "3"]);
        let tiny = select(&["tiny".into()]).unwrap()[0];
        assert!(!tiny.argv(false, 3).contains(&"--threads".to_string()));
        assert!(tiny.argv(false, 3).contains(&"60M".to_string()));
    }

    #[test]
    fn the_ab_runs_the_special_workloads_first_then_the_rest() {
        let all = select_ab(&[]).unwrap();
        assert_eq!(all.len(), SPECIAL.len() + ALL.len());
        assert!(all[..SPECIAL.len()].iter().all(|(_, s)| *s));
        assert!(all[SPECIAL.len()..].iter().all(|(_, s)| !*s));
        let some = select_ab(&["index".into(), "tiny".into()]).unwrap();
        let names: Vec<&str> = some.iter().map(|(w, _)| w.name).collect();
        assert_eq!(names, ["index-build", "tiny-hot"]);
        assert!(select_ab(&["nothing".into()]).is_err());
    }

    #[test]
    fn the_budget_row_sets_the_budget_it_passes() {
        let rows = select(&["cache-budget".into()]).unwrap();
        assert_eq!(rows.len(), 2);
        assert!(
            rows[0].env().is_empty(),
            "the plain row runs without a budget"
        );
        let b = rows[1];
        assert_eq!(b.env(), [("HAKMEM_MEM_BUDGET_MB", "128")]);
        assert!(b
            .argv(true, 4)
            .windows(2)
            .any(|p| p == ["--budget-mb", "128"]));
        for (name, _) in ENV {
            assert!(ALL.iter().chain(SPECIAL).any(|w| w.name == *name), "{name}");
        }
    }

    #[test]
    fn filter_matches_substrings() {
        assert_eq!(select(&["larson".into()]).unwrap().len(), 4);
        assert_eq!(select(&["json".into(), "vm".into()]).unwrap().len(), 2);
        assert!(select(&["nothing".into()]).is_err());
        assert_eq!(select(&[]).unwrap().len(), ALL.len());
    }
}
