//! Call-site profiling through libhakmem.so: exact counts from the C API
//! (`hak_alloc_cs`), and sampled `malloc` (`HAKMEM_SITES=1`) finding the top
//! sites of a program with known proportions.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// Builds `tests/c/sites.c` with exported symbols (so `dladdr` names the
/// site functions) into the test's scratch directory.
fn build(dir: &TempDir) -> PathBuf {
    let src = Path::new(MANIFEST_DIR).join("tests/c/sites.c");
    let out = dir.join("sites");
    let st = Command::new("gcc")
        .args(["-O1", "-g", "-fno-builtin", "-rdynamic", "-o"])
        .arg(&out)
        .arg(&src)
        .arg("-ldl")
        .status()
        .expect("gcc");
    assert!(st.success(), "gcc failed on {}", src.display());
    out
}

/// The site objects of the JSON report, as (name, allocs estimate, avg size).
fn sites(json: &str) -> Vec<(String, u64, u64)> {
    let body = json.split("\"sites\": [").nth(1).expect("a sites array");
    let body = body.split("\"other\":").next().unwrap();
    body.split("{\"slot\"")
        .skip(1)
        .map(|s| {
            let num = |key: &str| -> u64 {
                let k = format!("\"{key}\": ");
                let v = s
                    .split(&k)
                    .nth(1)
                    .unwrap_or_else(|| panic!("no {key} in {s}"));
                v.chars()
                    .take_while(|c| c.is_ascii_digit())
                    .collect::<String>()
                    .parse()
                    .unwrap()
            };
            let name = s
                .split("\"name\": \"")
                .nth(1)
                .and_then(|v| v.split('"').next())
                .unwrap_or("")
                .to_owned();
            (name, num("est_allocs"), num("avg_size"))
        })
        .collect()
}

#[test]
fn hak_alloc_cs_counts_every_call_at_its_return_address() {
    let dir = TempDir::new("sites-exact");
    let prog = build(&dir);
    let json = dir.join("sites.json");
    let run = run_with_timeout(
        preload(Command::new(&prog).arg("exact").arg(&json)),
        Duration::from_secs(60),
    );
    assert_preload_took(&run, "sites exact");
    assert!(run.status.success(), "{}", run.describe());
    let text = std::fs::read_to_string(&json).unwrap();
    let found = sites(&text);
    for (func, count, size) in [
        ("json_site", 1000u64, 64u64 << 10),
        ("mir_site", 100, 256 << 10),
        ("vm_site", 10, 2 << 20),
    ] {
        let s = found
            .iter()
            .find(|s| s.0.contains(func))
            .unwrap_or_else(|| panic!("no site in {func}: {found:?}"));
        assert_eq!((s.1, s.2), (count, size), "{func}");
    }
    assert_eq!(
        found.iter().filter(|s| s.0.contains("_site")).count(),
        3,
        "{found:?}"
    );
}

#[test]
fn sampled_malloc_finds_the_top_sites() {
    let dir = TempDir::new("sites-sampled");
    let prog = build(&dir);
    let json = dir.join("sampled.json");
    let run = run_with_timeout(
        preload(
            Command::new(&prog)
                .arg("sampled")
                .env("HAKMEM_SITES", "1")
                .env("HAKMEM_SITES_SAMPLE", "8")
                .env("HAKMEM_SITES_JSON", &json),
        ),
        Duration::from_secs(60),
    );
    assert_preload_took(&run, "sites sampled");
    assert!(run.status.success(), "{}", run.describe());
    assert!(
        run.stderr_str().contains("hakmem call sites"),
        "the exit report is printed"
    );
    let found = sites(&std::fs::read_to_string(&json).unwrap());
    // 200000 calls: 120000 / 60000 / 20000; 1 in 256 sampled. Tolerance:
    // each estimate within 25% of the truth, and the ranking exact.
    let est = |f: &str| {
        found
            .iter()
            .find(|s| s.0.contains(f))
            .map(|s| s.1)
            .unwrap_or(0)
    };
    let (hot, warm, cool) = (est("hot_site"), est("warm_site"), est("cool_site"));
    for (got, want, f) in [
        (hot, 120_000u64, "hot"),
        (warm, 60_000, "warm"),
        (cool, 20_000, "cool"),
    ] {
        let err = (got as f64 - want as f64).abs() / want as f64;
        assert!(
            err < 0.25,
            "{f}: estimated {got} calls, true {want} ({found:?})"
        );
    }
    eprintln!("sampled estimates: hot {hot} warm {warm} cool {cool} (true 120000 / 60000 / 20000)");
    assert!(hot > warm && warm > cool);
}
