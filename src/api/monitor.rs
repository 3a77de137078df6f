//! SQL functions for operators and dashboards: `quota.stats` (shared-memory totals),
//! `quota.recent_refusals`, the tenant test behind row-level security, and the quota
//! clock the admin views use. Thin wrappers; the logic is in `stats` and `tenancy`.

use pgrx::prelude::*;

use crate::domain::error::QuotaError;
use crate::domain::tenancy;
use crate::pg::clock;
use crate::pg::ereport::{raise, OrRaise};
use crate::pg::stats;

fn not_preloaded(feature: &'static str) -> QuotaError {
    QuotaError::NotAvailable {
        feature,
        message: format!("{feature} needs quota_ext in shared_preload_libraries"),
        hint: "Add quota_ext to shared_preload_libraries in postgresql.conf (ALTER SYSTEM SET shared_preload_libraries = 'quota_ext') and restart the server.".into(),
    }
}

/// Totals per metric since the server started (or `quota.stats_reset()`), for this
/// database. Read it through the view `quota.stats`.
#[pg_extern(volatile, parallel_safe)]
// pgrx reads the column names from the name!(...) in the signature: no alias possible.
#[allow(clippy::type_complexity)]
fn stats_totals() -> TableIterator<
    'static,
    (
        name!(metric, String),
        name!(consumed_total, i64),
        name!(consumes_total, i64),
        name!(exceeded_total, i64),
        name!(soft_overages_total, i64),
        name!(checks_total, i64),
        name!(refunded_total, i64),
        name!(bonuses_total, i64),
    ),
> {
    // The read guard's rule, for a call of the function itself: a role bound to tenants
    // that names another tenant is refused (42501), as reading the view is.
    crate::pg::roles::scope().or_raise();
    let rows = stats::snapshot().ok_or_else(|| not_preloaded("quota.stats")).or_raise();
    TableIterator::new(rows.into_iter().map(|(m, t)| (m, t.consumed, t.consumes, t.exceeded, t.soft_overages, t.checks, t.refunded, t.bonuses)))
}

/// Zero this database's totals.
#[pg_extern(volatile, parallel_unsafe)]
fn stats_reset() {
    if !stats::reset() {
        raise(not_preloaded("quota.stats_reset"));
    }
}

/// The most recent refusals (QT429/QT413), newest first, including those whose
/// transaction rolled back; only subjects the session may see. Needs shared_preload_libraries.
#[pg_extern(volatile, parallel_safe)]
// pgrx reads the column names from the name!(...) in the signature: no alias possible.
#[allow(clippy::type_complexity)]
fn recent_refusals() -> TableIterator<
    'static,
    (
        name!(refused_at, TimestampWithTimeZone),
        name!(subject, String),
        name!(tenant, Option<String>),
        name!(metric, String),
        name!(requested, i64),
        name!(used, i64),
        name!(limit_value, i64),
        name!(reason, &'static str),
    ),
> {
    let rows = stats::recent().ok_or_else(|| not_preloaded("quota.recent_refusals")).or_raise();
    let scope = crate::pg::roles::scope().or_raise();
    let all = scope == tenancy::Scope::All;
    TableIterator::new(rows.into_iter().filter(move |r| all || (!r.tenant_cut && scope.admits(r.tenant.as_deref()))).map(|r| {
        let at = TimestampWithTimeZone::try_from(r.at).unwrap_or_else(|e| unreachable!("stored timestamp: {e:?}"));
        (at, r.subject, r.tenant, r.metric, r.requested, r.used, r.limit, r.reason)
    }))
}

/// May this session see a subject of `tenant`? The rule of `tenancy`; every row-level
/// security policy of the extension uses it. It never raises: a session bound to other
/// tenants than `quota.tenant` sees nothing here (the read guard, `read_guard`, refuses
/// its queries before they start), so no answer depends on which rows exist, even when
/// the setting changes in the middle of a query.
#[pg_extern(stable, parallel_safe)]
fn tenant_visible(tenant: Option<&str>) -> bool {
    crate::pg::roles::scope().is_ok_and(|scope| scope.admits(tenant))
}

/// The time quota windows use: `quota.clock_override` when set, else now().
#[pg_extern(stable, parallel_safe)]
fn quota_clock() -> TimestampWithTimeZone {
    clock::to_pg_tz(clock::now())
}
