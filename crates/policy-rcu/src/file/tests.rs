use super::*;
use crate::MAX_CAP;
use proptest::prelude::*;

fn to_string(p: &FrozenPolicy) -> String {
    let mut buf = vec![0u8; POLICY_FILE_MAX];
    let n = p.serialize(&mut buf).expect("fits");
    buf.truncate(n);
    String::from_utf8(buf).expect("ascii")
}

fn parse_str(s: &str) -> Result<FrozenPolicy, ParseError> {
    FrozenPolicy::parse(s.as_bytes())
}

fn err_of(s: &str) -> ParseError {
    parse_str(s).expect_err("must be rejected")
}

#[test]
fn key_names_are_unique_and_resolve() {
    for (i, k) in Key::ALL.iter().enumerate() {
        assert_eq!(*k as usize, i);
        assert_eq!(Key::from_name(k.name().as_bytes()), Some(*k));
    }
    assert_eq!(Key::from_name(b"tiny_caps"), None);
    assert_eq!(Key::from_name(b""), None);
}

#[test]
fn default_round_trips_and_is_valid() {
    DEFAULT_POLICY.validate().expect("default valid");
    let s = to_string(&DEFAULT_POLICY);
    assert!(s.starts_with("hakmem-policy v1\n"));
    assert_eq!(s.len(), DEFAULT_POLICY.serialized_len());
    assert_eq!(parse_str(&s), Ok(DEFAULT_POLICY));
}

#[test]
fn sample_file_is_documented() {
    // The start of the default file, as the report and docs show it.
    let s = to_string(&DEFAULT_POLICY);
    let line = |k: Key| {
        s.lines()
            .find(|l| l.starts_with(&format!("{} =", k.name())))
            .unwrap()
            .to_string()
    };
    assert_eq!(line(Key::DecayMs), "decay_ms = 1000");
    assert_eq!(
        line(Key::TinyCap).split_whitespace().count(),
        2 + TINY_CLASSES
    );
    assert!(s.contains("# cached memory unused this long (ms) is purged\n"));
}

#[test]
fn serialize_reports_needed_size() {
    let need = DEFAULT_POLICY.serialized_len();
    let mut small = vec![0u8; need - 1];
    assert_eq!(
        DEFAULT_POLICY.serialize(&mut small),
        Err(BufferTooSmall { needed: need })
    );
    let mut exact = vec![0u8; need];
    assert_eq!(DEFAULT_POLICY.serialize(&mut exact), Ok(need));
    assert_eq!(
        DEFAULT_POLICY.serialize(&mut []),
        Err(BufferTooSmall { needed: need })
    );
}

#[test]
fn the_largest_policy_fits_the_bound() {
    let mut p = DEFAULT_POLICY;
    p.tiny_cap = [MAX_CAP; TINY_CLASSES];
    p.tiny_refill = [MAX_CAP; TINY_CLASSES];
    p.mid_cap = [MAX_CAP; MID_CLASSES];
    p.mid_refill = [MAX_CAP; MID_CLASSES];
    for key in Key::ALL {
        if !key.per_class() {
            set_scalar(&mut p, key, key.range().1);
        }
    }
    p.validate().expect("valid");
    assert!(
        p.serialized_len() <= POLICY_FILE_MAX,
        "{}",
        p.serialized_len()
    );
    assert_eq!(FrozenPolicy::parse(to_string(&p).as_bytes()), Ok(p));
}

#[test]
fn missing_keys_take_the_base_values() {
    let p = parse_str("hakmem-policy v1\ndecay_ms = 250\n").unwrap();
    assert_eq!(p.decay_ms, 250);
    assert_eq!(
        FrozenPolicy {
            decay_ms: 1000,
            ..p
        },
        DEFAULT_POLICY
    );
    // only the header: the defaults
    assert_eq!(parse_str("hakmem-policy v1"), Ok(DEFAULT_POLICY));
    assert_eq!(parse_str("hakmem-policy v1\r\n\r\n"), Ok(DEFAULT_POLICY));
    // parse_onto uses another base
    let base = FrozenPolicy {
        pool_dirty: 3,
        ..DEFAULT_POLICY
    };
    let p = FrozenPolicy::parse_onto(b"hakmem-policy v1\ndecay_ms = 7\n", &base).unwrap();
    assert_eq!((p.pool_dirty, p.decay_ms), (3, 7));
}

#[test]
fn comments_blanks_and_crlf() {
    let s = "hakmem-policy v1  \r\n# a comment\r\n\r\n   \t\n  decay_ms\t=  42 # trailing\r\npool_dirty=5\n#pool_clean = x\n";
    let p = parse_str(s).unwrap();
    assert_eq!((p.decay_ms, p.pool_dirty), (42, 5));
    assert_eq!(p.pool_clean, DEFAULT_POLICY.pool_clean);
}

