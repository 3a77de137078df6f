//! Administration: plans, limits, alerts, bonus rules, subjects and tenant bindings.

use pgrx::pg_sys;
use pgrx::spi::SpiClient;

use super::args::{known_name, parse_enforcement, parse_period, parse_window};
use crate::domain::bonus::{BonusRule, ReferenceScope};
use crate::domain::error::{self, positive_amount, QuotaError, Result};
use crate::domain::limits::{Enforcement, Limit, Source};
use crate::domain::period;
use crate::domain::schedule::Carry;
use crate::pg::clock;
use crate::pg::installed;
use crate::storage;
use chrono::{DateTime, Utc};

pub fn set_limit(plan: &str, metric: &str, period: &str, limit_value: i64, enforcement: &str, per_request_max: Option<i64>) -> Result<()> {
    known_name("plan", plan)?;
    known_name("metric", metric)?;
    let limit = Limit {
        period: parse_window(period)?,
        limit_value,
        enforcement: parse_enforcement(enforcement)?,
        per_request_max,
        alerts: vec![],
        source: Source::Plan,
        burst: 0,
    };
    if limit_value < 0 {
        return Err(QuotaError::invalid("limit_value", limit_value, "limit_value must not be negative", "Pass 0 or more; 0 blocks every request."));
    }
    if let Some(cap) = per_request_max {
        positive_amount("per_request_max", cap)?;
    }
    if !limit.period.is_calendar() {
        installed::requires(installed::LIMITS_V2, "a window that opens at first use")?;
    }
    upsert_limit(plan, metric, limit)
}

/// A rate limit: `count` units per `per`, `burst` more at once (GCRA, redis-cell's
/// `CL.THROTTLE` semantics), one more limit of the metric. The period is named
/// 'per <length>' ('per 1 minute'). Hard: a consume faster than the rate is refused
/// (QT429, code rate_limited, with retry_after).
pub fn set_rate_limit(plan: &str, metric: &str, count: i64, per: pgrx::datum::Interval, burst: i64) -> Result<()> {
    installed::requires(installed::LIMITS_V2, "quota.set_rate_limit")?;
    known_name("plan", plan)?;
    known_name("metric", metric)?;
    let bad_per = || {
        QuotaError::invalid(
            "per",
            "interval",
            "per must be a whole number of seconds, from 1 second to 8784 hours",
            "Pass how long the count is for, such as '1 minute' or '1 hour' (no months).",
        )
    };
    if per.months() != 0 || per.micros() % 1_000_000 != 0 {
        return Err(bad_per());
    }
    let seconds = (per.days() as i64).checked_mul(86_400).and_then(|d| d.checked_add(per.micros() / 1_000_000)).ok_or_else(bad_per)?;
    let length = crate::domain::rolling::Length::from_seconds(seconds).ok_or_else(bad_per)?;
    if let Err((argument, why)) = crate::domain::rate::Rate::new(burst, count, seconds * 1_000_000) {
        let (argument, value) = if argument == "count" { ("count", count) } else { ("burst", burst) };
        return Err(QuotaError::invalid(argument, value, why.replace("max_burst", "burst"), "Pass a count of at least 1 and a burst of 0 or more."));
    }
    let period = parse_period(&format!("per {}", length.canonical()))?;
    let cap = storage::volatile(|c| Ok(storage::limits(c, plan, metric)?.iter().filter_map(|l| l.per_request_max).min()))?;
    let limit =
        Limit { period, limit_value: count, enforcement: Enforcement::Hard, per_request_max: cap, alerts: vec![], source: Source::Plan, burst };
    upsert_limit(plan, metric, limit)
}

/// Add or replace the (plan, metric, period) limit, with the NOTICE of `windows_notice`.
fn upsert_limit(plan: &str, metric: &str, limit: Limit) -> Result<()> {
    let notice = storage::volatile(|c| {
        storage::ensure_plan(c, plan);
        let before = storage::limits(c, plan, metric)?;
        storage::upsert_limit(c, plan, metric, &limit);
        let after = storage::limits(c, plan, metric)?;
        // Before limits v2, set_limit replaces the metric's one limit: nothing to say.
        Ok(installed::at_least(installed::LIMITS_V2).then(|| windows_notice(plan, metric, &limit, &before, &after)).flatten())
    })?;
    if let Some(text) = notice {
        pgrx::notice!("{text}");
    }
    Ok(())
}

