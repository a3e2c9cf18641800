//! A generated workload: orders from a seed, and — with `lifecycle` — payments and shipments
//! of earlier orders interleaved with new ones, so that several events of one order are often
//! unpublished at the same time (which is what makes per-order ordering worth testing).
//!
//! ```text
//!   place o1 · place o2 · pay o1 · place o3 · pay o2 · ship o1 · place o4 · …
//! ```

use serde_json::json;

use crate::error::Result;
use crate::order::lifecycle::Transition;
use crate::order::{PlaceStatus, generate};
use crate::store::OrderStore;

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct WorkloadTotals {
    pub placed: u64,
    pub paid: u64,
    pub shipped: u64,
}

/// What to generate: `count` orders from `seed`, starting at index `first`.
#[derive(Debug, Clone, Copy)]
pub struct Generated {
    pub seed: u64,
    pub first: u64,
    pub count: u64,
    /// Pay and ship earlier orders in between (one order at a time, then).
    pub lifecycle: bool,
    /// Orders per group commit when there is no lifecycle (all of them are waiting).
    pub max_group: usize,
}

/// Place the generated orders; `reply` gets one JSON value per operation, as `place` prints
/// them. Without a lifecycle every order is already waiting, so they go in full groups.
pub fn run_generated(
    service: &mut dyn OrderStore,
    g: &Generated,
    mut reply: impl FnMut(serde_json::Value) -> Result<()>,
) -> Result<WorkloadTotals> {
    assert!(g.max_group >= 1, "a group holds at least one order");
    if !g.lifecycle {
        return run_grouped(service, g, reply);
    }
    let mut rng = fastrand::Rng::with_seed(g.seed ^ 0x006c_6966_6563_7963);
    let mut totals = WorkloadTotals::default();
    let (mut placed, mut paid): (Vec<i64>, Vec<i64>) = (Vec::new(), Vec::new());
    for request in generate(g.seed, g.first, g.count) {
        let outcome = service.place(&request)?;
        reply(serde_json::to_value(&outcome).expect("reply serialises"))?;
        if outcome.status == PlaceStatus::Duplicate {
            continue; // a replayed seed: its lifecycle happened the first time
        }
        totals.placed += 1;
        placed.push(outcome.order_id);
        if rng.u8(..3) > 0 && !placed.is_empty() {
            let order_id = placed.swap_remove(rng.usize(..placed.len()));
            transition(service, order_id, Transition::Pay, &mut reply)?;
            totals.paid += 1;
            paid.push(order_id);
        }
        if rng.bool() && !paid.is_empty() {
            let order_id = paid.swap_remove(rng.usize(..paid.len()));
            transition(service, order_id, Transition::Ship, &mut reply)?;
            totals.shipped += 1;
        }
    }
    Ok(totals)
}

fn run_grouped(
    service: &mut dyn OrderStore,
    g: &Generated,
    mut reply: impl FnMut(serde_json::Value) -> Result<()>,
) -> Result<WorkloadTotals> {
    let mut totals = WorkloadTotals::default();
    for group in generate(g.seed, g.first, g.count).chunks(g.max_group) {
        for outcome in service.place_group(group)? {
            // Generated orders are valid by construction: a refusal is a bug, not input.
            let placed = outcome.map_err(|problem| {
                crate::Error::Input(format!("a generated order was refused: {problem}"))
            })?;
            totals.placed += (placed.status == PlaceStatus::Placed) as u64;
            reply(serde_json::to_value(&placed).expect("reply serialises"))?;
        }
    }
    Ok(totals)
}

fn transition(
    service: &mut dyn OrderStore,
    order_id: i64,
    step: Transition,
    reply: &mut impl FnMut(serde_json::Value) -> Result<()>,
) -> Result<()> {
    let seq = service.transition(order_id, step)?;
    let status = match step {
        Transition::Pay => "paid",
        Transition::Ship => "shipped",
    };
    reply(json!({ "order_id": order_id, "aggregate_seq": seq, "status": status }))
}
