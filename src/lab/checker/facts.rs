//! The checker's working set: one small struct per committed order and per distinct event in
//! the log, in flat vectors that are sorted (never hashed) to join them. At 1M events this is
//! ~40 bytes per event plus ~32 per order; the strings stay in the stores.

use crate::error::{Error, Result};
use crate::lab::checker::keys::{EventKey, Keys, hash64};
use crate::lab::checker::orders::OrdersStore;

/// One committed order: its events are seqs `1..=last_seq`.
#[derive(Debug, Clone, Copy)]
pub struct OrderFact {
    /// The aggregate key (see [`Keys::order`]).
    pub key: i64,
    pub order_id: i64,
    /// Hash of the request id: what the `OrderPlaced` payload must carry.
    pub request_hash: u64,
    pub last_seq: u32,
    /// The seq of the last event of this order applied for the first time, in apply order.
    pub applied_upto: u32,
    /// Some event of this order was applied out of seq order.
    pub out_of_order: bool,
}

/// Flags of an [`EventFact`].
pub const FITS: u8 = 1; // names a committed order, a seq it reached, and (seq 1) its request id
pub const BEYOND_OFFSET: u8 = 2; // some copy lies past the consumer's committed offset
pub const MULTI_PARTITION: u8 = 4; // copies in more than one partition
pub const GHOST: u8 = 8; // decided by the classification: no committed order expects it
pub const SKIPPED: u8 = 16; // parked by the consumer, then released with --skip: never applied
pub const PARKED: u8 = 32; // parked by the consumer, not released yet

/// One distinct event in the log (copies merged).
#[derive(Debug, Clone, Copy)]
pub struct EventFact {
    pub key: EventKey,
    pub aggregate: i64,
    /// Where its first copy sits: partition << 48 | byte offset.
    pub pos: u64,
    /// 0 when the record's seq is outside 1..=u32::MAX (it then fits no order).
    pub seq: u32,
    pub copies: u16,
    /// Effect rows naming this event, saturating.
    pub applied: u8,
    pub flags: u8,
}

impl EventFact {
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
    pub fn partition(&self) -> u32 {
        (self.pos >> OFFSET_BITS) as u32
    }
    pub fn offset_bytes(&self) -> u64 {
        self.pos & ((1 << OFFSET_BITS) - 1)
    }
    /// An event the checker expects: it fits an order and is not a ghost.
    pub fn expected(&self) -> bool {
        self.has(FITS) && !self.has(GHOST)
    }
}

const OFFSET_BITS: u32 = 48;

pub fn pack_pos(partition: u32, offset_bytes: u64) -> Result<u64> {
    if offset_bytes >= 1 << OFFSET_BITS {
        return Err(Error::Input(format!(
            "log partition {partition} is larger than 2^{OFFSET_BITS} bytes; the checker cannot address it"
        )));
    }
    Ok(u64::from(partition) << OFFSET_BITS | offset_bytes)
}

pub struct Facts {
    pub keys: Keys,
    /// Sorted by key.
    pub orders: Vec<OrderFact>,
    pub events: Vec<EventFact>,
    /// Points the committed orders earn, per customer hash (one `OrderPlaced` each).
    pub points_by_customer: std::collections::HashMap<u64, i64>,
    /// (aggregate, seq) of events skipped on purpose: their seq is accounted, not awaited.
    pub skipped: std::collections::HashSet<(i64, u32)>,
}

impl Facts {
    pub fn load_orders(store: &dyn OrdersStore) -> Result<Facts> {
        let mut keys = Keys::default();
        let capacity = usize::try_from(store.order_count()?).unwrap_or(usize::MAX);
        let mut orders = Vec::with_capacity(capacity);
        let mut points_by_customer = std::collections::HashMap::new();
        store.each_order(&mut |order| {
            let last_seq = u32::try_from(order.last_seq).map_err(|_| {
                Error::Input(format!(
                    "order {} has last_seq {}, outside 0..={}",
                    order.order_id,
                    order.last_seq,
                    u32::MAX
                ))
            })?;
            orders.push(OrderFact {
                key: keys.order(order.order_id),
                order_id: order.order_id,
                request_hash: hash64(order.request_id),
                last_seq,
                applied_upto: 0,
                out_of_order: false,
            });
            // What the consumer credits for OrderPlaced: whole points per 100 cents.
            *points_by_customer
                .entry(hash64(order.customer))
                .or_default() += order.amount_cents / 100;
            Ok(())
        })?;
        orders.sort_unstable_by_key(|o| o.key);
        Ok(Facts {
            keys,
            orders,
            events: Vec::new(),
            points_by_customer,
            skipped: std::collections::HashSet::new(),
        })
    }

    pub fn order_index(&self, aggregate: i64) -> Option<usize> {
        self.orders.binary_search_by_key(&aggregate, |o| o.key).ok()
    }

    pub fn sort_by_key(&mut self) {
        self.events.sort_unstable_by_key(|e| (e.key, e.pos));
    }

    pub fn sort_by_aggregate(&mut self) {
        self.events
            .sort_unstable_by_key(|e| (e.aggregate, e.seq, e.pos));
    }

    /// Index of an event by key; the events must be sorted by key.
    pub fn event_index(&self, key: EventKey) -> Option<usize> {
        self.events.binary_search_by_key(&key, |e| e.key).ok()
    }
}
