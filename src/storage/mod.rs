//! The storage layer: every SQL statement the engine runs, prepared once per backend and
//! kept (SPI keep-plan), with every value bound as a parameter.
//!
//! Functions here take an open `SpiClient` and do exactly one statement each; the engine
//! decides the order (and so the lock order). SPI failures other than PostgreSQL errors
//! cannot happen with these fixed statements, so they are treated as bugs.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::{self, PgBuiltInOids as T};
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiTupleTable};
use pgrx::PgOid;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::bonus::{ReferenceScope, Rule};
use crate::clock;
use crate::limits::{Enforcement, Limit, Usage};
use crate::period::{self, Period, Window};
use crate::tenancy::Scope;

/// A jsonb argument passed through untouched (metadata is stored exactly as given).
pub struct RawJsonb(pub pg_sys::Datum);

impl FromDatum for RawJsonb {
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _: pg_sys::Oid) -> Option<Self> {
        if is_null {
            None
        } else {
            Some(RawJsonb(datum))
        }
    }
}
impl IntoDatum for RawJsonb {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(self.0)
    }
    fn type_oid() -> pg_sys::Oid {
        pg_sys::JSONBOID
    }
}
unsafe impl<'fcx> pgrx::callconv::ArgAbi<'fcx> for RawJsonb {
    unsafe fn unbox_arg_unchecked(arg: pgrx::callconv::Arg<'_, 'fcx>) -> Self {
        unsafe { arg.unbox_arg_using_from_datum().expect("strict argument is not null") }
    }
}
pgrx::impl_sql_translatable!(RawJsonb, "jsonb");

/// A value of any type passed through as it is, for statements whose parameter types
/// are only known at run time (the caller gives each one's type oid).
pub struct RawDatum(pub pg_sys::Datum);

impl IntoDatum for RawDatum {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(self.0)
    }
    fn type_oid() -> pg_sys::Oid {
        pg_sys::InvalidOid
    }
}

/// A statement: a name for the plan cache, its text and its parameter types.
pub struct Stmt {
    pub sql: &'static str,
    pub types: &'static [T],
}

thread_local! {
    static PLANS: RefCell<HashMap<*const Stmt, Rc<OwnedPreparedStatement>>> = RefCell::new(HashMap::new());
}

/// Run `stmt` with `args`, preparing and keeping its plan on first use in this backend.
pub fn run<'c>(client: &mut SpiClient<'c>, stmt: &'static Stmt, args: &[DatumWithOid<'_>]) -> SpiTupleTable<'c> {
    let key = stmt as *const Stmt;
    let plan = PLANS.with(|p| p.borrow().get(&key).cloned());
    let plan = match plan {
        Some(plan) => plan,
        None => {
            let types: Vec<PgOid> = stmt.types.iter().map(|t| PgOid::BuiltIn(*t)).collect();
            let prepared = client.prepare_mut(stmt.sql, &types).unwrap_or_else(|e| unreachable!("prepare {}: {e}", stmt.sql));
            let plan = Rc::new(prepared.keep());
            PLANS.with(|p| p.borrow_mut().insert(key, plan.clone()));
            plan
        }
    };
    client.update(&*plan, None, args).unwrap_or_else(|e| unreachable!("execute {}: {e}", stmt.sql))
}

/// First column of the first row, if any.
fn first<T: FromDatum + IntoDatum>(table: SpiTupleTable<'_>, col: usize) -> Option<T> {
    if table.is_empty() {
        return None;
    }
    table.first().get::<T>(col).unwrap_or_else(|e| unreachable!("column {col}: {e}"))
}

fn col<T: FromDatum + IntoDatum>(row: &pgrx::spi::SpiHeapTupleData<'_>, col: usize) -> Option<T> {
    row.get::<T>(col).unwrap_or_else(|e| unreachable!("column {col}: {e}"))
}

fn ts(t: DateTime<Utc>) -> DatumWithOid<'static> {
    clock::to_pg_tz(t).into()
}

// Subjects -----------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct Subject {
    pub id: String,
    pub plan: String,
    pub tenant: Option<String>,
    pub anchor: DateTime<Utc>,
    pub tz: Tz,
    /// False for a subject evaluated on the default plan without being stored.
    pub stored: bool,
}

