//! quota.subjects and quota.tenant_bindings.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use pgrx::pg_sys::{self, PgBuiltInOids as T};
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiTupleTable};

use super::{first, run, schema, ts, SpiRow, Stmt};
use crate::domain::error::Result;
use crate::domain::period::{self, Period, Window};
use crate::domain::schedule::Carry;
use crate::domain::tenancy::Scope;
use crate::pg::clock;

#[derive(Clone, Debug)]
pub struct Subject {
    pub id: String,
    /// The plan in force (see `in_force`).
    pub plan: String,
    pub tenant: Option<String>,
    pub anchor: DateTime<Utc>,
    pub tz: Tz,
    /// False for a subject evaluated on the default plan without being stored.
    pub stored: bool,
    /// A scheduled plan change not yet in force.
    pub next: Option<NextPlan>,
    /// A change in force but not yet stored whose window usage carries the percentage:
    /// the plan it replaced and when. Reads scale that window's usage as the first
    /// writer will store it (`ops::schedule`).
    pub carried_from: Option<(String, DateTime<Utc>)>,
    /// The pool it belongs to (itself a subject), if any.
    pub pool: Option<String>,
}

/// A scheduled plan change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextPlan {
    pub plan: String,
    pub at: DateTime<Utc>,
    pub carry: Carry,
}

impl Subject {
    /// The subject as of `now`: a scheduled change whose instant has come is in force
    /// (computed, whether stored yet or not).
    pub fn in_force(mut self, now: DateTime<Utc>) -> Subject {
        if let Some(next) = self.next.take() {
            if next.at <= now {
                let old = std::mem::replace(&mut self.plan, next.plan);
                self.carried_from = (next.carry == Carry::Percent).then_some((old, next.at));
            } else {
                self.next = Some(next);
            }
        }
        self
    }

    pub fn window(&self, period: Period, now: DateTime<Utc>) -> Window {
        period::window_for(period, now, self.tz, self.anchor)
    }
    pub fn local_day(&self, now: DateTime<Utc>) -> NaiveDate {
        now.with_timezone(&self.tz).date_naive()
    }
}

static FIND_SUBJECT: Stmt = Stmt { sql: "SELECT {subjects} FROM quota.subjects WHERE subject = $1", types: &[T::TEXTOID] };
static LOCK_SUBJECT: Stmt = Stmt { sql: "SELECT {subjects} FROM quota.subjects WHERE subject = $1 FOR NO KEY UPDATE", types: &[T::TEXTOID] };

impl Subject {
    /// A stored subject from its decoded row.
    pub fn stored(id: &str, row: schema::SubjectRow) -> Subject {
        Subject {
            id: id.to_string(),
            plan: row.plan,
            tenant: row.tenant,
            anchor: clock::from_pg(row.anchor),
            tz: row.tz,
            stored: true,
            next: row.next.map(|n| NextPlan { plan: n.plan, at: clock::from_pg(n.at), carry: n.carry }),
            carried_from: None,
            pool: row.pool,
        }
    }
}

fn subject_from(table: SpiTupleTable<'_>, id: &str) -> Result<Option<Subject>> {
    let Some(row) = table.into_iter().next() else { return Ok(None) };
    Ok(Some(Subject::stored(id, schema::subject(&SpiRow { row: &row })?)))
}

pub fn find_subject(c: &mut SpiClient<'_>, id: &str) -> Result<Option<Subject>> {
    subject_from(run(c, &FIND_SUBJECT, &[id.into()]), id)
}

/// Read the subject and take a row lock that serialises bonus grants for it.
pub fn lock_subject(c: &mut SpiClient<'_>, id: &str) -> Result<Option<Subject>> {
    subject_from(run(c, &LOCK_SUBJECT, &[id.into()]), id)
}

static INSERT_SUBJECT: Stmt = Stmt {
    sql: "INSERT INTO quota.subjects (subject, plan, cycle_anchor, tenant) VALUES ($1, $2, $3, $4) ON CONFLICT (subject) DO NOTHING",
    types: &[T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID, T::TEXTOID],
};

/// Create a subject on `plan` unless it exists (a concurrent creator wins quietly).
pub fn insert_subject(c: &mut SpiClient<'_>, id: &str, plan: &str, tenant: Option<&str>, anchor: DateTime<Utc>) {
    run(c, &INSERT_SUBJECT, &[id.into(), plan.into(), ts(anchor), tenant.into()]);
}

// An assignment in force now also cancels a scheduled change.
static UPSERT_SUBJECT: Stmt = Stmt {
    sql: "INSERT INTO quota.subjects AS s (subject, plan, tenant, cycle_anchor, time_zone)
          VALUES ($1, $2, $3, coalesce($4, $6), coalesce($5, 'UTC'))
          ON CONFLICT (subject) DO UPDATE SET
              plan = EXCLUDED.plan,{v2:
              next_plan = NULL, next_plan_at = NULL, carry = NULL,}
              tenant = coalesce($3, s.tenant),
              cycle_anchor = coalesce($4, s.cycle_anchor),
              time_zone = coalesce($5, s.time_zone)
          WHERE $7 OR s.tenant IS NOT DISTINCT FROM $3
          RETURNING 1",
    types: &[T::TEXTOID, T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID, T::TEXTOID, T::TIMESTAMPTZOID, T::BOOLOID],
};