#[test]
fn header_problems() {
    assert_eq!(
        err_of(""),
        ParseError {
            line: 1,
            problem: Problem::MissingHeader
        }
    );
    assert_eq!(err_of("decay_ms = 5\n").problem, Problem::MissingHeader);
    assert_eq!(
        err_of("# c\nhakmem-policy v1\n").problem,
        Problem::MissingHeader
    );
    assert_eq!(
        err_of("hakmem-policy v1x\n").problem,
        Problem::MissingHeader
    );
    assert_eq!(
        err_of("hakmem-policy v2\ndecay_ms = 5\n"),
        ParseError {
            line: 1,
            problem: Problem::UnsupportedVersion
        }
    );
}

#[test]
fn unknown_and_duplicate_keys_are_errors() {
    let e = err_of("hakmem-policy v1\n\ndecay = 5\n");
    assert_eq!(e.line, 3);
    assert_eq!(e.problem, Problem::UnknownKey(KeyName::new(b"decay")));
    assert_eq!(e.to_string(), "line 3: unknown key `decay`");
    let e = err_of("hakmem-policy v1\ndecay_ms = 5\npool_dirty = 1\ndecay_ms = 6\n");
    assert_eq!(
        e,
        ParseError {
            line: 4,
            problem: Problem::DuplicateKey(Key::DecayMs)
        }
    );
    // a long non-ASCII name is truncated and shown safely
    let mut s = b"hakmem-policy v1\n".to_vec();
    s.extend_from_slice(&[0xff; 40]);
    s.extend_from_slice(b" = 1\n");
    let e = FrozenPolicy::parse(&s).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("line 2: unknown key `{}`", "?".repeat(32))
    );
}

#[test]
fn value_problems() {
    let h = "hakmem-policy v1\n";
    let cases: &[(&str, Problem, &str)] = &[
        (
            "decay_ms 5",
            Problem::MissingEquals,
            "expected `key = value`",
        ),
        (
            "decay_ms =",
            Problem::WrongCount {
                key: Key::DecayMs,
                found: 0,
            },
            "`decay_ms` takes 1 value, found 0",
        ),
        (
            "decay_ms = 5 6",
            Problem::WrongCount {
                key: Key::DecayMs,
                found: 2,
            },
            "`decay_ms` takes 1 value, found 2",
        ),
        (
            "decay_ms = -5",
            Problem::BadNumber {
                key: Key::DecayMs,
                index: 0,
            },
            "decay_ms is not an unsigned decimal number",
        ),
        (
            "decay_ms = 0x10",
            Problem::BadNumber {
                key: Key::DecayMs,
                index: 0,
            },
            "decay_ms is not an unsigned decimal number",
        ),
        (
            "decay_ms = 99999999999999999999999",
            Problem::BadNumber {
                key: Key::DecayMs,
                index: 0,
            },
            "decay_ms is not an unsigned decimal number",
        ),
        (
            "decay_ms = 0",
            Problem::OutOfRange {
                key: Key::DecayMs,
                index: 0,
                value: 0,
            },
            "decay_ms = 0 is outside 1..=3600000",
        ),
        (
            "mid_wmax_permille = 999",
            Problem::OutOfRange {
                key: Key::MidWmaxPermille,
                index: 0,
                value: 999,
            },
            "mid_wmax_permille = 999 is outside 1000..=8000",
        ),
        (
            "tiny_cap = 1 2 3",
            Problem::WrongCount {
                key: Key::TinyCap,
                found: 3,
            },
            "",
        ),
    ];
    for (line, problem, msg) in cases {
        let e = err_of(&format!("{h}# x\n{line}\n"));
        assert_eq!(e.line, 3, "{line}");
        assert_eq!(e.problem, *problem, "{line}");
        if !msg.is_empty() {
            assert_eq!(e.to_string(), format!("line 3: {msg}"));
        }
    }
}

#[test]
fn per_class_values_are_checked_one_by_one() {
    let mut caps = vec!["8192".to_string(); TINY_CLASSES];
    caps[5] = "8193".into();
    let e = err_of(&format!(
        "hakmem-policy v1\ntiny_cap = {}\n",
        caps.join(" ")
    ));
    assert_eq!(
        e.problem,
        Problem::OutOfRange {
            key: Key::TinyCap,
            index: 5,
            value: 8193
        }
    );
    assert_eq!(
        e.to_string(),
        "line 2: tiny_cap[5] = 8193 is outside 0..=8192"
    );
    caps[5] = "x".into();
    let e = err_of(&format!(
        "hakmem-policy v1\ntiny_cap = {}\n",
        caps.join(" ")
    ));
    assert_eq!(
        e.problem,
        Problem::BadNumber {
            key: Key::TinyCap,
            index: 5
        }
    );
    caps[5] = "7".into();
    caps.push("8".into());
    let e = err_of(&format!(
        "hakmem-policy v1\ntiny_cap = {}\n",
        caps.join("\t")
    ));
    assert_eq!(
        e.problem,
        Problem::WrongCount {
            key: Key::TinyCap,
            found: TINY_CLASSES as u16 + 1
        }
    );
}

