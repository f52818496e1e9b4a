//! The text and JSON reports: shape, contents against the table, ranking
//! against a sort, well-formed JSON.

use std::collections::BTreeMap;

use hakmem_sites::{
    Order, ReportOptions, SiteId, SiteTable, SliceWriter, Top, LIFE_BUCKETS, SIZE_BUCKETS,
};
use proptest::prelude::*;

// ---- a minimal JSON parser (enough to check the report) ----

#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(BTreeMap<String, Json>),
}

impl Json {
    fn get(&self, k: &str) -> &Json {
        match self {
            Json::Obj(m) => m.get(k).unwrap_or_else(|| panic!("no key {k}")),
            _ => panic!("not an object"),
        }
    }
    fn num(&self) -> u64 {
        match self {
            Json::Num(n) => *n as u64,
            _ => panic!("not a number: {self:?}"),
        }
    }
    fn str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            _ => panic!("not a string: {self:?}"),
        }
    }
    fn arr(&self) -> &[Json] {
        match self {
            Json::Arr(v) => v,
            _ => panic!("not an array: {self:?}"),
        }
    }
}

struct P<'a> {
    s: &'a [u8],
    i: usize,
}

impl P<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && b" \n\r\t".contains(&self.s[self.i]) {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> Result<(), String> {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected {:?} at {}", c as char, self.i))
        }
    }
    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.s.get(self.i).copied() {
            Some(b'{') => {
                self.i += 1;
                let mut m = BTreeMap::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(m));
                }
                loop {
                    self.ws();
                    let k = match self.value()? {
                        Json::Str(k) => k,
                        v => return Err(format!("key {v:?}")),
                    };
                    self.eat(b':')?;
                    let v = self.value()?;
                    if m.insert(k.clone(), v).is_some() {
                        return Err(format!("duplicate key {k}"));
                    }
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(m));
                        }
                        _ => return Err(format!("object at {}", self.i)),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut v = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(v));
                }
                loop {
                    v.push(self.value()?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(v));
                        }
                        _ => return Err(format!("array at {}", self.i)),
                    }
                }
            }
            Some(b'"') => {
                self.i += 1;
                let mut out = Vec::new();
                loop {
                    let c = *self.s.get(self.i).ok_or("eof in string")?;
                    self.i += 1;
                    match c {
                        b'"' => break,
                        b'\\' => {
                            let e = *self.s.get(self.i).ok_or("eof in escape")?;
                            self.i += 1;
                            match e {
                                b'"' => out.push(b'"'),
                                b'\\' => out.push(b'\\'),
                                b'/' => out.push(b'/'),
                                b'n' => out.push(b'\n'),
                                b'r' => out.push(b'\r'),
                                b't' => out.push(b'\t'),
                                b'u' => {
                                    let h = std::str::from_utf8(&self.s[self.i..self.i + 4])
                                        .map_err(|e| e.to_string())?;
                                    let c =
                                        u32::from_str_radix(h, 16).map_err(|e| e.to_string())?;
                                    self.i += 4;
                                    let mut b = [0; 4];
                                    out.extend_from_slice(
                                        char::from_u32(c)
                                            .ok_or("bad \\u")?
                                            .encode_utf8(&mut b)
                                            .as_bytes(),
                                    );
                                }
                                _ => return Err(format!("bad escape {}", e as char)),
                            }
                        }
                        c if c < 0x20 => return Err("control character in string".into()),
                        c => out.push(c),
                    }
                }
                Ok(Json::Str(
                    String::from_utf8(out).map_err(|e| e.to_string())?,
                ))
            }
            Some(b'n') if self.s[self.i..].starts_with(b"null") => {
                self.i += 4;
                Ok(Json::Null)
            }
            Some(b't') if self.s[self.i..].starts_with(b"true") => {
                self.i += 4;
                Ok(Json::Bool(true))
            }
            Some(b'f') if self.s[self.i..].starts_with(b"false") => {
                self.i += 5;
                Ok(Json::Bool(false))
            }
            Some(c) if c == b'-' || c.is_ascii_digit() => {
                let start = self.i;
                while self.i < self.s.len() && b"-+.eE0123456789".contains(&self.s[self.i]) {
                    self.i += 1;
                }
                let t = std::str::from_utf8(&self.s[start..self.i]).unwrap();
                t.parse().map(Json::Num).map_err(|e| format!("{t}: {e}"))
            }
            c => Err(format!("unexpected {c:?} at {}", self.i)),
        }
    }
}

fn parse(s: &str) -> Json {
    let mut p = P {
        s: s.as_bytes(),
        i: 0,
    };
    let v = p.value().unwrap_or_else(|e| panic!("{e}\n{s}"));
    p.ws();
    assert_eq!(p.i, s.len(), "trailing text");
    v
}

