//! The SQL surface: thin `#[pg_extern]` wrappers that check for NULLs, call the engine and
//! turn its result into a row or an ERROR. No quota logic lives here.
//!
//! Arguments are `Option` (functions are not STRICT) so that a NULL gets SQLSTATE 22004
//! with a clear message instead of a silent NULL result.

use pgrx::prelude::*;
use pgrx::{composite_type, PgTupleDesc};

use crate::clock;
use crate::decision::Decision;
use crate::engine::{self, ConsumeRequest, Hold, ReserveRequest};
use crate::ereport::OrRaise;
use crate::error::required;
use crate::store::RawJsonb;

type DecisionRow = composite_type!('static, "quota.decision");

/// Build a row of the function's composite result type in one `heap_form_tuple`. The
/// type comes from the call expression through the type cache (no name lookup, no parse);
/// `name` is only used when there is no call expression (direct calls).
fn composite(fcinfo: pg_sys::FunctionCallInfo, name: &str, values: Vec<Option<pg_sys::Datum>>) -> PgHeapTuple<'static, pgrx::AllocatedByRust> {
    unsafe {
        let oid = if fcinfo.is_null() || (*fcinfo).flinfo.is_null() {
            pg_sys::InvalidOid
        } else {
            pg_sys::get_fn_expr_rettype((*fcinfo).flinfo)
        };
        let oid = if oid == pg_sys::InvalidOid || oid == pg_sys::RECORDOID {
            let cname = std::ffi::CString::new(name).expect("type names have no NUL");
            pgrx::direct_function_call::<pg_sys::Oid>(pg_sys::regtypein, &[cname.as_c_str().into_datum()])
                .expect("the extension's composite types exist")
        } else {
            oid
        };
        let desc = PgTupleDesc::from_pg(pg_sys::lookup_rowtype_tupdesc(oid, -1));
        PgHeapTuple::from_datums(desc, values).unwrap_or_else(|e| unreachable!("{name}: {e}"))
    }
}

fn decision_row(fcinfo: pg_sys::FunctionCallInfo, d: Decision) -> DecisionRow {
    let values = vec![
        d.allowed.into_datum(),
        d.subject.into_datum(),
        d.metric.into_datum(),
        d.period.into_datum(),
        d.used.into_datum(),
        d.limit_value.into_datum(),
        d.bonus.into_datum(),
        d.remaining.into_datum(),
        d.requested.into_datum(),
        d.reset_at.map(clock::to_pg_tz).into_datum(),
        d.enforcement.into_datum(),
        d.reason.into_datum(),
        d.reserved.into_datum(),
    ];
    composite(fcinfo, "quota.decision", values)
}

fn decision_rows(fcinfo: pg_sys::FunctionCallInfo, ds: Vec<Decision>) -> SetOfIterator<'static, DecisionRow> {
    let rows: Vec<DecisionRow> = ds.into_iter().map(|d| decision_row(fcinfo, d)).collect();
    SetOfIterator::new(rows)
}

/// The jsonb amounts, read from its text form (serde's f64 would overflow on 1e400).
fn amounts_of(amounts: Option<RawJsonb>) -> Vec<(String, i64)> {
    let amounts = required("amounts", amounts).or_raise();
    let text = unsafe {
        pgrx::direct_function_call::<&std::ffi::CStr>(pg_sys::jsonb_out, &[Some(amounts.0)])
            .expect("jsonb_out returns text")
            .to_string_lossy()
            .into_owned()
    };
    engine::parse_amounts(&text).or_raise()
}

// Check --------------------------------------------------------------------------------

/// Would `amount` more fit? A dry run that writes nothing; `used` and `remaining` are the
/// current state (before the request). `NOT allowed` is the seeds' `would_exceed`.
#[pg_extern(stable, parallel_restricted)]
fn quota_check(subject: Option<&str>, metric: Option<&str>, amount: default!(Option<i64>, 1), fcinfo: pg_sys::FunctionCallInfo) -> composite_type!('static, "quota.decision") {
    let items = vec![(required("metric", metric).or_raise().to_string(), required("amount", amount).or_raise())];
    let mut ds = engine::check(required("subject", subject).or_raise(), &items).or_raise();
    decision_row(fcinfo, ds.remove(0))
}

