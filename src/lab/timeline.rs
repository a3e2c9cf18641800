//! A crash run as a picture: one self-contained HTML file with an inline SVG timeline.
//!
//! ```text
//!   client.1     ━━━━━━━━━━━━━━━✕ naive.after_commit@12   ● order 12 LOST
//!   client.2                     ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━
//!   relay-0.1    ━━━━━━━○claimed━○appended━✕ relay.after_sync@1
//!   relay-0.2                               ━━━━━━━━━━○claimed━○appended━○marked━━━━━━
//!   consumer-0.1 ━━━━━━━━━━━━━━━━━━○applied━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━○skipped━━━
//! ```
//!
//! One lane per process incarnation (every process the harness started), a red cross where
//! each crash fired with its named point, lost orders and ghost events marked where they
//! happened, and one highlighted event — a copy the log holds twice — followed step by step
//! from its claims to the inbox's skip. The comparison table and its legend sit beside it.
//!
//! No JavaScript, no network, no external file: the page is plain HTML and SVG, so it opens
//! anywhere, offline. Every mark carries a class (`lane`, `crash`, `lost`, `ghost`, `step`)
//! so a test can count them against the run.

use std::collections::HashMap;
use std::fmt::Write;
use std::path::Path;

use serde_json::Value;

use crate::error::{Context, Error, Result};
use crate::lab::harness::{Outcome, consequence, story};
use crate::lab::{compare, demo};
use crate::trace::Ev;

const LABEL_W: f64 = 150.0;
const PLOT_W: f64 = 760.0;
const LANE_H: f64 = 34.0;
const TOP: f64 = 40.0;

/// Where on the page a moment of the run falls.
struct Scale {
    t0_us: i64,
    span_us: i64,
}

impl Scale {
    fn x(&self, t_us: i64) -> f64 {
        let frac = (t_us - self.t0_us) as f64 / self.span_us.max(1) as f64;
        LABEL_W + frac.clamp(0.0, 1.0) * PLOT_W
    }
}

/// Refuse a page path that could clobber something that is not a page: it must end in
/// `.html` and must not be a directory. (`--html orders.db` would otherwise overwrite a database.)
pub fn check_path(path: &Path) -> Result<()> {
    let is_html = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("html"));
    if !is_html || path.is_dir() {
        return Err(Error::Input(format!(
            "--html wants a file name ending in .html, got {}",
            path.display()
        )));
    }
    Ok(())
}

/// Write the page for `outcome` to `path`, with `table` (rows of [`compare::table_rows`]) beside
/// it: to a temporary file first, then renamed over `path`, so a reader never sees half a page.
pub fn write(path: &Path, outcome: &Outcome, table: &[(String, Vec<String>)]) -> Result<()> {
    check_path(path)?;
    let html = render(outcome, table)?;
    let tmp = path.with_extension("html.tmp");
    std::fs::write(&tmp, html).ctx(format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).ctx(format!("renaming {} to {}", tmp.display(), path.display()))
}

/// The whole page as a string.
pub fn render(outcome: &Outcome, table: &[(String, Vec<String>)]) -> Result<String> {
    let lines = story::load(&outcome.dir)?;
    let explained = consequence::explain(outcome)?;
    let mut page = String::new();
    let title = format!(
        "outbox-lab crash run · {} · seed {} · {} orders",
        outcome.mode, outcome.seed, outcome.orders
    );
    let _ = write!(
        page,
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{}</title>\n<style>{CSS}</style></head>\n<body>\n<h1>{}</h1>\n<p class=\"dir\">data: {}</p>\n<div class=\"row\">\n",
        esc(&title),
        esc(&title),
        esc(&outcome.dir.display().to_string())
    );
    page.push_str(&svg(outcome, &lines, &explained));
    page.push_str(&side_table(table));
    page.push_str("</div>\n");
    page.push_str(&crash_list(&explained));
    page.push_str("</body></html>\n");
    Ok(page)
}