/// A subject's plan assignment, as `UPSERT_SUBJECT` stores it: a `None` tenant, anchor or
/// zone keeps the stored one (a new subject: no tenant, `now`, UTC).
pub struct Assignment<'a> {
    pub id: &'a str,
    pub plan: &'a str,
    pub tenant: Option<&'a str>,
    pub anchor: Option<DateTime<Utc>>,
    pub zone: Option<&'a str>,
}

pub fn upsert_subject(c: &mut SpiClient<'_>, a: &Assignment<'_>, now: DateTime<Utc>, scope: &Scope) -> bool {
    let args = [a.id.into(), a.plan.into(), a.tenant.into(), a.anchor.map(clock::to_pg_tz).into(), a.zone.into(), ts(now), scope.params().0.into()];
    !run(c, &UPSERT_SUBJECT, &args).is_empty()
}

static SCHEDULE_PLAN: Stmt = Stmt {
    sql: "UPDATE quota.subjects SET next_plan = $2, next_plan_at = $3, carry = $4 WHERE subject = $1",
    types: &[T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID, T::TEXTOID],
};
static CANCEL_CHANGE: Stmt = Stmt {
    sql: "UPDATE quota.subjects SET next_plan = NULL, next_plan_at = NULL, carry = NULL
          WHERE subject = $1 AND next_plan IS NOT NULL RETURNING true",
    types: &[T::TEXTOID],
};
static STORE_CHANGE: Stmt = Stmt {
    sql: "UPDATE quota.subjects SET plan = next_plan, next_plan = NULL, next_plan_at = NULL, carry = NULL
          WHERE subject = $1 AND next_plan_at <= $2",
    types: &[T::TEXTOID, T::TIMESTAMPTZOID],
};

/// Schedule (or replace the schedule of) a plan change of a stored subject.
pub fn schedule_plan(c: &mut SpiClient<'_>, id: &str, next: &NextPlan) {
    run(c, &SCHEDULE_PLAN, &[id.into(), next.plan.as_str().into(), ts(next.at), next.carry.as_str().into()]);
}

/// Cancel a subject's scheduled change; whether there was one.
pub fn cancel_plan_change(c: &mut SpiClient<'_>, id: &str) -> bool {
    first::<bool>(run(c, &CANCEL_CHANGE, &[id.into()]), 1).unwrap_or(false)
}

/// Store a scheduled change whose instant has come (the subject's row is locked).
pub fn store_plan_change(c: &mut SpiClient<'_>, id: &str, now: DateTime<Utc>) {
    run(c, &STORE_CHANGE, &[id.into(), ts(now)]);
}

static DELETE_SUBJECT: Stmt = Stmt { sql: "DELETE FROM quota.subjects WHERE subject = $1 RETURNING true", types: &[T::TEXTOID] };

/// Delete a subject (its state goes with it, see sql/tenants.sql); false if it was gone.
pub fn delete_subject(c: &mut SpiClient<'_>, id: &str) -> bool {
    first::<bool>(run(c, &DELETE_SUBJECT, &[id.into()]), 1).unwrap_or(false)
}

/// Is this over-long name already stored (from before the length bounds)? Only asked
/// for names over their bound, so it is off every common path.
pub fn name_is_stored(argument: &str, value: &str) -> bool {
    let sql = match argument {
        "subject" => "SELECT true FROM quota.subjects WHERE subject = $1",
        "metric" => "SELECT true FROM quota.plan_limits WHERE metric = $1 LIMIT 1",
        "plan" => "SELECT true FROM quota.plans WHERE plan = $1",
        "tenant" | "quota.tenant" => "SELECT true FROM quota.subjects WHERE tenant = $1 LIMIT 1",
        _ => return false,
    };
    crate::pg::privilege::as_owner(|| Spi::connect(|c| c.select(sql, Some(1), &[value.into()]).map(|t| !t.is_empty()).unwrap_or(false)))
}

// Tenant bindings ---------------------------------------------------------------------

