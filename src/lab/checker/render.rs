//! The checker's report as a human reads it.

use std::fmt::Write;

use crate::lab::checker::Report;

/// How many lost events and ghosts to list by name.
const LIST_AT_MOST: usize = 10;

pub fn text(r: &Report) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: String, flag: bool| {
        let mark = if flag { "  <-- " } else { "" };
        let _ = writeln!(
            out,
            "  {label:<28} {value}{mark}{}",
            if flag { "!" } else { "" }
        );
    };
    line("committed orders", r.committed_orders.to_string(), false);
    line("expected events", r.expected_events.to_string(), false);
    line(
        "records in log",
        format!(
            "{} ({} distinct events)",
            r.records_in_log, r.distinct_events_in_log
        ),
        false,
    );
    line("lost", r.lost_count.to_string(), r.lost_count > 0);
    line(
        "ghost",
        format!("{} ({} applied)", r.ghost_count, r.ghost_applied),
        r.ghost_count > 0,
    );
    line("redelivered (log copies)", r.redelivered.to_string(), false);
    for (cause, n) in &r.redelivered_by_cause {
        line(&format!("  by {cause}"), n.to_string(), false);
    }
    line(
        "redelivered (consumer crash)",
        r.consumer_redeliveries.to_string(),
        false,
    );
    line(
        "skipped by inbox",
        r.consumer_skipped_duplicates.to_string(),
        false,
    );
    // The inbox-retention counters: shown only once there is something to show.
    for (label, n) in [
        ("dropped by seq guard", r.consumer_dropped_by_seq_guard),
        ("too old to dedupe by inbox", r.consumer_too_old_for_inbox),
        ("inbox rows swept", r.inbox_swept),
        ("seq gaps seen", r.consumer_seq_gaps),
    ] {
        if n > 0 {
            line(label, n.to_string(), false);
        }
    }
    line("applied once", r.applied_once.to_string(), false);
    line(
        "applied twice",
        r.applied_twice.to_string(),
        r.applied_twice > 0,
    );
    line(
        "out of order",
        r.out_of_order.to_string(),
        r.out_of_order > 0,
    );
    line(
        "out of order in log",
        r.log_out_of_order.to_string(),
        r.log_out_of_order > 0,
    );
    line(
        "misplaced partition",
        r.misplaced.to_string(),
        r.misplaced > 0,
    );
    line(
        "aggregates split",
        r.aggregates_split.to_string(),
        r.aggregates_split > 0,
    );
    line(
        "parked (awaiting release)",
        r.parked.to_string(),
        r.parked > 0,
    );
    if r.skipped_events > 0 {
        line("skipped on purpose", r.skipped_events.to_string(), false);
    }
    line(
        "pending (not drained)",
        r.pending.to_string(),
        r.pending > 0,
    );
    line("torn tail bytes", r.torn_tail_bytes.to_string(), false);
    line(
        "effects of unknown events",
        r.unknown_effects.to_string(),
        r.unknown_effects > 0,
    );
    line(
        "points balance",
        format!(
            "{} (committed orders say {}; {} customers off)",
            r.points_actual, r.points_expected, r.points_mismatched_customers
        ),
        !r.points_balanced(),
    );
    for lost in r.lost.iter().take(LIST_AT_MOST) {
        let _ = writeln!(
            out,
            "  LOST  order {} ({}) seq {}: {}",
            lost.order_id,
            lost.request_id.as_deref().unwrap_or("?"),
            lost.aggregate_seq,
            if lost.in_log {
                "in the log but never applied"
            } else {
                "never reached the log"
            }
        );
    }
    for ghost in r.ghost.iter().take(LIST_AT_MOST) {
        let _ = writeln!(
            out,
            "  GHOST event {} says order {} was placed for request {}: never committed{}{}",
            ghost.event_id,
            ghost.order_id,
            ghost.request_id.as_deref().unwrap_or("?"),
            match &ghost.order_belongs_to {
                Some(real) => format!(" (order {} is really request {real})", ghost.order_id),
                None => String::new(),
            },
            if ghost.applied {
                "; it was applied"
            } else {
                ""
            }
        );
    }
    for event_id in r.unknown_effect_ids.iter().take(LIST_AT_MOST) {
        let _ = writeln!(
            out,
            "  UNKNOWN effect of event {event_id}: no such event in the log (or not of the order and seq it names)"
        );
    }
    let listed = r.lost.len().min(LIST_AT_MOST) + r.ghost.len().min(LIST_AT_MOST);
    let hidden = (r.lost_count + r.ghost_count).saturating_sub(listed as u64);
    if hidden > 0 {
        let _ = writeln!(out, "  … and more (see --json)");
    }
    if r.pending > 0 {
        let _ = writeln!(
            out,
            "  not drained: run `relay --until-empty` and `consume --until-idle` first"
        );
    }
    let _ = writeln!(out, "verdict: {}", if r.ok() { "OK" } else { "FAILED" });
    out
}
