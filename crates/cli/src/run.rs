//! `hakmem run`: the program under `LD_PRELOAD=libhakmem.so`.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::Error;

/// `hakmem run`'s options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// HAKMEM_MODE: which features are on.
    #[arg(long, value_parser = ["minimal", "fast", "balanced", "learning", "research"])]
    mode: Option<String>,
    /// HAKMEM_STATS=1: print the allocator's counters at exit.
    #[arg(long)]
    stats: bool,
    /// HAKMEM_SITES=1 and HAKMEM_SITES_JSON=FILE: sample call sites, print
    /// the site report at exit and write it as JSON to FILE (`%p`: process
    /// id, `%e`: executable name).
    #[arg(long, value_name = "FILE")]
    sites: Option<OsString>,
    /// HAKMEM_SITES_SAMPLE: one malloc in 2^N is sampled (with --sites).
    #[arg(long, value_name = "N", requires = "sites")]
    sample: Option<u32>,
    /// HAKMEM_POLICY: start on this saved policy.
    #[arg(long, value_name = "FILE")]
    policy_load: Option<OsString>,
    /// HAKMEM_POLICY_SAVE: write the policy at exit (`%p`, `%e` as for --sites).
    #[arg(long, value_name = "FILE")]
    policy_save: Option<OsString>,
    /// The libhakmem.so to preload (default: beside this executable, in
    /// ../lib of it, or in target/release).
    #[arg(long, value_name = "PATH")]
    lib: Option<PathBuf>,
    /// The program and its arguments.
    #[arg(required = true, trailing_var_arg = true, value_name = "PROGRAM")]
    command: Vec<OsString>,
}

/// Where `libhakmem.so` is looked for, given this executable's directory
/// and the working directory, first match wins.
pub fn candidates(exe_dir: &Path, cwd: &Path) -> Vec<PathBuf> {
    vec![
        exe_dir.join("libhakmem.so"),
        exe_dir.join("../lib/libhakmem.so"),
        // a debug `hakmem` in target/debug next to a release library
        exe_dir.join("../release/libhakmem.so"),
        cwd.join("target/release/libhakmem.so"),
    ]
}

fn find_lib(explicit: Option<PathBuf>) -> Result<PathBuf, Error> {
    if let Some(lib) = explicit {
        if !lib.is_file() {
            return Err(Error(format!("--lib {}: no such file", lib.display())));
        }
        return Ok(std::path::absolute(&lib)?);
    }
    let exe = std::env::current_exe()?;
    let exe_dir = exe.parent().unwrap_or(Path::new("/"));
    let cwd = std::env::current_dir()?;
    candidates(exe_dir, &cwd)
        .into_iter()
        .find(|p| p.is_file())
        .map(|p| p.canonicalize().unwrap_or(p))
        .ok_or_else(|| {
            Error(format!(
                "cannot find libhakmem.so beside {} or in target/release \
                 (build it with `cargo build --release -p hakmem-preload`, or pass --lib)",
                exe_dir.display()
            ))
        })
}

/// The environment `hakmem run` adds for `args` with library `lib`, given
/// the `LD_PRELOAD` already set.
fn environment(args: &Args, lib: &Path, preload: Option<&OsStr>) -> Vec<(&'static str, OsString)> {
    let mut ld = lib.as_os_str().to_owned();
    if let Some(old) = preload.filter(|p| !p.is_empty()) {
        ld.push(":");
        ld.push(old);
    }
    let mut env = vec![("LD_PRELOAD", ld)];
    if let Some(mode) = &args.mode {
        env.push(("HAKMEM_MODE", mode.into()));
    }
    if args.stats {
        env.push(("HAKMEM_STATS", "1".into()));
    }
    if let Some(file) = &args.sites {
        env.push(("HAKMEM_SITES", "1".into()));
        env.push(("HAKMEM_SITES_JSON", file.clone()));
    }
    if let Some(n) = args.sample {
        env.push(("HAKMEM_SITES_SAMPLE", n.to_string().into()));
    }
    if let Some(file) = &args.policy_load {
        env.push(("HAKMEM_POLICY", file.clone()));
    }
    if let Some(file) = &args.policy_save {
        env.push(("HAKMEM_POLICY_SAVE", file.clone()));
    }
    env
}

