//! Side by side: the same crash schedule laid on each service mode, one column per run.

use std::collections::BTreeSet;
use std::fmt::Write;

use crate::lab::harness::Outcome;

fn fired_by(o: &Outcome, prefix: &str) -> usize {
    o.fired
        .iter()
        .filter(|f| f.child.starts_with(prefix))
        .count()
}

/// The before/after table.
pub fn table(outcomes: &[&Outcome]) -> String {
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

    grid(&rows)
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

/// What fired, what did not, and the checker's report, for one run.
pub fn summary(o: &Outcome) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "seed {} · mode {} · {} orders · data in {}",
        o.seed,
        o.mode,
        o.orders,
        o.dir.display()
    );
    let _ = writeln!(out, "crashes fired ({}):", o.fired.len());
    for f in &o.fired {
        let _ = writeln!(out, "  {:<14} pid {:<7} {}", f.child, f.pid, f.point);
    }
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
    out
}
