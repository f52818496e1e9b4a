use super::*;
use hakmem_policy_rcu::DEFAULT_POLICY;
use proptest::prelude::*;

/// Parses a set of `(name, value)` pairs.
fn parse(vars: &[(&str, &[u8])]) -> (Options, Warnings) {
    Options::from_lookup(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| *v))
}

fn one(name: &str, value: &str) -> (Options, Warnings) {
    parse(&[(name, value.as_bytes())])
}

fn lines(w: &Warnings) -> Vec<String> {
    w.iter().map(|w| w.to_string()).collect()
}

#[test]
fn table_rows_match_their_variables() {
    let mut names = std::collections::HashSet::new();
    for (i, spec) in TABLE.iter().enumerate() {
        assert_eq!(spec.var as usize, i, "{}", spec.name);
        assert_eq!(spec.var.spec(), spec);
        assert_eq!(spec.c_name.to_bytes(), spec.name.as_bytes());
        assert!(spec.name.starts_with("HAKMEM_"));
        assert!(names.insert(spec.name), "{} twice", spec.name);
        assert!(!spec.description.is_empty() && !spec.default.is_empty());
        if let Kind::Int { min, max } = spec.kind {
            assert!(min <= max);
        }
    }
}

#[test]
fn nothing_set_gives_the_defaults() {
    let (o, w) = Options::from_lookup(|_| None);
    assert_eq!(o, Options::DEFAULT);
    assert_eq!(o, Options::default());
    assert!(w.is_empty());
    assert_eq!(o.mode, Mode::Balanced);
    assert_eq!(o.learn_window_ms, 50);
    assert_eq!(o.selector, SelectorKind::Ucb1);
    assert_eq!(o.canary_permille, 50);
    assert_eq!(o.sites_sample, 12);
    assert_eq!(o.on_error, OnError::Abort);
    assert_eq!(o.decay_ms, None);
    assert_eq!(o.mem_budget_mb, 0);
    assert!(o.background, "the background thread is on by default");
    assert!(!o.stats && !o.sites && !o.secure);
    assert_eq!(o.check, None, "unset: the build's default");
    assert!(o.policy.is_none() && o.policy_save.is_none() && o.sites_json.is_none());
}

#[test]
fn empty_values_mean_unset() {
    let all: Vec<(&str, &[u8])> = TABLE.iter().map(|s| (s.name, &b""[..])).collect();
    let (o, w) = parse(&all);
    assert_eq!(o, Options::DEFAULT);
    assert!(w.is_empty());
    let (o, w) = one("HAKMEM_LEARN_WINDOW_MS", "  \t");
    assert_eq!(o, Options::DEFAULT);
    assert!(w.is_empty());
}

