//! Administration: plans, limits, alerts, bonus rules, subjects and tenant bindings.

use pgrx::prelude::*;

use crate::domain::error::required;
use crate::ops;
use crate::pg::ereport::OrRaise;

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
    ops::set_limit(
        required("plan", plan).or_raise(),
        required("metric", metric).or_raise(),
        required("period", period).or_raise(),
        required("limit_value", limit_value).or_raise(),
        required("enforcement", enforcement).or_raise(),
        per_request_max,
    )
    .or_raise()
}

/// Remove the limit of `plan` on `metric` for `period`, or every limit of the metric when
/// `period` is NULL. Returns whether there was any.
#[pg_extern(volatile, parallel_unsafe, name = "remove_limit")]
fn remove_limit_v2(plan: Option<&str>, metric: Option<&str>, period: default!(Option<&str>, "NULL")) -> bool {
    ops::remove_limit(required("plan", plan).or_raise(), required("metric", metric).or_raise(), period).or_raise()
}

/// `remove_limit(plan, metric)` as released scripts before 0.7.0 bind it (C symbol
/// `remove_limit_wrapper`, two arguments).
#[pg_extern(volatile, parallel_unsafe, sql = false)]
fn remove_limit(plan: Option<&str>, metric: Option<&str>) -> bool {
    ops::remove_limit(required("plan", plan).or_raise(), required("metric", metric).or_raise(), None).or_raise()
}

/// A rate limit on `metric` in `plan`: `count` units per `per`, up to `burst` more at once
/// (GCRA, as redis-cell's CL.THROTTLE). It is one more limit of the metric, named
/// 'per <length>', and a consume must fit it as every other; refused: QT429, code
/// rate_limited, with retry_after. Replaces the plan's rate limit of the same length.
#[pg_extern(volatile, parallel_unsafe)]
fn set_rate_limit(plan: Option<&str>, metric: Option<&str>, count: Option<i64>, per: Option<pgrx::datum::Interval>, burst: default!(Option<i64>, 0)) {
    ops::set_rate_limit(
        required("plan", plan).or_raise(),
        required("metric", metric).or_raise(),
        required("count", count).or_raise(),
        required("per", per).or_raise(),
        required("burst", burst).or_raise(),
    )
    .or_raise()
}

/// Give one subject its own limit on one metric and window: `max` replaces the plan's
/// limit value, `add` adds to it; a window the plan does not limit is added. It stops
/// counting at `expires_at` (NULL: never). Tenant-scoped through the subject.
#[pg_extern(volatile, parallel_unsafe)]
fn set_override(
    subject: Option<&str>,
    metric: Option<&str>,
    period: Option<&str>,
    value: Option<i64>,
    mode: default!(Option<&str>, "'max'"),
    expires_at: default!(Option<TimestampWithTimeZone>, "NULL"),
) {
    ops::set_override(
        required("subject", subject).or_raise(),
        required("metric", metric).or_raise(),
        required("period", period).or_raise(),
        required("value", value).or_raise(),
        required("mode", mode).or_raise(),
        expires_at.map(|t| ops::args::instant("expires_at", t.into_inner())).transpose().or_raise(),
    )
    .or_raise()
}

/// Remove a subject's override of a metric for `period`, or all of the metric's (NULL).
/// Returns whether there was any.
#[pg_extern(volatile, parallel_unsafe)]
fn remove_override(subject: Option<&str>, metric: Option<&str>, period: default!(Option<&str>, "NULL")) -> bool {
    ops::remove_override(required("subject", subject).or_raise(), required("metric", metric).or_raise(), period).or_raise()
}

