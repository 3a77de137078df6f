//! PostgreSQL glue that is neither an operation nor the hot path.

pub mod catalog;
pub mod clock;
pub mod ereport;
pub mod gucs;
pub mod installed;
pub mod invalidation;
pub mod privilege;
pub mod read_guard;
pub mod roles;
pub mod stats;
pub mod subtransaction;
pub mod xact_wait;