#[test]
fn every_variable_with_good_values() {
    for (i, name) in MODE_NAMES.iter().enumerate() {
        assert_eq!(one("HAKMEM_MODE", name).0.mode, Mode::ALL[i]);
        assert_eq!(Mode::ALL[i].name(), *name);
    }
    assert_eq!(one("HAKMEM_MODE", " Learning\n").0.mode, Mode::Learning);
    assert_eq!(one("HAKMEM_LEARN_WINDOW_MS", "250").0.learn_window_ms, 250);
    assert_eq!(one("HAKMEM_LEARN_WINDOW_MS", "10").0.learn_window_ms, 10);
    assert_eq!(
        one("HAKMEM_LEARN_WINDOW_MS", "60000").0.learn_window_ms,
        60000
    );
    let (o, w) = one("HAKMEM_POLICY", "/tmp/p.policy");
    assert_eq!(o.policy.unwrap().as_bytes(), b"/tmp/p.policy");
    assert_eq!(o.policy.unwrap().as_c_str(), c"/tmp/p.policy");
    assert!(w.is_empty());
    let (o, _) = one("HAKMEM_POLICY_SAVE", " spaced name ");
    assert_eq!(o.policy_save.unwrap().as_bytes(), b" spaced name ");
    for (v, b) in [
        ("1", true),
        ("0", false),
        ("TRUE", true),
        ("false", false),
        ("yes", true),
        ("No", false),
        ("on", true),
        ("OFF", false),
    ] {
        assert_eq!(one("HAKMEM_STATS", v).0.stats, b, "{v}");
        assert_eq!(one("HAKMEM_SITES", v).0.sites, b, "{v}");
        assert_eq!(one("HAKMEM_SECURE", v).0.secure, b, "{v}");
        assert_eq!(one("HAKMEM_CHECK", v).0.check, Some(b), "{v}");
    }
    assert_eq!(one("HAKMEM_SELECTOR", "elo").0.selector, SelectorKind::Elo);
    assert_eq!(
        one("HAKMEM_SELECTOR", "UCB1").0.selector,
        SelectorKind::Ucb1
    );
    assert_eq!(one("HAKMEM_CANARY_PERMILLE", "0").0.canary_permille, 0);
    assert_eq!(
        one("HAKMEM_CANARY_PERMILLE", "1000").0.canary_permille,
        1000
    );
    assert_eq!(one("HAKMEM_SITES_SAMPLE", "0").0.sites_sample, 0);
    assert_eq!(one("HAKMEM_SITES_SAMPLE", "30").0.sites_sample, 30);
    let (o, _) = one("HAKMEM_SITES_JSON", "sites.json");
    assert_eq!(o.sites_json.unwrap().as_bytes(), b"sites.json");
    assert_eq!(one("HAKMEM_ON_ERROR", "warn").0.on_error, OnError::Warn);
    assert_eq!(one("HAKMEM_ON_ERROR", "abort").0.on_error, OnError::Abort);
    assert_eq!(one("HAKMEM_DECAY_MS", "250").0.decay_ms, Some(250));
    assert_eq!(one("HAKMEM_DECAY_MS", "007").0.decay_ms, Some(7));
    assert_eq!(one("HAKMEM_MEM_BUDGET_MB", "512").0.mem_budget_mb, 512);
    assert_eq!(one("HAKMEM_MEM_BUDGET_MB", "0").0.mem_budget_mb, 0);
    assert!(!one("HAKMEM_BACKGROUND", "0").0.background);
    assert!(one("HAKMEM_BACKGROUND", "on").0.background);
}

