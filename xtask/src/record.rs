//! The result line of a workload: `HAKMEM_BENCH key=value ...`.
use std::collections::BTreeMap;

pub const PREFIX: &str = "HAKMEM_BENCH";

/// Keys every result line must carry, with numeric values.
pub const REQUIRED_NUMBERS: &[&str] = &["ops", "secs", "ops_per_sec", "peak_rss_kb", "minflt"];

/// One parsed result line.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub fields: BTreeMap<String, String>,
}

impl Record {
    /// A field as text.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// A field as a finite number (`NA` and friends are `None`).
    pub fn num(&self, key: &str) -> Option<f64> {
        self.text(key)?
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
    }
}

/// Parses one result line.
pub fn parse_line(line: &str) -> Result<Record, String> {
    let mut words = line.split_whitespace();
    if words.next() != Some(PREFIX) {
        return Err(format!("not a {PREFIX} line: `{line}`"));
    }
    let mut fields = BTreeMap::new();
    for w in words {
        let (k, v) = w
            .split_once('=')
            .ok_or_else(|| format!("`{w}` is not key=value"))?;
        if k.is_empty() {
            return Err(format!("empty key in `{w}`"));
        }
        if fields.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("key `{k}` repeated"));
        }
    }
    let r = Record { fields };
    if r.text("workload").is_none() {
        return Err("no workload= field".into());
    }
    for k in REQUIRED_NUMBERS {
        if r.num(k).is_none() {
            return Err(format!("field {k}= missing or not a number"));
        }
    }
    if r.num("ops").unwrap_or(0.0) <= 0.0 || r.num("ops_per_sec").unwrap_or(0.0) <= 0.0 {
        return Err("no operations counted".into());
    }
    Ok(r)
}

/// Finds the single result line in a program's standard output.
pub fn find(stdout: &str) -> Result<Record, String> {
    let mut lines = stdout.lines().filter(|l| l.starts_with(PREFIX));
    match (lines.next(), lines.next()) {
        (None, _) => Err("no result line".into()),
        (Some(_), Some(_)) => Err("more than one result line".into()),
        (Some(l), None) => parse_line(l),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "HAKMEM_BENCH workload=larson threads=2 ops=4000000 secs=0.219290 ops_per_sec=18240681 p50_ns=3.5 p95_ns=181.7 p99_ns=NA clock_ns=9.6 samples=40000 peak_rss_kb=30172 minflt=7164 malloc_lib=libc.so.6 global=system chunks=10000";

    #[test]
    fn parses_a_workload_line() {
        let r = parse_line(LINE).unwrap();
        assert_eq!(r.text("workload"), Some("larson"));
        assert_eq!(r.num("ops_per_sec"), Some(18_240_681.0));
        assert_eq!(r.num("p50_ns"), Some(3.5));
        assert_eq!(r.num("p99_ns"), None);
        assert_eq!(r.text("malloc_lib"), Some("libc.so.6"));
        assert_eq!(r.num("chunks"), Some(10_000.0));
    }

    #[test]
    fn rejects_broken_lines() {
        assert!(parse_line("hello").is_err());
        assert!(parse_line(&LINE.replace("ops=4000000 ", "")).is_err());
        assert!(parse_line(&LINE.replace("secs=0.219290", "secs=soon")).is_err());
        assert!(parse_line(&LINE.replace("threads=2", "threads")).is_err());
        assert!(parse_line(&LINE.replace("threads=2", "ops=1")).is_err());
        assert!(parse_line(&LINE.replace("ops=4000000", "ops=0")).is_err());
        assert!(parse_line(&LINE.replace("workload=larson ", "")).is_err());
    }

    #[test]
    fn finds_exactly_one_line_in_output() {
        let out = format!("noise\n{LINE}\nmore noise\n");
        assert_eq!(find(&out).unwrap().text("workload"), Some("larson"));
        assert!(find("noise only\n").is_err());
        assert!(find(&format!("{LINE}\n{LINE}\n")).is_err());
    }
}
