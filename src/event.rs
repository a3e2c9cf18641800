//! The event: a domain fact with a stable identity, and its envelope as it travels.
//!
//! An [`Event`] is born as an outbox row (or, in naive mode, straight in memory), becomes a
//! *record* in the log (the JSON below, behind a CRC), and is *applied* by the consumer.
//! `event_id` is random 128-bit hex, unique forever: never derived from a row id, because a
//! rolled-back transaction hands its row ids out again (the naive ghost's nastiest face).

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const ORDER_PLACED: &str = "OrderPlaced";
pub const ORDER_PAID: &str = "OrderPaid";
pub const ORDER_SHIPPED: &str = "OrderShipped";

/// The JSON of one record in the log. Field names are part of the contract outside checkers read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub event_id: String,
    pub event_type: String,
    /// The order id as text: all events of one order share it, and it picks the partition.
    pub aggregate_id: String,
    /// 1, 2, 3… per aggregate, in the order the facts happened.
    pub aggregate_seq: i64,
    pub payload: Value,
    pub created_at_us: i64,
    /// The outbox row it came from; absent in naive mode (there is no outbox).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox_id: Option<i64>,
    /// Who appended it: a relay's name, or `naive` for the dual-writing service.
    pub relay: String,
    /// How many times this event has been claimed (1 = first try). A copy with attempt > 1
    /// was shipped again after an earlier claimant died or lost its lease.
    pub attempt: i64,
}

/// A fresh event id: 128 random bits as 32 lowercase hex digits.
pub fn new_event_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}
