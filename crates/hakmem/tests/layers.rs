//! The facade's modules form layers: no module reaches, directly or
//! through others, back into itself. (docs/ARCHITECTURE.md, "The facade's
//! layers".) Read from the sources: every `crate::name` path and every
//! `use crate::{a, b}` group outside comments.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn deps(src: &str, me: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in src.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                group[..end]
                    .split(',')
                    .map(|n| n.trim().split("::").next().unwrap_or("").trim())
                    .collect()
            } else {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                vec![&rest[..end]]
            };
            for n in names {
                if n != me && modules.contains(n) {
                    out.insert(n.to_string());
                }
            }
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    let modules: BTreeSet<String> = files
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|m| m != "lib")
        .collect();
    let mut g = BTreeMap::new();
    for p in &files {
        let me = p.file_stem().unwrap().to_string_lossy().into_owned();
        if me == "lib" {
            continue;
        }
        let src = std::fs::read_to_string(p).unwrap();
        g.insert(me.clone(), deps(&src, &me, &modules));
    }
    g
}

/// A cycle through `start`, if any (depth-first search).
fn cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        m: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut c = path[i..].to_vec();
            c.push(m.to_string());
            return Some(c);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for d in g.get(m).into_iter().flatten() {
            if let Some(c) = visit(g, d, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in g.keys() {
        if let Some(c) = visit(g, m, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn the_facade_has_no_import_cycle() {
    let g = graph();
    assert!(g.len() > 10, "read the facade's modules: {g:?}");
    if let Some(c) = cycle(&g) {
        panic!("import cycle in crates/hakmem/src: {}", c.join(" -> "));
    }
}

#[test]
fn the_checker_finds_a_cycle() {
    let mut g = graph();
    // a module that reached back up would be found
    g.get_mut("observe").unwrap().insert("api".to_string());
    assert!(cycle(&g).is_some());
}

#[test]
fn observers_sit_below_the_entry_points() {
    let g = graph();
    for low in [
        "observe",
        "learner",
        "sites",
        "large",
        "state",
        "thread",
        "tls",
        "config",
        "background",
    ] {
        for high in ["api", "init", "fork", "exit", "stats"] {
            assert!(
                !g[low].contains(high),
                "{low} must not use {high} (layers: docs/ARCHITECTURE.md)"
            );
        }
    }
}
