//! `quota.set_override` and `quota.remove_override`: one subject's own limit on one
//! metric and window (`domain::overrides`), tenant-scoped through the subject.

use chrono::{DateTime, Utc};

use super::args::{known_name, parse_period, parse_window};
use crate::domain::error::{QuotaError, Result};
use crate::domain::overrides::{Mode, Override};
use crate::pg::clock;
use crate::pg::installed;
use crate::storage::{self, Subject};

/// The stored subject, if the session may see it (else QT404, as for any unknown subject).
fn subject_in_scope(c: &mut pgrx::spi::SpiClient<'_>, id: &str) -> Result<Subject> {
    known_name("subject", id)?;
    let scope = crate::pg::roles::scope()?;
    let s = storage::find_subject(c, id)?
        .filter(|s| scope.admits(s.tenant.as_deref()))
        .ok_or_else(|| super::pause::unknown(&scope, QuotaError::UnknownSubject { subject: id.to_string() }))?;
    super::pause::refuse_paused(s.tenant.as_deref())?;
    Ok(s)
}

pub fn set_override(subject: &str, metric: &str, period: &str, value: i64, mode: &str, expires_at: Option<DateTime<Utc>>) -> Result<()> {
    installed::requires(installed::OVERRIDES, "quota.set_override")?;
    known_name("metric", metric)?;
    let period = parse_window(period)?;
    if value < 0 {
        return Err(QuotaError::invalid("value", value, "value must not be negative", "Pass 0 or more; with mode 'max', 0 blocks every request."));
    }
    let mode = mode.parse::<Mode>().map_err(|_| {
        QuotaError::invalid(
            "mode",
            mode,
            format!("unknown override mode \"{mode}\""),
            format!("Use one of: {} (max replaces the plan's limit, add adds to it).", Mode::NAMES),
        )
    })?;
    let now = clock::now();
    if expires_at.is_some_and(|at| at <= now) {
        return Err(QuotaError::invalid(
            "expires_at",
            expires_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            "expires_at is not in the future (by the quota clock)",
            "Pass when the override should stop counting, or NULL for one that does not expire.",
        ));
    }
    storage::volatile(|c| {
        let s = subject_in_scope(c, subject)?;
        storage::upsert_override(c, &s.id, metric, &Override { period, mode, value, expires_at }, now);
        Ok(())
    })
}

/// Remove the subject's override of the metric for `period`, or all of the metric's
/// (None). Whether there was any.
pub fn remove_override(subject: &str, metric: &str, period: Option<&str>) -> Result<bool> {
    installed::requires(installed::OVERRIDES, "quota.remove_override")?;
    known_name("metric", metric)?;
    let period = period.map(parse_period).transpose()?.map(|p| p.as_str().to_string());
    let period = period.as_deref();
    storage::volatile(|c| {
        let s = subject_in_scope(c, subject)?;
        Ok(storage::delete_override(c, &s.id, metric, period))
    })
}
