//! The SQL surface: thin `#[pg_extern]` wrappers that check for NULLs, call the engine and
//! turn its result into a row or an ERROR. No quota logic lives here.
//!
//! Arguments are `Option` (functions are not STRICT) so that a NULL gets SQLSTATE 22004
//! with a clear message instead of a silent NULL result.

use pgrx::prelude::*;
use pgrx::{composite_type, JsonB};

use crate::clock;
use crate::decision::Decision;
use crate::engine::{self, ConsumeRequest, Hold, ReserveRequest};
use crate::ereport::OrRaise;
use crate::error::required;
use crate::store::RawJsonb;

type DecisionRow = composite_type!('static, "quota.decision");

/// Set attribute `i` (1-based) of a composite we built ourselves: cannot fail.
fn put<T: IntoDatum>(t: &mut PgHeapTuple<'static, pgrx::AllocatedByRust>, i: usize, value: T) {
    let index = std::num::NonZeroUsize::new(i).expect("attributes are 1-based");
    t.set_by_index(index, value).unwrap_or_else(|e| unreachable!("attribute {i}: {e}"));
}

fn decision_row(d: Decision) -> DecisionRow {
    let mut t = PgHeapTuple::new_composite_type("quota.decision").expect("type quota.decision exists");
    put(&mut t, 1, d.allowed);
    put(&mut t, 2, d.subject);
    put(&mut t, 3, d.metric);
    put(&mut t, 4, d.period);
    put(&mut t, 5, d.used);
    put(&mut t, 6, d.limit_value);
    put(&mut t, 7, d.bonus);
    put(&mut t, 8, d.remaining);
    put(&mut t, 9, d.requested);
    put(&mut t, 10, d.reset_at.map(clock::to_pg_tz));
    put(&mut t, 11, d.enforcement);
    put(&mut t, 12, d.reason);
    put(&mut t, 13, d.reserved);
    t
}

fn decision_rows(ds: Vec<Decision>) -> SetOfIterator<'static, DecisionRow> {
    SetOfIterator::new(ds.into_iter().map(decision_row))
}

fn amounts_of(amounts: Option<JsonB>) -> Vec<(String, i64)> {
    let amounts = required("amounts", amounts).or_raise();
    engine::parse_amounts(&amounts.0).or_raise()
}

// Check --------------------------------------------------------------------------------

/// Would `amount` more fit? A dry run that writes nothing; `used` and `remaining` are the
/// current state (before the request). `NOT allowed` is the seeds' `would_exceed`.
#[pg_extern(stable, parallel_restricted)]
fn quota_check(subject: Option<&str>, metric: Option<&str>, amount: default!(Option<i64>, 1)) -> composite_type!('static, "quota.decision") {
    let items = vec![(required("metric", metric).or_raise().to_string(), required("amount", amount).or_raise())];
    let mut ds = engine::check(required("subject", subject).or_raise(), &items).or_raise();
    decision_row(ds.remove(0))
}

/// Several metrics at once: `quota_check('u1', '{"messages": 1, "tokens": 350}')`.
#[pg_extern(stable, parallel_restricted, name = "quota_check")]
fn quota_check_many(subject: Option<&str>, amounts: Option<JsonB>) -> SetOfIterator<'static, composite_type!('static, "quota.decision")> {
    let items = amounts_of(amounts);
    decision_rows(engine::check(required("subject", subject).or_raise(), &items).or_raise())
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
) -> composite_type!('static, "quota.decision") {
    decision_row(consume(subject, one_item(metric, amount), idempotency_key, metadata, false).remove(0))
}

