//! The hot path's SQL surface: the trigger that keeps its caches fresh, and what it is
//! doing in the calling backend.

use pgrx::prelude::*;

use crate::hotpath::{status, subject_cache};

/// Statement trigger on quota.subjects and quota.plan_limits (sql/hotpath.sql): every
/// backend forgets the cached rows once this transaction commits (at once for this one).
#[pg_trigger]
fn config_changed<'a>(trigger: &'a PgTrigger<'a>) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgHeapTupleError> {
    let rel = trigger.relation().ok();
    if rel.as_ref().is_some_and(|r| r.name() == "subjects") {
        subject_cache::subjects_changed();
    }
    // SAFETY: inside the trigger's transaction, queues a relcache invalidation of the
    // trigger's table, sent to every backend at commit. `rel` is always there (pgrx's
    // relation() cannot fail); InvalidOid would not mean "every relation" here: the
    // function would raise "cache lookup failed for relation 0".
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(rel.map(|r| r.oid()).unwrap_or(pg_sys::InvalidOid)) };
    Ok(None)
}

/// The calling backend's view of the hot path: the setting, whether checks and consumes
/// may take it now, the table and check that make it step aside (if any), and how many
/// calls each path served in this backend.
#[pg_extern(volatile, parallel_restricted)]
// pgrx reads the column names from the name!(...) in the signature: no alias possible.
#[allow(clippy::type_complexity)]
fn hot_path_status() -> TableIterator<
    'static,
    (
        name!(enabled, bool),
        name!(checks, bool),
        name!(consumes, bool),
        name!(table_name, Option<String>),
        name!(failed_check, Option<String>),
        name!(hot_calls, i64),
        name!(general_calls, i64),
    ),
> {
    let s = status::status();
    let (table, check) = s.aside.map(|a| (Some(a.table), Some(a.check.to_string()))).unwrap_or_default();
    TableIterator::once((s.enabled, s.checks, s.consumes, table, check, s.hot_calls, s.general_calls))
}
