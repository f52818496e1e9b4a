//! `HAKMEM_POLICY_DIR`: a learning run saves its policy under a name
//! derived from the executable, the next run starts FROZEN on it, and a
//! corrupt file is reported in one line and ignored.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// Runs perl (a stable executable) allocating for `secs` seconds in the
/// learning mode with the policy directory `dir`; its stderr.
fn run(dir: &std::path::Path, perl: &std::path::Path, secs: u32) -> String {
    let script = format!(
        "my $t = time; my @a; while (time - $t < {secs}) {{ push @a, 'x' x (rand 300); shift @a if @a > 5000 }}"
    );
    let out = run_with_timeout(
        preload(
            Command::new(perl)
                .arg("-e")
                .arg(script)
                .env("HAKMEM_MODE", "learning")
                .env("HAKMEM_LEARN_WINDOW_MS", "20")
                .env("HAKMEM_STATS", "1")
                .env("HAKMEM_POLICY_DIR", dir),
        ),
        Duration::from_secs(60),
    );
    assert_preload_took(&out, "policy dir");
    assert!(out.status.success(), "{}", out.describe());
    out.stderr_str()
}

fn policy_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

#[test]
fn a_learned_policy_is_reused_by_the_next_run() {
    let Some(perl) = which("perl") else {
        eprintln!("skipped: no perl");
        return;
    };
    let dir = TempDir::new("policy-dir");
    let first = run(dir.path(), &perl, 1);
    assert!(first.contains("learner learn"), "{first}");
    let files = policy_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(
        name.starts_with("perl-") && name.ends_with(".policy") && name.len() == 5 + 16 + 7,
        "{name}"
    );
    let saved = std::fs::read_to_string(&files[0]).unwrap();
    assert!(saved.starts_with("hakmem-policy v1"), "{saved}");
    // the second run starts FROZEN on it, and keeps one file
    let second = run(dir.path(), &perl, 1);
    assert!(second.contains("learner frozen"), "{second}");
    assert!(!second.contains("HAKMEM_POLICY_DIR"), "{second}");
    assert_eq!(policy_files(dir.path()), files);

    // a corrupt file: one line, ignored (learning starts over), replaced
    std::fs::write(&files[0], b"not a policy\n").unwrap();
    let third = run(dir.path(), &perl, 1);
    let reports: Vec<_> = third
        .lines()
        .filter(|l| l.starts_with("hakmem: HAKMEM_POLICY_DIR: "))
        .collect();
    assert_eq!(reports.len(), 1, "{third}");
    assert!(
        reports[0].contains(&name) && reports[0].ends_with(", ignored"),
        "{third}"
    );
    assert!(third.contains("learner learn"), "{third}");
    let replaced = std::fs::read_to_string(&files[0]).unwrap();
    assert!(replaced.starts_with("hakmem-policy v1"), "{replaced}");
    assert_eq!(policy_files(dir.path()), files, "no temporary file left");
}
