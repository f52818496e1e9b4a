//! `hakmem policy show|diff`: saved policies, read with the allocator's
//! own parser (`hakmem-policy-rcu`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use comfy_table::{presets, ContentArrangement, Table};
use hakmem_policy_rcu::{FrozenPolicy, Key, DEFAULT_POLICY};

use crate::Error;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Every key of a policy file, with the built-in default beside it
    /// (`*`: differs).
    Show {
        /// The policy file (`hakmem-policy v1`).
        file: PathBuf,
    },
    /// The keys (and per-class values) in which two policies differ. Exit
    /// status 0 if none, 1 if some, 2 on error.
    Diff {
        /// The first policy file.
        a: PathBuf,
        /// The second policy file.
        b: PathBuf,
    },
}

fn load(path: &Path) -> Result<FrozenPolicy, Error> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    FrozenPolicy::parse(&bytes).map_err(|e| Error(format!("{}: {e}", path.display())))
}

/// A key's values in `p`: one for a scalar key, one per class otherwise.
fn values(p: &FrozenPolicy, key: Key) -> Vec<u64> {
    match p.get(key) {
        Some(v) => vec![v],
        None => p
            .class_values(key)
            .map(|vs| vs.iter().map(|&v| u64::from(v)).collect())
            .unwrap_or_default(),
    }
}

fn joined(vs: &[u64]) -> String {
    vs.iter().map(u64::to_string).collect::<Vec<_>>().join(" ")
}

/// The differences between `a` and `b`: (key or `key[class]`, a, b).
pub fn diff(a: &FrozenPolicy, b: &FrozenPolicy) -> Vec<(String, u64, u64)> {
    let mut out = Vec::new();
    for key in Key::ALL {
        let (va, vb) = (values(a, key), values(b, key));
        for (i, (&x, &y)) in va.iter().zip(&vb).enumerate() {
            if x != y {
                let name = if key.per_class() {
                    format!("{}[{i}]", key.name())
                } else {
                    key.name().to_owned()
                };
                out.push((name, x, y));
            }
        }
    }
    out
}

pub fn run(cmd: Command) -> Result<ExitCode, Error> {
    match cmd {
        Command::Show { file } => {
            let p = load(&file)?;
            let mut table = Table::new();
            table
                .load_preset(presets::UTF8_BORDERS_ONLY)
                // per-class lists wrap rather than run off the screen
                .set_content_arrangement(ContentArrangement::Dynamic)
                .set_width(120)
                .set_header(["key", "value", "default", ""]);
            for key in Key::ALL {
                let (v, d) = (values(&p, key), values(&DEFAULT_POLICY, key));
                let mark = if v != d { "*" } else { "" };
                table.add_row([key.name(), &joined(&v), &joined(&d), mark]);
            }
            println!("{}", file.display());
            println!("{table}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Diff { a, b } => {
            let (pa, pb) = (load(&a)?, load(&b)?);
            let d = diff(&pa, &pb);
            if d.is_empty() {
                println!("the policies are the same");
                return Ok(ExitCode::SUCCESS);
            }
            let mut table = Table::new();
            table.load_preset(presets::UTF8_BORDERS_ONLY).set_header([
                "key".to_owned(),
                a.display().to_string(),
                b.display().to_string(),
            ]);
            for (k, x, y) in d {
                table.add_row([k, x.to_string(), y.to_string()]);
            }
            println!("{table}");
            Ok(ExitCode::from(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_scalar_and_per_class_keys() {
        let a = DEFAULT_POLICY;
        let mut b = a;
        assert!(diff(&a, &b).is_empty());
        b.decay_ms = a.decay_ms + 1;
        b.tiny_cap[2] = a.tiny_cap[2] / 2;
        let d = diff(&a, &b);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d.iter().any(|(k, x, y)| k == "tiny_cap[2]" && *y == x / 2));
        assert!(d.iter().any(|(k, x, y)| k == "decay_ms" && *y == x + 1));
    }
}
