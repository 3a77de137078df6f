//! The rules of quotas as plain Rust: no PostgreSQL here, so `cargo test --lib` checks
//! all of it without a server.

pub mod bonus;
pub mod decision;
pub mod error;
pub mod events;
pub mod limits;
pub mod multi;
pub mod overrides;
pub mod pause;
pub mod period;
pub mod pools;
pub mod rate;
pub mod rolling;
pub mod schedule;
pub mod tenancy;
pub mod tokens;