/// Several metrics at once: `quota_check('u1', '{"messages": 1, "tokens": 350}')`.
#[pg_extern(stable, parallel_restricted, name = "quota_check")]
fn quota_check_many(subject: Option<&str>, amounts: Option<RawJsonb>, fcinfo: pg_sys::FunctionCallInfo) -> SetOfIterator<'static, composite_type!('static, "quota.decision")> {
    let items = amounts_of(amounts);
    decision_rows(fcinfo, engine::check(required("subject", subject).or_raise(), &items).or_raise())
}

/// One row per limit of the subject's plan.
#[pg_extern(stable, parallel_restricted)]
#[allow(clippy::type_complexity)]
fn quota_status(
    subject: Option<&str>,
) -> TableIterator<
    'static,
    (
        name!(metric, String),
        name!(period, String),
        name!(limit_value, i64),
        name!(bonus, i64),
        name!(used, i64),
        name!(remaining, i64),
        name!(reset_at, Option<TimestampWithTimeZone>),
        name!(enforcement, String),
        name!(reserved, i64),
    ),
> {
    let rows = engine::status(required("subject", subject).or_raise()).or_raise();
    TableIterator::new(rows.into_iter().map(|r| {
        (
            r.metric,
            r.period.as_str().to_string(),
            r.limit_value,
            r.bonus,
            r.used,
            r.remaining,
            r.reset_at.map(clock::to_pg_tz),
            r.enforcement.as_str().to_string(),
            r.reserved,
        )
    }))
}

// Consume ------------------------------------------------------------------------------

fn consume(
    subject: Option<&str>,
    items: Vec<(String, i64)>,
    idempotency_key: Option<&str>,
    metadata: Option<RawJsonb>,
    no_raise: bool,
) -> Vec<Decision> {
    engine::consume(ConsumeRequest {
        subject: required("subject", subject).or_raise(),
        items,
        idempotency_key,
        metadata: metadata.map(|m| m.0),
        no_raise,
    })
    .or_raise()
}

fn one_item(metric: Option<&str>, amount: Option<i64>) -> Vec<(String, i64)> {
    vec![(required("metric", metric).or_raise().to_string(), required("amount", amount).or_raise())]
}

/// Check and increment atomically in the caller's transaction. Over a hard limit: QT429,
/// nothing consumed. Over a soft limit: allowed, overage reported and recorded.
#[pg_extern(volatile, parallel_unsafe)]
fn quota_consume(
    subject: Option<&str>,
    metric: Option<&str>,
    amount: default!(Option<i64>, 1),
    idempotency_key: default!(Option<&str>, "NULL"),
    metadata: default!(Option<RawJsonb>, "NULL"),
    fcinfo: pg_sys::FunctionCallInfo,
) -> composite_type!('static, "quota.decision") {
    decision_row(fcinfo, consume(subject, one_item(metric, amount), idempotency_key, metadata, false).remove(0))
}

/// Several metrics, all or nothing: `quota_consume('u1', '{"messages": 1, "tokens": 350}')`.
#[pg_extern(volatile, parallel_unsafe, name = "quota_consume")]
fn quota_consume_many(
    subject: Option<&str>,
    amounts: Option<RawJsonb>,
    idempotency_key: default!(Option<&str>, "NULL"),
    metadata: default!(Option<RawJsonb>, "NULL"),
    fcinfo: pg_sys::FunctionCallInfo,
) -> SetOfIterator<'static, composite_type!('static, "quota.decision")> {
    decision_rows(fcinfo, consume(subject, amounts_of(amounts), idempotency_key, metadata, false))
}