impl Subject {
    pub fn window(&self, period: Period, now: DateTime<Utc>) -> Window {
        period::window_for(period, now, self.tz, self.anchor)
    }
    pub fn local_day(&self, now: DateTime<Utc>) -> NaiveDate {
        now.with_timezone(&self.tz).date_naive()
    }
}

static FIND_SUBJECT: Stmt = Stmt {
    sql: "SELECT plan, tenant, cycle_anchor, time_zone FROM quota.subjects WHERE subject = $1",
    types: &[T::TEXTOID],
};
static LOCK_SUBJECT: Stmt = Stmt {
    sql: "SELECT plan, tenant, cycle_anchor, time_zone FROM quota.subjects WHERE subject = $1 FOR NO KEY UPDATE",
    types: &[T::TEXTOID],
};

fn subject_from(table: SpiTupleTable<'_>, id: &str) -> Option<Subject> {
    if table.is_empty() {
        return None;
    }
    let row = table.first();
    let tz_name: String = row.get(4).ok().flatten()?;
    Some(Subject {
        id: id.to_string(),
        plan: row.get(1).ok().flatten()?,
        tenant: row.get(2).ok().flatten(),
        anchor: clock::from_pg(row.get::<TimestampWithTimeZone>(3).ok().flatten()?.into_inner()),
        // The zone was validated when stored; UTC only if the zone database lost it.
        tz: period::parse_zone(&tz_name).unwrap_or(Tz::UTC),
        stored: true,
    })
}

pub fn find_subject(c: &mut SpiClient<'_>, id: &str) -> Option<Subject> {
    subject_from(run(c, &FIND_SUBJECT, &[id.into()]), id)
}

/// Read the subject and take a row lock that serialises bonus grants for it.
pub fn lock_subject(c: &mut SpiClient<'_>, id: &str) -> Option<Subject> {
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

static UPSERT_SUBJECT: Stmt = Stmt {
    sql: "INSERT INTO quota.subjects AS s (subject, plan, tenant, cycle_anchor, time_zone)
          VALUES ($1, $2, $3, coalesce($4, $6), coalesce($5, 'UTC'))
          ON CONFLICT (subject) DO UPDATE SET
              plan = EXCLUDED.plan,
              tenant = coalesce($3, s.tenant),
              cycle_anchor = coalesce($4, s.cycle_anchor),
              time_zone = coalesce($5, s.time_zone)
          WHERE $7 OR s.tenant IS NOT DISTINCT FROM $3
          RETURNING 1",
    types: &[T::TEXTOID, T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID, T::TEXTOID, T::TIMESTAMPTZOID, T::BOOLOID],
};

pub fn upsert_subject(
    c: &mut SpiClient<'_>,
    id: &str,
    plan: &str,
    tenant: Option<&str>,
    anchor: Option<DateTime<Utc>>,
    zone: Option<&str>,
    now: DateTime<Utc>,
    scope: &Scope,
) -> bool {
    let args = [id.into(), plan.into(), tenant.into(), anchor.map(clock::to_pg_tz).into(), zone.into(), ts(now), scope.params().0.into()];
    !run(c, &UPSERT_SUBJECT, &args).is_empty()
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
    crate::privilege::as_owner(|| {
        Spi::connect(|c| c.select(sql, Some(1), &[value.into()]).map(|t| !t.is_empty()).unwrap_or(false))
    })
}

// Tenant bindings ----------------------------------------------------------------------

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
    let cluster = crate::roles::this_cluster();
    run(c, &REHOME_BINDINGS, &[role.into(), role_oid.into(), cluster.as_str().into()]);
    run(c, &BIND_TENANT, &[role.into(), tenant.into(), role_oid.into(), cluster.as_str().into()]);
}

pub fn unbind_tenant(c: &mut SpiClient<'_>, role: &str, tenant: Option<&str>) -> i32 {
    first::<i32>(run(c, &UNBIND_TENANT, &[role.into(), tenant.into()]), 1).unwrap_or(0)
}

// Plans and limits ---------------------------------------------------------------------

static FIND_PLAN: Stmt = Stmt { sql: "SELECT bonus_cap_per_day FROM quota.plans WHERE plan = $1", types: &[T::TEXTOID] };
static PLAN_EXISTS: Stmt = Stmt { sql: "SELECT true FROM quota.plans WHERE plan = $1", types: &[T::TEXTOID] };

