//! quota.plans and quota.plan_limits.

use pgrx::pg_sys::PgBuiltInOids as T;
use pgrx::spi::{SpiClient, SpiTupleTable};

use super::{first, run, schema, SpiRow, Stmt};
use crate::domain::error::Result;
use crate::domain::limits::Limit;

static FIND_PLAN: Stmt = Stmt { sql: "SELECT bonus_cap_per_day FROM quota.plans WHERE plan = $1", types: &[T::TEXTOID] };
static PLAN_EXISTS: Stmt = Stmt { sql: "SELECT true FROM quota.plans WHERE plan = $1", types: &[T::TEXTOID] };

/// `None` if the plan does not exist, else its daily bonus cap (which may be unset).
pub fn plan_bonus_cap(c: &mut SpiClient<'_>, plan: &str) -> Option<Option<i32>> {
    first::<bool>(run(c, &PLAN_EXISTS, &[plan.into()]), 1)?;
    Some(first::<i32>(run(c, &FIND_PLAN, &[plan.into()]), 1))
}

static LIMITS_OF: Stmt = Stmt {
    sql: "SELECT {plan_limits} FROM quota.plan_limits WHERE plan = $1 AND metric = $2 ORDER BY period COLLATE \"C\"",
    types: &[T::TEXTOID, T::TEXTOID],
};
static LIMIT_ALL: Stmt = Stmt {
    sql: "SELECT {plan_limits} FROM quota.plan_limits WHERE plan = $1 ORDER BY metric COLLATE \"C\", period COLLATE \"C\"",
    types: &[T::TEXTOID],
};

fn limits_from(table: SpiTupleTable<'_>) -> Result<Vec<(String, Limit)>> {
    table.map(|row| schema::limit(&SpiRow { row: &row })).collect()
}

/// Every limit of the plan on the metric, in period order (the lock order: byte order,
/// whatever the database's collation, as Rust sorts); empty if none.
pub fn limits(c: &mut SpiClient<'_>, plan: &str, metric: &str) -> Result<Vec<Limit>> {
    Ok(limits_from(run(c, &LIMITS_OF, &[plan.into(), metric.into()]))?.into_iter().map(|(_, l)| l).collect())
}

/// Every limit of the plan, ordered by metric and period.
pub fn all_limits(c: &mut SpiClient<'_>, plan: &str) -> Result<Vec<(String, Limit)>> {
    limits_from(run(c, &LIMIT_ALL, &[plan.into()]))
}

static UPSERT_PLAN: Stmt = Stmt { sql: "INSERT INTO quota.plans (plan) VALUES ($1) ON CONFLICT (plan) DO NOTHING", types: &[T::TEXTOID] };
// Before limits v2 the key is (plan, metric), and set_limit changes the period.
static UPSERT_LIMIT: Stmt = Stmt {
    sql: "INSERT INTO quota.plan_limits AS l (plan, metric, period, limit_value, enforcement, per_request_max{v2:, burst})
          VALUES ($1, $2, $3, $4, $5, $6{v2:, $7})
          ON CONFLICT (plan, metric{v2:, period}) DO UPDATE SET
              {v1:period = EXCLUDED.period, }limit_value = EXCLUDED.limit_value,
              enforcement = EXCLUDED.enforcement, per_request_max = EXCLUDED.per_request_max,
              {v2:burst = EXCLUDED.burst, }updated_at = now()",
    types: &[T::TEXTOID, T::TEXTOID, T::TEXTOID, T::INT8OID, T::TEXTOID, T::INT8OID, T::INT8OID],
};
/// The per-request cap belongs to the metric: every window of it has the same.
static SET_REQUEST_CAP: Stmt = Stmt {
    sql: "UPDATE quota.plan_limits SET per_request_max = $3, updated_at = now()
          WHERE plan = $1 AND metric = $2 AND per_request_max IS DISTINCT FROM $3",
    types: &[T::TEXTOID, T::TEXTOID, T::INT8OID],
};
static DELETE_LIMIT: Stmt = Stmt {
    sql: "DELETE FROM quota.plan_limits WHERE plan = $1 AND metric = $2 AND ($3::text IS NULL OR period = $3) RETURNING period",
    types: &[T::TEXTOID, T::TEXTOID, T::TEXTOID],
};
static SET_ALERTS: Stmt = Stmt {
    sql: "UPDATE quota.plan_limits SET alert_thresholds = $3, updated_at = now()
          WHERE plan = $1 AND metric = $2 AND ($4::text IS NULL OR period = $4) RETURNING true",
    types: &[T::TEXTOID, T::TEXTOID, T::INT4ARRAYOID, T::TEXTOID],
};

/// Set the alert thresholds of the metric's limit for `period` (every window of the
/// metric for None); false if the plan has no such limit.
pub fn set_alerts(c: &mut SpiClient<'_>, plan: &str, metric: &str, thresholds: Vec<i32>, period: Option<&str>) -> bool {
    first::<bool>(run(c, &SET_ALERTS, &[plan.into(), metric.into(), thresholds.into(), period.into()]), 1).unwrap_or(false)
}

static SET_BONUS_CAP: Stmt = Stmt { sql: "UPDATE quota.plans SET bonus_cap_per_day = $2 WHERE plan = $1", types: &[T::TEXTOID, T::INT4OID] };

pub fn ensure_plan(c: &mut SpiClient<'_>, plan: &str) {
    run(c, &UPSERT_PLAN, &[plan.into()]);
}

/// Add or replace the plan's limit on the metric for the limit's period, and set the
/// metric's per-request cap on every window of it.
pub fn upsert_limit(c: &mut SpiClient<'_>, plan: &str, metric: &str, limit: &Limit) {
    run(
        c,
        &UPSERT_LIMIT,
        &[
            plan.into(),
            metric.into(),
            limit.period.as_str().into(),
            limit.limit_value.into(),
            limit.enforcement.as_str().into(),
            limit.per_request_max.into(),
            matches!(limit.period, crate::domain::period::Period::Rate(_)).then_some(limit.burst).into(),
        ],
    );
    run(c, &SET_REQUEST_CAP, &[plan.into(), metric.into(), limit.per_request_max.into()]);
}

/// Remove the metric's limit for `period` (every window of it for None); the periods
/// removed.
pub fn delete_limit(c: &mut SpiClient<'_>, plan: &str, metric: &str, period: Option<&str>) -> Vec<String> {
    run(c, &DELETE_LIMIT, &[plan.into(), metric.into(), period.into()]).filter_map(|row| row.get::<String>(1).ok().flatten()).collect()
}

pub fn set_bonus_cap(c: &mut SpiClient<'_>, plan: &str, per_day: Option<i32>) {
    run(c, &SET_BONUS_CAP, &[plan.into(), per_day.into()]);
}