/// What an admin should hear when a set_limit gave a metric another window (so that one
/// who meant to change 'day' to 'month' sees it), or changed the per-request cap of the
/// metric's other windows.
fn windows_notice(plan: &str, metric: &str, limit: &Limit, before: &[Limit], after: &[Limit]) -> Option<String> {
    let others: Vec<&Limit> = before.iter().filter(|l| l.period != limit.period).collect();
    if others.is_empty() {
        return None;
    }
    let periods = after.iter().map(|l| l.period.as_str()).collect::<Vec<_>>().join(", ");
    let (plan_q, metric_q) = (error::quoted(plan), error::quoted(metric));
    let mut text = if before.iter().any(|l| l.period == limit.period) {
        String::new()
    } else {
        format!(
            "metric \"{metric_q}\" of plan \"{plan_q}\" now has {} limits: {periods}; a consume must fit all of them (to replace a window instead, remove the old one with quota.remove_limit(plan, metric, period))",
            after.len()
        )
    };
    if others.iter().any(|l| l.per_request_max != limit.per_request_max) {
        let cap = limit.per_request_max.map_or("none".to_string(), |c| c.to_string());
        if !text.is_empty() {
            text.push_str("; ");
        }
        text.push_str(&format!("the per-request cap of metric \"{metric_q}\" belongs to the metric: it is now {cap} for every window ({periods})"));
    }
    (!text.is_empty()).then_some(text)
}

/// Thresholds (percent of the effective limit) at which threshold events fire.
/// `period` None: every window of the metric.
pub fn set_alerts(plan: &str, metric: &str, thresholds: Vec<Option<i32>>, period: Option<&str>) -> Result<()> {
    known_name("metric", metric)?;
    // The stored spelling ('300 min' is stored as '5 hours').
    let period = period.map(parse_period).transpose()?.map(|p| p.as_str().to_string());
    let period = period.as_deref();
    let mut t = Vec::with_capacity(thresholds.len());
    for v in thresholds {
        match v {
            Some(p) if (1..=1000).contains(&p) => t.push(p),
            other => {
                return Err(QuotaError::invalid(
                    "thresholds",
                    other.map_or("NULL".to_string(), |p| p.to_string()),
                    "thresholds must be percentages between 1 and 1000",
                    "Pass an array such as ARRAY[80, 100].",
                ))
            }
        }
    }
    storage::volatile(|c| {
        existing_plan(c, plan)?;
        if storage::set_alerts(c, plan, metric, t, period) {
            Ok(())
        } else {
            let window = period.map_or(String::new(), |p| format!(" per {p}"));
            Err(QuotaError::invalid(
                "metric",
                metric,
                format!("plan \"{plan}\" has no limit on metric \"{metric}\"{window}"),
                "Create the limit first with quota.set_limit (quota.plan_limits lists the plan's limits).",
            ))
        }
    })
}

/// Remove the metric's limit for `period`, or every limit of the metric (None). Returns
/// whether there was any.
pub fn remove_limit(plan: &str, metric: &str, period: Option<&str>) -> Result<bool> {
    known_name("plan", plan)?;
    known_name("metric", metric)?;
    let period = period.map(parse_period).transpose()?.map(|p| p.as_str().to_string());
    let period = period.as_deref();
    storage::volatile(|c| Ok(!storage::delete_limit(c, plan, metric, period).is_empty()))
}

fn existing_plan(c: &mut SpiClient<'_>, plan: &str) -> Result<Option<i32>> {
    known_name("plan", plan)?;
    storage::plan_bonus_cap(c, plan).ok_or_else(|| {
        QuotaError::invalid(
            "plan",
            plan,
            format!("unknown plan \"{plan}\""),
            "Create the plan first with quota.set_limit(plan, metric, period, limit).",
        )
    })
}

/// When and how a plan assignment takes effect: at once (`at` None, or not in the
/// future), or at `at` (a scheduled change); `carry` says how the usage of a window the
/// change falls in carries over.
pub struct Effect<'a> {
    pub at: Option<DateTime<Utc>>,
    pub carry: &'a str,
}