/// `None` if the plan does not exist, else its daily bonus cap (which may be unset).
pub fn plan_bonus_cap(c: &mut SpiClient<'_>, plan: &str) -> Option<Option<i32>> {
    if first::<bool>(run(c, &PLAN_EXISTS, &[plan.into()]), 1).is_none() {
        return None;
    }
    Some(first::<i32>(run(c, &FIND_PLAN, &[plan.into()]), 1))
}

static LIMIT_ONE: Stmt = Stmt {
    sql: "SELECT metric, period, limit_value, enforcement, per_request_max, alert_thresholds FROM quota.plan_limits WHERE plan = $1 AND metric = $2",
    types: &[T::TEXTOID, T::TEXTOID],
};
static LIMIT_ALL: Stmt = Stmt {
    sql: "SELECT metric, period, limit_value, enforcement, per_request_max, alert_thresholds FROM quota.plan_limits WHERE plan = $1 ORDER BY metric",
    types: &[T::TEXTOID],
};

fn limits_from(table: SpiTupleTable<'_>) -> Vec<(String, Limit)> {
    table
        .map(|row| {
            let period: String = col(&row, 2).expect("period is NOT NULL");
            let enforcement: String = col(&row, 4).expect("enforcement is NOT NULL");
            let limit = Limit {
                // CHECK constraints keep these names valid.
                period: period.parse().unwrap_or(Period::Lifetime),
                limit_value: col(&row, 3).expect("limit_value is NOT NULL"),
                enforcement: enforcement.parse().unwrap_or(Enforcement::Hard),
                per_request_max: col(&row, 5),
                alerts: col::<Vec<i32>>(&row, 6).unwrap_or_default(),
            };
            (col::<String>(&row, 1).expect("metric is NOT NULL"), limit)
        })
        .collect()
}

pub fn limit(c: &mut SpiClient<'_>, plan: &str, metric: &str) -> Option<Limit> {
    limits_from(run(c, &LIMIT_ONE, &[plan.into(), metric.into()])).pop().map(|(_, l)| l)
}

pub fn all_limits(c: &mut SpiClient<'_>, plan: &str) -> Vec<(String, Limit)> {
    limits_from(run(c, &LIMIT_ALL, &[plan.into()]))
}

static UPSERT_PLAN: Stmt = Stmt {
    sql: "INSERT INTO quota.plans (plan) VALUES ($1) ON CONFLICT (plan) DO NOTHING",
    types: &[T::TEXTOID],
};
static UPSERT_LIMIT: Stmt = Stmt {
    sql: "INSERT INTO quota.plan_limits AS l (plan, metric, period, limit_value, enforcement, per_request_max)
          VALUES ($1, $2, $3, $4, $5, $6)
          ON CONFLICT (plan, metric) DO UPDATE SET
              period = EXCLUDED.period, limit_value = EXCLUDED.limit_value,
              enforcement = EXCLUDED.enforcement, per_request_max = EXCLUDED.per_request_max,
              updated_at = now()",
    types: &[T::TEXTOID, T::TEXTOID, T::TEXTOID, T::INT8OID, T::TEXTOID, T::INT8OID],
};
static DELETE_LIMIT: Stmt = Stmt {
    sql: "DELETE FROM quota.plan_limits WHERE plan = $1 AND metric = $2 RETURNING true",
    types: &[T::TEXTOID, T::TEXTOID],
};
static SET_ALERTS: Stmt = Stmt {
    sql: "UPDATE quota.plan_limits SET alert_thresholds = $3, updated_at = now() WHERE plan = $1 AND metric = $2 RETURNING true",
    types: &[T::TEXTOID, T::TEXTOID, T::INT4ARRAYOID],
};

/// Set a limit's alert thresholds; false if the plan has no limit on the metric.
pub fn set_alerts(c: &mut SpiClient<'_>, plan: &str, metric: &str, thresholds: Vec<i32>) -> bool {
    first::<bool>(run(c, &SET_ALERTS, &[plan.into(), metric.into(), thresholds.into()]), 1).unwrap_or(false)
}

static SET_BONUS_CAP: Stmt = Stmt {
    sql: "UPDATE quota.plans SET bonus_cap_per_day = $2 WHERE plan = $1",
    types: &[T::TEXTOID, T::INT4OID],
};