/// Several metrics, all or nothing: `quota_consume('u1', '{"messages": 1, "tokens": 350}')`.
#[pg_extern(volatile, parallel_unsafe, name = "quota_consume")]
fn quota_consume_many(
    subject: Option<&str>,
    amounts: Option<JsonB>,
    idempotency_key: default!(Option<&str>, "NULL"),
    metadata: default!(Option<RawJsonb>, "NULL"),
) -> SetOfIterator<'static, composite_type!('static, "quota.decision")> {
    decision_rows(consume(subject, amounts_of(amounts), idempotency_key, metadata, false))
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
) -> composite_type!('static, "quota.decision") {
    decision_row(consume(subject, one_item(metric, amount), idempotency_key, metadata, true).remove(0))
}

#[pg_extern(volatile, parallel_unsafe, name = "quota_try_consume")]
fn quota_try_consume_many(
    subject: Option<&str>,
    amounts: Option<JsonB>,
    idempotency_key: default!(Option<&str>, "NULL"),
    metadata: default!(Option<RawJsonb>, "NULL"),
) -> SetOfIterator<'static, composite_type!('static, "quota.decision")> {
    decision_rows(consume(subject, amounts_of(amounts), idempotency_key, metadata, true))
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
) -> composite_type!('static, "quota.decision") {
    let d = engine::refund(
        required("subject", subject).or_raise(),
        required("metric", metric).or_raise(),
        required("amount", amount).or_raise(),
        idempotency_key,
    )
    .or_raise();
    decision_row(d)
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
fn apply_bonus(subject: Option<&str>, metric: Option<&str>, kind: Option<&str>, reference: default!(Option<&str>, "NULL")) -> composite_type!('static, "quota.bonus_result") {
    let o = engine::apply_bonus(
        required("subject", subject).or_raise(),
        required("metric", metric).or_raise(),
        required("kind", kind).or_raise(),
        reference,
    )
    .or_raise();
    let mut t = PgHeapTuple::new_composite_type("quota.bonus_result").expect("type quota.bonus_result exists");
    put(&mut t, 1, o.applied);
    put(&mut t, 2, o.reason);
    put(&mut t, 3, o.amount);
    put(&mut t, 4, o.new_limit);
    put(&mut t, 5, o.bonuses_today);
    t
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

fn reservation_row(h: Hold) -> PgHeapTuple<'static, pgrx::AllocatedByRust> {
    let mut t = PgHeapTuple::new_composite_type("quota.reservation").expect("type quota.reservation exists");
    let d = h.decision;
    put(&mut t, 1, h.id.map(|id| pgrx::Uuid::from_slice(&parse_uuid(&id)).expect("16 bytes")));
    put(&mut t, 2, h.expires_at.map(clock::to_pg_tz));
    put(&mut t, 3, d.allowed);
    put(&mut t, 4, d.subject);
    put(&mut t, 5, d.metric);
    put(&mut t, 6, d.period);
    put(&mut t, 7, d.used);
    put(&mut t, 8, d.reserved);
    put(&mut t, 9, d.limit_value);
    put(&mut t, 10, d.bonus);
    put(&mut t, 11, d.remaining);
    put(&mut t, 12, d.requested);
    put(&mut t, 13, d.reset_at.map(clock::to_pg_tz));
    put(&mut t, 14, d.enforcement);
    put(&mut t, 15, d.reason);
    t
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
    reservation_row(hold)
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
) -> composite_type!('static, "quota.reservation") {
    reserve(subject, metric, amount, ttl, idempotency_key, metadata, false)
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
) -> composite_type!('static, "quota.reservation") {
    reserve(subject, metric, amount, ttl, idempotency_key, metadata, true)
}

/// Settle a reservation with the amount really used (default: the held amount).
#[pg_extern(volatile, parallel_unsafe)]
fn quota_commit(
    reservation: Option<pgrx::Uuid>,
    actual_amount: default!(Option<i64>, "NULL"),
    metadata: default!(Option<RawJsonb>, "NULL"),
) -> composite_type!('static, "quota.decision") {
    // The reserve-time metadata stays on the reservation and its reserve ledger row; this
    // one goes to the commit ledger row.
    decision_row(engine::commit(required("reservation", reservation).or_raise(), actual_amount, metadata.map(|m| m.0)).or_raise())
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