pub fn assign_plan(
    subject: &str,
    plan: &str,
    tenant: Option<&str>,
    cycle_anchor: Option<pg_sys::TimestampTz>,
    time_zone: Option<&str>,
    effect: Effect<'_>,
) -> Result<()> {
    known_name("subject", subject)?;
    let carry = effect.carry.parse::<Carry>().map_err(|_| {
        QuotaError::invalid(
            "carry",
            effect.carry,
            format!("unknown carry \"{}\"", effect.carry),
            format!("Use one of: {} (usage keeps a window's usage, percent its share of the limit).", Carry::NAMES),
        )
    })?;
    let now = clock::now();
    if effect.at.is_some() || carry == Carry::Percent {
        installed::requires(installed::LIMITS_V2, "a scheduled or carried plan change")?;
    }
    if let Some(at) = effect.at.filter(|at| *at > now) {
        if tenant.is_some() || cycle_anchor.is_some() || time_zone.is_some() {
            return Err(QuotaError::invalid(
                "effective_at",
                at.to_rfc3339(),
                "a scheduled change changes the plan only",
                "Change tenant, cycle_anchor or time_zone with a separate quota.assign_plan call (without effective_at).",
            ));
        }
        return schedule_plan(subject, plan, storage::NextPlan { plan: plan.to_string(), at, carry });
    }
    if let Some(zone) = time_zone {
        if period::parse_zone(zone).is_none() {
            return Err(QuotaError::invalid(
                "time_zone",
                zone,
                format!("unknown time zone \"{zone}\""),
                "Use an IANA time zone name such as 'UTC', 'Europe/Paris' or 'America/New_York'.",
            ));
        }
    }
    let anchor = match cycle_anchor {
        Some(t) if !clock::in_range(t) => {
            return Err(QuotaError::invalid(
                "cycle_anchor",
                "out of range",
                "cycle_anchor must be a finite timestamp between the years 1 and 9999",
                "Pass the start of the first billing cycle.",
            ))
        }
        other => other.map(clock::from_pg),
    };
    if let Some(t) = tenant {
        error::name("tenant", t)?;
    }
    let scope = crate::pg::roles::scope()?;
    let tenant = scope.assignable(tenant).map_err(|why| {
        QuotaError::invalid(
            "tenant",
            tenant.unwrap_or(""),
            why,
            "Leave tenant NULL to use the session's quota.tenant, or run as quota_admin without quota.tenant.",
        )
    })?;
    storage::volatile(|c| {
        existing_plan(c, plan)?;
        // A scheduled change that is due is stored first (with its carry), so that this
        // assignment starts from the usage readers see.
        let found = storage::find_subject(c, subject)?.filter(|s| scope.admits(s.tenant.as_deref()));
        // Neither out of nor into a paused tenant.
        super::pause::refuse_paused(found.as_ref().and_then(|s| s.tenant.as_deref()))?;
        super::pause::refuse_paused(tenant.as_deref())?;
        let before = match found {
            Some(s) => Some(super::schedule::store_due(c, s, now)?),
            None => None,
        };
        // A member of a pool, or a pool with members, keeps its tenant: a pool and its
        // members are one tenant's (`set_pool`).
        if let (Some(b), Some(t)) = (&before, tenant.as_deref()) {
            if b.tenant.as_deref() != Some(t) && installed::at_least(installed::POOLS) {
                storage::lock_membership(c);
                if b.pool.is_some() || storage::member_count(c, &b.id) > 0 {
                    return Err(QuotaError::invalid(
                        "tenant",
                        t,
                        format!("subject \"{}\" is in a pool or has members: it cannot move to another tenant", error::quoted(&b.id)),
                        "Take it out of its pool and move its members first (quota.set_pool(<subject>, NULL)), then change the tenant.",
                    ));
                }
            }
        }
        // The upsert itself refuses a row of another tenant (a concurrent creator).
        let assignment = storage::Assignment { id: subject, plan, tenant: tenant.as_deref(), anchor, zone: time_zone };
        if !storage::upsert_subject(c, &assignment, now, &scope) {
            return Err(QuotaError::UnknownSubject { subject: subject.to_string() });
        }
        if let Some(before) = before.filter(|b| carry == Carry::Percent && b.plan != plan) {
            let after = storage::Subject { plan: plan.to_string(), next: None, carried_from: None, ..before.clone() };
            super::schedule::carry_percent(c, &before, &after, now, now)?;
        }
        Ok(())
    })
}

/// Schedule a plan change of a stored subject in the session's scope (replacing any
/// scheduled before).
fn schedule_plan(subject: &str, plan: &str, next: storage::NextPlan) -> Result<()> {
    let scope = crate::pg::roles::scope()?;
    storage::volatile(|c| {
        existing_plan(c, plan)?;
        let s = storage::lock_subject(c, subject)?.filter(|s| scope.admits(s.tenant.as_deref()));
        let s = s.ok_or_else(|| super::pause::unknown(&scope, QuotaError::UnknownSubject { subject: subject.to_string() }))?;
        super::pause::refuse_paused(s.tenant.as_deref())?;
        // A change stored before this one is in force first.
        let s = super::schedule::store_due(c, s, clock::now())?;
        storage::schedule_plan(c, &s.id, &next);
        Ok(())
    })
}

