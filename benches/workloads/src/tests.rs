use super::*;

fn argv(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| x.to_string()).collect()
}

#[test]
fn parses_options_flags_and_suffixes() {
    let a = Args::parse(
        "t",
        "",
        &argv(&["--ops", "2M", "--size=64K", "--no-latency", "--live", "7"]),
    )
    .unwrap();
    assert_eq!(a.count("ops", 1, ""), 2_000_000);
    assert_eq!(a.size("size", 1, ""), 65536);
    assert!(a.flag("no-latency", ""));
    assert_eq!(a.value("live", 0usize, ""), 7);
    assert_eq!(a.count("missing", 5, ""), 5);
    assert!(Args::parse("t", "", &argv(&["stray"])).is_err());
    assert!(Args::parse("t", "", &argv(&["--x", "1", "--x", "2"])).is_err());
    assert_eq!(parse_count("10_000"), Some(10_000));
    assert_eq!(parse_count("3k"), Some(3_000));
    assert_eq!(parse_count("x"), None);
    assert_eq!(parse_size("2MiB"), Some(2 << 20));
    assert_eq!(parse_size("1G"), Some(1 << 30));
    assert_eq!(parse_size("17"), Some(17));
}

#[test]
fn rng_is_deterministic_and_in_range() {
    let mut a = Rng::new(1);
    let mut b = Rng::new(1);
    for _ in 0..1000 {
        let x = a.range(8, 1024);
        assert_eq!(x, b.range(8, 1024));
        assert!((8..=1024).contains(&x));
    }
    assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
}

#[test]
fn percentiles_use_nearest_rank() {
    let v: Vec<u32> = (1..=100).collect();
    assert_eq!(percentile(&v, 0.5), Some(50));
    assert_eq!(percentile(&v, 0.99), Some(99));
    assert_eq!(percentile(&v, 1.0), Some(100));
    assert_eq!(percentile(&[], 0.5), None);
}

#[test]
fn sampler_counts_every_call_and_samples_one_in_n() {
    let mut s = Sampler::new(1000, true, 10);
    for _ in 0..1000 {
        s.call(|| ());
    }
    assert_eq!(s.calls(), 1000);
    assert_eq!(s.samples.len(), 100);
    let mut d = Sampler::disabled();
    d.call(|| ());
    assert_eq!((d.calls(), d.samples.len()), (1, 0));
}

#[test]
fn blocks_round_trip_and_realloc_keeps_contents() {
    let mut s = Sampler::disabled();
    for size in [1, 7, 8, 9, 100, 5000, 70_000] {
        let b = Block::alloc(size, &mut s);
        b.check();
        if size >= 8 {
            // SAFETY: a live block of at least 8 bytes from Block::alloc.
            assert_eq!(unsafe { Block::from_raw(b.as_ptr()) }, b);
        }
        // Blocks under 8 bytes are 1-aligned, larger ones 8-aligned;
        // realloc stays within one alignment class.
        let new_size = if size < 8 { 7 } else { size * 3 };
        let b = b.realloc(new_size, &mut s);
        assert_eq!(b.size(), new_size);
        b.check();
        b.free(&mut s);
    }
    assert_eq!(s.calls(), 21);
}

#[test]
fn report_line_has_the_fields() {
    let mut s = Sampler::new(100, true, 1);
    for _ in 0..100 {
        s.call(|| std::hint::black_box(1));
    }
    let line = Report::new("unit", 1, 100, Duration::from_millis(10))
        .samples(&s)
        .extra("k", 3)
        .line();
    assert!(
        line.starts_with("HAKMEM_BENCH workload=unit threads=1 ops=100 "),
        "{line}"
    );
    for key in [
        "ops_per_sec=10000 ",
        "p50_ns=",
        "p99_ns=",
        "samples=100 ",
        "peak_rss_kb=",
        "minflt=",
        "malloc_lib=",
        "global=",
        " k=3",
    ] {
        assert!(line.contains(key), "{key} missing in {line}");
    }
    assert!(!line.contains("NA"), "{line}");
}