#[test]
fn every_variable_with_bad_values() {
    let long = "x".repeat(PATH_MAX);
    let cases: &[(&str, &str, &str)] = &[
        (
            "HAKMEM_MODE",
            "turbo",
            "hakmem: HAKMEM_MODE=turbo: expected one of minimal|fast|balanced|learning|research, using balanced",
        ),
        (
            "HAKMEM_LEARN_WINDOW_MS",
            "1s",
            "hakmem: HAKMEM_LEARN_WINDOW_MS=1s: expected a number in 10..=60000, using 50",
        ),
        (
            "HAKMEM_LEARN_WINDOW_MS",
            "9",
            "hakmem: HAKMEM_LEARN_WINDOW_MS=9: out of range 10..=60000, using 50",
        ),
        (
            "HAKMEM_LEARN_WINDOW_MS",
            "-5",
            "hakmem: HAKMEM_LEARN_WINDOW_MS=-5: expected a number in 10..=60000, using 50",
        ),
        (
            "HAKMEM_POLICY",
            &long,
            "", // checked below
        ),
        (
            "HAKMEM_STATS",
            "2",
            "hakmem: HAKMEM_STATS=2: expected 0 or 1 (or true/false, yes/no, on/off), using 0",
        ),
        (
            "HAKMEM_SELECTOR",
            "thompson",
            "hakmem: HAKMEM_SELECTOR=thompson: expected one of ucb1|elo, using ucb1",
        ),
        (
            "HAKMEM_CANARY_PERMILLE",
            "1001",
            "hakmem: HAKMEM_CANARY_PERMILLE=1001: out of range 0..=1000, using 50",
        ),
        (
            "HAKMEM_SITES",
            "y",
            "hakmem: HAKMEM_SITES=y: expected 0 or 1 (or true/false, yes/no, on/off), using 0",
        ),
        (
            "HAKMEM_SITES_SAMPLE",
            "31",
            "hakmem: HAKMEM_SITES_SAMPLE=31: out of range 0..=30, using 12",
        ),
        (
            "HAKMEM_SECURE",
            "enabled",
            "hakmem: HAKMEM_SECURE=enabled: expected 0 or 1 (or true/false, yes/no, on/off), using 0",
        ),
        (
            "HAKMEM_CHECK",
            "2",
            "hakmem: HAKMEM_CHECK=2: expected 0 or 1 (or true/false, yes/no, on/off), using the default",
        ),
        (
            "HAKMEM_ON_ERROR",
            "ignore",
            "hakmem: HAKMEM_ON_ERROR=ignore: expected one of abort|warn, using abort",
        ),
        (
            "HAKMEM_DECAY_MS",
            "0",
            "hakmem: HAKMEM_DECAY_MS=0: out of range 1..=3600000, using the policy's value",
        ),
        (
            "HAKMEM_BACKGROUND",
            "2",
            "hakmem: HAKMEM_BACKGROUND=2: expected 0 or 1 (or true/false, yes/no, on/off), using 1",
        ),
        (
            "HAKMEM_MEM_BUDGET_MB",
            "1G",
            "hakmem: HAKMEM_MEM_BUDGET_MB=1G: expected a number in 0..=16777216, using 0",
        ),
        (
            "HAKMEM_DECAY_MS",
            "99999999999999999999999",
            "hakmem: HAKMEM_DECAY_MS=99999999999999999999999: out of range 1..=3600000, using the policy's value",
        ),
    ];
    for (name, value, line) in cases {
        let (o, w) = one(name, value);
        assert_eq!(o, Options::DEFAULT, "{name}={value}");
        assert_eq!(w.len(), 1, "{name}={value}");
        let warning = w.iter().next().unwrap();
        assert_eq!(warning.name(), name.as_bytes());
        if !line.is_empty() {
            assert_eq!(warning.to_string(), *line);
        }
    }
    let (_, w) = one("HAKMEM_POLICY", &long);
    let line = lines(&w).pop().unwrap();
    assert!(line.starts_with(&format!("hakmem: HAKMEM_POLICY={}...: ", "x".repeat(64))));
    assert!(line.ends_with(": longer than 255 bytes, ignored"), "{line}");
    assert_eq!(w.iter().next().unwrap().issue(), Issue::TooLong);
    let (o, w) = parse(&[("HAKMEM_SITES_JSON", b"a\0b")]);
    assert_eq!(o.sites_json, None);
    assert_eq!(
        lines(&w),
        ["hakmem: HAKMEM_SITES_JSON=a?b: contains a NUL byte, ignored"]
    );
}

#[test]
fn paths_up_to_255_bytes() {
    let ok = "p".repeat(PATH_MAX - 1);
    let (o, w) = one("HAKMEM_POLICY_SAVE", &ok);
    assert!(w.is_empty());
    let p = o.policy_save.unwrap();
    assert_eq!(p.as_bytes(), ok.as_bytes());
    assert_eq!(p.as_c_str().to_bytes(), ok.as_bytes());
    assert!(Path::new(b"").is_none());
    assert!(Path::new(&[b'p'; PATH_MAX]).is_none());
    assert_eq!(format!("{p:?}").len(), ok.len() + 8);
}

#[test]
fn output_paths_expand_pid_exe_and_percent() {
    let expand = |template: &str, pid: u32, exe: &str| -> Option<String> {
        let p = Path::new(template.as_bytes()).unwrap();
        let mut out = [0u8; PATH_MAX];
        p.expand(pid, exe.as_bytes(), &mut out)
            .map(|c| c.to_str().unwrap().to_owned())
    };
    assert_eq!(
        expand("/tmp/sites.%p.json", 4242, "x").as_deref(),
        Some("/tmp/sites.4242.json")
    );
    assert_eq!(expand("%e-%p", 0, "bash").as_deref(), Some("bash-0"));
    assert_eq!(
        expand("%p%p", u32::MAX, "").as_deref(),
        Some("42949672954294967295")
    );
    // `%%` is one percent and never starts a placeholder; other `%`s stay
    assert_eq!(expand("100%%p", 7, "e").as_deref(), Some("100%p"));
    assert_eq!(expand("a%x%", 7, "e").as_deref(), Some("a%x%"));
    assert_eq!(expand("%e", 7, "").as_deref(), Some(""));
    assert_eq!(expand("plain", 7, "e").as_deref(), Some("plain"));
    // the result must fit the buffer with its NUL
    let long = "x".repeat(PATH_MAX - 4);
    assert_eq!(expand(&long, 1, "e").map(|s| s.len()), Some(PATH_MAX - 4));
    let with_pid = long + "%p";
    assert_eq!(
        expand(&with_pid, 123, "e").map(|s| s.len()),
        Some(PATH_MAX - 1)
    );
    assert_eq!(expand(&with_pid, 1234, "e"), None);
    assert_eq!(expand("%e", 1, &"n".repeat(PATH_MAX)), None);
    let p = Path::new(b"%e").unwrap();
    assert!(p.expand(1, b"a\0b", &mut [0u8; 16]).is_none());
    assert!(p.expand(1, b"", &mut []).is_none());
}

