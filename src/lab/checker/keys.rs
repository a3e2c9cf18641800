//! Compact identities, so the checker's working set stays small per event.
//!
//! An event id is 128 random bits written as 32 hex digits: held as two `u64`s (16 bytes, not
//! a 56-byte `String`). An aggregate id is an order id written as a decimal integer: held as an
//! `i64`. Anything else (a hand-edited store, an odd outside writer) is *interned*: given a key
//! from a reserved range that parsing never produces, so two different strings never share a
//! key and the checker is never wrong, only a little slower, on odd input.
//!
//! Request ids and customers are only ever compared for equality or used to group points, so
//! they are held as 64-bit FNV-1a hashes: two different request ids collide with probability
//! 2^-64, the one place the checker trades certainty for memory (and it would only hide a
//! ghost that also names a real order with the same seq).

use std::collections::HashMap;

/// An event id as two big-endian halves of its 128 bits.
pub type EventKey = [u64; 2];

/// Interned event ids have this high half; a parsed hex id with it is interned too.
const ODD_EVENT_HI: u64 = u64::MAX;

#[derive(Default)]
pub struct Keys {
    odd_events: HashMap<String, EventKey>,
    odd_event_names: Vec<String>,
    odd_aggregates: HashMap<String, i64>,
}

impl Keys {
    pub fn event(&mut self, event_id: &str) -> EventKey {
        match parse_hex128(event_id) {
            Some(key) if key[0] != ODD_EVENT_HI => key,
            _ => {
                if let Some(key) = self.odd_events.get(event_id) {
                    return *key;
                }
                let key = [ODD_EVENT_HI, self.odd_event_names.len() as u64];
                self.odd_events.insert(event_id.to_string(), key);
                self.odd_event_names.push(event_id.to_string());
                key
            }
        }
    }

    /// The key of an event id if it was ever seen (parsing alone for hex ids).
    pub fn known_event(&self, event_id: &str) -> Option<EventKey> {
        match parse_hex128(event_id) {
            Some(key) if key[0] != ODD_EVENT_HI => Some(key),
            _ => self.odd_events.get(event_id).copied(),
        }
    }

    pub fn event_name(&self, key: EventKey) -> String {
        if key[0] == ODD_EVENT_HI {
            return self.odd_event_names[key[1] as usize].clone();
        }
        format!("{:016x}{:016x}", key[0], key[1])
    }

    /// Canonical non-negative decimal ids are themselves; anything else gets a negative key.
    pub fn aggregate(&mut self, aggregate_id: &str) -> i64 {
        if let Some(id) = canonical_order_id(aggregate_id) {
            return id;
        }
        if let Some(key) = self.odd_aggregates.get(aggregate_id) {
            return *key;
        }
        let key = -(self.odd_aggregates.len() as i64) - 1;
        self.odd_aggregates.insert(aggregate_id.to_string(), key);
        key
    }

    /// The key of an aggregate id if it was ever seen (parsing alone for canonical ids).
    pub fn known_aggregate(&self, aggregate_id: &str) -> Option<i64> {
        canonical_order_id(aggregate_id).or_else(|| self.odd_aggregates.get(aggregate_id).copied())
    }

    /// The aggregate key of a committed order.
    pub fn order(&mut self, order_id: i64) -> i64 {
        if order_id >= 0 {
            order_id
        } else {
            self.aggregate(&order_id.to_string())
        }
    }
}

fn canonical_order_id(text: &str) -> Option<i64> {
    let ok = !text.is_empty()
        && text.len() <= 19
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if ok { text.parse().ok() } else { None }
}

/// Exactly 32 hex digits (either case) to 128 bits.
fn parse_hex128(text: &str) -> Option<EventKey> {
    if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let hi = u64::from_str_radix(&text[..16], 16).ok()?;
    let lo = u64::from_str_radix(&text[16..], 16).ok()?;
    Some([hi, lo])
}

/// 64-bit FNV-1a: stable across processes and versions (std's hasher is not).
pub fn hash64(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_ids_never_share_a_key_with_hex_ids() {
        let mut keys = Keys::default();
        let hex = "00000000000000ff0000000000000001";
        let upper = "ffffffffffffffff0000000000000000"; // would collide with interned keys
        let k_hex = keys.event(hex);
        let k_odd = keys.event("not-hex");
        let k_upper = keys.event(upper);
        assert_eq!(k_hex, [0xff, 1]);
        assert_ne!(k_odd, k_upper);
        assert_eq!(keys.event_name(k_odd), "not-hex");
        assert_eq!(keys.event_name(k_upper), upper);
        assert_eq!(keys.event("not-hex"), k_odd);
        assert_eq!(keys.aggregate("42"), 42);
        let odd = keys.aggregate("042");
        assert!(odd < 0);
        assert_eq!(keys.known_aggregate("042"), Some(odd));
        assert_eq!(keys.order(-3), keys.aggregate("-3"));
    }
}