fn svg(outcome: &Outcome, lines: &[Value], explained: &[consequence::Explained]) -> String {
    let times: Vec<i64> = lines.iter().filter_map(|l| l["t_us"].as_i64()).collect();
    let t0_us = times.iter().copied().min().unwrap_or(0);
    let span_us = times.iter().copied().max().unwrap_or(0) - t0_us;
    let scale = Scale { t0_us, span_us };
    let lane_of: HashMap<u64, usize> = outcome
        .processes
        .iter()
        .enumerate()
        .map(|(i, p)| (u64::from(p.pid), i))
        .collect();
    let lane_y = |lane: usize| TOP + lane as f64 * LANE_H + LANE_H / 2.0;
    let height = TOP + outcome.processes.len() as f64 * LANE_H + 50.0;
    let width = LABEL_W + PLOT_W + 40.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">"
    );
    axis(&mut s, &scale, height - 30.0);
    for (i, p) in outcome.processes.iter().enumerate() {
        let pid = u64::from(p.pid);
        let mine: Vec<i64> = lines
            .iter()
            .filter(|l| l["pid"].as_u64() == Some(pid))
            .filter_map(|l| l["t_us"].as_i64())
            .collect();
        let y = lane_y(i);
        let _ = write!(
            s,
            "<g class=\"lane\" data-name=\"{}\"><text x=\"4\" y=\"{:.1}\">{} <tspan class=\"pid\">{}</tspan></text>",
            esc(&p.name),
            y + 4.0,
            esc(&p.name),
            p.pid
        );
        if mine.is_empty() {
            let _ = write!(
                s,
                "<text class=\"idle\" x=\"{LABEL_W}\" y=\"{:.1}\">no trace line: it found nothing to do, or died before its first</text>",
                y + 4.0
            );
        }
        if let (Some(a), Some(b)) = (mine.iter().min(), mine.iter().max()) {
            let _ = write!(
                s,
                "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>",
                scale.x(*a),
                scale.x(*b).max(scale.x(*a) + 2.0)
            );
        }
        s.push_str("</g>\n");
    }
    // Crash labels go under their lane; lost and ghost labels above it, so both stay legible.
    for e in explained {
        let (Some(t), Some(&lane)) = (e.t_us, lane_of.get(&u64::from(e.fired.pid))) else {
            continue;
        };
        let (x, y) = (scale.x(t0_us + t), lane_y(lane));
        let dy = 14.0;
        let _ = writeln!(
            s,
            "<g class=\"crash\" data-point=\"{}\"><title>{} {} → {}</title><path d=\"M{:.1} {:.1} l10 10 m0 -10 l-10 10\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text></g>",
            esc(&e.fired.point),
            esc(&e.fired.child),
            esc(&e.fired.point),
            esc(&e.consequence),
            x - 5.0,
            y - 5.0,
            x + 8.0,
            y + dy,
            esc(&e.fired.point)
        );
    }
    power_cuts(&mut s, outcome, &scale, height - 30.0);
    anomalies(&mut s, outcome, lines, &scale, &lane_of, &lane_y);
    highlighted(&mut s, outcome, lines, &scale, &lane_of, &lane_y);
    s.push_str("</svg>\n");
    s
}

/// Time axis along the bottom, in ms since the run's first trace line.
fn axis(s: &mut String, scale: &Scale, y: f64) {
    let span_ms = scale.span_us as f64 / 1000.0;
    let step_ms = [
        1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
    ]
    .into_iter()
    .find(|step| span_ms / step <= 10.0)
    .unwrap_or(10_000.0);
    let _ = write!(
        s,
        "<g class=\"axis\"><line x1=\"{LABEL_W}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\"/>",
        LABEL_W + PLOT_W
    );
    let mut tick_ms = 0.0;
    while tick_ms <= span_ms {
        let x = scale.x(scale.t0_us + (tick_ms * 1000.0) as i64);
        let _ = write!(
            s,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{y}\" y2=\"{}\"/><text x=\"{x:.1}\" y=\"{}\">{tick_ms} ms</text>",
            y + 5.0,
            y + 18.0
        );
        tick_ms += step_ms;
    }
    s.push_str("</g>\n");
}