#[test]
fn several_problems_are_all_reported_in_table_order() {
    let (o, w) = parse(&[
        ("HAKMEM_DECAY_MS", b"x"),
        ("HAKMEM_MODE", b"fast"),
        ("HAKMEM_STATS", b"maybe"),
        ("HAKMEM_SITES_SAMPLE", b"3"),
    ]);
    assert_eq!(o.mode, Mode::Fast);
    assert_eq!(o.sites_sample, 3);
    let vars: Vec<_> = w.iter().map(|w| w.var()).collect();
    assert_eq!(vars, [Some(Var::Stats), Some(Var::DecayMs)]);
}

#[test]
fn policy_file_is_unused_in_minimal_and_fast() {
    for mode in Mode::ALL {
        let (o, w) = parse(&[
            ("HAKMEM_MODE", mode.name().as_bytes()),
            ("HAKMEM_POLICY", b"saved.policy"),
        ]);
        if mode.features().contains(Features::POLICY_FILE) {
            assert_eq!(o.policy.unwrap().as_bytes(), b"saved.policy");
            assert!(w.is_empty());
        } else {
            assert_eq!(o.policy, None);
            assert_eq!(
                lines(&w),
                [format!(
                    "hakmem: HAKMEM_POLICY=saved.policy: not used in mode {}, ignored",
                    mode.name()
                )]
            );
        }
    }
}

#[test]
fn unknown_names_are_reported() {
    let mut w = Warnings::new();
    let env: [&[u8]; 8] = [
        b"HAKMEM_MODE=fast",
        b"HAKMEM_MOD=fast",
        b"HAKMEM_BENCH_TCMALLOC=/x.so",
        b"HAKMEM_BENCH=1",
        b"PATH=/bin",
        b"HAKMEM_",
        b"hakmem_mode=fast",
        b"HAKMEM_X=a=b",
    ];
    Options::check_names(env, &mut w);
    assert_eq!(
        lines(&w),
        [
            "hakmem: HAKMEM_MOD=fast: unknown variable, ignored",
            "hakmem: HAKMEM_=: unknown variable, ignored",
            "hakmem: HAKMEM_X=a=b: unknown variable, ignored",
        ]
    );
    assert!(w
        .iter()
        .all(|w| w.var().is_none() && w.issue() == Issue::Unknown));
}

#[test]
fn warnings_beyond_the_capacity_are_counted() {
    let names: Vec<String> = (0..MAX_WARNINGS + 3)
        .map(|i| format!("HAKMEM_NO{i}=1"))
        .collect();
    let mut w = Warnings::new();
    Options::check_names(names.iter().map(|s| s.as_bytes()), &mut w);
    assert_eq!(w.len(), MAX_WARNINGS);
    assert_eq!(w.dropped(), 3);
    assert!(!w.is_empty());
    assert!(format!("{w:?}").ends_with("(+3 dropped)"));
}

#[test]
fn warning_lines_are_bounded_and_printable() {
    let mut value = vec![0xffu8; 300];
    value[0] = b'\n';
    let (_, w) = parse(&[("HAKMEM_MODE", &value)]);
    let warning = w.iter().next().unwrap();
    let line = warning.line();
    let bytes = line.as_bytes();
    assert!(bytes.len() <= 256);
    assert_eq!(bytes.last(), Some(&b'\n'));
    assert!(bytes[..bytes.len() - 1]
        .iter()
        .all(|&b| b == b' ' || b.is_ascii_graphic()));
    assert_eq!(std::str::from_utf8(bytes).unwrap(), format!("{warning}\n"));
    assert_eq!(warning.value().len(), 64);
    // a long unknown name is cut at 48 bytes
    let long = format!("HAKMEM_{}=1", "Z".repeat(100));
    let mut w = Warnings::new();
    Options::check_names([long.as_bytes()], &mut w);
    assert_eq!(w.iter().next().unwrap().name().len(), 48);
}

