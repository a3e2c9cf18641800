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
//!   CDC relay:   decode ─▶ [cdc.after_receive] ─▶ append ─▶ [cdc.after_append]
//!                ─▶ sync_data ─▶ [cdc.after_sync] ─▶ advance the slot
//! ```

use std::fmt;

use crate::trace::Ev;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Every crash point. The name on disk and in `OUTBOX_CRASH` is [`Point::name`]
/// (`component.moment`); code names the variant, so a typo fails to compile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Point {
    NaiveAfterCommit,
    NaiveAfterPublish,
    OrderBeforeCommit,
    OrderAfterCommit,
    RelayAfterClaim,
    RelayAfterAppend,
    RelayAfterSync,
    BrokerTornAppend,
    ConsumerAfterApply,
    CdcAfterReceive,
    CdcAfterAppend,
    CdcAfterSync,
}

/// Which process a crash point lives in: the harness arms the matching child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// The order service (`place`), naive or outbox.
    Client,
    /// A relay, and the broker writer it drives.
    Relay,
    Consumer,
}

impl Point {
    /// In `outbox-lab crash-points` order.
    pub const ALL: [Point; 12] = [
        Point::NaiveAfterCommit,
        Point::NaiveAfterPublish,
        Point::OrderBeforeCommit,
        Point::OrderAfterCommit,
        Point::RelayAfterClaim,
        Point::RelayAfterAppend,
        Point::RelayAfterSync,
        Point::BrokerTornAppend,
        Point::ConsumerAfterApply,
        Point::CdcAfterReceive,
        Point::CdcAfterAppend,
        Point::CdcAfterSync,
    ];

    /// The stable on-disk name (`OUTBOX_CRASH`, `trace.jsonl`).
    pub const fn name(self) -> &'static str {
        match self {
            Point::NaiveAfterCommit => "naive.after_commit",
            Point::NaiveAfterPublish => "naive.after_publish",
            Point::OrderBeforeCommit => "order.before_commit",
            Point::OrderAfterCommit => "order.after_commit",
            Point::RelayAfterClaim => "relay.after_claim",
            Point::RelayAfterAppend => "relay.after_append",
            Point::RelayAfterSync => "relay.after_sync",
            Point::BrokerTornAppend => "broker.torn_append",
            Point::ConsumerAfterApply => "consumer.after_apply",
            Point::CdcAfterReceive => "cdc.after_receive",
            Point::CdcAfterAppend => "cdc.after_append",
            Point::CdcAfterSync => "cdc.after_sync",
        }
    }

    /// What a crash there shows. `outbox-lab crash-points` prints this.
    pub const fn shows(self) -> &'static str {
        match self {
            Point::NaiveAfterCommit => {
                "naive service: order committed, event never appended -> LOST event"
            }
            Point::NaiveAfterPublish => {
                "naive publish-first: event appended, order never committed -> GHOST event"
            }
            Point::OrderBeforeCommit => {
                "outbox service: order+event rolled back together -> nothing (client retries)"
            }
            Point::OrderAfterCommit => {
                "outbox service: order+event committed, reply never sent -> both, once (retry says duplicate)"
            }
            Point::RelayAfterClaim => {
                "relay: rows leased, nothing appended -> lease expires, another pass ships them: nothing lost"
            }
            Point::RelayAfterAppend => {
                "relay: written but not synced nor marked -> republished (a copy may survive in the page cache)"
            }
            Point::RelayAfterSync => {
                "relay: durably appended, not marked -> DELIVERED TWICE: the duplicate the consumer absorbs"
            }
            Point::BrokerTornAppend => {
                "broker: half a record written -> torn tail truncated by the next writer, batch republished"
            }
            Point::ConsumerAfterApply => {
                "consumer: effect committed, offset not -> REDELIVERED to the consumer; the inbox skips it"
            }
            Point::CdcAfterReceive => {
                "CDC relay: changes decoded, nothing appended, slot not advanced -> decoded again on restart"
            }
            Point::CdcAfterAppend => {
                "CDC relay: written, not synced, slot not advanced -> decoded again and re-appended"
            }
            Point::CdcAfterSync => {
                "CDC relay: durably appended, slot not advanced -> DELIVERED TWICE: the consumer absorbs it"
            }
        }
    }

    pub const fn component(self) -> Component {
        match self {
            Point::NaiveAfterCommit
            | Point::NaiveAfterPublish
            | Point::OrderBeforeCommit
            | Point::OrderAfterCommit => Component::Client,
            Point::RelayAfterClaim
            | Point::RelayAfterAppend
            | Point::RelayAfterSync
            | Point::BrokerTornAppend
            | Point::CdcAfterReceive
            | Point::CdcAfterAppend
            | Point::CdcAfterSync => Component::Relay,
            Point::ConsumerAfterApply => Component::Consumer,
        }
    }

    pub fn from_name(name: &str) -> Option<Point> {
        Point::ALL.into_iter().find(|p| p.name() == name)
    }

    /// `point@hit`, as `OUTBOX_CRASH` takes it.
    pub fn at(self, hit: u64) -> String {
        format!("{}@{hit}", self.name())
    }
}

