//! quota_ext: usage quotas enforced inside PostgreSQL.
//!
//! Layout (one module per concept):
//! - pure logic, checked by plain `cargo test`: `period` (window math), `limits` (limit
//!   arithmetic), `bonus` (bonus rules), `decision` (the answer record), `error` (SQLSTATE,
//!   DETAIL and HINT of every user error);
//! - PostgreSQL glue: `gucs` (settings), `clock` (now or the override), `ereport` (raising
//!   errors with custom SQLSTATEs), `store` (every SQL statement, prepared once),
//!   `engine` (the operations), `api` (the thin SQL-facing functions);
//! - the hot path: `fastpath` (the common check and consume without SPI), `heap` (primary-key
//!   probes and direct heap writes), `subject_cache` (subjects' rows in shared memory),
//!   `privilege` (the owner switch of the general path);
//! - tables: `enforce` (quota triggers on application tables), `tokens` (BPE token counts);
//! - operations: `tenancy` (tenant scope), `stats` (shared-memory totals and recent
//!   refusals), `ledger` (append-only guard, retention), `monitor` (their SQL functions);
//! - SQL: `sql/schema.sql` (tables, types), `sql/enforce.sql` (enforced tables),
//!   `sql/events.sql` (outbox), `sql/ledger.sql` (guard, summaries, ledger_check),
//!   `sql/hotpath.sql` (the hot path's cache invalidation), `sql/views.sql` (admin views,
//!   stats), `sql/overloads.sql` (inet forms),
//!   `sql/security.sql` (roles, grants, SECURITY DEFINER, row-level security);
//!   `sql/quota_ext--A--B.sql` upgrade scripts, `sql/quota_ext--A.sql` as released.

use pgrx::prelude::*;

pub mod bonus;
pub mod decision;
pub mod error;
pub mod events;
pub mod limits;
pub mod period;
pub mod stats;
pub mod tenancy;
pub mod tokens;

mod api;
mod clock;
mod enforce;
mod engine;
mod ereport;
mod fastpath;
mod gucs;
mod heap;
mod installed;
mod ledger;
mod monitor;
mod privilege;
mod read_guard;
mod roles;
mod store;
mod subject_cache;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
extension_sql_file!("../sql/enforce.sql", name = "enforce", requires = ["schema"]);
extension_sql_file!("../sql/events.sql", name = "events", requires = ["schema", tenant_visible]);
extension_sql_file!("../sql/ledger.sql", name = "ledger", requires = ["schema", refuse_ledger_change]);
extension_sql_file!("../sql/hotpath.sql", name = "hotpath", requires = ["schema", "enforce", config_changed]);
extension_sql_file!("../sql/tenants.sql", name = "tenants", requires = ["schema", "enforce", config_changed]);
extension_sql_file!("../sql/views.sql", name = "views", requires = ["ledger", quota_clock, recent_refusals, stats_totals]);
extension_sql_file!("../sql/overloads.sql", name = "overloads", requires = ["views"]);
extension_sql_file!("../sql/security.sql", name = "security", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    quiet_backtraces();
    gucs::init();
    read_guard::init();
    stats::init();
    subject_cache::init();
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