#[test]
fn cross_field_problems_name_a_line() {
    // refill above cap: reported on the refill line when it is present
    let caps = vec!["4"; MID_CLASSES].join(" ");
    let refills = vec!["5"; MID_CLASSES].join(" ");
    let e = err_of(&format!(
        "hakmem-policy v1\nmid_cap = {caps}\n\nmid_refill = {refills}\n"
    ));
    assert_eq!(e.line, 4);
    assert_eq!(
        e.to_string(),
        "line 4: mid_refill[0] = 5 exceeds mid_cap[0] = 4"
    );
    // ... and on the cap line when the refill comes from the defaults
    let caps = vec!["0"; TINY_CLASSES].join(" ");
    let e = err_of(&format!(
        "hakmem-policy v1\ndecay_ms = 9\ntiny_cap = {caps}\n"
    ));
    assert_eq!(e.line, 3);
    assert!(matches!(
        e.problem,
        Problem::RefillAboveCap {
            key: Key::TinyRefill,
            class: 0,
            ..
        }
    ));
    // max block above budget
    let e = err_of("hakmem-policy v1\nlarge_cache_budget = 1048576\n");
    assert_eq!(e.line, 2);
    assert_eq!(
        e.problem,
        Problem::MaxBlockAboveBudget {
            max_block: DEFAULT_POLICY.large_cache_max_block as u64,
            budget: 1 << 20
        }
    );
    // with neither key in the file (an invalid base): line 0
    let base = FrozenPolicy {
        large_cache_budget: 0,
        ..DEFAULT_POLICY
    };
    let e = FrozenPolicy::parse_onto(b"hakmem-policy v1\n", &base).unwrap_err();
    assert_eq!(e.line, 0);
    assert!(e.to_string().starts_with("large_cache_max_block = "));
}

#[test]
fn validate_reports_ranges() {
    let p = FrozenPolicy {
        madvise_batch: 0,
        ..DEFAULT_POLICY
    };
    assert_eq!(
        p.validate(),
        Err(Problem::OutOfRange {
            key: Key::MadviseBatch,
            index: 0,
            value: 0
        })
    );
    let mut p = DEFAULT_POLICY;
    p.mid_refill[3] = p.mid_cap[3] + 1;
    assert!(matches!(
        p.validate(),
        Err(Problem::RefillAboveCap {
            key: Key::MidRefill,
            class: 3,
            ..
        })
    ));
    // caps and refills of 0 are valid (the minimal mode's bins)
    let mut p = DEFAULT_POLICY;
    p.tiny_cap = [0; TINY_CLASSES];
    p.tiny_refill = [0; TINY_CLASSES];
    assert_eq!(p.validate(), Ok(()));
}

/// A valid policy: every value within its range, refills within caps.
pub(crate) fn valid_policy() -> impl Strategy<Value = FrozenPolicy> {
    let class = (0..=MAX_CAP, 0u32..=1000);
    (
        prop::collection::vec(class.clone(), TINY_CLASSES),
        prop::collection::vec(class, MID_CLASSES),
        prop::collection::vec(any::<u64>(), Key::COUNT),
    )
        .prop_map(|(tiny, mid, scalars)| {
            let mut p = DEFAULT_POLICY;
            for (c, &(cap, frac)) in tiny.iter().enumerate() {
                p.tiny_cap[c] = cap;
                p.tiny_refill[c] = (cap as u32 * frac / 1000) as u16;
            }
            for (c, &(cap, frac)) in mid.iter().enumerate() {
                p.mid_cap[c] = cap;
                p.mid_refill[c] = (cap as u32 * frac / 1000) as u16;
            }
            for (key, r) in Key::ALL.into_iter().zip(scalars) {
                if !key.per_class() {
                    let (lo, hi) = key.range();
                    // small values as often as large ones
                    let v = if r & 1 == 0 {
                        lo + (r >> 1) % (hi - lo + 1)
                    } else {
                        lo + (r >> 1) % 5000.min(hi - lo + 1)
                    };
                    set_scalar(&mut p, key, v);
                }
            }
            if p.large_cache_max_block > p.large_cache_budget {
                core::mem::swap(&mut p.large_cache_max_block, &mut p.large_cache_budget);
            }
            p
        })
}