// ---- fixtures ----

fn write_addr() -> usize {
    libc::write as *const () as usize + 8
}

/// A table with a Rust site, an exact C site, a sampled C site, an unknown
/// address and an overflow into "other".
fn fixture() -> (&'static SiteTable<4, 2>, SiteId) {
    let t: &'static SiteTable<4, 2> = Box::leak(Box::new(SiteTable::new()));
    t.set_sample_shift(3);
    let rust = SiteId::caller();
    for i in 0..1000u64 {
        let s = t.record_alloc(rust, 24, i * 1000);
        t.record_free(s, 24, i * 1000 + 500, i % 4 == 0);
    }
    for _ in 0..10 {
        let _ = t.record_alloc(SiteId::code(write_addr()), 1 << 20, 0);
    }
    for _ in 0..5 {
        let _ = t.record_alloc(SiteId::sampled(write_addr()), 4096, 0);
    }
    let _ = t.record_alloc(SiteId::code(0x10), 3 << 20, 0);
    // The table is full (4 slots): these go to other.
    for k in 0..3 {
        let _ = t.record_alloc(SiteId::code(0x1000 + k * 64), 7, 0);
    }
    (t, rust)
}

#[test]
fn text_report_shows_top_sites() {
    let (t, rust) = fixture();
    let mut text = String::new();
    t.write_text(&mut text, &ReportOptions::new(1 << 30))
        .unwrap();
    println!("{text}");
    let loc = rust.as_location().unwrap();
    let rust_cell = format!("{}:{}:{}", loc.file(), loc.line(), loc.column());
    assert!(text.starts_with(
        "hakmem call sites: 4 of 4 slots used, 1051 allocations, 13.2 MiB allocated, 13.2 MiB live\n"
    ));
    assert!(text.contains("sampled sites: 1 record per 8 calls"));
    assert!(text.contains("other (sites beyond the table): 3 allocations, 21 B allocated"));
    let by_bytes: Vec<&str> = text
        .split("top 4 sites by bytes:\n")
        .nth(1)
        .unwrap()
        .lines()
        .skip(1)
        .take(4)
        .collect();
    assert!(by_bytes[0].contains("write+0x8 (libc"), "{}", by_bytes[0]);
    assert!(!by_bytes[0].contains("[sampled]"));
    assert!(by_bytes[1].ends_with("0x10"), "{}", by_bytes[1]);
    assert!(by_bytes[2].contains("[sampled]"), "{}", by_bytes[2]);
    assert!(by_bytes[2].contains("          40 "), "sampled count × 8");
    assert!(by_bytes[3].ends_with(&rust_cell), "{}", by_bytes[3]);
    assert!(
        by_bytes[3].contains("SMALL_FREQUENT SHORT"),
        "{}",
        by_bytes[3]
    );
    assert!(by_bytes[3].contains("25%"), "remote share: {}", by_bytes[3]);
    let by_count = text.split("top 4 sites by count:\n").nth(1).unwrap();
    assert!(by_count.lines().nth(1).unwrap().ends_with(&rust_cell));

    // Fewer rows on request.
    let mut text = String::new();
    let opts = ReportOptions {
        top: 1,
        ..ReportOptions::new(0)
    };
    t.write_text(&mut text, &opts).unwrap();
    assert!(text.contains("top 1 sites by bytes:"));
    // Three summary lines, then per table: blank, title, header, one row.
    assert_eq!(text.lines().count(), 3 + 2 * 4);
}

