//! The lab: everything that *proves* the pipeline rather than being part of it — the checker,
//! the crash harness, the side-by-side comparison. It imports the pipeline; the pipeline never
//! imports it (its only tie is `crate::crashpoint`, the named places the lab may arm).

pub mod bench;
pub mod bench_pipeline;
pub mod checker;
pub mod claims;
pub mod compare;
pub mod demo;
pub mod harness;
pub mod inbox_bench;
pub mod inbox_demo;
pub mod replicas;
