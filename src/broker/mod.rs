//! The broker: placeholder.