#[test]
fn minimal_mode_turns_every_cache_off() {
    let p = Mode::Minimal.shape_policy(&DEFAULT_POLICY);
    assert_eq!(p.validate(), Ok(()));
    assert!(p.tiny_cap.iter().chain(&p.mid_cap).all(|&c| c == 0));
    assert!(p.tiny_refill.iter().chain(&p.mid_refill).all(|&c| c == 0));
    assert_eq!(p.max_cached_bytes(), 0);
    assert_eq!(
        (
            p.large_cache_budget,
            p.large_cache_max_block,
            p.large_clean_budget
        ),
        (0, 0, 0)
    );
    assert_eq!((p.pool_dirty, p.pool_clean, p.heap_keep_empty), (0, 0, 0));
    assert_eq!(p.heap_empty_budget, 0);
    for mode in [Mode::Fast, Mode::Balanced, Mode::Learning, Mode::Research] {
        assert_eq!(mode.shape_policy(&DEFAULT_POLICY), DEFAULT_POLICY);
    }
}

#[test]
fn policy_overrides_come_from_the_field_table() {
    let mut overriding = 0;
    for spec in &TABLE {
        let Some(key) = spec.policy_field else {
            continue;
        };
        overriding += 1;
        let f = key.field().expect("a scalar field");
        assert_eq!(
            spec.kind,
            Kind::Int {
                min: f.min,
                max: f.max
            },
            "{}",
            spec.name
        );
        assert!(
            spec.default
                .contains(&format!("`{}` ({})", f.name, f.default)),
            "{}: {}",
            spec.name,
            spec.default
        );
        let v = if f.max > f.min { f.min + 1 } else { f.min };
        let (o, w) = parse(&[(spec.name, v.to_string().as_bytes())]);
        assert_eq!(w.len(), 0);
        assert_eq!(o.policy_override(spec.var), Some(v));
        assert_eq!((f.get)(&o.initial_policy(&DEFAULT_POLICY)), v);
        assert_eq!(Options::DEFAULT.policy_override(spec.var), None);
    }
    assert_eq!(overriding, 1, "HAKMEM_DECAY_MS");
    for spec in TABLE.iter().filter(|s| s.policy_field.is_none()) {
        let (o, _) = parse(&[(spec.name, b"1")]);
        assert_eq!(o.policy_override(spec.var), None, "{}", spec.name);
    }
}

#[test]
fn minimal_mode_zeroes_exactly_the_retaining_fields() {
    let p = Mode::Minimal.shape_policy(&DEFAULT_POLICY);
    for f in FIELDS {
        let want = if f.retains { 0 } else { f.default };
        assert_eq!((f.get)(&p), want, "{}", f.name);
    }
}

#[test]
fn feature_matrix_grows_with_the_mode() {
    let f: Vec<_> = Mode::ALL.iter().map(|m| m.features()).collect();
    assert_eq!(f[0], Features::empty());
    assert_eq!(f[1], Features::CACHES);
    assert_eq!(f[2], Features::CACHES | Features::POLICY_FILE);
    assert_eq!(f[3], Features::all() - Features::VERBOSE);
    assert_eq!(f[4], Features::all());
    for w in f.windows(2) {
        assert!(w[1].contains(w[0]) && w[1] != w[0], "modes are nested");
    }
}

#[test]
fn initial_policy_applies_mode_and_decay() {
    let (o, _) = parse(&[("HAKMEM_DECAY_MS", b"300")]);
    let p = o.initial_policy(&DEFAULT_POLICY);
    assert_eq!(p.decay_ms, 300);
    assert_eq!(
        FrozenPolicy {
            decay_ms: 1000,
            ..p
        },
        DEFAULT_POLICY
    );
    let (o, _) = parse(&[("HAKMEM_MODE", b"minimal")]);
    assert_eq!(
        o.initial_policy(&DEFAULT_POLICY),
        Mode::Minimal.shape_policy(&DEFAULT_POLICY)
    );
    assert_eq!(
        Options::DEFAULT.initial_policy(&DEFAULT_POLICY),
        DEFAULT_POLICY
    );
}

