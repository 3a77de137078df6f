//! The operations.

pub mod engine;
