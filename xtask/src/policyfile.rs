//! What a learned policy (the file `HAKMEM_POLICY_SAVE` writes) changed
//! against the default one. Files are read with hakmem's own parser
//! (`hakmem-policy-rcu`), so a file the allocator would reject is reported
//! here too, and the fields, their units and their order come from the
//! policy's one field table.
use hakmem_policy_rcu::{FrozenPolicy, Key, Unit};

/// Parses a `hakmem-policy v1` file (missing keys take the built-in
/// defaults); the error is the parser's one-line message.
pub fn parse(text: &str) -> Result<FrozenPolicy, String> {
    FrozenPolicy::parse(text.as_bytes()).map_err(|e| e.to_string())
}

/// The policy as hakmem writes it (for tests and tools that make files).
#[cfg(test)]
pub fn to_text(p: &FrozenPolicy) -> String {
    let mut buf = vec![0u8; hakmem_policy_rcu::POLICY_FILE_MAX];
    let n = p.serialize(&mut buf).expect("a valid policy fits");
    buf.truncate(n);
    String::from_utf8(buf).expect("policy files are ASCII")
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

/// The differences of `learned` from `base`, one short phrase each, by
/// field name: `large_cache_budget 64M→16M`, `tiny_cap ×2 (8 classes)`.
/// Refill counts are left out (they follow the capacities).
pub fn diff(base: &FrozenPolicy, learned: &FrozenPolicy) -> Vec<String> {
    let mut out: Vec<(&str, String)> = Vec::new();
    for key in Key::ALL {
        if matches!(key, Key::TinyRefill | Key::MidRefill) {
            continue;
        }
        let k = key.name();
        if let Some(f) = key.field() {
            let (old, new) = ((f.get)(base), (f.get)(learned));
            if old != new {
                let show = |v: u64| match f.unit {
                    Unit::Bytes => bytes(v),
                    Unit::Millis | Unit::Permille | Unit::Count => v.to_string(),
                };
                out.push((k, format!("{k} {}→{}", show(old), show(new))));
            }
            continue;
        }
        let (Some(old), Some(new)) = (base.class_values(key), learned.class_values(key)) else {
            continue;
        };
        if old == new {
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
        out.push((k, format!("{k} {range} ({} classes)", ratios.len())));
    }
    out.sort_by(|a, b| a.0.cmp(b.0));
    out.into_iter().map(|(_, phrase)| phrase).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hakmem_policy_rcu::DEFAULT_POLICY;

    #[test]
    fn parses_what_hakmem_writes_and_rejects_what_it_rejects() {
        let text = to_text(&DEFAULT_POLICY);
        assert_eq!(parse(&text), Ok(DEFAULT_POLICY));
        let p = parse("hakmem-policy v1\n# comment\ndecay_ms = 250 # ms\n").unwrap();
        assert_eq!(
            p,
            FrozenPolicy {
                decay_ms: 250,
                ..DEFAULT_POLICY
            }
        );
        // the allocator's cross-field checks apply too
        assert_eq!(
            parse("hakmem-policy v1\nlarge_cache_budget = 1048576\n"),
            Err(
                "line 2: large_cache_max_block = 67108864 exceeds large_cache_budget = 1048576"
                    .to_string()
            )
        );
        assert_eq!(
            parse("hakmem-policy v1\nbad = x\n"),
            Err("line 2: unknown key `bad`".to_string())
        );
        assert!(parse("tiny_cap = 1 2 3\n").is_err(), "no header");
    }

    #[test]
    fn diffs_scalars_and_classes() {
        let base = DEFAULT_POLICY;
        assert!(diff(&base, &base).is_empty());
        let mut learned = base;
        for c in 0..3 {
            learned.tiny_cap[c] = base.tiny_cap[c] * 2;
            learned.tiny_refill[c] = 1;
        }
        learned.large_cache_budget = 16 << 20;
        learned.large_cache_max_block = 16 << 20;
        learned.decay_ms = 500;
        assert_eq!(
            diff(&base, &learned),
            [
                "decay_ms 1000→500",
                "large_cache_budget 64M→16M",
                "large_cache_max_block 64M→16M",
                "tiny_cap ×2 (3 classes)"
            ]
        );
        let mut mixed = base;
        mixed.tiny_cap[0] = base.tiny_cap[0] / 2;
        mixed.tiny_cap[1] = base.tiny_cap[1] * 2;
        assert_eq!(diff(&base, &mixed), ["tiny_cap ×0.5–2 (2 classes)"]);
        let none = FrozenPolicy {
            large_cache_budget: 0,
            large_cache_max_block: 0,
            ..base
        };
        assert_eq!(
            diff(&base, &none),
            ["large_cache_budget 64M→0", "large_cache_max_block 64M→0"]
        );
        // the diff of two files as the A/B reads them
        let text = to_text(&learned);
        assert_eq!(
            diff(&parse(&to_text(&base)).unwrap(), &parse(&text).unwrap()),
            diff(&base, &learned)
        );
    }
}
