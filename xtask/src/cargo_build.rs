//! Building what the matrix runs: the workloads (twice: C malloc and
//! in-process hakmem), libhakmem.so and the peer libraries.
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::allocators::{Allocator, Paths};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Cargo's target directory.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => workspace_root().join(d),
        None => workspace_root().join("target"),
    }
}

/// Where the artifacts are.
pub fn paths() -> Paths {
    let target = target_dir();
    Paths {
        release: target.join("release"),
        inproc: target.join("bench-inproc").join("release"),
    }
}

fn cargo(args: &[&str]) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("bench-matrix: cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed ({status})", args.join(" ")))
    }
}

/// Builds everything `allocators` need, in release mode. The workloads and
/// the peer libraries must build; when hakmem does not (work in progress),
/// the result lists the allocators whose cells fail, with the reason.
pub fn build(allocators: &[Allocator]) -> Result<Vec<(&'static str, String)>, String> {
    let mut packages = Vec::new();
    if allocators.iter().any(|a| !a.inproc) {
        packages.push("bench-workloads");
    }
    for a in allocators {
        match a.name {
            "mimalloc" => packages.push("bench-peer-mimalloc"),
            "jemalloc" => packages.push("bench-peer-jemalloc"),
            _ => {}
        }
    }
    if !packages.is_empty() {
        let mut args = vec!["build", "--release"];
        for p in &packages {
            args.extend(["-p", p]);
        }
        cargo(&args)?;
    }
    let mut broken = Vec::new();
    if allocators.iter().any(Allocator::preloads_hakmem) {
        if let Err(e) = cargo(&["build", "--release", "-p", "hakmem-preload"]) {
            eprintln!("bench-matrix: {e}: the libhakmem.so columns fail");
            for a in allocators.iter().filter(|a| a.preloads_hakmem()) {
                broken.push((a.name, format!("build failed: {e}")));
            }
        }
    }
    if allocators.iter().any(|a| a.inproc) {
        // A separate target directory: the feature changes the binaries, and
        // sharing one directory would rebuild them back and forth.
        let dir = target_dir().join("bench-inproc");
        let dir = dir.to_string_lossy();
        let args = [
            "build",
            "--release",
            "-p",
            "bench-workloads",
            "--features",
            "global-hakmem",
            "--target-dir",
            &dir,
        ];
        if let Err(e) = cargo(&args) {
            eprintln!("bench-matrix: {e}: the hakmem-inproc column fails");
            broken.push(("hakmem-inproc", format!("build failed: {e}")));
        }
    }
    Ok(broken)
}
