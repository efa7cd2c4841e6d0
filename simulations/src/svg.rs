//! A minimal SVG line chart (axes, ticks, legend), enough for a CDF and a progress curve
//! without a plotting dependency.

use std::fmt::Write as _;

/// One line.
pub struct Series<'a> {
    /// Legend text.
    pub name: &'a str,
    /// Points in data coordinates.
    pub points: Vec<(f64, f64)>,
}

const W: f64 = 720.0;
const H: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// A tick step of 1, 2 or 5 × 10^k giving about 6 ticks over `span`.
fn step(span: f64) -> f64 {
    if span <= 0.0 || !span.is_finite() {
        return 1.0;
    }
    let raw = span / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Renders the chart. The x axis starts at the smallest x (or 0 if positive and close), the
/// y axis spans 0 to the largest y.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series<'_>]) -> String {
    let all = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, 0f64);
    for (x, y) in all.filter(|(x, y)| x.is_finite() && y.is_finite()) {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y1 = y1.max(*y);
    }
    if !x0.is_finite() {
        (x0, x1) = (0.0, 1.0);
    }
    if x0 > 0.0 && x0 < 0.5 * x1 {
        x0 = 0.0;
    }
    let xs = step(x1 - x0);
    x0 = (x0 / xs).floor() * xs;
    x1 = ((x1 / xs).ceil() * xs).max(x0 + xs);
    let ys = step(y1.max(1e-9));
    let y1 = ((y1 / ys).ceil() * ys).max(ys);
    let px = |x: f64| LEFT + (x - x0) / (x1 - x0) * (W - LEFT - RIGHT);
    let py = |y: f64| H - BOTTOM - y / y1 * (H - TOP - BOTTOM);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(out, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = write!(
        out,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        W / 2.0,
        escape(title)
    );
    // Grid and ticks.
    let mut x = x0;
    while x <= x1 + xs * 1e-9 {
        let _ = write!(
            out,
            r##"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="#ddd"/><text x="{0:.1}" y="{3}" text-anchor="middle">{4}</text>"##,
            px(x),
            TOP,
            H - BOTTOM,
            H - BOTTOM + 18.0,
            trim(x)
        );
        x += xs;
    }
    let mut y = 0.0;
    while y <= y1 + ys * 1e-9 {
        let _ = write!(
            out,
            r##"<line x1="{0}" y1="{1:.1}" x2="{2}" y2="{1:.1}" stroke="#ddd"/><text x="{3}" y="{4:.1}" text-anchor="end">{5}</text>"##,
            LEFT,
            py(y),
            W - RIGHT,
            LEFT - 6.0,
            py(y) + 4.0,
            trim(y)
        );
        y += ys;
    }
    let _ = write!(
        out,
        r#"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="none" stroke="black"/>"#,
        W - LEFT - RIGHT,
        H - TOP - BOTTOM
    );
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        H - 16.0,
        escape(x_label)
    );
    let _ = write!(
        out,
        r#"<text transform="translate(18 {}) rotate(-90)" text-anchor="middle">{}</text>"#,
        (TOP + H - BOTTOM) / 2.0,
        escape(y_label)
    );
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut d = String::new();
        for (x, y) in s
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
        {
            let _ = write!(
                d,
                "{}{:.1},{:.1}",
                if d.is_empty() { "M" } else { " L" },
                px(*x),
                py(*y)
            );
        }
        let _ = write!(
            out,
            r#"<path d="{d}" fill="none" stroke="{colour}" stroke-width="2"/>"#
        );
        let ly = TOP + 16.0 + 18.0 * i as f64;
        let _ = write!(
            out,
            r#"<line x1="{0}" y1="{1}" x2="{2}" y2="{1}" stroke="{colour}" stroke-width="2"/><text x="{3}" y="{4}">{5}</text>"#,
            LEFT + 12.0,
            ly,
            LEFT + 36.0,
            LEFT + 42.0,
            ly + 4.0,
            escape(s.name)
        );
    }
    out.push_str("</svg>\n");
    out
}

fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_series_and_escapes() {
        let svg = line_chart(
            "a < b",
            "x",
            "y",
            &[Series {
                name: "s",
                points: vec![(1.0, 0.0), (1.5, 0.5), (2.0, 1.0)],
            }],
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a &lt; b"));
        assert_eq!(svg.matches("<path").count(), 1);
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn tick_steps() {
        assert_eq!(step(10.0), 2.0);
        assert_eq!(step(1.0), 0.2);
        assert_eq!(step(100.0), 20.0);
        assert_eq!(step(0.0), 1.0);
    }
}
