//! quota_ext: usage quotas enforced inside PostgreSQL.
//!
//! Where things live (docs/architecture.md has the whole picture):
//! - `domain/`: the rules, as plain Rust without PostgreSQL (windows, limits, decisions,
//!   bonus rules, events, tenancy rules, token counts, error payloads); `cargo test --lib`.
//! - `ops/`: the operations (check, consume, reservations, refunds, admin...), one file
//!   each, on the general path (SPI through `storage`), trying `hotpath` first.
//! - `api/`: the SQL surface: every `#[pg_extern]` and trigger function, thin.
//! - `storage/`: the general path's statements, prepared once, and the description of
//!   each state table that both paths share (`storage::schema`).
//! - `hotpath/`: the common check and consume without SPI: table resolution and
//!   eligibility, the per-backend and shared caches, heap access.
//! - `enforce/`: quotas on application tables (triggers, row charges, partition moves).
//! - `pg/`: other PostgreSQL glue: settings, clock, raising errors, privilege switch,
//!   shared-memory stats, installed version, session roles, the read guard.
//! - SQL lives in `sql/`; released scripts in `sql/released/`.

#![warn(clippy::undocumented_unsafe_blocks)]

use pgrx::prelude::*;

mod api;
pub mod domain;
mod enforce;
mod hotpath;
mod ops;
mod pg;
mod storage;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
extension_sql_file!("../sql/enforce.sql", name = "enforce", requires = ["schema"]);
extension_sql_file!("../sql/events.sql", name = "events", requires = ["schema", tenant_visible]);
extension_sql_file!("../sql/pools.sql", name = "pools", requires = ["schema"]);
extension_sql_file!("../sql/ledger.sql", name = "ledger", requires = ["schema", "pools", refuse_ledger_change]);
extension_sql_file!("../sql/hotpath.sql", name = "hotpath", requires = ["schema", "enforce", config_changed]);
extension_sql_file!("../sql/tenants.sql", name = "tenants", requires = ["schema", "enforce", config_changed]);
extension_sql_file!("../sql/views.sql", name = "views", requires = ["ledger", "overrides", quota_clock, recent_refusals, stats_totals]);
extension_sql_file!("../sql/overloads.sql", name = "overloads", requires = ["views"]);
extension_sql_file!("../sql/throttle.sql", name = "throttle", requires = ["schema"]);
extension_sql_file!("../sql/overrides.sql", name = "overrides", requires = ["schema", config_changed]);
// Node entry points for the scale-out router (issue 19): plpgsql wrappers, checked when
// called, so they need only the types, tables and views they name.
extension_sql_file!("../sql/roles.sql", name = "roles", requires = ["schema"]);
extension_sql_file!("../sql/node.sql", name = "node", requires = ["roles", "views", "overloads", "tenants", "throttle", "overrides", "pools"]);
extension_sql_file!("../sql/pause.sql", name = "pause", requires = ["schema", config_changed, tenant_visible]);
// Tenant moves between scale-out nodes (issue 19): export, import, delete, invariants.
extension_sql_file!("../sql/move.sql", name = "move", requires = ["views", "throttle", "enforce", "overrides", "pools", "ledger", "pause"]);
extension_sql_file!("../sql/security.sql", name = "security", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    quiet_backtraces();
    pg::gucs::init();
    pg::read_guard::init();
    pg::stats::init();
    hotpath::subject_cache::init();
}

#[cfg(feature = "pg_test")]
#[pg_schema]
mod tests {
    include!("../tests/pg/in_backend.rs");
}

/// Rust backtraces never reach a client or the server log. pgrx attaches one to every
/// PostgreSQL error that passes through Rust code (a lock timeout or deadlock inside a
/// quota function, say) when `RUST_BACKTRACE` or `RUST_LIB_BACKTRACE` is set in the
/// server's environment. The standard library reads the setting once, at its first
/// capture, so turning it off here, before any, is enough; in the postmaster (preload)
/// this also covers every backend it starts.
fn quiet_backtraces() {
    // Called from _PG_init, before this library starts any thread.
    std::env::remove_var("RUST_BACKTRACE");
    std::env::set_var("RUST_LIB_BACKTRACE", "0");
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'quota_ext'"]
    }
}
