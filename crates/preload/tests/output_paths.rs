//! Per-process output files: `%p` and `%e` in `HAKMEM_SITES_JSON` and
//! `HAKMEM_POLICY_SAVE` give every preloaded process its own report, and
//! each file appears whole (written under a temporary name, then renamed).

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::*;

/// A preloaded `bash` running two preloaded `ls` children: bash forks and
/// execs each (`exit 0` last, so bash does not exec the second `ls` in
/// place of itself). `dash` ends with `_exit`, which skips the exit
/// reports, so bash it is.
fn parent_and_two_children(dir: &TempDir, envs: &[(&str, String)]) -> Finished {
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg("ls / >/dev/null; ls / >/dev/null; exit 0")
        .current_dir(dir.path());
    without_hakmem_env(&mut cmd);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let run = run_with_timeout(preload(&mut cmd), Duration::from_secs(60));
    assert_preload_took(&run, "bash -c");
    assert!(run.status.success(), "{}", run.describe());
    run
}

fn names(dir: &TempDir) -> BTreeSet<String> {
    std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

#[test]
fn a_parent_and_two_children_write_three_site_reports() {
    if which("bash").is_none() || which("ls").is_none() {
        eprintln!("skipped: needs bash and ls");
        return;
    }
    let dir = TempDir::new("out-sites");
    let template = format!("{}/sites-%e-%p.json", dir.path().display());
    let run = parent_and_two_children(&dir, &[("HAKMEM_SITES_JSON", template)]);
    let found = names(&dir);
    assert_eq!(found.len(), 3, "{found:?}\n{}", run.describe());
    let mut exes = Vec::new();
    let mut pids = BTreeSet::new();
    for name in &found {
        let stem = name
            .strip_prefix("sites-")
            .and_then(|n| n.strip_suffix(".json"))
            .unwrap_or_else(|| panic!("unexpected file {name}"));
        let (exe, pid) = stem.rsplit_once('-').unwrap();
        exes.push(exe.to_owned());
        assert!(pids.insert(pid.parse::<u32>().unwrap()));
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        assert!(
            text.trim_start().starts_with('{') && text.trim_end().ends_with('}'),
            "{name} is not a whole JSON object:\n{text}"
        );
        assert!(text.contains("\"sites\""), "{name}:\n{text}");
    }
    exes.sort();
    assert_eq!(exes, ["bash", "ls", "ls"]);
}

#[test]
fn policy_save_names_each_process_and_keeps_literal_percent() {
    if which("bash").is_none() || which("ls").is_none() {
        eprintln!("skipped: needs bash and ls");
        return;
    }
    let dir = TempDir::new("out-policy");
    let template = format!("{}/100%%-%p.policy", dir.path().display());
    parent_and_two_children(&dir, &[("HAKMEM_POLICY_SAVE", template)]);
    let found = names(&dir);
    assert_eq!(found.len(), 3, "{found:?}");
    for name in &found {
        let pid = name
            .strip_prefix("100%-")
            .and_then(|n| n.strip_suffix(".policy"))
            .unwrap_or_else(|| panic!("unexpected file {name}"));
        pid.parse::<u32>().unwrap();
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        assert!(text.starts_with("hakmem-policy v1"), "{name}:\n{text}");
    }
}

#[test]
fn without_placeholders_the_last_process_wins_whole() {
    if which("bash").is_none() || which("ls").is_none() {
        eprintln!("skipped: needs bash and ls");
        return;
    }
    let dir = TempDir::new("out-one");
    let path = format!("{}/sites.json", dir.path().display());
    parent_and_two_children(&dir, &[("HAKMEM_SITES_JSON", path)]);
    // one file, no temporary ones left behind
    assert_eq!(names(&dir), BTreeSet::from(["sites.json".to_owned()]));
}
