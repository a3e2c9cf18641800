//! The lab: everything that *proves* the pipeline rather than being part of it — the checker,
//! the crash harness, benchmarks. It imports the pipeline; the pipeline never imports it (its
//! only tie is `crate::crashpoint`, the named places the lab may arm).

pub mod bench;
pub mod checker;
