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

static LIMIT_ONE: Stmt =
    Stmt { sql: "SELECT {plan_limits} FROM quota.plan_limits WHERE plan = $1 AND metric = $2", types: &[T::TEXTOID, T::TEXTOID] };
static LIMIT_ALL: Stmt = Stmt { sql: "SELECT {plan_limits} FROM quota.plan_limits WHERE plan = $1 ORDER BY metric", types: &[T::TEXTOID] };

fn limits_from(table: SpiTupleTable<'_>) -> Result<Vec<(String, Limit)>> {
    table.map(|row| schema::limit(&SpiRow { row: &row })).collect()
}

pub fn limit(c: &mut SpiClient<'_>, plan: &str, metric: &str) -> Result<Option<Limit>> {
    Ok(limits_from(run(c, &LIMIT_ONE, &[plan.into(), metric.into()]))?.pop().map(|(_, l)| l))
}

pub fn all_limits(c: &mut SpiClient<'_>, plan: &str) -> Result<Vec<(String, Limit)>> {
    limits_from(run(c, &LIMIT_ALL, &[plan.into()]))
}

static UPSERT_PLAN: Stmt = Stmt { sql: "INSERT INTO quota.plans (plan) VALUES ($1) ON CONFLICT (plan) DO NOTHING", types: &[T::TEXTOID] };
static UPSERT_LIMIT: Stmt = Stmt {
    sql: "INSERT INTO quota.plan_limits AS l (plan, metric, period, limit_value, enforcement, per_request_max)
          VALUES ($1, $2, $3, $4, $5, $6)
          ON CONFLICT (plan, metric) DO UPDATE SET
              period = EXCLUDED.period, limit_value = EXCLUDED.limit_value,
              enforcement = EXCLUDED.enforcement, per_request_max = EXCLUDED.per_request_max,
              updated_at = now()",
    types: &[T::TEXTOID, T::TEXTOID, T::TEXTOID, T::INT8OID, T::TEXTOID, T::INT8OID],
};
static DELETE_LIMIT: Stmt =
    Stmt { sql: "DELETE FROM quota.plan_limits WHERE plan = $1 AND metric = $2 RETURNING true", types: &[T::TEXTOID, T::TEXTOID] };
static SET_ALERTS: Stmt = Stmt {
    sql: "UPDATE quota.plan_limits SET alert_thresholds = $3, updated_at = now() WHERE plan = $1 AND metric = $2 RETURNING true",
    types: &[T::TEXTOID, T::TEXTOID, T::INT4ARRAYOID],
};

/// Set a limit's alert thresholds; false if the plan has no limit on the metric.
pub fn set_alerts(c: &mut SpiClient<'_>, plan: &str, metric: &str, thresholds: Vec<i32>) -> bool {
    first::<bool>(run(c, &SET_ALERTS, &[plan.into(), metric.into(), thresholds.into()]), 1).unwrap_or(false)
}

static SET_BONUS_CAP: Stmt = Stmt { sql: "UPDATE quota.plans SET bonus_cap_per_day = $2 WHERE plan = $1", types: &[T::TEXTOID, T::INT4OID] };

pub fn ensure_plan(c: &mut SpiClient<'_>, plan: &str) {
    run(c, &UPSERT_PLAN, &[plan.into()]);
}

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
        ],
    );
}

pub fn delete_limit(c: &mut SpiClient<'_>, plan: &str, metric: &str) -> bool {
    first::<bool>(run(c, &DELETE_LIMIT, &[plan.into(), metric.into()]), 1).unwrap_or(false)
}

pub fn set_bonus_cap(c: &mut SpiClient<'_>, plan: &str, per_day: Option<i32>) {
    run(c, &SET_BONUS_CAP, &[plan.into(), per_day.into()]);
}
