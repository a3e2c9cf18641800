//! Side by side: the same crash schedule laid on each service mode, one column per run.

use std::collections::BTreeSet;
use std::fmt::Write;

use crate::error::Result;
use crate::lab::harness::{Outcome, consequence};

fn fired_by(o: &Outcome, prefix: &str) -> usize {
    o.fired
        .iter()
        .filter(|f| f.child.starts_with(prefix))
        .count()
}

/// What each row of the table means, printed under it (and beside the HTML timeline).
pub const LEGEND: &[(&str, &str)] = &[
    (
        "crashes: …",
        "SIGKILLs that really fired, by the kind of process that died",
    ),
    (
        "events LOST",
        "committed orders whose event was never applied (it never reached the log)",
    ),
    (
        "GHOST events",
        "events in the log for orders that never committed; in brackets, how many were applied",
    ),
    (
        "log copies",
        "extra copies of an event in the log (a relay died before marking), by the crash that left them",
    ),
    (
        "consumer re-reads",
        "records the consumer read again because it died before committing its offset",
    ),
    (
        "skipped by inbox",
        "log copies + consumer re-reads: every second sighting of an event, refused by the inbox",
    ),
    (
        "applied twice",
        "events whose effect was committed twice (the inbox keeps this at 0)",
    ),
    (
        "out of order",
        "orders whose events were applied in a seq order other than 1, 2, 3…",
    ),
    (
        "points (expected)",
        "loyalty points the consumer credited; in brackets, what the committed orders are owed",
    ),
];

/// How to read a story line, printed under the stories.
pub const STORY_LEGEND: &str = "  \"pass N\": the relay process's N-th pass that claimed rows, the count `relay.…@N` uses (a\n  \
   restarted relay counts from 1 again); \"attempt N\": the N-th time this outbox row was claimed;\n  \
   \"@ byte B\": where the record starts in its partition's log.\n";

/// What the seed fixes and what timing moves: said under every table, since the figures of
/// two runs of one seed differ in exactly these rows.
pub const DETERMINISM: &str = "  The seed fixes the crash schedule, and with it the crash points, lost, ghosts and points.\n  \
   Timing moves the rest: how many rows a killed relay pass held (log copies) and how far the\n  \
   consumer had read (re-reads) differ from run to run of the same seed.\n";

/// The legend as text: one line per row of the table.
pub fn legend() -> String {
    let width = LEGEND
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (label, meaning) in LEGEND {
        let _ = writeln!(out, "  {label:<width$}  {meaning}");
    }
    out
}

/// The before/after table.
pub fn table(outcomes: &[&Outcome]) -> String {
    grid(&table_rows(outcomes))
}

/// The before/after table as (label, one cell per run) rows; the first row names the modes.
pub fn table_rows(outcomes: &[&Outcome]) -> Vec<(String, Vec<String>)> {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |label: &str, f: &dyn Fn(&Outcome) -> String| {
        rows.push((label.to_string(), outcomes.iter().map(|o| f(o)).collect()));
    };
    row("mode", &|o| o.mode.clone());
    row("orders committed", &|o| {
        o.report.committed_orders.to_string()
    });
    row("crashes: order service", &|o| {
        fired_by(o, "client").to_string()
    });
    row("crashes: relay", &|o| fired_by(o, "relay").to_string());
    row("crashes: consumer", &|o| {
        fired_by(o, "consumer").to_string()
    });
    row("events LOST", &|o| o.report.lost_count.to_string());
    row("GHOST events (applied)", &|o| {
        format!("{} ({})", o.report.ghost_count, o.report.ghost_applied)
    });
    row("redelivered: log copies", &|o| {
        o.report.redelivered.to_string()
    });
    let causes: BTreeSet<String> = outcomes
        .iter()
        .flat_map(|o| o.report.redelivered_by_cause.keys().cloned())
        .collect();
    for cause in &causes {
        row(&format!("  by {cause}"), &|o| {
            o.report
                .redelivered_by_cause
                .get(cause)
                .copied()
                .unwrap_or(0)
                .to_string()
        });
    }
    row("redelivered: consumer re-reads", &|o| {
        o.report.consumer_redeliveries.to_string()
    });
    row("skipped by inbox", &|o| {
        o.report.consumer_skipped_duplicates.to_string()
    });
    row("applied twice", &|o| o.report.applied_twice.to_string());
    row("out of order", &|o| o.report.out_of_order.to_string());
    row("points (expected)", &|o| {
        format!("{} ({})", o.report.points_actual, o.report.points_expected)
    });
    row("verdict", &|o| {
        if o.report.ok() {
            "OK".into()
        } else {
            "FAILED".into()
        }
    });
    row("wall time", &|o| {
        format!("{:.1} s", o.wall_ms as f64 / 1000.0)
    });
    rows
}

/// Rows of (label, one cell per column) as an aligned table; the first row is the header.
pub fn grid(rows: &[(String, Vec<String>)]) -> String {
    let label_w = rows
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let col_w = rows
        .iter()
        .flat_map(|(_, c)| c.iter().map(|v| v.chars().count()))
        .max()
        .unwrap_or(0)
        .max(8);
    let mut out = String::new();
    for (i, (label, cells)) in rows.iter().enumerate() {
        let _ = write!(out, "  {label:<label_w$}");
        for cell in cells {
            let _ = write!(out, " | {cell:>col_w$}");
        }
        out.push('\n');
        if i == 0 {
            let _ = writeln!(out, "  {}", "-".repeat(label_w + (col_w + 3) * cells.len()));
        }
    }
    out
}

/// What fired (and what each crash did), what did not, and the checker's report, for one run.
pub fn summary(o: &Outcome) -> Result<String> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "seed {} · mode {} · {} orders · data in {}",
        o.seed,
        o.mode,
        o.orders,
        o.dir.display()
    );
    let _ = writeln!(
        out,
        "crashes fired ({}), in the order they happened; `point@N` as `--crash` takes it:",
        o.fired.len()
    );
    out.push_str(&consequence::render(&consequence::explain(o)?));
    if !o.unfired.is_empty() {
        let _ = writeln!(
            out,
            "scheduled but never reached (too little work left): {}",
            o.unfired.join(", ")
        );
    }
    if !o.power_cuts.is_empty() {
        let _ = writeln!(out, "power cuts ({}):", o.power_cuts.len());
        for (i, cut) in o.power_cuts.iter().enumerate() {
            let tails: Vec<String> = cut
                .partitions
                .iter()
                .map(|p| {
                    let rewound = p
                        .durable_end_rewound_to
                        .map_or(String::new(), |e| format!(", durable end back to {e}"));
                    format!(
                        "p{} {}{rewound}",
                        p.partition,
                        p.shape.map_or("-", |s| s.name())
                    )
                })
                .collect();
            let _ = writeln!(out, "  cut {:<3} {}", i + 1, tails.join(" · "));
        }
    }
    let _ = writeln!(out, "checker (seed {}):", o.seed);
    out.push_str(&o.report.to_text());
    Ok(out)
}