impl serde::Serialize for Point {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The known names, comma-separated: what an error about an unknown point lists.
pub fn known_names() -> String {
    Point::ALL.map(Point::name).join(", ")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Kill,
    Stop,
}

struct Armed {
    point: Point,
    hit: u64,
    passes: AtomicU64,
    action: Action,
}

static ARMED: OnceLock<Vec<Armed>> = OnceLock::new();

/// The variables that arm a process, and what each does at the armed pass.
const ARMING_VARS: [(&str, Action); 2] = [
    ("OUTBOX_CRASH", Action::Kill),
    ("OUTBOX_PAUSE", Action::Stop),
];

/// Parse `point@hit[,point@hit…]`. Errors name the bad part and list the known points.
pub fn parse_spec(spec: &str) -> Result<Vec<(Point, u64)>, String> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, hit) = part
            .split_once('@')
            .ok_or_else(|| format!("crash spec {part:?} is not point@hit"))?;
        let point = Point::from_name(name).ok_or_else(|| {
            format!(
                "unknown crash point {name:?}; known points: {}",
                known_names()
            )
        })?;
        let hit: u64 = hit
            .parse()
            .ok()
            .filter(|h| *h >= 1)
            .ok_or_else(|| format!("crash spec {part:?}: hit must be an integer >= 1"))?;
        out.push((point, hit));
    }
    Ok(out)
}

/// Check `OUTBOX_CRASH` and `OUTBOX_PAUSE` before any work starts, so a mistyped point is a
/// clean error naming the variable (the command line calls this first), not a panic half-way.
pub fn check_env() -> Result<(), String> {
    for (var, _) in ARMING_VARS {
        if let Ok(spec) = std::env::var(var) {
            parse_spec(&spec).map_err(|e| format!("{var}: {e}"))?;
        }
    }
    Ok(())
}

fn armed() -> &'static [Armed] {
    ARMED.get_or_init(|| {
        let mut armed = Vec::new();
        for (var, action) in ARMING_VARS {
            let Ok(spec) = std::env::var(var) else {
                continue;
            };
            // check_env() ran at startup; a library user who skipped it gets this message.
            let parsed = parse_spec(&spec).unwrap_or_else(|e| panic!("{var}: {e}"));
            armed.extend(parsed.into_iter().map(|(point, hit)| Armed {
                point,
                hit,
                passes: AtomicU64::new(0),
                action,
            }));
        }
        armed
    })
}

/// Count a pass through `point`; true exactly when this pass is an armed kill.
/// For points that must do something half-way before dying (a torn append).
/// An armed pause at this pass freezes the process here first (and then returns false).
pub fn due(point: Point) -> bool {
    let mut kill = false;
    for armed in armed().iter().filter(|a| a.point == point) {
        if armed.passes.fetch_add(1, Ordering::SeqCst) + 1 != armed.hit {
            continue;
        }
        match armed.action {
            Action::Kill => kill = true,
            Action::Stop => pause(point),
        }
    }
    kill
}

/// SIGSTOP ourselves; carry on when someone sends SIGCONT.
fn pause(point: Point) {
    crate::trace::emit(Ev::Paused, || serde_json::json!({ "point": point.name() }));
    let _ = signal_hook::low_level::raise(signal_hook::consts::SIGSTOP);
    crate::trace::emit(Ev::Resumed, || serde_json::json!({ "point": point.name() }));
}

/// Die here (SIGKILL) if armed for this pass.
pub fn point(point: Point) {
    if due(point) {
        die(point);
    }
}

/// Record the crash in the trace, then SIGKILL ourselves: nothing after this runs.
pub fn die(point: Point) -> ! {
    crate::trace::emit(Ev::Crash, || serde_json::json!({ "point": point.name() }));
    let _ = signal_hook::low_level::raise(signal_hook::consts::SIGKILL);
    unreachable!("SIGKILL did not kill us at {point}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_point_round_trips_through_its_name() {
        for point in Point::ALL {
            assert_eq!(Point::from_name(point.name()), Some(point));
            let prefix = point.name().split('.').next().unwrap();
            let expected = match point.component() {
                Component::Client => ["naive", "order"].contains(&prefix),
                Component::Relay => ["relay", "broker", "cdc"].contains(&prefix),
                Component::Consumer => prefix == "consumer",
            };
            assert!(expected, "{point} filed under {:?}", point.component());
        }
    }

    #[test]
    fn a_mistyped_point_is_refused_with_the_known_list() {
        let err = parse_spec("relay.aftersync@1").unwrap_err();
        assert!(err.contains("\"relay.aftersync\""), "{err}");
        for point in Point::ALL {
            assert!(err.contains(point.name()), "{err} lacks {point}");
        }
        assert_eq!(
            parse_spec("relay.after_sync@2, consumer.after_apply@1").unwrap(),
            vec![(Point::RelayAfterSync, 2), (Point::ConsumerAfterApply, 1)]
        );
        assert!(parse_spec("relay.after_sync@0").is_err());
    }
}
