//! Reservations: reserve, try_reserve, commit, release, maintenance.

use pgrx::prelude::*;

use super::*;
use crate::domain::error::required;
use crate::ops::{self, Hold, ReserveRequest};
use crate::pg::ereport::OrRaise;
use crate::storage::RawJsonb;

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
        d.level.into_datum(),
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
    let hold = ops::reserve(ReserveRequest {
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
    decision_row(fcinfo, ops::commit(required("reservation", reservation).or_raise(), actual_amount, metadata.map(|m| m.0)).or_raise())
}

/// Cancel a hold (failed generation). True if this call released it.
#[pg_extern(volatile, parallel_unsafe)]
fn quota_release(reservation: Option<pgrx::Uuid>, reason: default!(Option<&str>, "NULL")) -> bool {
    ops::release(required("reservation", reservation).or_raise(), reason).or_raise()
}

/// Expire lapsed holds everywhere; returns how many. Safe from pg_cron or by hand.
#[pg_extern(volatile, parallel_unsafe)]
fn maintenance() -> i64 {
    ops::maintenance().or_raise()
}

/// Alert thresholds for a limit, in percent of the effective limit: `ARRAY[80, 100]`; for
/// the metric's limit of `period`, or every limit of the metric when it is NULL.
#[pg_extern(volatile, parallel_unsafe, name = "set_alerts")]
fn set_alerts_v2(plan: Option<&str>, metric: Option<&str>, thresholds: Option<Vec<Option<i32>>>, period: default!(Option<&str>, "NULL")) {
    ops::set_alerts(required("plan", plan).or_raise(), required("metric", metric).or_raise(), required("thresholds", thresholds).or_raise(), period)
        .or_raise()
}

/// `set_alerts(plan, metric, thresholds)` as released scripts before 0.7.0 bind it (C
/// symbol `set_alerts_wrapper`, three arguments).
#[pg_extern(volatile, parallel_unsafe, sql = false)]
fn set_alerts(plan: Option<&str>, metric: Option<&str>, thresholds: Option<Vec<Option<i32>>>) {
    ops::set_alerts(required("plan", plan).or_raise(), required("metric", metric).or_raise(), required("thresholds", thresholds).or_raise(), None)
        .or_raise()
}
