//! The site report: top sites by bytes and by count as a text table, and
//! the whole table as JSON. Both write into any [`fmt::Write`] (an
//! [`FdWriter`], a [`SliceWriter`](crate::SliceWriter), a `String` in tests) and never allocate.

use core::fmt::{self, Write};

use crate::classify::Thresholds;
use crate::hist::{LIFE_BOUNDS, LIFE_BUCKETS, SIZE_BOUNDS};
use crate::id::SiteKind;
use crate::stats::SiteStats;
use crate::symbol::{with_symbol, write_lossy, Symbol};
use crate::table::SiteTable;
use crate::write::{FdWriter, StackStr};

/// The most rows a "top" table can have.
pub const TOP_MAX: usize = 32;

/// What a report shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportOptions {
    /// Rows of each top table (at most [`TOP_MAX`]).
    pub top: usize,
    /// The report's time, on the clock given to the table (for the ages of
    /// live blocks).
    pub now: u64,
    /// Classification thresholds.
    pub thresholds: Thresholds,
}

impl ReportOptions {
    /// Ten rows per table, default thresholds.
    pub const fn new(now: u64) -> Self {
        ReportOptions {
            top: 10,
            now,
            thresholds: Thresholds::DEFAULT,
        }
    }
}

/// How to rank sites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Estimated bytes allocated.
    Bytes,
    /// Estimated allocations.
    Count,
}

/// The `k` highest-ranked sites' slots, best first (ties: lower slot
/// first), without allocating.
#[derive(Debug, Clone, Copy)]
pub struct Top {
    slots: [usize; TOP_MAX],
    keys: [u64; TOP_MAX],
    len: usize,
}

impl Top {
    /// Ranks the occupied slots of `table` (not "other"); sites with no
    /// allocations are left out.
    pub fn select<const N: usize, const S: usize>(
        table: &SiteTable<N, S>,
        by: Order,
        k: usize,
    ) -> Top {
        let k = k.min(TOP_MAX);
        let mut top = Top {
            slots: [0; TOP_MAX],
            keys: [0; TOP_MAX],
            len: 0,
        };
        for s in table.sites() {
            let key = match by {
                Order::Bytes => s.est_bytes(),
                Order::Count => s.est_allocs(),
            };
            if s.allocs == 0 || k == 0 {
                continue;
            }
            // Position: after every entry with a key >= ours.
            let pos = top.keys[..top.len].partition_point(|&x| x >= key);
            if pos >= k {
                continue;
            }
            let end = top.len.min(k - 1);
            top.slots.copy_within(pos..end, pos + 1);
            top.keys.copy_within(pos..end, pos + 1);
            top.slots[pos] = s.slot;
            top.keys[pos] = key;
            top.len = (top.len + 1).min(k);
        }
        top
    }

    /// The slots, best first.
    pub fn slots(&self) -> &[usize] {
        &self.slots[..self.len]
    }
}

// ---- cell formatting ----

/// Bytes as `123 B`, `64.0 KiB`, `2.0 MiB`, …
struct Bytes(u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = StackStr::<24>::new();
        if self.0 < 1024 {
            let _ = write!(s, "{} B", self.0);
        } else {
            let units = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
            let mut v = self.0 as f64 / 1024.0;
            let mut u = 0;
            while v >= 1024.0 && u + 1 < units.len() {
                v /= 1024.0;
                u += 1;
            }
            let _ = write!(s, "{v:.1} {}", units[u]);
        }
        f.pad(s.as_str())
    }
}

/// A duration in clock units (ns) as `1.0us`, `16.8ms`, `4.3s`.
struct Dur(u64);

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = StackStr::<24>::new();
        let ns = self.0 as f64;
        let _ = if self.0 < 1_000 {
            write!(s, "{}ns", self.0)
        } else if self.0 < 1_000_000 {
            write!(s, "{:.1}us", ns / 1e3)
        } else if self.0 < 1_000_000_000 {
            write!(s, "{:.1}ms", ns / 1e6)
        } else {
            write!(s, "{:.1}s", ns / 1e9)
        };
        f.pad(s.as_str())
    }
}

/// The median-lifetime cell: `<16.8ms`, `>=4.3s`, `-`.
struct Median(Option<usize>);

impl fmt::Display for Median {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = StackStr::<24>::new();
        let _ = match self.0 {
            None => write!(s, "-"),
            Some(b) if b < LIFE_BUCKETS - 1 => write!(s, "<{}", Dur(LIFE_BOUNDS[b])),
            Some(_) => write!(s, ">={}", Dur(LIFE_BOUNDS[LIFE_BUCKETS - 2])),
        };
        f.pad(s.as_str())
    }
}

