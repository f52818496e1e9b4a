//! SVG bar charts of ratios to mimalloc (log scale), one group of bars per
//! workload and one bar per allocator, drawn with `plotters` (SVG backend).
use plotters::prelude::*;

use crate::summary::{Cell, Matrix};

fn color(alloc: &str) -> RGBColor {
    match alloc {
        "system" => RGBColor(0x7f, 0x7f, 0x7f),
        "hakmem" => RGBColor(0xd6, 0x27, 0x28),
        "hakmem-inproc" => RGBColor(0xff, 0x7f, 0x0e),
        "hakmem-prof" => RGBColor(0xe3, 0x77, 0xc2),
        "mimalloc" => RGBColor(0x1f, 0x77, 0xb4),
        "jemalloc" => RGBColor(0x2c, 0xa0, 0x2c),
        "tcmalloc" => RGBColor(0x94, 0x67, 0xbd),
        "snmalloc" => RGBColor(0x8c, 0x56, 0x4b),
        _ => RGBColor(0x17, 0xbe, 0xcf),
    }
}

/// A ratio's axis label: `4×`, `1×`, `1/4×`.
fn ratio_label(e: f64) -> String {
    match e as i32 {
        _ if e.fract() != 0.0 => String::new(),
        e @ 0.. => format!("{}×", 1u64 << e),
        e => format!("1/{}×", 1u64 << -e),
    }
}

/// A chart of `key`'s median in each cell divided by mimalloc's, on a log2
/// axis (the values themselves are in results.md).
pub fn ratio_chart(title: &str, subtitle: &str, m: &Matrix, key: &str) -> String {
    let mut svg = String::new();
    if let Err(e) = draw(&mut svg, title, subtitle, m, key) {
        eprintln!("bench-matrix: chart `{title}`: {e}");
    }
    svg
}

fn draw(
    svg: &mut String,
    title: &str,
    subtitle: &str,
    m: &Matrix,
    key: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let (nw, na) = (m.workloads.len(), m.allocators.len().max(1));
    let width = (100 + (na * 13 + 18) * nw).max(480);
    let (lo, hi) = (0..nw)
        .flat_map(|w| (0..na).filter_map(move |a| m.ratio(w, a, key)))
        .filter(|r| *r > 0.0)
        .fold((-1f64, 1f64), |(lo, hi), r| {
            (lo.min(r.log2().floor()), hi.max(r.log2().ceil()))
        });
    let (lo, hi) = (lo.max(-6.0), hi.min(6.0));
    let root = SVGBackend::with_string(svg, (width as u32, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let (head, body) = root.split_vertically(76);
    head.draw(&Text::new(
        title.to_string(),
        (70, 8),
        ("sans-serif", 16).into_font().style(FontStyle::Bold),
    ))?;
    head.draw(&Text::new(
        subtitle.to_string(),
        (70, 28),
        ("sans-serif", 12)
            .into_font()
            .color(&RGBColor(105, 105, 105)),
    ))?;
    // the legend: a swatch and the name of each allocator
    let mut x = 70;
    for alloc in &m.allocators {
        head.draw(&Rectangle::new(
            [(x, 50), (x + 12, 62)],
            color(alloc).filled(),
        ))?;
        head.draw(&Text::new(alloc.clone(), (x + 16, 50), ("sans-serif", 14)))?;
        x += 34 + 7 * alloc.len() as i32;
    }
    let mut chart = ChartBuilder::on(&body)
        .margin_right(20)
        .x_label_area_size(130)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5..nw as f64 - 0.5, lo..hi)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(TRANSPARENT)
        .x_labels(nw + 1)
        .x_label_formatter(&|x| match m.workloads.get(x.round() as usize) {
            Some(name) if x.fract() == 0.0 => name.clone(),
            _ => String::new(),
        })
        .x_label_style(
            ("sans-serif", 12)
                .into_font()
                .transform(FontTransform::Rotate90),
        )
        .y_labels((hi - lo) as usize + 1)
        .y_label_formatter(&|e| ratio_label(*e))
        .y_label_style(("sans-serif", 14))
        .draw()?;
    // bars grow from the 1× line, which is drawn over them
    let bar = 0.9 / na as f64;
    let at = |w: usize, a: usize| w as f64 - 0.45 + bar * a as f64;
    for (a, alloc) in m.allocators.iter().enumerate() {
        let c = color(alloc);
        let bars = (0..nw).filter_map(|w| {
            let e = m
                .ratio(w, a, key)
                .filter(|r| *r > 0.0)?
                .log2()
                .clamp(lo, hi);
            Some(Rectangle::new(
                [(at(w, a), 0.0), (at(w, a) + bar * 0.9, e)],
                c.filled(),
            ))
        });
        chart.draw_series(bars)?;
        let failed = (0..nw).filter_map(|w| match &m.cells[w][a] {
            Cell::Failed { .. } => Some(Text::new(
                "✕".to_string(),
                (at(w, a), 0.0),
                ("sans-serif", 12).into_font().color(&RED),
            )),
            _ => None,
        });
        chart.draw_series(failed)?;
    }
    chart.draw_series(std::iter::once(PathElement::new(
        [(-0.5, 0.0), (nw as f64 - 0.5, 0.0)],
        BLACK.stroke_width(2),
    )))?;
    root.present()?;
    Ok(())
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
        let svg = ratio_chart("T & t", "sub", &m, "ops_per_sec");
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{svg}"
        );
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
        // every text element's content
        let texts: Vec<&str> = svg
            .split("</text>")
            .filter_map(|t| Some(t.rsplit_once("<text")?.1.split_once('>')?.1.trim()))
            .collect();
        let has = |t: &str| texts.contains(&t);
        assert!(
            has("T &amp; t") && has("a&lt;b") && !svg.contains("a<b"),
            "{texts:?}"
        );
        // the legend names every allocator with a swatch of its colour
        for (a, fill) in [
            ("system", "#7F7F7F"),
            ("mimalloc", "#1F77B4"),
            ("jemalloc", "#2CA02C"),
        ] {
            assert!(has(a), "{a}: {texts:?}");
            assert!(
                svg.contains(&format!(
                    r#"width="12" height="12" opacity="1" fill="{fill}""#
                )),
                "{a}: {svg}"
            );
        }
        // a swatch and one bar per cell with a value
        assert_eq!(svg.matches(r##"fill="#7F7F7F""##).count(), 2, "{svg}");
        assert_eq!(svg.matches(r##"fill="#1F77B4""##).count(), 2, "{svg}");
        assert_eq!(svg.matches(r##"fill="#2CA02C""##).count(), 1, "{svg}");
        // the failed cell is marked
        assert_eq!(texts.iter().filter(|t| **t == "✕").count(), 1, "{texts:?}");
        // the axis reaches down to the 1/4 ratio (system: 10 / 40)
        assert!(has("1/4×") && has("1×") && !has("1/8×"), "{texts:?}");
    }

    #[test]
    fn ratio_labels() {
        assert_eq!(ratio_label(2.0), "4×");
        assert_eq!(ratio_label(0.0), "1×");
        assert_eq!(ratio_label(-3.0), "1/8×");
        assert_eq!(ratio_label(0.5), "");
    }
}
