//! The C side: `include/hakmem.h` compiles cleanly as C99, C11 and C++ and
//! declares the call-site API with the expected signatures; and glibc's
//! `dladdr`, which the report uses, does not allocate.

use std::path::{Path, PathBuf};
use std::process::Command;

fn include_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../include")
}

/// Uses every declaration with its exact type, so a changed signature is a
/// compile error.
const PROBE: &str = r#"
#include <hakmem.h>
#include <hakmem.h> /* include guard */

void *(*const p_alloc_cs)(size_t) = hak_alloc_cs;
void *(*const p_alloc_site)(size_t, const void *) = hak_alloc_site;
void (*const p_free_cs)(void *) = hak_free_cs;
void (*const p_report)(int) = hak_sites_report;
int (*const p_report_json)(int) = hak_sites_report_json;
void (*const p_reset)(void) = hak_sites_reset;
int (*const p_placement)(int) = hak_site_placement;

int main(void) { return 0; }
"#;

fn compile(compiler: &str, lang: &str, std: &str) -> Option<()> {
    if Command::new(compiler).arg("--version").output().is_err() {
        eprintln!("{compiler} not found: skipped");
        return None;
    }
    let dir = std::env::temp_dir().join(format!("hakmem-header-{}-{std}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join(format!(
        "probe-{std}.{}",
        if lang == "c" { "c" } else { "cc" }
    ));
    std::fs::write(&src, PROBE).unwrap();
    let out = Command::new(compiler)
        .args(["-x", lang, &format!("-std={std}")])
        .args(["-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only"])
        .arg("-I")
        .arg(include_dir())
        .arg(&src)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{compiler} -std={std} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(())
}

#[test]
fn header_compiles_as_c() {
    compile("gcc", "c", "c99");
    compile("gcc", "c", "c11");
}

#[test]
fn header_compiles_as_cpp() {
    compile("g++", "c++", "c++11");
}

#[test]
fn header_declares_exactly_the_site_api() {
    let text = std::fs::read_to_string(include_dir().join("hakmem.h")).unwrap();
    let mut names: Vec<&str> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("hak_"))
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(
        names,
        [
            "hak_alloc_cs",
            "hak_alloc_site",
            "hak_free_cs",
            "hak_site_placement",
            "hak_sites_report",
            "hak_sites_report_json",
            "hak_sites_reset",
        ]
    );
}

/// glibc's `dladdr` (the report's symboliser) makes no allocator calls:
/// checked by a C program that interposes `malloc` and friends.
#[test]
fn dladdr_does_not_call_malloc() {
    if Command::new("gcc").arg("--version").output().is_err() {
        eprintln!("gcc not found: skipped");
        return;
    }
    let dir = std::env::temp_dir().join(format!("hakmem-dladdr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("dladdr_no_malloc");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/dladdr_no_malloc.c");
    let out = Command::new("gcc")
        .args(["-O1", "-o"])
        .arg(&exe)
        .arg(&src)
        .arg("-ldl")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe).output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&run.stdout);
    println!("{text}");
    assert!(run.status.success(), "{text}");
}
