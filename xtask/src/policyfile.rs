//! Reading `hakmem-policy v1` files (what `HAKMEM_POLICY_SAVE` writes) just
//! enough to say what a learned policy changed against the default one.
use std::collections::BTreeMap;

/// `key = v1 v2 ...` lines (comments and the header skipped).
pub fn parse(text: &str) -> BTreeMap<String, Vec<u64>> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let vals: Option<Vec<u64>> = v.split_whitespace().map(|x| x.parse().ok()).collect();
        if let Some(vals) = vals.filter(|v| !v.is_empty()) {
            out.insert(k.trim().to_string(), vals);
        }
    }
    out
}

fn bytes(v: u64) -> String {
    match v {
        0 => "0".into(),
        v if v % (1 << 30) == 0 => format!("{}G", v >> 30),
        v if v % (1 << 20) == 0 => format!("{}M", v >> 20),
        v if v % (1 << 10) == 0 => format!("{}K", v >> 10),
        v => v.to_string(),
    }
}

/// The differences of `learned` from `base`, one short phrase each:
/// `large_cache_budget 64M→16M`, `tiny_cap ×2 (8 classes)`. Refill counts
/// are left out (they follow the capacities).
pub fn diff(
    base: &BTreeMap<String, Vec<u64>>,
    learned: &BTreeMap<String, Vec<u64>>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (k, new) in learned {
        if k.ends_with("_refill") {
            continue;
        }
        let Some(old) = base.get(k) else {
            continue;
        };
        if old == new {
            continue;
        }
        if old.len() == 1 && new.len() == 1 {
            let f = if k.contains("budget") || k.contains("block") || k.contains("threshold") {
                bytes
            } else {
                |v: u64| v.to_string()
            };
            out.push(format!("{k} {}→{}", f(old[0]), f(new[0])));
            continue;
        }
        let ratios: Vec<f64> = old
            .iter()
            .zip(new)
            .filter(|(a, b)| a != b && **a > 0)
            .map(|(a, b)| *b as f64 / *a as f64)
            .collect();
        let (lo, hi) = ratios
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(l, h), r| (l.min(*r), h.max(*r)));
        let r = |x: f64| {
            let s = format!("{x:.2}");
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        };
        let range = if ratios.is_empty() {
            "changed".to_string()
        } else if hi / lo < 1.3 {
            format!("×{}", r((lo * hi).sqrt()))
        } else {
            format!("×{}–{}", r(lo), r(hi))
        };
        out.push(format!("{k} {range} ({} classes)", ratios.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "hakmem-policy v1\n# comment\ntiny_cap = 512 512 256 32\ntiny_refill = 64 64 64 16\nlarge_cache_budget = 67108864 # bytes\ndecay_ms = 1000\n";

    #[test]
    fn parses_keys_and_lists() {
        let p = parse(BASE);
        assert_eq!(p["tiny_cap"], [512, 512, 256, 32]);
        assert_eq!(p["large_cache_budget"], [64 << 20]);
        assert_eq!(p.len(), 4);
        assert!(parse("hakmem-policy v1\nbad = x\n").is_empty());
    }

    #[test]
    fn diffs_scalars_and_classes() {
        let base = parse(BASE);
        assert!(diff(&base, &base).is_empty());
        let learned = parse(
            "tiny_cap = 1024 1024 512 32\ntiny_refill = 1 1 1 1\nlarge_cache_budget = 16777216\ndecay_ms = 500\n",
        );
        assert_eq!(
            diff(&base, &learned),
            [
                "decay_ms 1000→500",
                "large_cache_budget 64M→16M",
                "tiny_cap ×2 (3 classes)"
            ]
        );
        let mixed = parse("tiny_cap = 256 1024 256 32\n");
        assert_eq!(diff(&base, &mixed), ["tiny_cap ×0.5–2 (2 classes)"]);
        assert_eq!(
            diff(&base, &parse("large_cache_budget = 0\n")),
            ["large_cache_budget 64M→0"]
        );
    }
}
