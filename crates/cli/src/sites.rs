//! `hakmem sites`: a call-site report (`HAKMEM_SITES_JSON`) as a table.

use std::path::PathBuf;
use std::process::ExitCode;

use comfy_table::{presets, CellAlignment, Table};
use serde_json::Value;

use crate::Error;

/// What the rows are sorted by (largest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    /// Bytes allocated (estimated when sampled).
    Bytes,
    /// Allocation calls (estimated when sampled).
    Calls,
    /// Bytes still live at exit.
    Live,
}

/// `hakmem sites`'s options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The JSON site report.
    file: PathBuf,
    /// Sort order.
    #[arg(long, value_enum, default_value = "bytes")]
    by: By,
    /// Show at most N sites (0: all).
    #[arg(long, value_name = "N", default_value_t = 20)]
    top: usize,
}

/// One site of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    /// The symbolised name, as in the report (`func+0x1c (object)`).
    pub name: String,
    /// Allocations (estimated for sampled sites).
    pub calls: u64,
    /// Bytes allocated (estimated for sampled sites).
    pub bytes: u64,
    /// Bytes live at the report.
    pub live: u64,
    /// Average request size.
    pub avg: u64,
    /// Frees recorded, and how many of them from another thread.
    pub frees: u64,
    /// Frees by another thread.
    pub remote: u64,
    /// Size class and lifetime class.
    pub class: String,
}

/// The report's sites (the `other` row too when it counted anything),
/// sorted by `by`, largest first.
pub fn parse(text: &str, by: By) -> Result<(Vec<Site>, u32), String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let version = v.get("version").and_then(Value::as_u64);
    if version != Some(1) {
        return Err("not a hakmem site report (version 1)".into());
    }
    let sites = v
        .get("sites")
        .and_then(Value::as_array)
        .ok_or("not a hakmem site report (no \"sites\" array)")?;
    let shift = v.get("sample_shift").and_then(Value::as_u64).unwrap_or(0) as u32;
    let mut out = Vec::with_capacity(sites.len() + 1);
    for s in sites.iter().chain(v.get("other")) {
        let num = |k: &str| s.get(k).and_then(Value::as_u64).unwrap_or(0);
        let text = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("");
        let site = Site {
            name: text("name").to_owned(),
            calls: num("est_allocs"),
            bytes: num("est_bytes"),
            live: num("live_bytes"),
            avg: num("avg_size"),
            frees: num("frees"),
            remote: num("remote_frees"),
            class: format!("{} {}", text("class"), text("lifetime")),
        };
        if text("kind") == "other" && site.calls == 0 {
            continue;
        }
        out.push(site);
    }
    let key = |s: &Site| match by {
        By::Bytes => (s.bytes, s.calls),
        By::Calls => (s.calls, s.bytes),
        By::Live => (s.live, s.bytes),
    };
    out.sort_by(|a, b| key(b).cmp(&key(a)).then_with(|| a.name.cmp(&b.name)));
    Ok((out, shift))
}

/// `1536` → `1.5 KiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn run(args: Args) -> Result<ExitCode, Error> {
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| format!("cannot read {}: {e}", args.file.display()))?;
    let (sites, shift) =
        parse(&text, args.by).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let shown = if args.top == 0 {
        sites.len()
    } else {
        args.top.min(sites.len())
    };
    let mut table = Table::new();
    table.load_preset(presets::UTF8_BORDERS_ONLY).set_header([
        "#", "calls", "bytes", "live", "avg", "frees", "remote", "class", "site",
    ]);
    for (i, s) in sites.iter().take(shown).enumerate() {
        let remote = (s.remote * 100)
            .checked_div(s.frees)
            .map_or_else(|| "-".to_owned(), |p| format!("{p}%"));
        table.add_row([
            (i + 1).to_string(),
            s.calls.to_string(),
            human(s.bytes),
            human(s.live),
            human(s.avg),
            s.frees.to_string(),
            remote,
            s.class.clone(),
            s.name.clone(),
        ]);
    }
    for col in 0..7 {
        if let Some(c) = table.column_mut(col) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    let sampling = if shift == 0 {
        "every recorded call".to_owned()
    } else {
        format!("one call in {} sampled, counts estimated", 1u64 << shift)
    };
    println!(
        "{}: {} sites ({sampling}), top {shown} by {}",
        args.file.display(),
        sites.len(),
        match args.by {
            By::Bytes => "bytes",
            By::Calls => "calls",
            By::Live => "live bytes",
        }
    );
    println!("{table}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = r#"{"version": 1, "sample_shift": 6, "sites": [
        {"kind": "sampled", "name": "a+0x9 (m)", "est_allocs": 200, "est_bytes": 1000, "live_bytes": 10, "avg_size": 5, "frees": 4, "remote_frees": 1, "class": "SMALL", "lifetime": "LONG"},
        {"kind": "sampled", "name": "b+0x9 (m)", "est_allocs": 100, "est_bytes": 9000, "live_bytes": 0, "avg_size": 90, "frees": 0, "remote_frees": 0, "class": "MEDIUM", "lifetime": "SHORT"}],
        "other": {"kind": "other", "name": "(other sites)", "est_allocs": 0, "est_bytes": 0}}"#;

    #[test]
    fn sorted_by_bytes_or_calls() {
        let (s, shift) = parse(REPORT, By::Bytes).unwrap();
        assert_eq!(shift, 6);
        assert_eq!(s.len(), 2, "an empty `other` row is left out");
        assert_eq!(s[0].name, "b+0x9 (m)");
        assert_eq!(s[1].class, "SMALL LONG");
        let (s, _) = parse(REPORT, By::Calls).unwrap();
        assert_eq!(s[0].name, "a+0x9 (m)");
        assert_eq!((s[0].calls, s[0].remote), (200, 1));
        let (s, _) = parse(REPORT, By::Live).unwrap();
        assert_eq!(s[0].live, 10);
    }

    #[test]
    fn other_json_is_refused() {
        assert!(parse("{", By::Bytes).unwrap_err().starts_with("not JSON"));
        assert!(parse("{\"version\": 2, \"sites\": []}", By::Bytes).is_err());
        assert!(parse("{\"version\": 1}", By::Bytes)
            .unwrap_err()
            .contains("sites"));
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 << 20), "3.0 MiB");
    }
}
