//! Scheduled plan changes (`domain::schedule`): `assign_plan(..., effective_at, carry)`
//! stores the change; every call computes the plan in force from it
//! (`Subject::in_force`); the first call that writes after its instant stores it
//! (`store_due`), with the usage of the windows it falls in carried over as asked. No job
//! runs at the boundary, so the change is exact there, on a standby and in read-only
//! transactions too.

use chrono::{DateTime, Utc};
use pgrx::spi::SpiClient;

use super::subject::subject_limits;
use super::window::WindowOp;
use crate::domain::error::{QuotaError, Result};
use crate::domain::limits::{Limit, Usage};
use crate::domain::period::{Period, Window};
use crate::domain::schedule::{self, Carry};
use crate::storage::{self, schema::LedgerKind, Subject};

/// For a call that writes: the subject with a change whose instant has come stored
/// (once: the subject's row is locked, and a change another call stored meanwhile is
/// not applied twice). A 'percent' change carries the usage of every window that the
/// change falls in, with a ledger row each, before anything else writes to it.
pub fn store_due(c: &mut SpiClient<'_>, s: Subject, now: DateTime<Utc>) -> Result<Subject> {
    if s.next.as_ref().is_none_or(|n| n.at > now) {
        return Ok(s);
    }
    let unknown = || QuotaError::UnknownSubject { subject: s.id.clone() };
    let locked = storage::lock_subject(c, &s.id)?.ok_or_else(unknown)?;
    let Some(next) = locked.next.clone().filter(|n| n.at <= now) else { return Ok(locked.in_force(now)) };
    let after = locked.clone().in_force(now);
    if next.carry == Carry::Percent {
        carry_percent(c, &locked, &after, next.at, now)?;
    }
    storage::store_plan_change(c, &s.id, now);
    Ok(Subject { carried_from: None, ..after })
}

/// Scale each window the change at `at` falls in from the old plan's limit to the new.
pub(super) fn carry_percent(c: &mut SpiClient<'_>, before: &Subject, after: &Subject, at: DateTime<Utc>, now: DateTime<Utc>) -> Result<()> {
    let rows = storage::windows_at(c, &before.id, at);
    for (metric, period, window) in rows {
        let Some((old, new)) = limits_around(c, before, after, &metric, &period, now)? else { continue };
        let op = WindowOp::of(after, &metric, &new, window, now);
        let (usage, _, _) = op.lock(c)?;
        let used = schedule::carried(Carry::Percent, usage.used, old.limit_value, new.limit_value);
        if used == usage.used {
            continue;
        }
        let kind = if used > usage.used { LedgerKind::CarryUp } else { LedgerKind::CarryDown };
        let after_usage = Usage { used, ..usage };
        op.store(c, after_usage);
        op.append(c, kind, (used - usage.used).abs(), 0, None, None);
    }
    Ok(())
}

/// The limit of (metric, period) under the old plan and under the new one, when both
/// have it (a rate limit's usage is a pace: never carried).
fn limits_around(
    c: &mut SpiClient<'_>,
    before: &Subject,
    after: &Subject,
    metric: &str,
    period: &str,
    now: DateTime<Utc>,
) -> Result<Option<(Limit, Limit)>> {
    let find = |limits: Vec<Limit>| limits.into_iter().find(|l| l.period.as_str() == period && !matches!(l.period, Period::Rate(_)));
    let old = find(subject_limits(c, before, metric, now)?);
    let new = find(subject_limits(c, after, metric, now)?);
    Ok(old.zip(new))
}

/// For a read before the change is stored: the window's usage as the first writer will
/// store it (`carried_from`: a 'percent' change in force, not yet stored).
pub fn carried_usage(
    c: &mut SpiClient<'_>,
    s: &Subject,
    metric: &str,
    limit: &Limit,
    window: &Window,
    usage: Usage,
    now: DateTime<Utc>,
) -> Result<Usage> {
    let Some((old_plan, at)) = &s.carried_from else { return Ok(usage) };
    let contains = window.start.is_none_or(|start| start <= *at) && window.end.is_none_or(|end| end > *at);
    if !contains || matches!(limit.period, Period::Rate(_)) {
        return Ok(usage);
    }
    let before = Subject { plan: old_plan.clone(), carried_from: None, ..s.clone() };
    let Some((old, new)) = limits_around(c, &before, s, metric, limit.period.as_str(), now)? else { return Ok(usage) };
    Ok(Usage { used: schedule::carried(Carry::Percent, usage.used, old.limit_value, new.limit_value), ..usage })
}