fn pct(part: u64, whole: u64) -> u64 {
    if whole == 0 {
        0
    } else {
        ((part as u128 * 100 + whole as u128 / 2) / whole as u128) as u64
    }
}

/// The tier mix cell: `tiny/mid/large` percentages.
struct Tiers([u64; 3]);

impl fmt::Display for Tiers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all: u64 = self.0.iter().sum();
        let mut s = StackStr::<24>::new();
        let _ = write!(
            s,
            "{}/{}/{}",
            pct(self.0[0], all),
            pct(self.0[1], all),
            pct(self.0[2], all)
        );
        f.pad(s.as_str())
    }
}

// ---- text ----

const HEADER: &str = "   #       allocs        frees        bytes         live          avg          max  tiny/mid/large  remote  life p50  class                     site";

fn text_row<W: Write + ?Sized>(
    w: &mut W,
    rank: usize,
    s: &SiteStats,
    opts: &ReportOptions,
) -> fmt::Result {
    let class = s.classify(&opts.thresholds, opts.now);
    let mut cls = StackStr::<32>::new();
    let _ = write!(cls, "{} {}", class.policy.name(), class.lifetime.name());
    write!(
        w,
        "{:>4} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12} {:>15} {:>6}% {:>9}  {:<24}  ",
        rank,
        s.est_allocs(),
        s.est_frees(),
        Bytes(s.est_bytes()),
        Bytes(s.est_live_bytes()),
        Bytes(s.avg_size()),
        Bytes(s.max_size),
        Tiers(s.tier_counts()),
        pct(s.remote_frees, s.frees),
        Median(s.median_life_bucket(opts.now)),
        cls.as_str(),
    )?;
    with_symbol(s.site, |sym| write!(w, "{sym}"))?;
    w.write_str("\n")
}

impl<const N: usize, const S: usize> SiteTable<N, S> {
    /// Writes the text report: a summary line, then the top
    /// `opts.top` sites by bytes and by count. Counts of sampled sites are
    /// estimates (records × 2^sample_shift).
    pub fn write_text<W: Write + ?Sized>(&self, w: &mut W, opts: &ReportOptions) -> fmt::Result {
        let (mut allocs, mut bytes, mut live, mut used) = (0u64, 0u64, 0u64, 0usize);
        for s in self.sites() {
            used += 1;
            allocs = allocs.saturating_add(s.est_allocs());
            bytes = bytes.saturating_add(s.est_bytes());
            live = live.saturating_add(s.est_live_bytes());
        }
        let other = self.other();
        writeln!(
            w,
            "hakmem call sites: {used} of {N} slots used, {allocs} allocations, {} allocated, {} live",
            Bytes(bytes),
            Bytes(live),
        )?;
        if self.sample_shift() > 0 {
            writeln!(
                w,
                "sampled sites: 1 record per {} calls (counts are estimates)",
                1u64 << self.sample_shift()
            )?;
        }
        if other.allocs > 0 || other.frees > 0 {
            writeln!(
                w,
                "other (sites beyond the table): {} allocations, {} allocated",
                other.allocs,
                Bytes(other.bytes)
            )?;
        }
        for (title, by) in [("bytes", Order::Bytes), ("count", Order::Count)] {
            let top = Top::select(self, by, opts.top);
            writeln!(w, "\ntop {} sites by {title}:", top.slots().len())?;
            writeln!(w, "{HEADER}")?;
            for (i, &slot) in top.slots().iter().enumerate() {
                if let Some(s) = self.stats(slot) {
                    text_row(w, i + 1, &s, opts)?;
                }
            }
        }
        Ok(())
    }

    /// Writes the whole table as one JSON object (schema in the crate
    /// docs).
    pub fn write_json<W: Write + ?Sized>(&self, w: &mut W, opts: &ReportOptions) -> fmt::Result {
        let th = &opts.thresholds;
        writeln!(w, "{{")?;
        writeln!(w, "  \"version\": 1,")?;
        writeln!(w, "  \"now\": {},", opts.now)?;
        writeln!(w, "  \"capacity\": {N},")?;
        writeln!(w, "  \"stripes\": {S},")?;
        writeln!(w, "  \"sample_shift\": {},", self.sample_shift())?;
        writeln!(
            w,
            "  \"thresholds\": {{\"small_max\": {}, \"large_min\": {}, \"frequent_min\": {}, \"short_max\": {}, \"min_samples\": {}}},",
            th.small_max, th.large_min, th.frequent_min, th.short_max, th.min_samples
        )?;
        w.write_str("  \"size_bounds\": ")?;
        json_array(w, &SIZE_BOUNDS)?;
        w.write_str(",\n  \"lifetime_bounds\": ")?;
        json_array(w, &LIFE_BOUNDS)?;
        w.write_str(",\n  \"sites\": [")?;
        let mut first = true;
        for s in self.sites() {
            w.write_str(if first { "\n    " } else { ",\n    " })?;
            first = false;
            json_site(w, &s, opts)?;
        }
        w.write_str(if first { "],\n" } else { "\n  ],\n" })?;
        w.write_str("  \"other\": ")?;
        json_site(w, &self.other(), opts)?;
        for (name, by) in [
            ("top_by_bytes", Order::Bytes),
            ("top_by_count", Order::Count),
        ] {
            write!(w, ",\n  \"{name}\": ")?;
            json_array(w, Top::select(self, by, opts.top).slots())?;
        }
        w.write_str("\n}\n")
    }