#[test]
fn json_report_matches_the_table() {
    let (t, rust) = fixture();
    let now = 1 << 30;
    let mut out = String::new();
    t.write_json(&mut out, &ReportOptions::new(now)).unwrap();
    let j = parse(&out);
    assert_eq!(j.get("version").num(), 1);
    assert_eq!(j.get("capacity").num(), 4);
    assert_eq!(j.get("sample_shift").num(), 3);
    assert_eq!(j.get("size_bounds").arr().len(), SIZE_BUCKETS - 1);
    assert_eq!(j.get("lifetime_bounds").arr().len(), LIFE_BUCKETS - 1);
    assert_eq!(j.get("thresholds").get("short_max").num(), 1 << 24);
    let sites = j.get("sites").arr();
    assert_eq!(sites.len(), 4);
    for js in sites {
        let slot = js.get("slot").num() as usize;
        let s = t.stats(slot).unwrap();
        assert_eq!(js.get("allocs").num(), s.allocs);
        assert_eq!(js.get("frees").num(), s.frees);
        assert_eq!(js.get("bytes").num(), s.bytes);
        assert_eq!(js.get("est_allocs").num(), s.est_allocs());
        assert_eq!(js.get("avg_size").num(), s.avg_size());
        assert_eq!(js.get("max_size").num(), s.max_size);
        assert_eq!(js.get("remote_frees").num(), s.remote_frees);
        let hist: Vec<u64> = js.get("size_hist").arr().iter().map(Json::num).collect();
        assert_eq!(hist, s.size_hist);
        let class = s.classify(&hakmem_sites::Thresholds::DEFAULT, now);
        assert_eq!(js.get("class").str(), class.policy.name());
        assert_eq!(js.get("lifetime").str(), class.lifetime.name());
        match js.get("kind").str() {
            "location" => {
                let loc = rust.as_location().unwrap();
                assert_eq!(js.get("file").str(), loc.file());
                assert_eq!(js.get("line").num(), loc.line() as u64);
                assert_eq!(js.get("mean_lifetime").num(), 500);
            }
            "code" | "sampled" => {
                let addr = js.get("addr").str();
                assert!(addr.starts_with("0x"));
                if addr == "0x10" {
                    assert_eq!(js.get("symbol"), &Json::Null);
                    assert_eq!(js.get("object"), &Json::Null);
                } else {
                    assert!(js.get("symbol").str().ends_with("write"));
                    assert_eq!(js.get("offset").num(), 8);
                    assert!(js.get("object").str().contains("libc"));
                }
                assert_eq!(js.get("mean_lifetime"), &Json::Null);
            }
            k => panic!("kind {k}"),
        }
    }
    assert_eq!(j.get("other").get("kind").str(), "other");
    assert_eq!(j.get("other").get("allocs").num(), 3);
    let top: Vec<u64> = j.get("top_by_count").arr().iter().map(Json::num).collect();
    let want: Vec<u64> = Top::select(t, Order::Count, 10)
        .slots()
        .iter()
        .map(|&s| s as u64)
        .collect();
    assert_eq!(top, want);
}

#[test]
fn empty_table_reports() {
    let t = SiteTable::<8, 1>::new();
    let mut text = String::new();
    t.write_text(&mut text, &ReportOptions::new(0)).unwrap();
    assert!(text.starts_with("hakmem call sites: 0 of 8 slots used, 0 allocations"));
    let mut out = String::new();
    t.write_json(&mut out, &ReportOptions::new(0)).unwrap();
    let j = parse(&out);
    assert!(j.get("sites").arr().is_empty());
    assert!(j.get("top_by_bytes").arr().is_empty());
}

#[test]
fn a_small_buffer_cuts_the_report_cleanly() {
    let (t, _) = fixture();
    let mut buf = [0u8; 300];
    let mut w = SliceWriter::new(&mut buf);
    assert!(t.write_text(&mut w, &ReportOptions::new(0)).is_err());
    assert!(w.truncated());
    assert_eq!(w.len(), 300);
    assert!(w.as_str().starts_with("hakmem call sites:"));
}

#[test]
fn reports_to_a_file_descriptor() {
    let (t, _) = fixture();
    let path = std::env::temp_dir().join(format!("hakmem-sites-{}.json", std::process::id()));
    let f = std::fs::File::create(&path).unwrap();
    use std::os::fd::AsRawFd;
    assert!(t.report_json_fd(f.as_raw_fd(), &ReportOptions::new(0)));
    drop(f);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let mut want = String::new();
    t.write_json(&mut want, &ReportOptions::new(0)).unwrap();
    assert_eq!(text, want);
    parse(&text);
    assert!(
        !t.report_text_fd(-1, &ReportOptions::new(0)),
        "a bad fd fails"
    );
}

proptest! {
    /// `Top` agrees with sorting every site by (key desc, slot asc).
    #[test]
    fn top_agrees_with_a_sort(
        counts in proptest::collection::vec((0u64..50, 1usize..5000), 0..64),
        k in 0usize..40,
        by_bytes in any::<bool>(),
    ) {
        let t = SiteTable::<64, 1>::new();
        for (i, &(n, size)) in counts.iter().enumerate() {
            let site = SiteId::code(0x10_0000 + i * 0x40);
            let _ = t.slot_or_insert(site);
            for _ in 0..n {
                let _ = t.record_alloc(site, size, 0);
            }
        }
        let by = if by_bytes { Order::Bytes } else { Order::Count };
        let mut all: Vec<(u64, usize)> = t
            .sites()
            .filter(|s| s.allocs > 0)
            .map(|s| (if by_bytes { s.est_bytes() } else { s.est_allocs() }, s.slot))
            .collect();
        all.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let want: Vec<usize> = all.iter().take(k.min(hakmem_sites::TOP_MAX)).map(|x| x.1).collect();
        let top = Top::select(&t, by, k);
        prop_assert_eq!(top.slots(), &want[..]);
    }
}
