//! A crash schedule: which process dies where, derived from a seed.
//!
//! The client's crashes are positions in the stream of *placements* ("die during the 17th new
//! order, right after its commit"), so the same schedule can be laid on every service mode:
//!
//! ```text
//!   window             naive            naive-publish-first    outbox
//!   after the write    naive.after_commit                      order.after_commit
//!   before the commit                   naive.after_publish    order.before_commit
//! ```
//!
//! The naive modes have one gap each; the outbox run alternates between its two points, so it
//! faces both windows. Relay and consumer crashes are (point, hit) pairs counted from each
//! incarnation's start: "the 3rd pass of the next relay dies after its sync".

use serde::Serialize;

use crate::crashpoint::{Component, Point};
use crate::order::Mode;

/// The relay's crash points, cycled through in this order.
const RELAY_POINTS: &[Point] = &[
    Point::RelayAfterSync,
    Point::RelayAfterClaim,
    Point::RelayAfterAppend,
    Point::BrokerTornAppend,
];
const CONSUMER_POINT: Point = Point::ConsumerAfterApply;
/// Upper bound on crashes in one schedule: each costs a process start and maybe a lease.
pub const MAX_CRASHES: usize = 64;

#[derive(Debug, Clone, Serialize)]
pub struct Schedule {
    pub seed: u64,
    /// (point, global placement number — 1-based, ascending) at which the client dies.
    pub client: Vec<(Point, u64)>,
    /// One crash per relay incarnation, in order.
    pub relay: Vec<(Point, u64)>,
    /// One crash per consumer incarnation, in order.
    pub consumer: Vec<(Point, u64)>,
}

impl Schedule {
    /// `crashes` split: half to the client, then two thirds of the rest to relays, the remainder
    /// to the consumer (12 -> 6 client, 4 relay, 2 consumer).
    pub fn from_seed(seed: u64, orders: u64, crashes: usize, mode: Mode) -> Schedule {
        assert!(
            crashes <= MAX_CRASHES,
            "at most {MAX_CRASHES} crashes, asked for {crashes}"
        );
        let mut rng = fastrand::Rng::with_seed(seed);
        let client_n = (crashes.div_ceil(2) as u64).min(orders) as usize;
        let rest = crashes - client_n;
        let consumer_n = rest / 3;
        let relay_n = rest - consumer_n;
        let mut client_at: Vec<u64> = Vec::new();
        while client_at.len() < client_n {
            let at = rng.u64(1..=orders);
            if !client_at.contains(&at) {
                client_at.push(at);
            }
        }
        client_at.sort_unstable();
        let client = client_at
            .into_iter()
            .enumerate()
            .map(|(i, at)| (Schedule::client_point(mode, i), at))
            .collect();
        let relay = (0..relay_n)
            .map(|i| (RELAY_POINTS[i % RELAY_POINTS.len()], rng.u64(1..=4)))
            .collect();
        let consumer = (0..consumer_n)
            .map(|_| (CONSUMER_POINT, rng.u64(5..=60)))
            .collect();
        Schedule {
            seed,
            client,
            relay,
            consumer,
        }
    }

    /// The same schedule for CDC relays: each claim-relay point becomes the CDC relay's point
    /// in the same window (after claim → after receive, …); a torn append stays one.
    pub fn for_cdc(mut self) -> Schedule {
        for (point, _) in &mut self.relay {
            *point = match *point {
                Point::RelayAfterClaim => Point::CdcAfterReceive,
                Point::RelayAfterAppend => Point::CdcAfterAppend,
                Point::RelayAfterSync => Point::CdcAfterSync,
                other => other,
            };
        }
        self
    }

    /// A hand-written schedule (`point@hit` each), for tests and replaying one crash. Client
    /// hits count placements over the whole run; relay and consumer hits, passes since start.
    pub fn explicit(seed: u64, specs: &[(Point, u64)]) -> Schedule {
        let mut schedule = Schedule {
            seed,
            client: Vec::new(),
            relay: Vec::new(),
            consumer: Vec::new(),
        };
        for &(point, hit) in specs {
            let entry = (point, hit);
            match point.component() {
                Component::Client => schedule.client.push(entry),
                Component::Consumer => schedule.consumer.push(entry),
                Component::Relay => schedule.relay.push(entry),
            }
        }
        schedule.client.sort_by_key(|(_, at)| *at);
        schedule
    }

    /// The crash point for the client's `index`-th scheduled crash in `mode`.
    fn client_point(mode: Mode, index: usize) -> Point {
        match mode {
            Mode::Naive => Point::NaiveAfterCommit,
            Mode::NaivePublishFirst => Point::NaiveAfterPublish,
            Mode::Outbox if index.is_multiple_of(2) => Point::OrderAfterCommit,
            Mode::Outbox => Point::OrderBeforeCommit,
        }
    }
}