/// Like `quota_consume`, but a refusal is returned (`allowed = false`) instead of raised,
/// so the caller's transaction is not aborted. Argument errors still raise.
#[pg_extern(volatile, parallel_unsafe)]
fn quota_try_consume(
    subject: Option<&str>,
    metric: Option<&str>,
    amount: default!(Option<i64>, 1),
    idempotency_key: default!(Option<&str>, "NULL"),
    metadata: default!(Option<RawJsonb>, "NULL"),
    fcinfo: pg_sys::FunctionCallInfo,
) -> composite_type!('static, "quota.decision") {
    decision_row(fcinfo, consume(subject, one_item(metric, amount), idempotency_key, metadata, true).remove(0))
}

#[pg_extern(volatile, parallel_unsafe, name = "quota_try_consume")]
fn quota_try_consume_many(
    subject: Option<&str>,
    amounts: Option<RawJsonb>,
    idempotency_key: default!(Option<&str>, "NULL"),
    metadata: default!(Option<RawJsonb>, "NULL"),
    fcinfo: pg_sys::FunctionCallInfo,
) -> SetOfIterator<'static, composite_type!('static, "quota.decision")> {
    decision_rows(fcinfo, consume(subject, amounts_of(amounts), idempotency_key, metadata, true))
}

// Refund, reset, bonus -----------------------------------------------------------------

/// Give usage back in the current window (failed generation, a gauge going down).
/// Never below zero.
#[pg_extern(volatile, parallel_unsafe)]
fn quota_refund(
    subject: Option<&str>,
    metric: Option<&str>,
    amount: Option<i64>,
    idempotency_key: default!(Option<&str>, "NULL"),
    fcinfo: pg_sys::FunctionCallInfo,
) -> composite_type!('static, "quota.decision") {
    let d = engine::refund(
        required("subject", subject).or_raise(),
        required("metric", metric).or_raise(),
        required("amount", amount).or_raise(),
        idempotency_key,
    )
    .or_raise();
    decision_row(fcinfo, d)
}

/// Admin reset of the current window (one metric, or all). Returns the number of
/// windows emptied. Bonuses stay.
#[pg_extern(volatile, parallel_unsafe)]
fn quota_reset(subject: Option<&str>, metric: default!(Option<&str>, "NULL")) -> i32 {
    engine::reset(required("subject", subject).or_raise(), metric).or_raise()
}

/// Apply a bonus by kind (questionnaire, payment, referral...). A bonus that is not
/// applied answers `applied = false` with a reason; it is not an error.
#[pg_extern(volatile, parallel_unsafe)]
fn apply_bonus(subject: Option<&str>, metric: Option<&str>, kind: Option<&str>, reference: default!(Option<&str>, "NULL"), fcinfo: pg_sys::FunctionCallInfo) -> composite_type!('static, "quota.bonus_result") {
    let o = engine::apply_bonus(
        required("subject", subject).or_raise(),
        required("metric", metric).or_raise(),
        required("kind", kind).or_raise(),
        reference,
    )
    .or_raise();
    let values = vec![
        o.applied.into_datum(),
        o.reason.into_datum(),
        o.amount.into_datum(),
        o.new_limit.into_datum(),
        o.bonuses_today.into_datum(),
    ];
    composite(fcinfo, "quota.bonus_result", values)
}

// Plans --------------------------------------------------------------------------------

/// Create or replace the limit of `plan` on `metric`; creates the plan if it is missing.
/// A change applies at once to current windows, and usage is kept.
#[pg_extern(volatile, parallel_unsafe)]
fn set_limit(
    plan: Option<&str>,
    metric: Option<&str>,
    period: Option<&str>,
    limit_value: Option<i64>,
    enforcement: default!(Option<&str>, "'hard'"),
    per_request_max: default!(Option<i64>, "NULL"),
) {
    engine::set_limit(
        required("plan", plan).or_raise(),
        required("metric", metric).or_raise(),
        required("period", period).or_raise(),
        required("limit_value", limit_value).or_raise(),
        required("enforcement", enforcement).or_raise(),
        per_request_max,
    )
    .or_raise()
}

/// Remove the limit of `plan` on `metric`. Returns whether there was one.
#[pg_extern(volatile, parallel_unsafe)]
fn remove_limit(plan: Option<&str>, metric: Option<&str>) -> bool {
    engine::remove_limit(required("plan", plan).or_raise(), required("metric", metric).or_raise()).or_raise()
}

