//! The order service: the business write, and the three ways to publish its event.
//!
//! ```text
//!   outbox               BEGIN; INSERT order; INSERT outbox row; COMMIT     -> relay ships it
//!   naive                BEGIN; INSERT order; COMMIT; append event          (crash between: LOST)
//!   naive-publish-first  BEGIN; INSERT order; append event; COMMIT          (crash between: GHOST)
//! ```
//!
//! Only the first is correct. It also commits the orders that arrive together as one group
//! ([`group`]): one fsync for all of them, each still all-or-nothing with its event. The naive modes exist so the lab can show, with real crashes,
//! what each ordering of a dual write gets wrong.

pub mod group;
pub mod input;
pub mod lifecycle;
pub mod naive;
pub mod service;
pub mod workload;

pub use input::{OrderRequest, generate};
pub use service::{Mode, OrderService, PlaceStatus, Placed};
