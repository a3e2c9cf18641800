//! outbox-lab (tour written below once the pipeline stands).

pub mod broker;
pub mod clock;
pub mod crashpoint;
pub mod error;
pub mod event;
pub mod trace;

pub use error::{Error, Result};
