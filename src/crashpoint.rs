//! Named places where a process can be made to die: the pipeline's only tie to the lab.
//!
//! The pipeline calls [`point`] at each moment worth crashing at (`relay.after_sync`, …).
//! Unarmed, that is one atomic load. Armed — through the `OUTBOX_CRASH` environment variable,
//! `point@hit[,point@hit…]` — the process raises SIGKILL on itself the hit-th time it passes
//! the point: no cleanup, no destructors, no flushing, exactly like a power cut to the
//! process (but not to the disk: the kernel's page cache survives, see WRITEUP.md).
//!
//! `OUTBOX_PAUSE` takes the same form but raises SIGSTOP instead: the process freezes there
//! until someone sends SIGCONT — a zombie relay, paused past its lease, made to order.
//!
//! ```text
//!   relay pass:  claim ─▶ [relay.after_claim] ─▶ append ─▶ [relay.after_append]
//!                ─▶ sync_data ─▶ [relay.after_sync] ─▶ mark published
//! ```

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Every crash point, with what a crash there shows. `outbox-lab crash-points` prints this.
pub const CATALOGUE: &[(&str, &str)] = &[
    (
        "naive.after_commit",
        "naive service: order committed, event never appended -> LOST event",
    ),
    (
        "naive.after_publish",
        "naive publish-first: event appended, order never committed -> GHOST event",
    ),
    (
        "order.before_commit",
        "outbox service: order+event rolled back together -> nothing (client retries)",
    ),
    (
        "order.after_commit",
        "outbox service: order+event committed, reply never sent -> both, once (retry says duplicate)",
    ),
    (
        "relay.after_claim",
        "relay: rows leased, nothing appended -> lease expires, another pass ships them: nothing lost",
    ),
    (
        "relay.after_append",
        "relay: written but not synced nor marked -> republished (a copy may survive in the page cache)",
    ),
    (
        "relay.after_sync",
        "relay: durably appended, not marked -> DELIVERED TWICE: the duplicate the consumer absorbs",
    ),
    (
        "broker.torn_append",
        "broker: half a record written -> torn tail truncated by the next writer, batch republished",
    ),
    (
        "consumer.after_apply",
        "consumer: effect committed, offset not -> REDELIVERED to the consumer; the inbox skips it",
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Kill,
    Stop,
}

struct Armed {
    name: &'static str,
    hit: u64,
    passes: AtomicU64,
    action: Action,
}

static ARMED: OnceLock<Vec<Armed>> = OnceLock::new();

/// Parse `point@hit[,point@hit…]`. Errors name the bad part.
pub fn parse_spec(spec: &str) -> Result<Vec<(&'static str, u64)>, String> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, hit) = part
            .split_once('@')
            .ok_or_else(|| format!("crash spec {part:?} is not point@hit"))?;
        let name = CATALOGUE
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(known, _)| *known)
            .ok_or_else(|| {
                format!("unknown crash point {name:?} (see `outbox-lab crash-points`)")
            })?;
        let hit: u64 = hit
            .parse()
            .ok()
            .filter(|h| *h >= 1)
            .ok_or_else(|| format!("crash spec {part:?}: hit must be an integer >= 1"))?;
        out.push((name, hit));
    }
    Ok(out)
}

fn armed() -> &'static [Armed] {
    ARMED.get_or_init(|| {
        let mut armed = Vec::new();
        for (var, action) in [
            ("OUTBOX_CRASH", Action::Kill),
            ("OUTBOX_PAUSE", Action::Stop),
        ] {
            let Ok(spec) = std::env::var(var) else {
                continue;
            };
            let parsed = parse_spec(&spec).unwrap_or_else(|e| panic!("{var}: {e}"));
            armed.extend(parsed.into_iter().map(|(name, hit)| Armed {
                name,
                hit,
                passes: AtomicU64::new(0),
                action,
            }));
        }
        armed
    })
}

/// Count a pass through `name`; true exactly when this pass is an armed kill.
/// For points that must do something half-way before dying (a torn append).
/// An armed pause at this pass freezes the process here first (and then returns false).
pub fn due(name: &'static str) -> bool {
    debug_assert!(
        CATALOGUE.iter().any(|(n, _)| *n == name),
        "crash point {name} not in CATALOGUE"
    );
    let mut kill = false;
    for armed in armed().iter().filter(|a| a.name == name) {
        if armed.passes.fetch_add(1, Ordering::SeqCst) + 1 != armed.hit {
            continue;
        }
        match armed.action {
            Action::Kill => kill = true,
            Action::Stop => pause(name),
        }
    }
    kill
}

/// SIGSTOP ourselves; carry on when someone sends SIGCONT.
fn pause(name: &'static str) {
    crate::trace::emit("paused", || serde_json::json!({ "point": name }));
    let _ = signal_hook::low_level::raise(signal_hook::consts::SIGSTOP);
    crate::trace::emit("resumed", || serde_json::json!({ "point": name }));
}

/// Die here (SIGKILL) if armed for this pass.
pub fn point(name: &'static str) {
    if due(name) {
        die(name);
    }
}

/// Record the crash in the trace, then SIGKILL ourselves: nothing after this runs.
pub fn die(name: &'static str) -> ! {
    crate::trace::emit("crash", || serde_json::json!({ "point": name }));
    let _ = signal_hook::low_level::raise(signal_hook::consts::SIGKILL);
    unreachable!("SIGKILL did not kill us at {name}");
}
