//! The SQL surface: thin `#[pg_extern]` wrappers that check for NULLs, call the engine and
//! turn its result into a row or an ERROR. No quota logic lives here.
//!
//! Arguments are `Option` (functions are not STRICT) so that a NULL gets SQLSTATE 22004
//! with a clear message instead of a silent NULL result.

use pgrx::prelude::*;
use pgrx::{composite_type, JsonB};

use crate::clock;
use crate::decision::Decision;
use crate::engine::{self, ConsumeRequest};
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
