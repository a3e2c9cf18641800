//! The lab: everything that *proves* the pipeline rather than being part of it. It imports the
//! pipeline; the pipeline never imports it (its only tie is `crate::crashpoint`, the named
//! places the lab may arm).
//!
//! - [`checker`]: `verify` — lost, ghost, redelivered, applied twice, out of order, parked;
//! - [`harness`]: real child processes SIGKILLed on a seeded schedule, restarted, drained, in
//!   a run directory [`rundir`] makes sure is the lab's own before wiping it; [`compare`] and
//!   [`demo`] print what the `naive` and `outbox` examples show, and [`timeline`] draws a run
//!   as one HTML page;
//! - [`campaign`]: `outbox-lab campaign`, many seeded crash runs with lifecycle events,
//!   cleanup and the inbox sweep running throughout, a verdict on each;
//! - [`power_campaign`]: many power cuts ([`harness::power`]) across seeds, summed up;
//! - [`replicas`] and [`claims`]: K relays on one outbox, and the claim evidence in the trace;
//! - [`inbox_demo`]: the dedupe window, shown (the `inbox_retention` example);
//! - [`fixture`]: a drained data directory of any size, for measuring the checker at scale;
//! - [`pg_cluster`]: a throwaway PostgreSQL for the `postgres` example and the benchmarks;
//! - [`bench`](mod@bench): the benchmarks behind `outbox-lab bench`, one framework, one report
//!   type; [`bench::pg`] adds `bench postgres …`, each beside its SQLite counterpart.

pub mod bench;
pub mod campaign;
pub mod checker;
pub mod claims;
pub mod compare;
pub mod demo;
pub mod fixture;
pub mod harness;
pub mod inbox_demo;
pub mod pg_cluster;
pub mod power_campaign;
pub mod replicas;
pub mod rundir;
pub mod timeline;