fn markdown() -> String {
    let mut s = String::new();
    write_markdown(&mut s).unwrap();
    s
}

/// `OPTIONS.md` holds the current table (regenerate it with
/// `UPDATE_OPTIONS_MD=1 cargo test -p hakmem-options`).
#[test]
fn options_md_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/OPTIONS.md");
    let want = format!(
        "# hakmem options\n\n<!-- generated by hakmem_options::write_markdown -->\n\n{}",
        markdown()
    );
    if std::env::var_os("UPDATE_OPTIONS_MD").is_some() {
        std::fs::write(path, &want).unwrap();
    }
    let have = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        have == want,
        "OPTIONS.md is stale: UPDATE_OPTIONS_MD=1 cargo test -p hakmem-options"
    );
}

#[test]
fn markdown_has_a_row_per_variable_and_mode() {
    let md = markdown();
    for spec in &TABLE {
        assert_eq!(
            md.lines()
                .filter(|l| l.starts_with(&format!("| `{}` |", spec.name)))
                .count(),
            1,
            "{}",
            spec.name
        );
    }
    for mode in Mode::ALL {
        assert!(md.contains(&format!("| `{}`", mode.name())));
    }
}

/// What a reference parser (std, written independently) expects.
#[derive(Debug, PartialEq)]
enum Expect {
    Default,
    Value(String),
    Warn,
}

fn reference(kind: Kind, raw: &[u8]) -> Expect {
    if let Kind::Path = kind {
        return if raw.is_empty() {
            Expect::Default
        } else if raw.contains(&0) || raw.len() > 255 {
            Expect::Warn
        } else {
            Expect::Value(String::from_utf8_lossy(raw).into_owned())
        };
    }
    let Ok(s) = std::str::from_utf8(raw) else {
        // non-UTF-8: blanks are ASCII, the rest cannot match anything
        return if raw.iter().all(|b| b.is_ascii_whitespace()) {
            Expect::Default
        } else {
            Expect::Warn
        };
    };
    let t = s.trim_matches(|c: char| c.is_ascii_whitespace());
    if t.is_empty() {
        return Expect::Default;
    }
    let l = t.to_ascii_lowercase();
    match kind {
        Kind::Bool => match l.as_str() {
            "1" | "true" | "yes" | "on" => Expect::Value("1".into()),
            "0" | "false" | "no" | "off" => Expect::Value("0".into()),
            _ => Expect::Warn,
        },
        Kind::Int { min, max } => {
            if !t.bytes().all(|b| b.is_ascii_digit()) {
                return Expect::Warn;
            }
            match t.parse::<u128>() {
                Ok(v) if v >= min as u128 && v <= max as u128 => Expect::Value(v.to_string()),
                _ => Expect::Warn,
            }
        }
        Kind::Choice(names) => match names.iter().find(|n| **n == l) {
            Some(n) => Expect::Value(n.to_string()),
            None => Expect::Warn,
        },
        Kind::Path => unreachable!(),
    }
}

/// The option's value as the reference parser writes it.
fn shown(o: &Options, var: Var) -> String {
    let path = |p: &Option<Path>| String::from_utf8_lossy(p.unwrap().as_bytes()).into_owned();
    let b = |b: bool| if b { "1" } else { "0" }.to_string();
    match var {
        Var::Mode => o.mode.name().into(),
        Var::LearnWindowMs => o.learn_window_ms.to_string(),
        Var::Policy => path(&o.policy),
        Var::PolicySave => path(&o.policy_save),
        Var::Stats => b(o.stats),
        Var::Selector => SELECTOR_NAMES[o.selector as usize].into(),
        Var::CanaryPermille => o.canary_permille.to_string(),
        Var::Sites => b(o.sites),
        Var::SitesSample => o.sites_sample.to_string(),
        Var::SitesJson => path(&o.sites_json),
        Var::SitePlacement => b(o.site_placement),
        Var::ThpSuperslabs => THP_NAMES[o.thp_superslabs as usize].into(),
        Var::Secure => b(o.secure),
        Var::OnError => ON_ERROR_NAMES[o.on_error as usize].into(),
        Var::Check => b(o.check.unwrap()),
        Var::DecayMs => o.decay_ms.unwrap().to_string(),
        Var::MemBudgetMb => o.mem_budget_mb.to_string(),
        Var::Prof => b(o.prof),
        Var::ProfSample => o.prof_sample.to_string(),
        Var::ProfJson => path(&o.prof_json),
        Var::PolicyDir => path(&o.policy_dir),
        Var::Trace => o.trace.unwrap().to_string(),
        Var::Background => b(o.background),
    }
}