pub fn ensure_plan(c: &mut SpiClient<'_>, plan: &str) {
    run(c, &UPSERT_PLAN, &[plan.into()]);
}

pub fn upsert_limit(c: &mut SpiClient<'_>, plan: &str, metric: &str, limit: &Limit) {
    run(
        c,
        &UPSERT_LIMIT,
        &[plan.into(), metric.into(), limit.period.as_str().into(), limit.limit_value.into(), limit.enforcement.as_str().into(), limit.per_request_max.into()],
    );
}

pub fn delete_limit(c: &mut SpiClient<'_>, plan: &str, metric: &str) -> bool {
    first::<bool>(run(c, &DELETE_LIMIT, &[plan.into(), metric.into()]), 1).unwrap_or(false)
}

pub fn set_bonus_cap(c: &mut SpiClient<'_>, plan: &str, per_day: Option<i32>) {
    run(c, &SET_BONUS_CAP, &[plan.into(), per_day.into()]);
}

// Counters -----------------------------------------------------------------------------

static READ_WINDOW: Stmt = Stmt {
    sql: "SELECT used, bonus, reserved, alerted FROM quota.counters WHERE subject = $1 AND metric = $2 AND window_start = $3",
    types: &[T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID],
};
static LOCK_WINDOW: Stmt = Stmt {
    sql: "SELECT used, bonus, reserved, alerted FROM quota.counters WHERE subject = $1 AND metric = $2 AND window_start = $3 FOR UPDATE",
    types: &[T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID],
};
static CREATE_WINDOW: Stmt = Stmt {
    sql: "INSERT INTO quota.counters (subject, metric, window_start, window_end) VALUES ($1, $2, $3, $4)
          ON CONFLICT (subject, metric, window_start) DO NOTHING",
    types: &[T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID, T::TIMESTAMPTZOID],
};
static WRITE_WINDOW: Stmt = Stmt {
    sql: "UPDATE quota.counters SET used = $4, bonus = $5, reserved = $6, alerted = $7
          WHERE subject = $1 AND metric = $2 AND window_start = $3",
    types: &[T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID, T::INT8OID, T::INT8OID, T::INT8OID, T::INT4OID],
};

fn usage_from(table: SpiTupleTable<'_>) -> Option<Usage> {
    if table.is_empty() {
        return None;
    }
    let row = table.first();
    Some(Usage {
        used: row.get(1).ok().flatten()?,
        bonus: row.get(2).ok().flatten()?,
        reserved: row.get(3).ok().flatten()?,
        alerted: row.get(4).ok().flatten()?,
    })
}

fn key_args<'a>(subject: &'a str, metric: &'a str, w: &Window) -> [DatumWithOid<'a>; 3] {
    [subject.into(), metric.into(), clock::window_key(w.start).into()]
}

/// The window's usage without locking; zero if the window has no row yet.
pub fn read_window(c: &mut SpiClient<'_>, subject: &str, metric: &str, w: &Window) -> Usage {
    usage_from(run(c, &READ_WINDOW, &key_args(subject, metric, w))).unwrap_or_default()
}

/// Lock the window's row (creating it empty if needed) and return its usage. Concurrent
/// callers on the same window queue here; in READ COMMITTED each then sees the latest
/// committed value.
pub fn lock_window(c: &mut SpiClient<'_>, subject: &str, metric: &str, w: &Window) -> Usage {
    if let Some(u) = usage_from(run(c, &LOCK_WINDOW, &key_args(subject, metric, w))) {
        return u;
    }
    let [s, m, start] = key_args(subject, metric, w);
    let end: DatumWithOid = w.end.map(clock::to_pg_tz).into();
    run(c, &CREATE_WINDOW, &[s, m, start, end]);
    usage_from(run(c, &LOCK_WINDOW, &key_args(subject, metric, w))).expect("window row exists after insert")
}

pub fn write_window(c: &mut SpiClient<'_>, subject: &str, metric: &str, w: &Window, u: Usage) {
    let [s, m, start] = key_args(subject, metric, w);
    run(c, &WRITE_WINDOW, &[s, m, start, u.used.into(), u.bonus.into(), u.reserved.into(), u.alerted.into()]);
}

