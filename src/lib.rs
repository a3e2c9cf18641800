//! # outbox-lab: the transactional outbox, and a lab that crashes it
//!
//! An order service must publish an `OrderPlaced` event for every order it commits. The
//! database and the event log are two systems; no transaction spans both, so writing to each
//! in turn (a *dual write*) loses events — or invents them — whenever a crash lands between
//! the two writes. This crate shows that happening, then closes the hole.
//!
//! ## The pipeline (what you would reuse in production)
//!
//! ```text
//!  client ─place─▶ order::OrderService ══ one tx ════════▶ orders.db { orders, outbox }
//!                                                              │ outbox::claim_batch
//!                                                              │ (UPDATE … RETURNING lease)
//!                                                              ▼
//!                      relay::Relay ×K ── write + sync_data ──▶ broker: orders.pN.log
//!                           ├── publish the durable end (what consumers may read)
//!                           └── outbox::mark_published (only while the lease is ours)
//!                                                              │ read from offset
//!                                                              ▼
//!                      consumer ══ one SQLite tx per batch (inbox + effect) ══▶ consumer.db
//!                           └── commit the offset afterwards (so redelivery can happen)
//! ```
//!
//! Read it in that order: [`order`] (the business write and its event, in one transaction;
//! [`order::group`] commits the orders already waiting as one group, one fsync for all),
//! [`outbox`] (claiming and marking rows), [`relay`] (the at-least-once copy loop; on
//! PostgreSQL, [`relay::cdc`] reads the outbox's inserts from the WAL instead), [`broker`] (an
//! append-only, CRC-checked file log per partition, with a [`broker::DurableEnd`] per
//! partition: how far a power cut cannot reach), [`consumer`] (exactly-once *effects* from
//! at-least-once *delivery*, via the inbox, a batch per transaction; an event a business rule
//! refuses is parked with its order's later events, [`consumer::parking`]).
//!
//! [`store`] is the seam under the first two: orders and outbox live in SQLite (`orders.db`,
//! the default) or in PostgreSQL ([`store::pg`], `init --postgres URL`: `FOR UPDATE SKIP
//! LOCKED` claims, partitions dropped whole), chosen once at `init` and recorded in the data
//! directory.
//!
//! Shared plumbing: [`datadir`] (where everything lives), [`db`] (SQLite with explicit
//! durability), [`event`] (the record's shape), [`clock`], [`trace`] (`trace.jsonl`),
//! [`wake`] (the doorbell: an idle relay woken by a write to the WAL, a consumer worker by a
//! sync moving its partition's durable end, instead of sleeping out its poll), [`error`], and [`lag`] (how far behind each stage is,
//! read-only, for monitoring).
//!
//! ## The lab (what proves it)
//!
//! [`crashpoint`] is the pipeline's only tie to the lab: named moments where an armed process
//! SIGKILLs itself. [`lab`] holds the checker (`verify`), the crash harness and its simulated
//! power cuts, the seeded crash campaign, the HTML timeline of a run, and the benchmark
//! framework behind `outbox-lab bench`.
//! [`cli`] is the command line, a thin layer over both; it lives in the library so that the
//! examples, which the harness re-executes as its children, speak it too.
//!
//! ## The promises beyond one order
//!
//! - the outbox does not grow forever: [`outbox::cleanup`] removes published rows within a
//!   budget on its share of the write lock, so the order service's p99 does not notice;
//! - the inbox does not either: [`consumer::retention`] sweeps it, refusing a window shorter
//!   than the redelivery horizon, and [`consumer::guard`] catches the very late copy the
//!   sweep let through.
//!
//! ## The promises, and where each is kept
//!
//! | promise | kept by |
//! |---|---|
//! | no order without its event | order row + outbox row in one transaction ([`order::service`]) |
//! | no event without its order | the same transaction: a rollback takes both |
//! | every event reaches the log | the relay retries until marked; leases expire ([`outbox::claim`]); a CDC relay advances its slot only after the sync ([`relay::cdc`]) |
//! | marked ⇒ durable in the log | `sync_data()` before the mark ([`relay`]) |
//! | applied ⇒ durable in the log | consumers read only up to the durable end a sync published ([`broker::DurableEnd`]) |
//! | a power cut damages only what was not synced | writers cut at the first bad byte past the durable end, and stop at damage before it ([`broker::recover`]) |
//! | each effect exactly once | inbox row + effect in one transaction ([`consumer::apply`](mod@consumer::apply)) |
//! | a refused event is neither lost nor retried forever | parked with its reason, its order's later events behind it ([`consumer::parking`]) |
//! | per-order event order | one partition per order; only an order's oldest unpublished event is claimable |

pub mod broker;
pub mod cli;
pub mod clock;
pub mod consumer;
pub mod crashpoint;
pub mod datadir;
pub mod db;
pub mod error;
pub mod event;
pub mod lab;
pub mod lag;
pub mod order;
pub mod outbox;
pub mod relay;
pub mod store;
pub mod trace;
pub mod wake;

pub use error::{Error, Result};
