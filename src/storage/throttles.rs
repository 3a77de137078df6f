//! quota.throttles: one theoretical arrival time per (tenant, key) for `quota.throttle`.

use pgrx::pg_sys::PgBuiltInOids as T;
use pgrx::spi::SpiClient;
use pgrx::prelude::TimestampWithTimeZone;

use super::{run, Stmt};

static FIND: Stmt = Stmt {
    sql: "SELECT tat FROM quota.throttles WHERE tenant = $1 AND key = $2 FOR UPDATE",
    types: &[T::TEXTOID, T::TEXTOID],
};
static CREATE: Stmt = Stmt {
    sql: "INSERT INTO quota.throttles (tenant, key, tat) VALUES ($1, $2, $3) ON CONFLICT (tenant, key) DO NOTHING RETURNING 1",
    types: &[T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID],
};
static SET: Stmt = Stmt {
    sql: "UPDATE quota.throttles SET tat = $3 WHERE tenant = $1 AND key = $2",
    types: &[T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID],
};
static SWEEP: Stmt = Stmt {
    sql: "DELETE FROM quota.throttles WHERE ctid = ANY (ARRAY(SELECT ctid FROM quota.throttles WHERE tat <= $1 LIMIT 10000))",
    types: &[T::TIMESTAMPTZOID],
};

/// The key's state, locked until the transaction ends (None: no row).
pub fn find_throttle(c: &mut SpiClient<'_>, tenant: &str, key: &str) -> Option<i64> {
    let table = run(c, &FIND, &[tenant.into(), key.into()]);
    if table.is_empty() {
        return None;
    }
    table.first().get::<TimestampWithTimeZone>(1).ok().flatten().map(|t| t.into_inner())
}

/// Create the key's row; false when another transaction created it first (then read it
/// again: `find_throttle` waits for that transaction).
pub fn create_throttle(c: &mut SpiClient<'_>, tenant: &str, key: &str, tat: i64) -> bool {
    let tat = TimestampWithTimeZone::try_from(tat).unwrap_or_else(|_| TimestampWithTimeZone::positive_infinity());
    !run(c, &CREATE, &[tenant.into(), key.into(), tat.into()]).is_empty()
}

pub fn set_throttle(c: &mut SpiClient<'_>, tenant: &str, key: &str, tat: i64) {
    let tat = TimestampWithTimeZone::try_from(tat).unwrap_or_else(|_| TimestampWithTimeZone::positive_infinity());
    run(c, &SET, &[tenant.into(), key.into(), tat.into()]);
}

/// Delete up to 10,000 keys whose bucket is full again at `now` (their row says nothing
/// a missing row does not); the number deleted.
pub fn sweep_throttles(c: &mut SpiClient<'_>, now: i64) -> usize {
    let now = TimestampWithTimeZone::try_from(now).unwrap_or_else(|_| TimestampWithTimeZone::positive_infinity());
    run(c, &SWEEP, &[now.into()]).len()
}
