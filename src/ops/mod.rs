//! The operations, one file each. Each loads state through `storage`, decides with the
//! pure rules of `domain` and writes the result; the common check and consume first try
//! `hotpath`. Errors are returned, never raised here, so nothing is left half-done in
//! Rust.
//!
//! Concurrency: every change to a window happens under that window's row lock
//! (`WindowOp::lock`), taken in (metric, period) order, inside the caller's transaction. Usage that
//! rolls back is never counted, and two sessions can never both take the last unit.

pub mod adjust;
pub mod admin;
pub mod args;
pub mod check;
pub mod consume;
pub mod idempotency;
pub mod maintenance;
pub mod metric;
pub mod overrides;
pub mod pause;
pub mod pool;
pub mod reservations;
pub mod schedule;
pub mod subject;
pub mod throttle;
pub mod window;

pub use adjust::{apply_bonus, refund, refund_charge, reset};
pub use admin::*;
pub use args::parse_amounts;
pub use check::{check, status};
pub use consume::{consume, ConsumeRequest};
pub use maintenance::maintenance;
pub use overrides::{remove_override, set_override};
pub use reservations::{commit, release, reserve, Hold, ReserveRequest};
pub use throttle::{throttle, ThrottleRequest};