/// Put a subject on a plan (creating it if needed). A NULL keeps the subject's current
/// value; a new subject defaults to the quota clock's now and UTC. With `effective_at` in
/// the future the change is scheduled: the subject keeps its plan until then (see
/// quota.cancel_plan_change). `carry` says how the usage of a window the change falls in
/// carries over: 'usage' as it is, 'percent' the same share of the new limit.
#[pg_extern(volatile, parallel_unsafe, name = "assign_plan")]
#[allow(clippy::too_many_arguments)]
fn assign_plan_v2(
    subject: Option<&str>,
    plan: Option<&str>,
    tenant: default!(Option<&str>, "NULL"),
    cycle_anchor: default!(Option<TimestampWithTimeZone>, "NULL"),
    time_zone: default!(Option<&str>, "NULL"),
    effective_at: default!(Option<TimestampWithTimeZone>, "NULL"),
    carry: default!(Option<&str>, "'usage'"),
) {
    ops::assign_plan(
        required("subject", subject).or_raise(),
        required("plan", plan).or_raise(),
        tenant,
        cycle_anchor.map(|t| t.into_inner()),
        time_zone,
        ops::Effect {
            at: effective_at.map(|t| ops::args::instant("effective_at", t.into_inner())).transpose().or_raise(),
            carry: required("carry", carry).or_raise(),
        },
    )
    .or_raise()
}

/// `assign_plan(subject, plan, tenant, cycle_anchor, time_zone)` as released scripts
/// before 0.7.0 bind it (C symbol `assign_plan_wrapper`, five arguments).
#[pg_extern(volatile, parallel_unsafe, sql = false)]
fn assign_plan(
    subject: Option<&str>,
    plan: Option<&str>,
    tenant: Option<&str>,
    cycle_anchor: Option<TimestampWithTimeZone>,
    time_zone: Option<&str>,
) {
    assign_plan_v2(subject, plan, tenant, cycle_anchor, time_zone, None, Some("usage"))
}

/// Cancel a subject's scheduled plan change. Returns whether there was one (a change
/// whose instant has come is in force, and is not cancelled).
#[pg_extern(volatile, parallel_unsafe)]
fn cancel_plan_change(subject: Option<&str>) -> bool {
    ops::cancel_plan_change(required("subject", subject).or_raise()).or_raise()
}

/// Make `subject` a member of `pool` (itself a subject), or of no pool (NULL). From then
/// on every consume of the subject must also fit the pool's limits (and its pool's, up to
/// four levels); usage counted before stays where it was counted. Refused with 22023 for
/// a cycle, a chain deeper than four levels, or a pool of another tenant.
#[pg_extern(volatile, parallel_unsafe)]
fn set_pool(subject: Option<&str>, pool: Option<&str>) {
    ops::pool::set_pool(required("subject", subject).or_raise(), pool).or_raise()
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
    ops::set_bonus_rule(
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
    ops::set_bonus_cap(required("plan", plan).or_raise(), per_day).or_raise()
}

// Subjects and tenants -----------------------------------------------------------------

/// Delete a subject and the state keyed by its id (counters, idempotency keys, holds,
/// events, bonus grants, row charges), so that a new subject with the same id starts
/// clean. The ledger keeps its rows, as history. True if the subject existed (and was
/// visible to the session).
#[pg_extern(volatile, parallel_unsafe)]
fn delete_subject(subject: Option<&str>) -> bool {
    ops::delete_subject(required("subject", subject).or_raise()).or_raise()
}

/// Let members of `role_name` act for `tenant` (and, once bound, only for their bound
/// tenants). Idempotent.
#[pg_extern(volatile, parallel_unsafe)]
fn bind_tenant(role_name: Option<&str>, tenant: Option<&str>) {
    ops::bind_tenant(required("role_name", role_name).or_raise(), required("tenant", tenant).or_raise()).or_raise()
}

/// Remove a role's binding to `tenant`, or all of its bindings (NULL). Returns how many
/// were removed.
#[pg_extern(volatile, parallel_unsafe)]
fn unbind_tenant(role_name: Option<&str>, tenant: default!(Option<&str>, "NULL")) -> i32 {
    ops::unbind_tenant(required("role_name", role_name).or_raise(), tenant).or_raise()
}
