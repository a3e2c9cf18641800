//! An order request as a client sends it, and the rules it must pass before anything is
//! written. Every rejection names the field and what is wrong with it.

use serde::{Deserialize, Serialize};

pub const MAX_REQUEST_ID_CHARS: usize = 128;
pub const MAX_CUSTOMER_CHARS: usize = 100;
/// One million dollars: anything above is a typo or an attack, not an order.
pub const MAX_AMOUNT_CENTS: i64 = 100_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    /// The client's idempotency key: a retry with the same id is the same order.
    pub request_id: String,
    pub customer: String,
    pub amount_cents: i64,
}

impl OrderRequest {
    /// Parse one JSON line and validate it.
    pub fn parse(line: &str) -> Result<OrderRequest, String> {
        let request: OrderRequest =
            serde_json::from_str(line).map_err(|e| format!("malformed order JSON: {e}"))?;
        request.validate()?;
        Ok(request)
    }

    pub fn validate(&self) -> Result<(), String> {
        let id = self.request_id.trim();
        if id.is_empty() {
            return Err("request_id is empty".into());
        }
        if self.request_id.chars().count() > MAX_REQUEST_ID_CHARS {
            return Err(format!(
                "request_id is longer than {MAX_REQUEST_ID_CHARS} characters"
            ));
        }
        if self.customer.trim().is_empty() {
            return Err("customer is empty".into());
        }
        if self.customer.chars().count() > MAX_CUSTOMER_CHARS {
            return Err(format!(
                "customer is longer than {MAX_CUSTOMER_CHARS} characters"
            ));
        }
        if self.amount_cents <= 0 {
            return Err(format!(
                "amount_cents must be positive, got {}",
                self.amount_cents
            ));
        }
        if self.amount_cents > MAX_AMOUNT_CENTS {
            return Err(format!(
                "amount_cents {} is above the limit of {MAX_AMOUNT_CENTS}",
                self.amount_cents
            ));
        }
        Ok(())
    }

    /// The `OrderPlaced` payload: the order as placed.
    pub fn payload(&self) -> serde_json::Value {
        serde_json::json!({
            "request_id": self.request_id,
            "customer": self.customer,
            "amount_cents": self.amount_cents,
        })
    }
}

/// `count` orders generated from `seed`: the same seed gives the same orders (and the same
/// request ids, so replaying a seed is a retry, not new business).
pub fn generate(seed: u64, first: u64, count: u64) -> Vec<OrderRequest> {
    const CUSTOMERS: &[&str] = &[
        "ada", "grace", "edsger", "barbara", "ken", "leslie", "margaret", "tony",
    ];
    (first..first + count)
        .map(|i| {
            let mut rng = fastrand::Rng::with_seed(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i);
            OrderRequest {
                request_id: format!("s{seed}-o{i}"),
                customer: CUSTOMERS[rng.usize(..CUSTOMERS.len())].to_string(),
                amount_cents: rng.i64(100..=50_000),
            }
        })
        .collect()
}