// The ledger ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Consume,
    Refund,
    Reset,
    Bonus,
    Reserve,
    Commit,
    Release,
    Expire,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Consume => "consume",
            Kind::Refund => "refund",
            Kind::Reset => "reset",
            Kind::Bonus => "bonus",
            Kind::Reserve => "reserve",
            Kind::Commit => "commit",
            Kind::Release => "release",
            Kind::Expire => "expire",
        }
    }
}

pub struct Entry<'a> {
    pub subject: &'a Subject,
    pub metric: &'a str,
    pub window: &'a Window,
    pub kind: Kind,
    pub amount: i64,
    pub overage: i64,
    pub idempotency_key: Option<&'a str>,
    pub metadata: Option<pg_sys::Datum>,
    pub at: DateTime<Utc>,
}

static APPEND: Stmt = Stmt {
    sql: "INSERT INTO quota.usage_events
              (subject, tenant, metric, window_start, kind, amount, overage, idempotency_key, metadata, created_at)
          VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    types: &[
        T::TEXTOID, T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID, T::TEXTOID, T::INT8OID, T::INT8OID, T::TEXTOID, T::JSONBOID,
        T::TIMESTAMPTZOID,
    ],
};

pub fn append(c: &mut SpiClient<'_>, e: &Entry<'_>) {
    run(
        c,
        &APPEND,
        &[
            e.subject.id.as_str().into(),
            e.subject.tenant.as_deref().into(),
            e.metric.into(),
            clock::window_key(e.window.start).into(),
            e.kind.as_str().into(),
            e.amount.into(),
            e.overage.into(),
            e.idempotency_key.into(),
            e.metadata.map(RawJsonb).into(),
            ts(e.at),
        ],
    );
}

// Idempotency keys ---------------------------------------------------------------------

static FIND_KEY: Stmt = Stmt {
    sql: "SELECT operation, response::text FROM quota.idempotency_keys WHERE subject = $1 AND idempotency_key = $2",
    types: &[T::TEXTOID, T::TEXTOID],
};
static SAVE_KEY: Stmt = Stmt {
    sql: "INSERT INTO quota.idempotency_keys (subject, idempotency_key, operation, response, created_at)
          VALUES ($1, $2, $3, $4::jsonb, $5)",
    types: &[T::TEXTOID, T::TEXTOID, T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID],
};

/// The lock tag's fourth field for idempotency keys. SQL's advisory-lock functions only
/// make tags with 1 (one bigint key) or 2 (two integer keys) there, so no role can take,
/// and so block, these locks from SQL.
const KEY_LOCK_SPACE: u16 = 7274;

/// Serialise calls that use the same idempotency key (until the transaction ends): an
/// exclusive transaction-level lock in the advisory lock method, keyed by this database
/// and 64 bits of the SHA-256 of subject and key. A collision would only make two keys
/// wait for each other; with a cryptographic hash nobody can make one on purpose.
pub fn lock_key(_c: &mut SpiClient<'_>, subject: &str, key: &str) {
    use sha2::Digest;
    let digest = sha2::Sha256::new().chain_update(subject.as_bytes()).chain_update([0u8]).chain_update(key.as_bytes()).finalize();
    let hash = u64::from_le_bytes(digest[..8].try_into().expect("a SHA-256 digest has 32 bytes"));
    let tag = pg_sys::LOCKTAG {
        // SAFETY: reads the backend's database id.
        locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        locktag_field2: (hash >> 32) as u32,
        locktag_field3: hash as u32,
        locktag_field4: KEY_LOCK_SPACE,
        locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
        locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
    };
    // SAFETY: a transaction-scoped (not session) lock that waits; the lock manager
    // releases it at the end of the transaction, or raises on deadlock or lock_timeout.
    unsafe {
        pg_sys::LockAcquire(&tag, pg_sys::ExclusiveLock as pg_sys::LOCKMODE, false, false);
    }
}

/// The operation and stored response of an earlier call with this key, if any.
pub fn find_key(c: &mut SpiClient<'_>, subject: &str, key: &str) -> Option<(String, String)> {
    let table = run(c, &FIND_KEY, &[subject.into(), key.into()]);
    if table.is_empty() {
        return None;
    }
    let row = table.first();
    Some((row.get(1).ok().flatten()?, row.get(2).ok().flatten()?))
}