/// A power cut kills every process at once: a line across all lanes.
fn power_cuts(s: &mut String, outcome: &Outcome, scale: &Scale, bottom: f64) {
    for (i, cut) in outcome.power_cuts.iter().enumerate() {
        let x = scale.x(cut.at_us);
        let _ = writeln!(
            s,
            "<g class=\"power-cut\"><line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{TOP}\" y2=\"{bottom}\"/><text x=\"{:.1}\" y=\"{:.1}\">power cut {}</text></g>",
            x + 3.0,
            TOP - 4.0 - 11.0 * (i % 2) as f64,
            i + 1
        );
    }
}

/// Lost orders at the commit whose event never followed; ghosts at their append.
fn anomalies(
    s: &mut String,
    outcome: &Outcome,
    lines: &[Value],
    scale: &Scale,
    lane_of: &HashMap<u64, usize>,
    lane_y: &dyn Fn(usize) -> f64,
) {
    let at = |pred: &dyn Fn(&Value) -> bool| {
        lines.iter().find(|l| pred(l)).and_then(|l| {
            let lane = lane_of.get(&l["pid"].as_u64()?)?;
            Some((scale.x(l["t_us"].as_i64()?), lane_y(*lane)))
        })
    };
    for lost in &outcome.report.lost {
        let rid = lost.request_id.as_deref().unwrap_or("");
        if let Some((x, y)) =
            at(&|l| Ev::of_line(l) == Some(Ev::Committed) && l["request_id"] == rid)
        {
            let _ = writeln!(
                s,
                "<g class=\"lost\" data-order=\"{id}\"><circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"6\"/><text x=\"{tx:.1}\" y=\"{ty:.1}\">order {id} LOST</text></g>",
                id = esc(&lost.order_id),
                tx = x + 8.0,
                ty = y - 9.0
            );
        }
    }
    for ghost in &outcome.report.ghost {
        let id = ghost.event_id.as_str();
        if let Some((x, y)) = at(&|l| Ev::of_line(l) == Some(Ev::Appended) && l["event_id"] == id) {
            let _ = writeln!(
                s,
                "<g class=\"ghost\" data-event=\"{}\"><path d=\"M{x:.1} {:.1} l6 7 l-6 7 l-6 -7 z\"/><text x=\"{:.1}\" y=\"{:.1}\">ghost of order {}</text></g>",
                esc(id),
                y - 7.0,
                x + 8.0,
                y - 9.0,
                esc(&ghost.order_id)
            );
        }
    }
}

/// The highlighted event: every line that names it, joined in time order across lanes.
fn highlighted(
    s: &mut String,
    outcome: &Outcome,
    lines: &[Value],
    scale: &Scale,
    lane_of: &HashMap<u64, usize>,
    lane_y: &dyn Fn(usize) -> f64,
) {
    let Some(dup) = demo::pick_duplicate(&outcome.report) else {
        return;
    };
    let id = dup.event_id.as_str();
    let names = |l: &Value| {
        l["event_id"] == id
            || l["event_ids"]
                .as_array()
                .is_some_and(|ids| ids.iter().any(|v| v == id))
    };
    let steps: Vec<(f64, f64, &str)> = lines
        .iter()
        .filter(|l| names(l))
        .filter_map(|l| {
            let lane = lane_of.get(&l["pid"].as_u64()?)?;
            Some((
                scale.x(l["t_us"].as_i64()?),
                lane_y(*lane),
                l["ev"].as_str()?,
            ))
        })
        .collect();
    let _ = write!(
        s,
        "<g class=\"highlight\" data-event=\"{}\"><title>event {} ({} copies in the log; {})</title>",
        esc(id),
        esc(id),
        dup.copies,
        esc(&dup.causes.join(", "))
    );
    let points: Vec<String> = steps
        .iter()
        .map(|(x, y, _)| format!("{x:.1},{y:.1}"))
        .collect();
    let _ = write!(s, "<polyline points=\"{}\"/>", points.join(" "));
    let _ = write!(
        s,
        "<text class=\"key\" x=\"{LABEL_W}\" y=\"18\">blue path: event {}… ({} copies in the log; {}), step by step to the inbox</text>",
        esc(id.get(..8).unwrap_or(id)),
        dup.copies,
        esc(&dup.causes.join(", "))
    );
    for (k, (x, y, ev)) in steps.iter().enumerate() {
        let dy = [16.0, -8.0, 26.0][k % 3];
        let _ = write!(
            s,
            "<g class=\"step\" data-ev=\"{ev}\"><circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"4\"/><text x=\"{x:.1}\" y=\"{ty:.1}\">{ev}</text></g>",
            ev = esc(ev),
            ty = y + dy
        );
    }
    s.push_str("</g>\n");
}

