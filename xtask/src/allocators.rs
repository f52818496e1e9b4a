//! The allocators of the matrix and how each one is put in place.
use std::path::{Path, PathBuf};

use crate::record::Record;

/// Every allocator name `--allocators` accepts, in column order.
pub const NAMES: &[&str] = &[
    "system",
    "hakmem",
    "hakmem-inproc",
    "hakmem-prof",
    "mimalloc",
    "jemalloc",
    "tcmalloc",
    "snmalloc",
];

/// Columns run only when `--allocators` names them: variants of hakmem
/// that measure an option's cost against the plain column.
pub const OPT_IN: &[&str] = &["hakmem-prof"];

/// The environment of the `hakmem-prof` column: the profiler at its
/// default sampling rate.
const PROF_ENV: &[(&str, &str)] = &[("HAKMEM_PROF", "1")];

/// The column every ratio is taken against.
pub const REFERENCE: &str = "mimalloc";

const TCMALLOC: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib64/libtcmalloc_minimal.so.4",
    "/usr/lib/libtcmalloc_minimal.so.4",
    "/usr/local/lib/libtcmalloc_minimal.so.4",
];

const SNMALLOC: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/libsnmallocshim.so",
    "/usr/lib/aarch64-linux-gnu/libsnmallocshim.so",
    "/usr/lib64/libsnmallocshim.so",
    "/usr/lib/libsnmallocshim.so",
    "/usr/local/lib/libsnmallocshim.so",
];

/// How one allocator is put in place.
#[derive(Debug, Clone, PartialEq)]
pub struct Allocator {
    pub name: &'static str,
    /// Library to `LD_PRELOAD`, if any.
    pub preload: Option<PathBuf>,
    /// Run the `global-hakmem` build of the workloads.
    pub inproc: bool,
    /// Extra environment of its runs (before the workload's own).
    pub env: &'static [(&'static str, &'static str)],
}

impl Allocator {
    /// How its runs get the allocator, in a few words for the reports:
    /// the preloaded library's file name, the in-process build, or none.
    pub fn launch(&self) -> String {
        let how = match (&self.preload, self.inproc) {
            (Some(p), _) => format!(
                "LD_PRELOAD {}",
                p.file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
            (None, true) => "in-process #[global_allocator]".into(),
            (None, false) => "glibc malloc, no preload".into(),
        };
        self.env
            .iter()
            .fold(how, |how, (k, v)| format!("{how}, {k}={v}"))
    }

    /// Whether its runs use the preloaded `libhakmem.so`.
    pub fn preloads_hakmem(&self) -> bool {
        self.preload
            .as_deref()
            .is_some_and(|p| file_name(p) == "libhakmem.so")
    }
}

/// What a run under an allocator says about the allocator actually used.
#[derive(Debug, PartialEq)]
pub enum Check {
    Ok,
    /// Counted, with a footnote.
    Note(String),
    /// Not counted: the cell fails.
    Fail(String),
}

/// Where the built artifacts are.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `target/release`: workloads, libhakmem.so, the peer libraries.
    pub release: PathBuf,
    /// The `global-hakmem` build's release directory.
    pub inproc: PathBuf,
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn find(
    env: Option<PathBuf>,
    candidates: &[&str],
    exists: &dyn Fn(&Path) -> bool,
) -> Option<PathBuf> {
    env.into_iter()
        .chain(candidates.iter().map(PathBuf::from))
        .find(|p| exists(p))
}

/// The allocators to run (`selected`, or all available) and notes about the
/// ones skipped.
pub fn plan(
    selected: Option<&[String]>,
    paths: &Paths,
    env: &dyn Fn(&str) -> Option<PathBuf>,
    exists: &dyn Fn(&Path) -> bool,
) -> (Vec<Allocator>, Vec<String>) {
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for &name in NAMES {
        match selected {
            Some(sel) if !sel.iter().any(|s| s == name) => continue,
            None if OPT_IN.contains(&name) => continue,
            _ => {}
        }
        let a = |preload: Option<PathBuf>, inproc| Allocator {
            name,
            preload,
            inproc,
            env: &[],
        };
        match name {
            "system" => out.push(a(None, false)),
            "hakmem" => out.push(a(Some(paths.release.join("libhakmem.so")), false)),
            "hakmem-inproc" => out.push(a(None, true)),
            "hakmem-prof" => out.push(Allocator {
                env: PROF_ENV,
                ..a(Some(paths.release.join("libhakmem.so")), false)
            }),
            "mimalloc" => out.push(a(Some(paths.release.join("libmimalloc_preload.so")), false)),
            "jemalloc" => out.push(a(Some(paths.release.join("libjemalloc_preload.so")), false)),
            "tcmalloc" | "snmalloc" => {
                let (var, candidates, pkg) = if name == "tcmalloc" {
                    (
                        "HAKMEM_BENCH_TCMALLOC",
                        TCMALLOC,
                        "Debian package libtcmalloc-minimal4",
                    )
                } else {
                    ("HAKMEM_BENCH_SNMALLOC", SNMALLOC, "libsnmallocshim.so")
                };
                match find(env(var), candidates, exists) {
                    Some(p) => out.push(a(Some(p), false)),
                    None => notes.push(format!(
                        "{name} skipped: no shared library found ({pkg}; or set {var}=/path/to/lib.so)"
                    )),
                }
            }
            _ => unreachable!("{name} is in NAMES"),
        }
    }
    (out, notes)
}

impl Allocator {
    /// The program to run for workload program `bin`.
    pub fn program(&self, paths: &Paths, bin: &str) -> PathBuf {
        if self.inproc {
            paths.inproc.join(bin)
        } else {
            paths.release.join(bin)
        }
    }