/// Cancel a subject's scheduled plan change; whether there was one.
pub fn cancel_plan_change(subject: &str) -> Result<bool> {
    known_name("subject", subject)?;
    installed::requires(installed::LIMITS_V2, "quota.cancel_plan_change")?;
    let scope = crate::pg::roles::scope()?;
    storage::volatile(|c| {
        let s = storage::lock_subject(c, subject)?.filter(|s| scope.admits(s.tenant.as_deref()));
        let s = s.ok_or_else(|| super::pause::unknown(&scope, QuotaError::UnknownSubject { subject: subject.to_string() }))?;
        super::pause::refuse_paused(s.tenant.as_deref())?;
        // A change whose instant has come is in force already: it cannot be cancelled.
        let s = super::schedule::store_due(c, s, clock::now())?;
        Ok(storage::cancel_plan_change(c, &s.id))
    })
}

pub fn set_bonus_rule(plan: &str, metric: &str, kind: &str, amount: i64, reference_scope: Option<&str>) -> Result<()> {
    known_name("metric", metric)?;
    error::name("kind", kind)?;
    positive_amount("amount", amount)?;
    let scope = match reference_scope {
        None => ReferenceScope::default_for(kind),
        Some(s) => ReferenceScope::parse(s).ok_or_else(|| {
            QuotaError::invalid("reference_scope", s, format!("unknown reference scope \"{s}\""), format!("Use one of: {}.", ReferenceScope::NAMES))
        })?,
    };
    storage::volatile(|c| {
        existing_plan(c, plan)?;
        storage::upsert_rule(c, plan, metric, kind, BonusRule { amount, scope });
        Ok(())
    })
}

pub fn set_bonus_cap(plan: &str, per_day: Option<i32>) -> Result<()> {
    if let Some(n) = per_day {
        if n < 0 {
            return Err(QuotaError::invalid("per_day", n, "per_day must not be negative", "Pass 0 or more, or NULL for no cap."));
        }
    }
    storage::volatile(|c| {
        existing_plan(c, plan)?;
        storage::set_bonus_cap(c, plan, per_day);
        Ok(())
    })
}

/// Delete a subject in the session's scope; its dependent state goes with it (trigger
/// `quota.forget_subject`, sql/tenants.sql). False when there was none to delete.
pub fn delete_subject(subject: &str) -> Result<bool> {
    known_name("subject", subject)?;
    installed::requires(installed::BINDINGS, "quota.delete_subject")?;
    let scope = crate::pg::roles::scope()?;
    storage::volatile(|c| {
        let Some(s) = storage::lock_subject(c, subject)?.filter(|s| scope.admits(s.tenant.as_deref())) else {
            super::pause::absent(&scope)?;
            return Ok(false);
        };
        super::pause::refuse_paused(s.tenant.as_deref())?;
        if installed::at_least(installed::POOLS) {
            storage::lock_membership(c);
            let members = storage::member_count(c, &s.id);
            if members > 0 {
                return Err(QuotaError::invalid(
                    "subject",
                    &s.id,
                    format!("subject \"{}\" is the pool of {members} members", error::quoted(&s.id)),
                    format!(
                        "Move its members first: quota.set_pool(<member>, NULL) for each (SELECT subject FROM quota.subjects WHERE pool = '{}').",
                        s.id.replace('\'', "''")
                    ),
                ));
            }
        }
        Ok(storage::delete_subject(c, &s.id))
    })
}

pub fn bind_tenant(role: &str, tenant: &str) -> Result<()> {
    error::name("role_name", role)?;
    error::name("tenant", tenant)?;
    installed::requires(installed::BINDINGS, "quota.bind_tenant")?;
    let oid = std::ffi::CString::new(role)
        // SAFETY: a catalog lookup by name.
        .map_or(pg_sys::InvalidOid, |name| unsafe { pg_sys::get_role_oid(name.as_ptr(), true) });
    if oid == pg_sys::InvalidOid {
        return Err(QuotaError::invalid(
            "role_name",
            role,
            format!("role \"{}\" does not exist", error::quoted(role)),
            "Create the role first (CREATE ROLE ... IN ROLE quota_app), then bind it.",
        ));
    }
    storage::volatile(|c| {
        storage::bind_tenant(c, role, oid, tenant);
        Ok(())
    })
}

pub fn unbind_tenant(role: &str, tenant: Option<&str>) -> Result<i32> {
    error::name("role_name", role)?;
    if let Some(t) = tenant {
        error::name("tenant", t)?;
    }
    installed::requires(installed::BINDINGS, "quota.unbind_tenant")?;
    storage::volatile(|c| Ok(storage::unbind_tenant(c, role, tenant)))
}