/// Put a subject on a plan (creating it if needed). A NULL keeps the subject's current
/// value; a new subject defaults to the quota clock's now and UTC.
#[pg_extern(volatile, parallel_unsafe)]
fn assign_plan(
    subject: Option<&str>,
    plan: Option<&str>,
    tenant: default!(Option<&str>, "NULL"),
    cycle_anchor: default!(Option<TimestampWithTimeZone>, "NULL"),
    time_zone: default!(Option<&str>, "NULL"),
) {
    engine::assign_plan(
        required("subject", subject).or_raise(),
        required("plan", plan).or_raise(),
        tenant,
        cycle_anchor.map(|t| t.into_inner()),
        time_zone,
    )
    .or_raise()
}

/// A bonus of `amount` for `kind` on `metric` in `plan`. The reference scope defaults to
/// 'global' for payment (a payment id is usable once ever) and 'subject' otherwise.
#[pg_extern(volatile, parallel_unsafe)]
fn set_bonus_rule(
    plan: Option<&str>,
    metric: Option<&str>,
    kind: Option<&str>,
    amount: Option<i64>,
    reference_scope: default!(Option<&str>, "NULL"),
) {
    engine::set_bonus_rule(
        required("plan", plan).or_raise(),
        required("metric", metric).or_raise(),
        required("kind", kind).or_raise(),
        required("amount", amount).or_raise(),
        reference_scope,
    )
    .or_raise()
}

/// At most `per_day` bonuses per subject per local day (NULL: no cap).
#[pg_extern(volatile, parallel_unsafe)]
fn set_bonus_cap(plan: Option<&str>, per_day: Option<i32>) {
    engine::set_bonus_cap(required("plan", plan).or_raise(), per_day).or_raise()
}

// Reservations -------------------------------------------------------------------------

fn reservation_row(fcinfo: pg_sys::FunctionCallInfo, h: Hold) -> PgHeapTuple<'static, pgrx::AllocatedByRust> {
    let d = h.decision;
    let values = vec![
        h.id.map(|id| pgrx::Uuid::from_bytes(parse_uuid(&id))).into_datum(),
        h.expires_at.map(clock::to_pg_tz).into_datum(),
        d.allowed.into_datum(),
        d.subject.into_datum(),
        d.metric.into_datum(),
        d.period.into_datum(),
        d.used.into_datum(),
        d.reserved.into_datum(),
        d.limit_value.into_datum(),
        d.bonus.into_datum(),
        d.remaining.into_datum(),
        d.requested.into_datum(),
        d.reset_at.map(clock::to_pg_tz).into_datum(),
        d.enforcement.into_datum(),
        d.reason.into_datum(),
    ];
    composite(fcinfo, "quota.reservation", values)
}

/// The bytes of a UUID in its canonical text form (which this extension wrote).
fn parse_uuid(text: &str) -> [u8; 16] {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("canonical uuid text");
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn reserve(
    subject: Option<&str>,
    metric: Option<&str>,
    amount: Option<i64>,
    ttl: Option<Interval>,
    idempotency_key: Option<&str>,
    metadata: Option<RawJsonb>,
    no_raise: bool,
    fcinfo: pg_sys::FunctionCallInfo,
) -> PgHeapTuple<'static, pgrx::AllocatedByRust> {
    let hold = engine::reserve(ReserveRequest {
        subject: required("subject", subject).or_raise(),
        metric: required("metric", metric).or_raise(),
        amount: required("amount", amount).or_raise(),
        ttl: required("ttl", ttl).or_raise(),
        idempotency_key,
        metadata: metadata.map(|m| m.0),
        no_raise,
    })
    .or_raise();
    reservation_row(fcinfo, hold)
}

/// Hold `amount` against the limit for a long generation, until committed, released or
/// expired (after `ttl`). Over a hard limit: QT429, nothing held.
#[pg_extern(volatile, parallel_unsafe)]
fn quota_reserve(
    subject: Option<&str>,
    metric: Option<&str>,
    amount: Option<i64>,
    ttl: default!(Option<Interval>, "'15 minutes'"),
    idempotency_key: default!(Option<&str>, "NULL"),
    metadata: default!(Option<RawJsonb>, "NULL"),
    fcinfo: pg_sys::FunctionCallInfo,
) -> composite_type!('static, "quota.reservation") {
    reserve(subject, metric, amount, ttl, idempotency_key, metadata, false, fcinfo)
}

