//! Finding the subject and limit an operation works on, within the session's tenant
//! scope, creating an unknown subject on `quota.default_plan` where the operation may.

use chrono::{DateTime, Utc};
use pgrx::spi::SpiClient;

use super::args::known_name;
use crate::domain::error::{self, QuotaError, Result};
use crate::domain::limits::Limit;
use crate::domain::overrides;
use crate::pg::gucs;
use crate::pg::installed;
use crate::storage::{self, Subject};

/// Whether an operation may create an unknown subject on `quota.default_plan`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    /// Consume, refund, bonus: create and store it.
    Create,
    /// Check, status: evaluate it on the default plan without writing.
    Evaluate,
}

pub fn resolve_subject(c: &mut SpiClient<'_>, id: &str, unknown: Unknown, now: DateTime<Utc>) -> Result<Subject> {
    known_name("subject", id)?;
    let scope = crate::pg::roles::scope()?;
    let unknown_subject = || super::pause::unknown(&scope, QuotaError::UnknownSubject { subject: id.to_string() });
    if let Some(s) = storage::find_subject(c, id)? {
        // Another tenant's subject looks exactly like one that does not exist.
        if !scope.admits(s.tenant.as_deref()) {
            return Err(unknown_subject());
        }
        super::pause::refuse_paused(s.tenant.as_deref())?;
        // The plan in force: a call that writes stores a scheduled change that is due.
        return match unknown {
            Unknown::Create => super::schedule::store_due(c, s, now),
            Unknown::Evaluate => Ok(s.in_force(now)),
        };
    }
    // An unknown subject under a paused tenant (the session's): QT503, not QT404, also
    // without quota.default_plan. On the node a tenant moved away from, its subjects are
    // gone, and the tenant's calls must still be sent to its new node (issue 19, item 4).
    super::pause::absent(&scope)?;
    let Some(plan) = gucs::default_plan().filter(|_| scope.may_create()) else {
        return Err(unknown_subject());
    };
    if storage::plan_bonus_cap(c, &plan).is_none() {
        return Err(QuotaError::invalid(
            "quota.default_plan",
            &plan,
            format!("quota.default_plan names plan \"{plan}\", which does not exist"),
            "Create the plan with quota.set_limit, or change quota.default_plan.",
        ));
    }
    if unknown == Unknown::Create {
        storage::insert_subject(c, id, &plan, scope.creates_in(), now);
        // A concurrent creator may have won with other values (even another tenant):
        // read what is stored.
        let s = storage::find_subject(c, id)?.filter(|s| scope.admits(s.tenant.as_deref())).ok_or_else(unknown_subject)?;
        super::pause::refuse_paused(s.tenant.as_deref())?;
        return Ok(s);
    }
    let tenant = scope.creates_in().map(str::to_string);
    Ok(Subject { id: id.to_string(), plan, tenant, anchor: now, tz: chrono_tz::Tz::UTC, stored: false, next: None, carried_from: None, pool: None })
}

/// Every limit of the subject on the metric, in period order (at least one): its plan's,
/// with its overrides in force at `now` applied (`domain::overrides`).
pub fn resolve_limits(c: &mut SpiClient<'_>, subject: &Subject, metric: &str, now: DateTime<Utc>) -> Result<Vec<Limit>> {
    known_name("metric", metric)?;
    let limits = subject_limits(c, subject, metric, now)?;
    if limits.is_empty() {
        return Err(unknown_metric(subject, metric));
    }
    Ok(limits)
}

/// The subject's limits on the metric (plan and overrides); empty if it has none.
pub fn subject_limits(c: &mut SpiClient<'_>, subject: &Subject, metric: &str, now: DateTime<Utc>) -> Result<Vec<Limit>> {
    let plan = storage::limits(c, &subject.plan, metric)?;
    if !subject.stored || !installed::at_least(installed::OVERRIDES) {
        return Ok(plan);
    }
    Ok(overrides::apply(plan, &storage::overrides(c, &subject.id, metric)?, now))
}

/// Every limit of the subject, (metric, limit) by metric and period: its plan's, with its
/// overrides applied (a metric only an override limits included).
pub fn all_subject_limits(c: &mut SpiClient<'_>, subject: &Subject, now: DateTime<Utc>) -> Result<Vec<(String, Limit)>> {
    let plan = storage::all_limits(c, &subject.plan)?;
    if !subject.stored || !installed::at_least(installed::OVERRIDES) {
        return Ok(plan);
    }
    let overridden = storage::all_overrides(c, &subject.id)?;
    let mut metrics: Vec<String> = plan.iter().map(|(m, _)| m.clone()).chain(overridden.iter().map(|(m, _)| m.clone())).collect();
    metrics.dedup();
    metrics.sort();
    metrics.dedup();
    let mut out = Vec::new();
    for m in metrics {
        let of_plan = plan.iter().filter(|(pm, _)| *pm == m).map(|(_, l)| l.clone()).collect();
        let of_subject: Vec<_> = overridden.iter().filter(|(om, _)| *om == m).map(|(_, o)| o.clone()).collect();
        out.extend(overrides::apply(of_plan, &of_subject, now).into_iter().map(|l| (m.clone(), l)));
    }
    Ok(out)
}

fn unknown_metric(subject: &Subject, metric: &str) -> QuotaError {
    let hint = if error::looks_like_amounts(metric) {
        error::JSON_METRIC_HINT.to_string()
    } else {
        format!(
            "Add one with quota.set_limit('{}', '{}', 'day', <limit>), or check the metric's spelling.",
            subject.plan.replace('\'', "''"),
            metric.replace('\'', "''")
        )
    };
    QuotaError::invalid(
        "metric",
        metric,
        format!("plan \"{}\" of subject \"{}\" has no limit on metric \"{metric}\"", subject.plan, subject.id),
        hint,
    )
}
