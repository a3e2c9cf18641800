//! A hand-written SVG of latency distributions: one panel per rate, one cumulative curve per
//! variant (x: latency on a log scale, y: share of orders applied within it). No dependency:
//! an SVG is text.
//!
//! ```text
//!   100% ┤        ╭──── CDC          ╭──── poll 500 ms
//!        │       ╭╯                 ╭╯
//!     0% ┼──────┴───────────────────┴────────── ms (log)
//! ```

use std::fmt::Write;

/// One curve: a variant's name and its latencies (ms), any order.
pub struct Curve<'a> {
    pub name: &'a str,
    pub latencies_ms: &'a [f64],
}

/// One panel: a title (the rate) and its curves.
pub struct Panel<'a> {
    pub title: String,
    pub curves: Vec<Curve<'a>>,
}

const COLOURS: [&str; 4] = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"];
const PANEL_W: f64 = 460.0;
const PANEL_H: f64 = 260.0;
const MARGIN_L: f64 = 50.0;
const MARGIN_T: f64 = 40.0;
const MIN_MS: f64 = 0.1;
const MAX_MS: f64 = 2000.0;
/// Points per curve at most (the curve is resampled at evenly spaced ranks).
const MAX_POINTS: usize = 400;

fn x_of(ms: f64) -> f64 {
    let clamped = ms.clamp(MIN_MS, MAX_MS);
    (clamped.log10() - MIN_MS.log10()) / (MAX_MS.log10() - MIN_MS.log10()) * PANEL_W
}

fn y_of(share: f64) -> f64 {
    (1.0 - share) * PANEL_H
}

/// The whole picture, panels side by side, with a caption line under them.
pub fn render(panels: &[Panel], caption: &str) -> String {
    let width = MARGIN_L + panels.len() as f64 * (PANEL_W + MARGIN_L) + 10.0;
    let height = MARGIN_T + PANEL_H + 110.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (i, panel) in panels.iter().enumerate() {
        let left = MARGIN_L + i as f64 * (PANEL_W + MARGIN_L);
        let _ = writeln!(svg, r#"<g transform="translate({left:.0},{MARGIN_T:.0})">"#);
        axes(&mut svg, &panel.title);
        for (k, curve) in panel.curves.iter().enumerate() {
            let colour = COLOURS[k % COLOURS.len()];
            cdf(&mut svg, curve.latencies_ms, colour);
            let y = PANEL_H + 40.0 + 16.0 * k as f64;
            let _ = writeln!(
                svg,
                r#"<line x1="0" y1="{y}" x2="24" y2="{y}" stroke="{colour}" stroke-width="2"/><text x="30" y="{}">{}</text>"#,
                y + 4.0,
                escape(curve.name)
            );
        }
        let _ = writeln!(svg, "</g>");
    }
    let _ = writeln!(
        svg,
        r##"<text x="{MARGIN_L}" y="{}" fill="#555">{}</text>"##,
        height - 8.0,
        escape(caption)
    );
    svg.push_str("</svg>\n");
    svg
}

fn axes(svg: &mut String, title: &str) {
    let _ = writeln!(
        svg,
        r##"<rect width="{PANEL_W}" height="{PANEL_H}" fill="none" stroke="#999"/><text x="0" y="-12" font-weight="bold">{}</text>"##,
        escape(title)
    );
    for ms in [0.1, 1.0, 10.0, 100.0, 1000.0] {
        let x = x_of(ms);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="0" x2="{x:.1}" y2="{PANEL_H}" stroke="#eee"/><text x="{x:.1}" y="{}" text-anchor="middle">{ms} ms</text>"##,
            PANEL_H + 16.0
        );
    }
    for share in [0.0, 0.5, 0.9, 0.99, 1.0] {
        let y = y_of(share);
        let _ = writeln!(
            svg,
            r##"<line x1="0" y1="{y:.1}" x2="{PANEL_W}" y2="{y:.1}" stroke="#eee"/><text x="-6" y="{:.1}" text-anchor="end">{}%</text>"##,
            y + 4.0,
            share * 100.0
        );
    }
}

/// The empirical cumulative distribution as a step-ish polyline.
fn cdf(svg: &mut String, latencies_ms: &[f64], colour: &str) {
    if latencies_ms.is_empty() {
        return;
    }
    let mut sorted = latencies_ms.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let step = n.div_ceil(MAX_POINTS).max(1);
    let mut points = format!("{:.1},{:.1}", x_of(sorted[0]), y_of(0.0));
    for i in (0..n).step_by(step).chain([n - 1]) {
        let share = (i + 1) as f64 / n as f64;
        let _ = write!(points, " {:.1},{:.1}", x_of(sorted[i]), y_of(share));
    }
    let _ = writeln!(
        svg,
        r#"<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>"#
    );
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_picture_has_a_curve_per_variant_and_escapes_names() {
        let fast = [1.0, 2.0, 3.0];
        let slow = [200.0, 400.0];
        let svg = render(
            &[Panel {
                title: "1000 orders/s".into(),
                curves: vec![
                    Curve {
                        name: "a<b",
                        latencies_ms: &fast,
                    },
                    Curve {
                        name: "slow",
                        latencies_ms: &slow,
                    },
                ],
            }],
            "caption",
        );
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("a&lt;b") && !svg.contains("a<b"));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
    }
}