/// Bytes that are sometimes valid for `kind`.
fn value_for(kind: Kind) -> BoxedStrategy<Vec<u8>> {
    let words: Vec<String> = match kind {
        Kind::Bool => ["1", "0", "true", "OFF", "yes", "no"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        Kind::Choice(names) => names.iter().map(|s| s.to_uppercase()).collect(),
        Kind::Int { min, max } => vec![min.to_string(), max.to_string(), (max + 1).to_string()],
        Kind::Path => vec!["/tmp/x".into()],
    };
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        (prop::sample::select(words), "[ \t]{0,2}", "[ \t]{0,2}")
            .prop_map(|(w, a, b)| format!("{a}{w}{b}").into_bytes()),
        "[0-9]{1,25}".prop_map(String::into_bytes),
    ]
    .boxed()
}

fn var_and_value() -> impl Strategy<Value = (usize, Vec<u8>)> {
    (0..VARS).prop_flat_map(|i| (Just(i), value_for(TABLE[i].kind)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary bytes never panic and give either the value, or the default
    /// with one warning naming the variable; always what the reference
    /// parser says.
    #[test]
    fn arbitrary_values_give_the_value_or_the_default_with_a_warning(
        (i, raw) in var_and_value(),
        mode in 0..3usize,
    ) {
        let spec = &TABLE[i];
        // Other variables are parsed under a mode that reads HAKMEM_POLICY
        // (no Unused warning).
        let (o, w, base) = if spec.var == Var::Mode {
            let (o, w) = parse(&[(spec.name, &raw)]);
            (o, w, Options::DEFAULT)
        } else {
            let mode = ["balanced", "learning", "research"][mode];
            let (o, w) = parse(&[("HAKMEM_MODE", mode.as_bytes()), (spec.name, &raw)]);
            (o, w, one("HAKMEM_MODE", mode).0)
        };
        match reference(spec.kind, &raw) {
            Expect::Default => {
                prop_assert_eq!(o, base);
                prop_assert!(w.is_empty());
            }
            Expect::Warn => {
                prop_assert_eq!(o, base);
                prop_assert_eq!(w.len(), 1);
                let warning = w.iter().next().unwrap();
                prop_assert_eq!(warning.var(), Some(spec.var));
                let line = warning.to_string();
                let prefix = format!("hakmem: {}=", spec.name);
                prop_assert!(line.starts_with(&prefix));
                prop_assert!(line.ends_with(spec.fallback));
                prop_assert!(warning.line().as_bytes().len() <= 256);
            }
            Expect::Value(v) => {
                prop_assert!(w.is_empty(), "{:?}", w);
                prop_assert_eq!(shown(&o, spec.var), v);
            }
        }
    }

    #[test]
    fn arbitrary_environments_never_panic(
        entries in prop::collection::vec(
            ("HAKMEM_[A-Z_]{0,12}|[A-Z]{1,5}", prop::collection::vec(any::<u8>(), 0..40)),
            0..24,
        )
    ) {
        let joined: Vec<Vec<u8>> = entries
            .iter()
            .map(|(n, v)| [n.as_bytes(), b"=", v].concat())
            .collect();
        let mut w = Warnings::new();
        Options::check_names(joined.iter().map(|e| e.as_slice()), &mut w);
        let unknown = entries
            .iter()
            .filter(|(n, _)| {
                n.starts_with("HAKMEM_")
                    && !n.starts_with("HAKMEM_BENCH")
                    && TABLE.iter().all(|s| s.name != n)
            })
            .count();
        prop_assert_eq!(w.len() + w.dropped(), unknown);
        let lookup: Vec<(&str, &[u8])> = entries.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
        let (_, w) = parse(&lookup);
        for warning in w.iter() {
            let _ = warning.line();
        }
    }
}