pub fn save_key(c: &mut SpiClient<'_>, subject: &str, key: &str, operation: &str, response: &str, at: DateTime<Utc>) {
    run(c, &SAVE_KEY, &[subject.into(), key.into(), operation.into(), response.into(), ts(at)]);
}

// Bonuses ------------------------------------------------------------------------------

static FIND_RULE: Stmt = Stmt {
    sql: "SELECT amount, reference_scope FROM quota.bonus_rules WHERE plan = $1 AND metric = $2 AND kind = $3",
    types: &[T::TEXTOID, T::TEXTOID, T::TEXTOID],
};
static UPSERT_RULE: Stmt = Stmt {
    sql: "INSERT INTO quota.bonus_rules (plan, metric, kind, amount, reference_scope) VALUES ($1, $2, $3, $4, $5)
          ON CONFLICT (plan, metric, kind) DO UPDATE SET amount = EXCLUDED.amount, reference_scope = EXCLUDED.reference_scope",
    types: &[T::TEXTOID, T::TEXTOID, T::TEXTOID, T::INT8OID, T::TEXTOID],
};
static COUNT_GRANTS: Stmt = Stmt {
    sql: "SELECT count(*)::int4 FROM quota.bonus_grants WHERE subject = $1 AND local_day = $2",
    types: &[T::TEXTOID, T::DATEOID],
};
static INSERT_GRANT: Stmt = Stmt {
    sql: "INSERT INTO quota.bonus_grants
              (subject, metric, kind, reference, reference_scope, amount, window_start, local_day, granted_at)
          VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
          ON CONFLICT DO NOTHING
          RETURNING id",
    types: &[
        T::TEXTOID, T::TEXTOID, T::TEXTOID, T::TEXTOID, T::TEXTOID, T::INT8OID, T::TIMESTAMPTZOID, T::DATEOID, T::TIMESTAMPTZOID,
    ],
};

pub fn rule(c: &mut SpiClient<'_>, plan: &str, metric: &str, kind: &str) -> Option<Rule> {
    let table = run(c, &FIND_RULE, &[plan.into(), metric.into(), kind.into()]);
    if table.is_empty() {
        return None;
    }
    let row = table.first();
    let scope: String = row.get(2).ok().flatten()?;
    Some(Rule { amount: row.get(1).ok().flatten()?, scope: ReferenceScope::parse(&scope)? })
}

pub fn upsert_rule(c: &mut SpiClient<'_>, plan: &str, metric: &str, kind: &str, rule: Rule) {
    run(c, &UPSERT_RULE, &[plan.into(), metric.into(), kind.into(), rule.amount.into(), rule.scope.as_str().into()]);
}

fn pg_date(d: NaiveDate) -> DatumWithOid<'static> {
    use chrono::Datelike;
    // Dates in the zone database's range are valid PostgreSQL dates.
    pgrx::datum::Date::new(d.year(), d.month() as u8, d.day() as u8).expect("valid calendar date").into()
}

pub fn grants_on(c: &mut SpiClient<'_>, subject: &str, day: NaiveDate) -> i32 {
    first::<i32>(run(c, &COUNT_GRANTS, &[subject.into(), pg_date(day)]), 1).unwrap_or(0)
}

pub struct Grant<'a> {
    pub subject: &'a str,
    pub metric: &'a str,
    pub kind: &'a str,
    pub reference: Option<&'a str>,
    pub rule: Rule,
    pub window: &'a Window,
    pub day: NaiveDate,
    pub at: DateTime<Utc>,
}

/// Record a grant; false when its reference was already used in its scope (the unique
/// indexes decide, so two sessions racing on one payment id cannot both win).
pub fn insert_grant(c: &mut SpiClient<'_>, g: &Grant<'_>) -> bool {
    let table = run(
        c,
        &INSERT_GRANT,
        &[
            g.subject.into(),
            g.metric.into(),
            g.kind.into(),
            g.reference.into(),
            g.rule.scope.as_str().into(),
            g.rule.amount.into(),
            clock::window_key(g.window.start).into(),
            pg_date(g.day),
            ts(g.at),
        ],
    );
    !table.is_empty()
}

// Reservations -------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct Reservation {
    pub subject: String,
    pub metric: String,
    pub window: Window,
    pub amount: i64,
    pub status: String,
    pub response: Option<String>,
}