    /// [`write_text`](Self::write_text) to a file descriptor; false if a
    /// write failed.
    pub fn report_text_fd(&self, fd: core::ffi::c_int, opts: &ReportOptions) -> bool {
        let mut w = FdWriter::new(fd);
        self.write_text(&mut w, opts).is_ok() && w.flush().is_ok()
    }

    /// [`write_json`](Self::write_json) to a file descriptor; false if a
    /// write failed.
    pub fn report_json_fd(&self, fd: core::ffi::c_int, opts: &ReportOptions) -> bool {
        let mut w = FdWriter::new(fd);
        self.write_json(&mut w, opts).is_ok() && w.flush().is_ok()
    }
}

// ---- JSON ----

fn json_array<W: Write + ?Sized, T: fmt::Display>(w: &mut W, v: &[T]) -> fmt::Result {
    w.write_str("[")?;
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            w.write_str(", ")?;
        }
        write!(w, "{x}")?;
    }
    w.write_str("]")
}

fn json_opt<W: Write + ?Sized>(w: &mut W, v: Option<u64>) -> fmt::Result {
    match v {
        Some(x) => write!(w, "{x}"),
        None => w.write_str("null"),
    }
}

/// Escapes everything written through it as JSON string content (quotes,
/// backslashes and control characters).
pub(crate) struct JsonEsc<'a, W: Write + ?Sized>(pub(crate) &'a mut W);

impl<W: Write + ?Sized> Write for JsonEsc<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut start = 0;
        for (i, c) in s.char_indices() {
            let esc = match c {
                '"' => "\\\"",
                '\\' => "\\\\",
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                c if (c as u32) < 0x20 => "",
                _ => continue,
            };
            self.0.write_str(&s[start..i])?;
            if esc.is_empty() {
                write!(self.0, "\\u{:04x}", c as u32)?;
            } else {
                self.0.write_str(esc)?;
            }
            start = i + c.len_utf8();
        }
        self.0.write_str(&s[start..])
    }
}

/// Writes `s` as a JSON string literal.
fn json_str<W: Write + ?Sized>(w: &mut W, s: &str) -> fmt::Result {
    w.write_str("\"")?;
    JsonEsc(w).write_str(s)?;
    w.write_str("\"")
}

/// Writes bytes as a JSON string literal (invalid UTF-8 replaced).
fn json_bytes<W: Write + ?Sized>(w: &mut W, b: &[u8]) -> fmt::Result {
    w.write_str("\"")?;
    write_lossy(&mut JsonEsc(w), b)?;
    w.write_str("\"")
}

fn json_symbol<W: Write + ?Sized>(w: &mut W, sym: &Symbol<'_>) -> fmt::Result {
    match *sym {
        Symbol::Location { file, line, column } => {
            w.write_str("\"kind\": \"location\", \"file\": ")?;
            json_str(w, file)?;
            write!(w, ", \"line\": {line}, \"column\": {column}")?;
        }
        Symbol::Code {
            addr,
            sampled,
            symbol,
            offset,
            object,
        } => {
            let kind = if sampled { "sampled" } else { "code" };
            write!(
                w,
                "\"kind\": \"{kind}\", \"addr\": \"{addr:#x}\", \"symbol\": "
            )?;
            match symbol {
                Some(s) => json_bytes(w, s)?,
                None => w.write_str("null")?,
            }
            write!(w, ", \"offset\": {offset}, \"object\": ")?;
            match object {
                Some(o) => json_bytes(w, o)?,
                None => w.write_str("null")?,
            }
        }
        Symbol::Other => w.write_str("\"kind\": \"other\"")?,
    }
    // The text report's cell.
    w.write_str(", \"name\": \"")?;
    write!(JsonEsc(w), "{sym}")?;
    w.write_str("\"")
}