/// Bindings stored under this name for another role of this cluster (renamed since, or
/// dropped) move to that role's current name, or go with the dropped role; then the
/// binding is stored. So binding a new role of an old name never hands it the old role's
/// tenants, and never frees the old role.
static REHOME_BINDINGS: Stmt = Stmt {
    sql: "WITH stale AS (
              DELETE FROM quota.tenant_bindings b
              WHERE b.role_name = $1 AND b.role_cluster = $3 AND b.role_oid IS DISTINCT FROM $2
              RETURNING b.tenant, b.role_oid, b.role_cluster, b.created_at)
          INSERT INTO quota.tenant_bindings (role_name, tenant, role_oid, role_cluster, created_at)
          SELECT r.rolname::text, s.tenant, s.role_oid, s.role_cluster, s.created_at
          FROM stale s JOIN pg_catalog.pg_roles r ON r.oid = s.role_oid
          ON CONFLICT (role_name, tenant) DO NOTHING",
    types: &[T::TEXTOID, T::OIDOID, T::TEXTOID],
};
static BIND_TENANT: Stmt = Stmt {
    sql: "INSERT INTO quota.tenant_bindings (role_name, tenant, role_oid, role_cluster) VALUES ($1, $2, $3, $4)
          ON CONFLICT (role_name, tenant) DO UPDATE SET role_oid = EXCLUDED.role_oid, role_cluster = EXCLUDED.role_cluster",
    types: &[T::TEXTOID, T::TEXTOID, T::OIDOID, T::TEXTOID],
};
static UNBIND_TENANT: Stmt = Stmt {
    sql: "WITH d AS (DELETE FROM quota.tenant_bindings WHERE role_name = $1 AND ($2::text IS NULL OR tenant = $2) RETURNING 1)
          SELECT count(*)::int4 FROM d",
    types: &[T::TEXTOID, T::TEXTOID],
};

pub fn bind_tenant(c: &mut SpiClient<'_>, role: &str, role_oid: pg_sys::Oid, tenant: &str) {
    let cluster = crate::pg::roles::this_cluster();
    run(c, &REHOME_BINDINGS, &[role.into(), role_oid.into(), cluster.as_str().into()]);
    run(c, &BIND_TENANT, &[role.into(), tenant.into(), role_oid.into(), cluster.as_str().into()]);
}

pub fn unbind_tenant(c: &mut SpiClient<'_>, role: &str, tenant: Option<&str>) -> i32 {
    first::<i32>(run(c, &UNBIND_TENANT, &[role.into(), tenant.into()]), 1).unwrap_or(0)
}

// Pools (0.8.0) -----------------------------------------------------------------------

/// Membership changes one at a time (the cycle and depth checks read other rows). A
/// transaction-level advisory lock keyed by quota.subjects' oid and 8.
static LOCK_MEMBERSHIP: Stmt =
    Stmt { sql: "SELECT pg_catalog.pg_advisory_xact_lock('quota.subjects'::pg_catalog.regclass::pg_catalog.oid::int4, 8)", types: &[] };
static SET_POOL: Stmt = Stmt { sql: "UPDATE quota.subjects SET pool = $2 WHERE subject = $1", types: &[T::TEXTOID, T::TEXTOID] };
/// How many levels of members hang below the subject (0: none), counted up to 8.
static LEVELS_BELOW: Stmt = Stmt {
    sql: "WITH RECURSIVE below (subject, depth) AS (
              SELECT subject, 1 FROM quota.subjects WHERE pool = $1
              UNION ALL
              SELECT s.subject, b.depth + 1 FROM quota.subjects s JOIN below b ON s.pool = b.subject WHERE b.depth < 8)
          SELECT coalesce(max(depth), 0)::int4 FROM below",
    types: &[T::TEXTOID],
};
static POOL_IS_SHARED: Stmt =
    Stmt { sql: "SELECT count(*) >= 2 FROM (SELECT 1 FROM quota.subjects WHERE pool = $1 LIMIT 2) m", types: &[T::TEXTOID] };
static MEMBER_COUNT: Stmt = Stmt { sql: "SELECT count(*)::int8 FROM quota.subjects WHERE pool = $1", types: &[T::TEXTOID] };

/// Take the lock that serialises membership changes.
pub fn lock_membership(c: &mut SpiClient<'_>) {
    run(c, &LOCK_MEMBERSHIP, &[]);
}

/// Set (or, with None, clear) a subject's pool.
pub fn set_pool(c: &mut SpiClient<'_>, id: &str, pool: Option<&str>) {
    run(c, &SET_POOL, &[id.into(), pool.into()]);
}

/// How many levels of members hang below the subject.
pub fn levels_below(c: &mut SpiClient<'_>, id: &str) -> usize {
    first::<i32>(run(c, &LEVELS_BELOW, &[id.into()]), 1).unwrap_or(0).max(0) as usize
}

/// How many members the subject has (as a pool).
pub fn member_count(c: &mut SpiClient<'_>, id: &str) -> i64 {
    first::<i64>(run(c, &MEMBER_COUNT, &[id.into()]), 1).unwrap_or(0)
}

/// Whether the pool has two members or more (its windows are then drawn in slices).
pub fn pool_is_shared(c: &mut SpiClient<'_>, pool: &str) -> bool {
    first::<bool>(run(c, &POOL_IS_SHARED, &[pool.into()]), 1).unwrap_or(false)
}