static INSERT_RESERVATION: Stmt = Stmt {
    sql: "INSERT INTO quota.reservations (subject, metric, window_start, window_end, amount, expires_at, idempotency_key, metadata, created_at)
          VALUES ($1, $2, $3, $4, $5, $7 + $6, $8, $9, $7)
          RETURNING id, expires_at",
    types: &[
        T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID, T::TIMESTAMPTZOID, T::INT8OID, T::INTERVALOID, T::TIMESTAMPTZOID, T::TEXTOID,
        T::JSONBOID,
    ],
};
static FIND_RESERVATION: Stmt = Stmt {
    sql: "SELECT id, subject, metric, window_start, window_end, amount, status, response::text
          FROM quota.reservations WHERE id = $1",
    types: &[T::UUIDOID],
};
static LOCK_RESERVATION: Stmt = Stmt {
    sql: "SELECT id, subject, metric, window_start, window_end, amount, status, response::text
          FROM quota.reservations WHERE id = $1 FOR UPDATE",
    types: &[T::UUIDOID],
};
static SETTLE_RESERVATION: Stmt = Stmt {
    sql: "UPDATE quota.reservations SET status = $2, actual_amount = $3, response = $4::jsonb, settled_at = $5 WHERE id = $1",
    types: &[T::UUIDOID, T::TEXTOID, T::INT8OID, T::TEXTOID, T::TIMESTAMPTZOID],
};
static EXPIRE_HELD: Stmt = Stmt {
    sql: "UPDATE quota.reservations SET status = 'expired', settled_at = $5
          WHERE subject = $1 AND metric = $2 AND window_start = $3 AND status = 'held' AND expires_at <= $4
          RETURNING id, amount",
    types: &[T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID, T::TIMESTAMPTZOID, T::TIMESTAMPTZOID],
};
static EXPIRED_HELD: Stmt = Stmt {
    sql: "SELECT coalesce(sum(amount), 0)::int8 FROM quota.reservations
          WHERE subject = $1 AND metric = $2 AND window_start = $3 AND status = 'held' AND expires_at <= $4",
    types: &[T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID, T::TIMESTAMPTZOID],
};
static LAPSED_WINDOWS: Stmt = Stmt {
    sql: "SELECT DISTINCT subject, metric, window_start, window_end FROM quota.reservations
          WHERE status = 'held' AND expires_at <= $1 ORDER BY subject, metric, window_start LIMIT $2 OFFSET $3",
    types: &[T::TIMESTAMPTZOID, T::INT8OID, T::INT8OID],
};

pub struct NewReservation<'a> {
    pub subject: &'a str,
    pub metric: &'a str,
    pub window: &'a Window,
    pub amount: i64,
    pub ttl: pgrx::datum::Interval,
    pub idempotency_key: Option<&'a str>,
    pub metadata: Option<pg_sys::Datum>,
    pub at: DateTime<Utc>,
}

/// Record a hold; returns its id and expiry.
pub fn insert_reservation(c: &mut SpiClient<'_>, r: &NewReservation<'_>) -> (pgrx::Uuid, DateTime<Utc>) {
    let t = run(
        c,
        &INSERT_RESERVATION,
        &[
            r.subject.into(),
            r.metric.into(),
            clock::window_key(r.window.start).into(),
            r.window.end.map(clock::to_pg_tz).into(),
            r.amount.into(),
            r.ttl.into(),
            ts(r.at),
            r.idempotency_key.into(),
            r.metadata.map(RawJsonb).into(),
        ],
    );
    let row = t.first();
    let id = row.get::<pgrx::Uuid>(1).ok().flatten().expect("RETURNING id");
    let expires = row.get::<TimestampWithTimeZone>(2).ok().flatten().expect("RETURNING expires_at");
    (id, clock::from_pg(expires.into_inner()))
}

fn reservation_from(table: SpiTupleTable<'_>) -> Option<Reservation> {
    if table.is_empty() {
        return None;
    }
    let row = table.first();
    let start = row.get::<TimestampWithTimeZone>(4).ok().flatten()?;
    Some(Reservation {
        subject: row.get(2).ok().flatten()?,
        metric: row.get(3).ok().flatten()?,
        window: Window {
            start: if start.is_neg_infinity() { None } else { Some(clock::from_pg(start.into_inner())) },
            end: row.get::<TimestampWithTimeZone>(5).ok().flatten().map(|t| clock::from_pg(t.into_inner())),
        },
        amount: row.get(6).ok().flatten()?,
        status: row.get(7).ok().flatten()?,
        response: row.get(8).ok().flatten(),
    })
}

