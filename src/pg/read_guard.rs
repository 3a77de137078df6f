//! The read guard: a session bound to tenants (see `tenancy`) that names another tenant in
//! `quota.tenant` is refused with 42501 as soon as a query on any relation of schema
//! quota starts, before a single row is read.
//!
//! Row-level security alone refuses only when a row reaches the policy, so the difference
//! between an error and an empty answer would tell a bound role whether another tenant's
//! row matches its WHERE clause (which subjects exist, and their usage by bisection).
//! PostgreSQL never hoists a policy's row-independent condition above the scan, so the
//! check runs here, in `ExecutorStart`, where the query's relations are known.
//!
//! The quota functions apply the same rule themselves (`tenancy::current`); the
//! policies (`quota.tenant_visible`) remain, for sessions where the library is not loaded
//! yet (without `shared_preload_libraries`, until its first function call).

use pgrx::pg_sys;
use pgrx::PgList;
use std::cell::Cell;

static mut PREVIOUS: pg_sys::ExecutorStart_hook_type = None;

thread_local! {
    /// Set while the guard itself runs queries (loading bindings), which it lets through.
    static CHECKING: Cell<bool> = const { Cell::new(false) };
}

/// Install the hook (from `_PG_init`), keeping any hook installed before.
pub fn init() {
    // SAFETY: hooks are installed once per process, while the library loads.
    unsafe {
        PREVIOUS = pg_sys::ExecutorStart_hook;
        pg_sys::ExecutorStart_hook = Some(executor_start);
    }
}

#[pgrx::pg_guard]
// SAFETY: PostgreSQL calls the hook with the QueryDesc it is about to start, valid for
// the call; #[pg_guard] turns a Rust panic into an ERROR at this boundary.
unsafe extern "C-unwind" fn executor_start(query: *mut pg_sys::QueryDesc, eflags: std::ffi::c_int) {
    // A parallel worker runs what its leader already checked.
    // SAFETY: reads a backend-global integer, set once at worker start.
    let worker = unsafe { pg_sys::ParallelWorkerNumber } >= 0;
    // SAFETY: `query` is the executor's QueryDesc (see above).
    if !worker && !CHECKING.with(|c| c.get()) && unsafe { reads_quota_relations(query) } {
        check();
    }
    // SAFETY: chaining to the previous hook or the standard executor, as PostgreSQL does.
    unsafe {
        match PREVIOUS {
            Some(previous) => previous(query, eflags),
            None => pg_sys::standard_ExecutorStart(query, eflags),
        }
    }
}

/// Refuse (42501) a bound session that names another tenant.
fn check() {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            CHECKING.with(|c| c.set(false));
        }
    }
    CHECKING.with(|c| c.set(true));
    let decided = {
        let _reset = Reset;
        // A database with a schema named quota but without the extension is not ours.
        if crate::pg::installed::version().is_none() {
            return;
        }
        crate::pg::roles::scope()
    };
    if let Err(e) = decided {
        // Raised with its own SQLSTATE (42501, or 22023 for an over-long tenant).
        crate::pg::ereport::raise(e);
    }
}

/// Does the query's range table name a relation of schema quota?
///
/// # Safety
/// `query` is the executor's QueryDesc, with its planned statement.
unsafe fn reads_quota_relations(query: *mut pg_sys::QueryDesc) -> bool {
    // SAFETY: the caller's guarantee; the planned statement's range table is a List of
    // RangeTblEntry (NIL for none), alive as long as the statement. The catalog lookups
    // (schema by name, missing_ok; a relation's namespace by oid, InvalidOid if gone)
    // run inside the query's transaction.
    unsafe {
        if query.is_null() || (*query).plannedstmt.is_null() {
            return false;
        }
        let rtable = PgList::<pg_sys::RangeTblEntry>::from_pg((*(*query).plannedstmt).rtable);
        let mut quota = None;
        for rte in rtable.iter_ptr() {
            // A table, or a view: from PostgreSQL 16 on a view stays in the planned range
            // table only as a subquery that keeps the view's relid (15 also kept it as a
            // relation). A view over functions alone (quota.stats) has nothing else.
            let names_relation = match (*rte).rtekind {
                pg_sys::RTEKind::RTE_RELATION => true,
                pg_sys::RTEKind::RTE_SUBQUERY => (*rte).relid != pg_sys::InvalidOid,
                _ => false,
            };
            if !names_relation {
                continue;
            }
            let nsp = *quota.get_or_insert_with(|| pg_sys::get_namespace_oid(c"quota".as_ptr(), true));
            if nsp == pg_sys::InvalidOid {
                return false;
            }
            if pg_sys::get_rel_namespace((*rte).relid) == nsp {
                return true;
            }
        }
        false
    }
}