/// Execs the program; returns only if that failed (status 127, as a shell
/// does for a program it cannot run).
pub fn run(args: Args) -> Result<ExitCode, Error> {
    let lib = find_lib(args.lib.clone())?;
    let env = environment(&args, &lib, std::env::var_os("LD_PRELOAD").as_deref());
    let (program, rest) = args.command.split_first().expect("clap requires PROGRAM");
    let err = std::process::Command::new(program)
        .args(rest)
        .envs(env)
        .exec();
    eprintln!("hakmem: cannot run {}: {err}", Path::new(program).display());
    Ok(ExitCode::from(127))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrap {
        #[command(flatten)]
        args: Args,
    }

    fn env_of(argv: &[&str], preload: Option<&str>) -> Vec<(&'static str, String)> {
        let w = Wrap::try_parse_from(std::iter::once("run").chain(argv.iter().copied())).unwrap();
        environment(
            &w.args,
            Path::new("/x/libhakmem.so"),
            preload.map(OsStr::new),
        )
        .into_iter()
        .map(|(k, v)| (k, v.into_string().unwrap()))
        .collect()
    }

    #[test]
    fn options_become_variables() {
        let env = env_of(
            &[
                "--mode",
                "learning",
                "--stats",
                "--sites",
                "s.%p.json",
                "--sample",
                "4",
                "--policy-save",
                "p.%e",
                "--policy-load",
                "in.policy",
                "prog",
                "--stats",
            ],
            None,
        );
        let want = [
            ("LD_PRELOAD", "/x/libhakmem.so"),
            ("HAKMEM_MODE", "learning"),
            ("HAKMEM_STATS", "1"),
            ("HAKMEM_SITES", "1"),
            ("HAKMEM_SITES_JSON", "s.%p.json"),
            ("HAKMEM_SITES_SAMPLE", "4"),
            ("HAKMEM_POLICY", "in.policy"),
            ("HAKMEM_POLICY_SAVE", "p.%e"),
        ];
        let want: Vec<_> = want.iter().map(|&(k, v)| (k, v.to_owned())).collect();
        assert_eq!(env, want);
    }

    #[test]
    fn an_existing_preload_is_kept_after_hakmem() {
        let env = env_of(&["prog"], Some("/other.so"));
        assert_eq!(
            env,
            [("LD_PRELOAD", "/x/libhakmem.so:/other.so".to_owned())]
        );
        assert_eq!(env_of(&["prog"], Some("")).len(), 1);
    }

    #[test]
    fn the_program_takes_everything_after_it() {
        let w = Wrap::try_parse_from(["run", "--stats", "ls", "-l", "--mode", "x"]).unwrap();
        assert_eq!(w.args.command, ["ls", "-l", "--mode", "x"]);
        let w = Wrap::try_parse_from(["run", "--", "-weird"]).unwrap();
        assert_eq!(w.args.command, ["-weird"]);
        assert!(Wrap::try_parse_from(["run", "--stats"]).is_err());
        assert!(Wrap::try_parse_from(["run", "--mode", "turbo", "ls"]).is_err());
        assert!(Wrap::try_parse_from(["run", "--sample", "3", "ls"]).is_err());
    }

    #[test]
    fn the_library_is_looked_for_beside_the_executable_first() {
        let c = candidates(Path::new("/opt/h/bin"), Path::new("/w"));
        assert_eq!(c[0], Path::new("/opt/h/bin/libhakmem.so"));
        assert_eq!(c[1], Path::new("/opt/h/bin/../lib/libhakmem.so"));
        assert_eq!(
            c.last().unwrap(),
            Path::new("/w/target/release/libhakmem.so")
        );
    }
}