/// Invalid lines, each rejected wherever it appears.
fn bad_line() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_]{1,12}",
        "[a-z_]{1,12} = [0-9]{1,3}".prop_filter("unknown key", |s| {
            Key::from_name(s.split(' ').next().unwrap().as_bytes()).is_none()
        }),
        "decay_ms = [a-z]{1,5}",
        "madvise_batch = (0|4097|99999)",
        "mid_wmax_permille = [0-9]{1,3}",
        "tiny_cap = [0-9 ]{0,20}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn valid_policies_round_trip(p in valid_policy()) {
        prop_assert_eq!(p.validate(), Ok(()));
        let s = to_string(&p);
        prop_assert!(s.len() <= POLICY_FILE_MAX);
        prop_assert_eq!(FrozenPolicy::parse(s.as_bytes()), Ok(p));
    }

    #[test]
    fn parser_never_panics(input in prop::collection::vec(any::<u8>(), 0..600)) {
        let lines = input.split(|&b| b == b'\n').count() as u32;
        if let Err(e) = FrozenPolicy::parse(&input) {
            prop_assert!(e.line <= lines);
            let _ = e.to_string();
        }
    }

    #[test]
    fn parser_never_panics_after_a_header(
        body in prop::collection::vec(
            prop_oneof![
                any::<u8>(),
                Just(b'\n'), Just(b'='), Just(b' '), Just(b'#'),
                (b'0'..=b'9'),
            ],
            0..600,
        ),
        key in 0..Key::COUNT,
    ) {
        let mut input = format!("hakmem-policy v1\n{} =", Key::ALL[key].name()).into_bytes();
        input.extend_from_slice(&body);
        let lines = input.split(|&b| b == b'\n').count() as u32;
        match FrozenPolicy::parse(&input) {
            Ok(p) => prop_assert_eq!(p.validate(), Ok(())),
            Err(e) => {
                prop_assert!(e.line <= lines);
                let _ = e.to_string();
            }
        }
    }

    #[test]
    fn malformed_files_are_rejected_at_the_bad_line(
        p in valid_policy(),
        bad in bad_line(),
        at in any::<prop::sample::Index>(),
    ) {
        let s = to_string(&p);
        let mut lines: Vec<&str> = s.lines().collect();
        let at = 1 + at.index(lines.len()); // after the header
        lines.insert(at, &bad);
        let e = FrozenPolicy::parse(lines.join("\n").as_bytes()).unwrap_err();
        prop_assert_eq!(e.line as usize, at + 1, "{}", e);
    }
}

/// The default policy's file, as hakmem wrote it before the field table
/// (`fields.rs`) generated the format: the serializer stays byte-for-byte
/// compatible, and such files still parse to the default.
#[test]
fn default_file_is_byte_for_byte_stable() {
    const GOLDEN: &str = include_str!("default.policy");
    assert_eq!(to_string(&DEFAULT_POLICY), GOLDEN);
    assert_eq!(parse_str(GOLDEN), Ok(DEFAULT_POLICY));
}

/// The module documentation's range table restates the field table's
/// ranges: every key has a row, and the row's numbers are the key's range
/// (the upper end of `tiny_refill`, `mid_refill` and
/// `large_cache_max_block` is another key, checked by `validate`).
#[test]
fn documented_ranges_match_the_field_table() {
    const SOURCE: &str = include_str!("../file.rs");
    let rows: Vec<(&str, &str)> = SOURCE
        .lines()
        .filter_map(|l| l.strip_prefix("//! | "))
        .filter_map(|l| {
            let mut cols = l.split(" | ");
            Some((cols.next()?, cols.next()?.trim_end_matches(" |")))
        })
        .collect();
    let number = |s: &str| -> Option<u64> {
        let s: String = s.chars().filter(|c| *c != ' ').collect();
        match s.strip_prefix("2^") {
            Some(exp) => Some(1u64 << exp.parse::<u32>().ok()?),
            None => s.parse().ok(),
        }
    };
    for key in Key::ALL {
        let name = format!("`{}`", key.name());
        let matching: Vec<_> = rows.iter().filter(|(k, _)| k.contains(&name)).collect();
        assert_eq!(matching.len(), 1, "{name}: one row");
        let (lo, hi) = matching[0].1.split_once("..=").expect("a range");
        let (want_lo, want_hi) = key.range();
        assert_eq!(number(lo), Some(want_lo), "{name}");
        match number(hi) {
            Some(hi) => assert_eq!(hi, want_hi, "{name}"),
            None => assert!(
                matches!(
                    key,
                    Key::TinyRefill | Key::MidRefill | Key::LargeCacheMaxBlock
                ),
                "{name}: {hi}"
            ),
        }
    }
}
