//! quota.throttles: one theoretical arrival time per (tenant, key) for `quota.throttle`.

use pgrx::pg_sys::PgBuiltInOids as T;
use pgrx::prelude::TimestampWithTimeZone;
use pgrx::spi::SpiClient;

use super::{run, Stmt};

// Every statement here names its operators with their schema: `ops::throttle` runs them
// as the owner without pinning search_path (`privilege::as_owner_qualified`).
static READ: Stmt = Stmt {
    sql: "SELECT tat FROM quota.throttles WHERE tenant OPERATOR(pg_catalog.=) $1 AND key OPERATOR(pg_catalog.=) $2",
    types: &[T::TEXTOID, T::TEXTOID],
};
/// The admitted case in one statement: a new key gets `now + increment`; an existing one
/// moves to `max(tat, now) + increment` only if that is at most `tolerance` ahead of now.
/// A row comes back only when the request was admitted; a refused one leaves the row
/// unchanged but locked (ON CONFLICT DO UPDATE locks the row its WHERE clause skips).
static TAKE: Stmt = Stmt {
    sql: "INSERT INTO quota.throttles AS t (tenant, key, tat) VALUES ($1, $2, $3 OPERATOR(pg_catalog.+) $4)
          ON CONFLICT (tenant, key) DO UPDATE SET tat = greatest(t.tat, $3) OPERATOR(pg_catalog.+) $4
          WHERE greatest(t.tat, $3) OPERATOR(pg_catalog.+) $4 OPERATOR(pg_catalog.-) $5 OPERATOR(pg_catalog.<=) $3
          RETURNING tat",
    types: &[T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID, T::INTERVALOID, T::INTERVALOID],
};
static SWEEP: Stmt = Stmt {
    sql: "DELETE FROM quota.throttles t
          USING (SELECT ctid AS row FROM quota.throttles WHERE tat OPERATOR(pg_catalog.<=) $1
                 {v4:AND NOT EXISTS (SELECT 1 FROM quota.tenant_pauses p WHERE p.tenant OPERATOR(pg_catalog.=) throttles.tenant)}
                 FOR UPDATE SKIP LOCKED) s
          WHERE t.ctid OPERATOR(pg_catalog.=) s.row",
    types: &[T::TIMESTAMPTZOID],
};

/// Delete the keys whose bucket is full again at `now` (their row says nothing a missing
/// row does not), in one pass over the table (`tat` is not indexed, so that a call's
/// update stays HOT), joined rather than gathered into an array (memory stays within
/// work_mem). Rows another transaction holds are skipped, never waited for: a sweep cannot
/// deadlock with, or block, an application's calls (a later sweep deletes them). A paused
/// tenant's keys stay: a move copies them and compares their digests before it deletes
/// them here (`ops::pause`).
/// The number deleted.
pub fn sweep_throttles(c: &mut SpiClient<'_>, now: i64) -> usize {
    let now = TimestampWithTimeZone::try_from(now).unwrap_or_else(|_| TimestampWithTimeZone::positive_infinity());
    run(c, &SWEEP, &[now.into()]).len()
}

/// The key's state without locking it (a read, or a request that can never be admitted).
pub fn read_throttle(c: &mut SpiClient<'_>, tenant: &str, key: &str) -> Option<i64> {
    let table = run(c, &READ, &[tenant.into(), key.into()]);
    if table.is_empty() {
        return None;
    }
    table.first().get::<TimestampWithTimeZone>(1).ok().flatten().map(|t| t.into_inner())
}

/// Take `increment_us` if the key's bucket has room within `tolerance_us` of `now`: the new
/// TAT when admitted, None when refused (the row, if any, is then locked).
pub fn take_throttle(c: &mut SpiClient<'_>, tenant: &str, key: &str, now: i64, increment_us: i64, tolerance_us: i64) -> Option<i64> {
    let at = |us: i64| TimestampWithTimeZone::try_from(us).unwrap_or_else(|_| TimestampWithTimeZone::positive_infinity());
    let span = |us: i64| pgrx::datum::Interval::new(0, 0, us).unwrap_or_else(|e| unreachable!("a rate's spans fit an interval: {e:?}"));
    let table = run(c, &TAKE, &[tenant.into(), key.into(), at(now).into(), span(increment_us).into(), span(tolerance_us).into()]);
    if table.is_empty() {
        return None;
    }
    table.first().get::<TimestampWithTimeZone>(1).ok().flatten().map(|t| t.into_inner())
}