fn side_table(rows: &[(String, Vec<String>)]) -> String {
    let mut t = String::from("<div class=\"side\"><table>\n");
    for (i, (label, cells)) in rows.iter().enumerate() {
        let tag = if i == 0 { "th" } else { "td" };
        let _ = write!(t, "<tr><{tag}>{}</{tag}>", esc(label));
        for cell in cells {
            let _ = write!(t, "<{tag}>{}</{tag}>", esc(cell));
        }
        t.push_str("</tr>\n");
    }
    t.push_str("</table>\n<dl>");
    for (label, meaning) in compare::LEGEND {
        let _ = write!(t, "<dt>{}</dt><dd>{}</dd>", esc(label), esc(meaning));
    }
    let _ = writeln!(
        t,
        "</dl><p class=\"note\">{}</p></div>",
        esc(compare::DETERMINISM)
    );
    t
}

fn crash_list(explained: &[consequence::Explained]) -> String {
    let mut t =
        String::from("<h2>Crashes, in the order they happened</h2>\n<ol class=\"crashes\">");
    for e in explained {
        let _ = write!(
            t,
            "<li><b>{}</b> pid {} <code>{}</code> → {}</li>",
            esc(&e.fired.child),
            e.fired.pid,
            esc(&e.fired.point),
            esc(&e.consequence)
        );
    }
    t.push_str("</ol>\n<p class=\"note\">Red crosses: crashes. Red circles: lost orders. Purple diamonds: ghosts. Blue path: the highlighted event, one dot per step (claimed, appended, marked, applied, skipped_duplicate).</p>\n");
    t
}

/// Text for HTML: the five characters that matter escaped.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

const CSS: &str = "body{font:13px/1.4 system-ui,sans-serif;margin:16px;color:#222}\
h1{font-size:17px;margin:0 0 4px}h2{font-size:15px}.dir{color:#666;margin:0 0 8px}\
.row{display:flex;gap:16px;align-items:flex-start}\
svg{border:1px solid #ddd;background:#fff;flex:none}\
svg text{font-size:11px;fill:#222}svg .pid{fill:#999}\
.lane line{stroke:#9aa;stroke-width:6;stroke-linecap:round}\
.axis line{stroke:#888}.axis text{fill:#666;text-anchor:middle}\
.crash path{stroke:#d00;stroke-width:3}.crash text{fill:#d00;font-weight:600}\
.lost circle{fill:#d00}.lost text{fill:#d00;font-weight:700}\
.ghost path{fill:#80c}.ghost text{fill:#80c;font-weight:700}\
.power-cut line{stroke:#e80;stroke-width:2;stroke-dasharray:6 3}.power-cut text{fill:#e80;font-weight:700}\
.highlight polyline{fill:none;stroke:#06c;stroke-width:2;stroke-dasharray:4 3}\
.step circle{fill:#06c}svg .key{fill:#06c;font-size:12px}svg .idle{fill:#999;font-style:italic}.step text{fill:#06c;font-size:10px;text-anchor:middle}\
.side table{border-collapse:collapse;font-size:12px}.side td,.side th{border:1px solid #ccc;padding:2px 6px;text-align:right}\
.side td:first-child,.side th:first-child{text-align:left}\
.side dl{font-size:11px;max-width:420px}.side dt{font-weight:600}.side dd{margin:0 0 4px 8px}\
.note{color:#555;font-size:11px;white-space:pre-line;max-width:420px}";