    /// Checks that the run really used this allocator.
    pub fn check(&self, r: &Record) -> Check {
        let lib = r.text("malloc_lib").unwrap_or("?");
        let global = r.text("global").unwrap_or("?");
        if self.inproc {
            return if global == "hakmem" {
                Check::Ok
            } else {
                Check::Fail(format!("global allocator is `{global}`, not hakmem"))
            };
        }
        if global != "system" {
            return Check::Fail(format!("global allocator is `{global}`, not the C malloc"));
        }
        match &self.preload {
            None => Check::Ok,
            Some(p) if lib == file_name(p) => Check::Ok,
            Some(p) if self.preloads_hakmem() => Check::Note(format!(
                "{} does not provide malloc yet (malloc resolved from {lib}): the hakmem column measures that",
                file_name(p)
            )),
            Some(p) => Check::Fail(format!("LD_PRELOAD of {} did not take: malloc from {lib}", file_name(p))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::parse_line;

    fn paths() -> Paths {
        Paths {
            release: "/t/release".into(),
            inproc: "/t/inproc/release".into(),
        }
    }

    #[test]
    fn plans_available_allocators_and_notes_the_rest() {
        let no_env = |_: &str| None;
        let tc_only = |p: &Path| p == Path::new(TCMALLOC[0]);
        let (all, notes) = plan(None, &paths(), &no_env, &tc_only);
        let names: Vec<&str> = all.iter().map(|a| a.name).collect();
        assert_eq!(
            names,
            [
                "system",
                "hakmem",
                "hakmem-inproc",
                "mimalloc",
                "jemalloc",
                "tcmalloc"
            ]
        );
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("snmalloc skipped"));
        assert_eq!(
            all[1].preload.as_deref(),
            Some(Path::new("/t/release/libhakmem.so"))
        );
        assert!(all[2].inproc);
        assert_eq!(
            all[2].program(&paths(), "larson"),
            Path::new("/t/inproc/release/larson")
        );

        let sel = ["jemalloc".to_string(), "snmalloc".to_string()];
        let env = |v: &str| (v == "HAKMEM_BENCH_SNMALLOC").then(|| PathBuf::from("/opt/sn.so"));
        let exists = |p: &Path| p == Path::new("/opt/sn.so");
        let (some, notes) = plan(Some(&sel), &paths(), &env, &exists);
        assert_eq!(
            some.iter().map(|a| a.name).collect::<Vec<_>>(),
            ["jemalloc", "snmalloc"]
        );
        assert_eq!(some[1].preload.as_deref(), Some(Path::new("/opt/sn.so")));
        assert!(notes.is_empty());

        // the opt-in column only when named: hakmem with the profiler on
        let sel = ["hakmem".to_string(), "hakmem-prof".to_string()];
        let (both, _) = plan(Some(&sel), &paths(), &no_env, &tc_only);
        assert_eq!(both[1].name, "hakmem-prof");
        assert_eq!(both[1].preload, both[0].preload);
        assert_eq!((both[0].env, both[1].env), (&[][..], PROF_ENV));
        assert!(both[1].launch().ends_with("libhakmem.so, HAKMEM_PROF=1"));
        assert!(both.iter().all(Allocator::preloads_hakmem));
    }

    #[test]
    fn checks_which_allocator_ran() {
        let (all, _) = plan(None, &paths(), &|_| None, &|_| false);
        let by = |n: &str| all.iter().find(|a| a.name == n).unwrap().clone();
        let rec = |lib: &str, global: &str| {
            parse_line(&format!(
                "HAKMEM_BENCH workload=x ops=1 secs=1 ops_per_sec=1 peak_rss_kb=1 minflt=1 malloc_lib={lib} global={global}"
            ))
            .unwrap()
        };
        assert_eq!(
            by("mimalloc").check(&rec("libmimalloc_preload.so", "system")),
            Check::Ok
        );
        assert!(matches!(
            by("mimalloc").check(&rec("libc.so.6", "system")),
            Check::Fail(_)
        ));
        assert!(matches!(
            by("hakmem").check(&rec("libc.so.6", "system")),
            Check::Note(_)
        ));
        assert_eq!(
            by("hakmem").check(&rec("libhakmem.so", "system")),
            Check::Ok
        );
        assert_eq!(
            by("hakmem-inproc").check(&rec("libc.so.6", "hakmem")),
            Check::Ok
        );
        assert!(matches!(
            by("hakmem-inproc").check(&rec("libc.so.6", "system")),
            Check::Fail(_)
        ));
        assert!(matches!(
            by("system").check(&rec("libc.so.6", "hakmem")),
            Check::Fail(_)
        ));
        assert_eq!(by("system").check(&rec("libc.so.6", "system")), Check::Ok);
    }
}