fn json_site<W: Write + ?Sized>(w: &mut W, s: &SiteStats, opts: &ReportOptions) -> fmt::Result {
    let class = s.classify(&opts.thresholds, opts.now);
    write!(w, "{{\"slot\": {}, ", s.slot)?;
    if s.site.kind() == SiteKind::Other {
        json_symbol(w, &Symbol::Other)?;
    } else {
        with_symbol(s.site, |sym| json_symbol(w, sym))?;
    }
    write!(
        w,
        ", \"weight\": {}, \"allocs\": {}, \"frees\": {}, \"bytes\": {}, \"freed_bytes\": {}, \
         \"live_blocks\": {}, \"live_bytes\": {}, \"est_allocs\": {}, \"est_bytes\": {}, \
         \"avg_size\": {}, \"max_size\": {}, \"local_frees\": {}, \"remote_frees\": {}, \"mean_lifetime\": ",
        s.weight,
        s.allocs,
        s.frees,
        s.bytes,
        s.freed_bytes,
        s.live_blocks(),
        s.live_bytes(),
        s.est_allocs(),
        s.est_bytes(),
        s.avg_size(),
        s.max_size,
        s.local_frees(),
        s.remote_frees,
    )?;
    json_opt(w, s.mean_lifetime())?;
    w.write_str(", \"mean_live_age\": ")?;
    json_opt(w, s.mean_live_age(opts.now))?;
    let median = s.median_life_bucket(opts.now);
    w.write_str(", \"median_lifetime_bucket\": ")?;
    json_opt(w, median.map(|b| b as u64))?;
    w.write_str(", \"size_hist\": ")?;
    json_array(w, &s.size_hist)?;
    w.write_str(", \"lifetime_hist\": ")?;
    json_array(w, &s.life_hist)?;
    write!(
        w,
        ", \"class\": \"{}\", \"lifetime\": \"{}\"}}",
        class.policy.name(),
        class.lifetime.name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SiteId;

    fn s(d: impl fmt::Display) -> String {
        format!("{d}")
    }

    #[test]
    fn cells() {
        assert_eq!(s(Bytes(0)), "0 B");
        assert_eq!(s(Bytes(1023)), "1023 B");
        assert_eq!(s(Bytes(1024)), "1.0 KiB");
        assert_eq!(s(Bytes(64 << 10)), "64.0 KiB");
        assert_eq!(s(Bytes(2 << 20)), "2.0 MiB");
        assert_eq!(s(Bytes(3 << 30)), "3.0 GiB");
        assert_eq!(s(Bytes(u64::MAX)), "16.0 EiB");
        assert_eq!(format!("[{:>9}]", Bytes(1536)), "[  1.5 KiB]");
        assert_eq!(s(Dur(999)), "999ns");
        assert_eq!(s(Dur(1 << 24)), "16.8ms");
        assert_eq!(s(Dur(1 << 32)), "4.3s");
        assert_eq!(s(Median(None)), "-");
        assert_eq!(s(Median(Some(0))), "<1.0us");
        assert_eq!(s(Median(Some(7))), "<16.8ms");
        assert_eq!(s(Median(Some(LIFE_BUCKETS - 1))), ">=4.3s");
        assert_eq!(s(Tiers([1, 1, 2])), "25/25/50");
        assert_eq!(s(Tiers([0, 0, 0])), "0/0/0");
    }

    #[test]
    fn json_escapes() {
        let mut out = String::new();
        json_str(&mut out, "a\"b\\c\nd\u{1}é").unwrap();
        assert_eq!(out, r#""a\"b\\c\nd\u0001é""#);
        let mut out = String::new();
        json_bytes(&mut out, b"x\xff\"").unwrap();
        assert_eq!(out, "\"x\u{fffd}\\\"\"");
    }

    #[test]
    fn top_ranks_best_first_ties_by_slot() {
        let t = SiteTable::<64, 1>::new();
        let counts = [5u64, 9, 1, 9, 7, 0];
        let mut slots = Vec::new();
        for (i, &n) in counts.iter().enumerate() {
            let site = SiteId::code(0x1000 + i * 64);
            slots.push(t.slot_or_insert(site));
            for _ in 0..n {
                let _ = t.record_alloc(site, 10, 0);
            }
        }
        let top = Top::select(&t, Order::Count, 3);
        let mut want: Vec<usize> = vec![slots[1], slots[3]];
        want.sort();
        want.push(slots[4]);
        assert_eq!(top.slots(), &want[..]);
        let top = Top::select(&t, Order::Count, TOP_MAX + 5);
        assert_eq!(
            top.slots().len(),
            5,
            "the site without allocations is left out"
        );
        assert!(Top::select(&t, Order::Bytes, 0).slots().is_empty());
    }
}