pub fn find_reservation(c: &mut SpiClient<'_>, id: pgrx::Uuid) -> Option<Reservation> {
    reservation_from(run(c, &FIND_RESERVATION, &[id.into()]))
}

pub fn lock_reservation(c: &mut SpiClient<'_>, id: pgrx::Uuid) -> Option<Reservation> {
    reservation_from(run(c, &LOCK_RESERVATION, &[id.into()]))
}

pub fn settle_reservation(c: &mut SpiClient<'_>, id: pgrx::Uuid, status: &str, actual: Option<i64>, response: Option<&str>, at: DateTime<Utc>) {
    run(c, &SETTLE_RESERVATION, &[id.into(), status.into(), actual.into(), response.into(), ts(at)]);
}

/// Mark the window's lapsed holds expired (the caller holds the window lock); returns
/// (id, amount) of each.
pub fn expire_held(c: &mut SpiClient<'_>, subject: &str, metric: &str, w: &Window, now: DateTime<Utc>) -> Vec<(pgrx::Uuid, i64)> {
    let [s, m, start] = key_args(subject, metric, w);
    run(c, &EXPIRE_HELD, &[s, m, start, ts(now), ts(now)])
        .filter_map(|row| Some((row.get::<pgrx::Uuid>(1).ok().flatten()?, row.get::<i64>(2).ok().flatten()?)))
        .collect()
}

/// How much of the window's `reserved` has lapsed but is not yet marked (read-only paths).
pub fn expired_held(c: &mut SpiClient<'_>, subject: &str, metric: &str, w: &Window, now: DateTime<Utc>) -> i64 {
    let [s, m, start] = key_args(subject, metric, w);
    first::<i64>(run(c, &EXPIRED_HELD, &[s, m, start, ts(now)]), 1).unwrap_or(0)
}

/// Windows with lapsed holds, at most `limit` of them after skipping `skip` (those a
/// sweep failed on): (subject, metric, window).
pub fn lapsed_windows(c: &mut SpiClient<'_>, now: DateTime<Utc>, limit: i64, skip: i64) -> Vec<(String, String, Window)> {
    run(c, &LAPSED_WINDOWS, &[ts(now), limit.into(), skip.into()])
        .filter_map(|row| {
            let start = row.get::<TimestampWithTimeZone>(3).ok().flatten()?;
            let window = Window {
                start: if start.is_neg_infinity() { None } else { Some(clock::from_pg(start.into_inner())) },
                end: row.get::<TimestampWithTimeZone>(4).ok().flatten().map(|t| clock::from_pg(t.into_inner())),
            };
            Some((row.get(1).ok().flatten()?, row.get(2).ok().flatten()?, window))
        })
        .collect()
}

// Events -------------------------------------------------------------------------------

/// The notification carries the outbox row's id; with `$6` (quota.notify_payload = full,
/// or a database before 0.4.0) the JSON event itself, unless it is too long for a
/// notification (8,000 bytes), which then sends the id too.
static EMIT: Stmt = Stmt {
    sql: "WITH e AS (INSERT INTO quota.events (type, subject, metric, payload, created_at) VALUES ($1, $2, $3, $4::jsonb, $5) RETURNING id)
          SELECT pg_catalog.pg_notify('quota_events',
                     CASE WHEN $6 AND pg_catalog.octet_length($4) < 8000 THEN $4 ELSE e.id::text END)
          FROM e",
    types: &[T::TEXTOID, T::TEXTOID, T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID, T::BOOLOID],
};

/// Record the event in the outbox and notify listeners (delivered at COMMIT).
pub fn emit(c: &mut SpiClient<'_>, e: &crate::events::Event) {
    let payload = e.payload().to_string();
    let full = crate::gucs::notify_full_payload() || !crate::installed::at_least(crate::installed::BINDINGS);
    let args = [e.kind.as_str().into(), e.subject.as_str().into(), e.metric.as_str().into(), payload.as_str().into(), ts(e.occurred_at), full.into()];
    run(c, &EMIT, &args);
}