/// Like `quota_reserve`, but a refusal answers `allowed = false` (and no reservation id).
#[pg_extern(volatile, parallel_unsafe)]
fn quota_try_reserve(
    subject: Option<&str>,
    metric: Option<&str>,
    amount: Option<i64>,
    ttl: default!(Option<Interval>, "'15 minutes'"),
    idempotency_key: default!(Option<&str>, "NULL"),
    metadata: default!(Option<RawJsonb>, "NULL"),
    fcinfo: pg_sys::FunctionCallInfo,
) -> composite_type!('static, "quota.reservation") {
    reserve(subject, metric, amount, ttl, idempotency_key, metadata, true, fcinfo)
}

/// Settle a reservation with the amount really used (default: the held amount).
#[pg_extern(volatile, parallel_unsafe)]
fn quota_commit(
    reservation: Option<pgrx::Uuid>,
    actual_amount: default!(Option<i64>, "NULL"),
    metadata: default!(Option<RawJsonb>, "NULL"),
    fcinfo: pg_sys::FunctionCallInfo,
) -> composite_type!('static, "quota.decision") {
    // The reserve-time metadata stays on the reservation and its reserve ledger row; this
    // one goes to the commit ledger row.
    decision_row(fcinfo, engine::commit(required("reservation", reservation).or_raise(), actual_amount, metadata.map(|m| m.0)).or_raise())
}

/// Cancel a hold (failed generation). True if this call released it.
#[pg_extern(volatile, parallel_unsafe)]
fn quota_release(reservation: Option<pgrx::Uuid>, reason: default!(Option<&str>, "NULL")) -> bool {
    engine::release(required("reservation", reservation).or_raise(), reason).or_raise()
}

/// Expire lapsed holds everywhere; returns how many. Safe from pg_cron or by hand.
#[pg_extern(volatile, parallel_unsafe)]
fn maintenance() -> i64 {
    engine::maintenance().or_raise()
}

/// Alert thresholds for a limit, in percent of the effective limit: `ARRAY[80, 100]`.
#[pg_extern(volatile, parallel_unsafe)]
fn set_alerts(plan: Option<&str>, metric: Option<&str>, thresholds: Option<Vec<Option<i32>>>) {
    engine::set_alerts(
        required("plan", plan).or_raise(),
        required("metric", metric).or_raise(),
        required("thresholds", thresholds).or_raise(),
    )
    .or_raise()
}

// Subjects and tenants -----------------------------------------------------------------

/// Delete a subject and the state keyed by its id (counters, idempotency keys, holds,
/// events, bonus grants, row charges), so that a new subject with the same id starts
/// clean. The ledger keeps its rows, as history. True if the subject existed (and was
/// visible to the session).
#[pg_extern(volatile, parallel_unsafe)]
fn delete_subject(subject: Option<&str>) -> bool {
    engine::delete_subject(required("subject", subject).or_raise()).or_raise()
}

/// Let members of `role_name` act for `tenant` (and, once bound, only for their bound
/// tenants). Idempotent.
#[pg_extern(volatile, parallel_unsafe)]
fn bind_tenant(role_name: Option<&str>, tenant: Option<&str>) {
    engine::bind_tenant(required("role_name", role_name).or_raise(), required("tenant", tenant).or_raise()).or_raise()
}

/// Remove a role's binding to `tenant`, or all of its bindings (NULL). Returns how many
/// were removed.
#[pg_extern(volatile, parallel_unsafe)]
fn unbind_tenant(role_name: Option<&str>, tenant: default!(Option<&str>, "NULL")) -> i32 {
    engine::unbind_tenant(required("role_name", role_name).or_raise(), tenant).or_raise()
}

mod hotpath;
mod ledger;
mod monitor;
