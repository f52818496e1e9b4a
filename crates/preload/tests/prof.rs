//! `HAKMEM_PROF=1` under a real program: the exit table on stderr and the
//! JSON file, with the categories the program's allocations went through.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn a_preloaded_program_prints_its_profile() {
    let Some(python) = which("python3") else {
        eprintln!("skipped: no python3");
        return;
    };
    let dir = TempDir::new("prof");
    let json = dir.join("prof.json");
    let run = run_with_timeout(
        preload(
            Command::new(python)
                .arg("-c")
                .arg("x = [bytes(100 + i % 900) for i in range(200000)]\ndel x\ny = [bytearray(1 << 21) for i in range(8)]")
                .env("HAKMEM_PROF", "1")
                .env("HAKMEM_PROF_SAMPLE", "0")
                .env("HAKMEM_PROF_JSON", &json),
        ),
        Duration::from_secs(60),
    );
    assert_preload_took(&run, "prof");
    assert!(run.status.success(), "{}", run.describe());
    let err = run.stderr_str();
    assert!(
        err.contains("hakmem profile (HAKMEM_PROF): one call in 2^0 timed"),
        "{err}"
    );
    for cat in ["tiny pop", "tiny refill", "large map", "mmap"] {
        assert!(
            err.lines().any(|l| l.starts_with(cat)),
            "no {cat} row in the table:\n{err}"
        );
    }
    let text = std::fs::read_to_string(&json).unwrap();
    assert!(
        text.starts_with("{\"sample_shift\": 0, \"categories\": ["),
        "{text}"
    );
    assert_eq!(text.matches("\"name\": ").count(), 18, "{text}");
    let pops = text
        .lines()
        .find(|l| l.contains("\"name\": \"tiny pop\""))
        .unwrap();
    let calls: u64 = pops
        .split("\"calls\": ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    // python made far more than 200000 small mallocs (one process: the
    // table and file are the last to exit, python itself, even behind a
    // pyenv shim)
    assert!(calls > 100_000, "{pops}");
}
