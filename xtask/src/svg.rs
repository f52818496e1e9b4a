//! SVG bar charts of ratios to mimalloc (log scale), one group of bars per
//! workload and one bar per allocator. Hand-written: no dependencies.
use std::fmt::Write as _;

use crate::summary::{Cell, Matrix};

fn color(alloc: &str) -> &'static str {
    match alloc {
        "system" => "#7f7f7f",
        "hakmem" => "#d62728",
        "hakmem-inproc" => "#ff7f0e",
        "mimalloc" => "#1f77b4",
        "jemalloc" => "#2ca02c",
        "tcmalloc" => "#9467bd",
        "snmalloc" => "#8c564b",
        _ => "#17becf",
    }
}

/// Escapes text for XML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const BAR: f64 = 13.0;
const GAP: f64 = 18.0;
const LEFT: f64 = 70.0;
const TOP: f64 = 80.0;
const PLOT_H: f64 = 300.0;
const BOTTOM: f64 = 130.0;

/// A chart of `key`'s median in each cell divided by mimalloc's.
/// `value` formats the cell's own median for the tooltips.
pub fn ratio_chart(
    title: &str,
    subtitle: &str,
    m: &Matrix,
    key: &str,
    value: &dyn Fn(f64) -> String,
) -> String {
    let na = m.allocators.len().max(1) as f64;
    let group_w = na * BAR + GAP;
    let width = LEFT + group_w * m.workloads.len() as f64 + 30.0;
    let height = TOP + PLOT_H + BOTTOM;

    let ratios: Vec<f64> = (0..m.workloads.len())
        .flat_map(|w| (0..m.allocators.len()).filter_map(move |a| m.ratio(w, a, key)))
        .filter(|r| *r > 0.0)
        .collect();
    let lo_r = ratios.iter().copied().fold(0.5f64, f64::min);
    let hi_r = ratios.iter().copied().fold(2.0f64, f64::max);
    let lo = lo_r.log2().floor().max(-6.0);
    let hi = hi_r.log2().ceil().min(6.0);
    let y = |r: f64| TOP + PLOT_H * (hi - r.log2().clamp(lo, hi)) / (hi - lo);

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="22" font-size="16" font-weight="bold">{}</text>"#,
        esc(title)
    );
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="40" fill="dimgray">{}</text>"#,
        esc(subtitle)
    );
    // Legend.
    let mut lx = LEFT;
    for a in &m.allocators {
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="52" width="12" height="12" fill="{}"/><text x="{}" y="62">{}</text>"#,
            color(a),
            lx + 16.0,
            esc(a)
        );
        lx += 30.0 + 7.0 * a.len() as f64;
    }
    // Grid and axis labels at powers of two.
    let mut e = lo as i32;
    while e <= hi as i32 {
        let r = 2f64.powi(e);
        let gy = y(r);
        let (stroke, w) = if e == 0 { ("#000", 1.5) } else { ("#ddd", 1.0) };
        let label = if e >= 0 {
            format!("{}×", 1u64 << e)
        } else {
            format!("1/{}×", 1u64 << -e)
        };
        let _ = writeln!(
            s,
            r#"<line x1="{LEFT}" y1="{gy:.1}" x2="{:.1}" y2="{gy:.1}" stroke="{stroke}" stroke-width="{w}"/><text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"#,
            width - 20.0,
            LEFT - 6.0,
            gy + 4.0
        );
        e += 1;
    }
    let base = y(1.0);
    for (w, name) in m.workloads.iter().enumerate() {
        let gx = LEFT + GAP / 2.0 + group_w * w as f64;
        for (a, alloc) in m.allocators.iter().enumerate() {
            let x = gx + BAR * a as f64;
            let cell = &m.cells[w][a];
            match (cell, m.ratio(w, a, key)) {
                (Cell::Failed { reason, .. }, _) => {
                    let _ = writeln!(
                        s,
                        r#"<text x="{:.1}" y="{:.1}" fill="red" font-weight="bold" text-anchor="middle">✕<title>{} · {}: FAILED ({})</title></text>"#,
                        x + BAR / 2.0,
                        base - 4.0,
                        esc(name),
                        esc(alloc),
                        esc(reason)
                    );
                }
                (_, Some(r)) => {
                    let top = y(r).min(base);
                    let h = (y(r) - base).abs().max(1.0);
                    let own = cell.median(key).map(value).unwrap_or_default();
                    let _ = writeln!(
                        s,
                        r#"<rect x="{x:.1}" y="{top:.1}" width="{:.1}" height="{h:.1}" fill="{}"><title>{} · {}: {:.2}× mimalloc ({})</title></rect>"#,
                        BAR - 1.0,
                        color(alloc),
                        esc(name),
                        esc(alloc),
                        r,
                        esc(&own)
                    );
                }
                _ => {}
            }
        }
        let lx = gx + group_w / 2.0 - GAP / 2.0;
        let ly = TOP + PLOT_H + 14.0;
        let _ = writeln!(
            s,
            r#"<text x="{lx:.1}" y="{ly:.1}" text-anchor="end" transform="rotate(-40 {lx:.1} {ly:.1})">{}</text>"#,
            esc(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::summarise;
    use crate::summary::tests::run;

    #[test]
    fn draws_bars_failures_and_escapes() {
        let runs = vec![
            run("a<b", "system", Some(10.0)),
            run("a<b", "mimalloc", Some(40.0)),
            run("a<b", "jemalloc", None),
        ];
        let m = summarise(
            &["a<b".into()],
            &["system".into(), "mimalloc".into(), "jemalloc".into()],
            &runs,
        );
        let svg = ratio_chart("T & t", "sub", &m, "ops_per_sec", &|v| format!("{v}"));
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("T &amp; t") && svg.contains("a&lt;b") && !svg.contains("a<b"));
        assert_eq!(
            svg.matches("<rect x=").count(),
            3 + 2,
            "3 legend swatches + 2 bars"
        );
        assert!(
            svg.contains("a&lt;b · system: 0.25× mimalloc (10)"),
            "{svg}"
        );
        assert!(svg.contains("FAILED (SIGSEGV)"));
        // The axis reaches down to the 1/4 ratio.
        assert!(svg.contains(">1/4×<"), "{svg}");
        // Balanced tags.
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
        assert_eq!(
            svg.matches("<title>").count(),
            svg.matches("</title>").count()
        );
    }
}
