//! The application's calls: check, status, consume, refund, reset, bonus.

use pgrx::prelude::*;

use super::*;
use crate::domain::error::required;
use crate::ops::{self, ConsumeRequest};
use crate::pg::ereport::OrRaise;
use crate::storage::RawJsonb;

/// Would `amount` more fit? A dry run that writes nothing; `used` and `remaining` are the
/// current state (before the request). `NOT allowed` is the seeds' `would_exceed`.
#[pg_extern(stable, parallel_restricted)]
fn quota_check(
    subject: Option<&str>,
    metric: Option<&str>,
    amount: default!(Option<i64>, 1),
    fcinfo: pg_sys::FunctionCallInfo,
) -> composite_type!('static, "quota.decision") {
    let items = vec![(required("metric", metric).or_raise().to_string(), required("amount", amount).or_raise())];
    let mut ds = ops::check(required("subject", subject).or_raise(), &items).or_raise();
    decision_row(fcinfo, ds.remove(0))
}

/// Several metrics at once: `quota_check('u1', '{"messages": 1, "tokens": 350}')`.
#[pg_extern(stable, parallel_restricted, name = "quota_check")]
fn quota_check_many(
    subject: Option<&str>,
    amounts: Option<RawJsonb>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> SetOfIterator<'static, composite_type!('static, "quota.decision")> {
    let items = amounts_of(amounts);
    decision_rows(fcinfo, ops::check(required("subject", subject).or_raise(), &items).or_raise())
}

/// One row per limit of the subject: its plan's, with its overrides applied (`source`
/// says which), and its scheduled plan change, if any, on every row.
#[pg_extern(stable, parallel_restricted, name = "quota_status")]
// pgrx reads the column names from the name!(...) in the signature: no alias possible.
#[allow(clippy::type_complexity)]
fn quota_status_v3(
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
        name!(source, String),
        name!(next_plan, Option<String>),
        name!(next_plan_at, Option<TimestampWithTimeZone>),
        name!(pool, Option<String>),
        name!(level, i32),
    ),
> {
    let rows = ops::status(required("subject", subject).or_raise()).or_raise();
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
            r.source.as_str().to_string(),
            r.next.as_ref().map(|n| n.plan.clone()),
            r.next.as_ref().map(|n| clock::to_pg_tz(n.at)),
            (r.level > 0).then_some(r.subject),
            r.level as i32,
        )
    }))
}

/// `quota_status(subject)` as the 0.7.0 script binds it (C symbol
/// `quota_status_v2_wrapper`, twelve columns): the subject's own rows only.
#[pg_extern(stable, parallel_restricted, sql = false)]
#[allow(clippy::type_complexity)]
fn quota_status_v2(
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
        name!(source, String),
        name!(next_plan, Option<String>),
        name!(next_plan_at, Option<TimestampWithTimeZone>),
    ),
> {
    TableIterator::new(
        quota_status_v3(subject)
            .filter(|r| r.13 == 0)
            .map(|(m, p, l, b, u, r, at, e, res, src, np, npa, ..)| (m, p, l, b, u, r, at, e, res, src, np, npa)),
    )
}

/// `quota_status(subject)` as released scripts before 0.7.0 bind it (C symbol
/// `quota_status_wrapper`, nine columns).
#[pg_extern(stable, parallel_restricted, sql = false)]
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
    TableIterator::new(quota_status_v3(subject).filter(|r| r.13 == 0).map(|(m, p, l, b, u, r, at, e, res, ..)| (m, p, l, b, u, r, at, e, res)))
}

// Consume ------------------------------------------------------------------------------

fn consume(
    subject: Option<&str>,
    items: Vec<(String, i64)>,
    idempotency_key: Option<&str>,
    metadata: Option<RawJsonb>,
    no_raise: bool,
) -> Vec<Decision> {
    ops::consume(ConsumeRequest {
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

/// Several metrics, all or nothing:
/// `quota_consume_many('u1', '{"messages": 1, "tokens": 350}', 'request-17')`. A name of
/// its own (0.6.0): as a `quota_consume` overload with the key and metadata, a driver's
/// untyped `quota_consume($1, $2, $3)` could not be resolved (42725).
#[pg_extern(volatile, parallel_unsafe)]
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

/// `quota_consume_many` that returns refusals instead of raising them.
#[pg_extern(volatile, parallel_unsafe)]
fn quota_try_consume_many(
    subject: Option<&str>,
    amounts: Option<RawJsonb>,
    idempotency_key: default!(Option<&str>, "NULL"),
    metadata: default!(Option<RawJsonb>, "NULL"),
    fcinfo: pg_sys::FunctionCallInfo,
) -> SetOfIterator<'static, composite_type!('static, "quota.decision")> {
    decision_rows(fcinfo, consume(subject, amounts_of(amounts), idempotency_key, metadata, true))
}

/// The short spelling `quota_consume(subject, amounts jsonb)`: exactly two arguments and
/// no defaults, so that no untyped call of `quota_consume` can match it and another form
/// at once (0.6.0).
#[pg_extern(volatile, parallel_unsafe, name = "quota_consume")]
fn quota_consume_amounts(
    subject: Option<&str>,
    amounts: Option<RawJsonb>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> SetOfIterator<'static, composite_type!('static, "quota.decision")> {
    decision_rows(fcinfo, consume(subject, amounts_of(amounts), None, None, false))
}

/// `quota_try_consume(subject, amounts jsonb)`, as `quota_consume_amounts`.
#[pg_extern(volatile, parallel_unsafe, name = "quota_try_consume")]
fn quota_try_consume_amounts(
    subject: Option<&str>,
    amounts: Option<RawJsonb>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> SetOfIterator<'static, composite_type!('static, "quota.decision")> {
    decision_rows(fcinfo, consume(subject, amounts_of(amounts), None, None, true))
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
    let d = ops::refund(
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
    ops::reset(required("subject", subject).or_raise(), metric).or_raise()
}

/// Apply a bonus by kind (questionnaire, payment, referral...). A bonus that is not
/// applied answers `applied = false` with a reason; it is not an error.
#[pg_extern(volatile, parallel_unsafe)]
fn apply_bonus(
    subject: Option<&str>,
    metric: Option<&str>,
    kind: Option<&str>,
    reference: default!(Option<&str>, "NULL"),
    fcinfo: pg_sys::FunctionCallInfo,
) -> composite_type!('static, "quota.bonus_result") {
    let o = ops::apply_bonus(
        required("subject", subject).or_raise(),
        required("metric", metric).or_raise(),
        required("kind", kind).or_raise(),
        reference,
    )
    .or_raise();
    let values = vec![o.applied.into_datum(), o.reason.into_datum(), o.amount.into_datum(), o.new_limit.into_datum(), o.bonuses_today.into_datum()];
    composite(fcinfo, "quota.bonus_result", values)
}
