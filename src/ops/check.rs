//! `quota_check` (a dry run) and `quota_status` (every limit of a subject). Both are
//! STABLE: they read with the calling statement's snapshot on either path (`storage`).

use chrono::{DateTime, Utc};
use pgrx::spi::SpiClient;

use super::args::{fits_counter, known_name};
use super::metric::MetricOp;
use super::subject::{all_subject_limits, resolve_limits, resolve_subject, Unknown};
use crate::domain::decision::Decision;
use crate::domain::error::{QuotaError, Result};
use crate::domain::limits::{Enforcement, Limit, Source};
use crate::domain::period::Period;
use crate::hotpath::{self, Path};
use crate::pg::clock;
use crate::pg::privilege;
use crate::pg::stats;
use crate::storage;

/// A dry run: writes nothing. `used`/`remaining` are before the request.
pub fn check(subject: &str, items: &[(String, i64)]) -> Result<Vec<Decision>> {
    known_name("subject", subject)?;
    for (metric, amount) in items {
        known_name("metric", metric)?;
        if *amount < 0 {
            return Err(QuotaError::invalid(
                "amount",
                amount,
                format!("amount must not be negative, got {amount}"),
                "Pass 0 to read the state, or a positive amount to test a request.",
            ));
        }
    }
    let now = clock::now();
    if let [(metric, amount)] = items {
        if let Some(d) = check_fast(subject, metric, *amount, now) {
            stats::checked(&d.metric);
            return Ok(vec![d]);
        }
    }
    hotpath::served(Path::General, "quota_check");
    let answers = privilege::as_owner(|| {
        storage::stable(|c| {
            let s = resolve_subject(c, subject, Unknown::Evaluate, now)?;
            let pools = super::pool::chain(c, &s, Unknown::Evaluate, now)?;
            items
                .iter()
                .map(|(metric, amount)| {
                    let limits = resolve_limits(c, &s, metric, now)?;
                    let pool_limits = super::pool::pool_limits(c, &pools, metric, now)?;
                    let op = MetricOp::current(c, &s, metric, &limits, now, false)?.with_pools(c, &pools, &pool_limits, false, false)?;
                    let usages = op.read(c)?;
                    for u in &usages {
                        fits_counter(*u, *amount)?;
                    }
                    let o = op.decide(&usages, *amount);
                    Ok(op.decision(&usages, *amount, &o, false))
                })
                .collect::<Result<Vec<_>>>()
        })
    })?;
    answers.iter().for_each(|d| stats::checked(&d.metric));
    Ok(answers)
}

/// The common check without SPI (None: take the general path). Windows with open holds
/// go the general way, which discounts lapsed holds.
fn check_fast(subject: &str, metric: &str, amount: i64, now: DateTime<Utc>) -> Option<Decision> {
    let scope = crate::pg::roles::scope().ok()?;
    let f = hotpath::check(subject, metric, now, &scope)?;
    if f.windows.iter().any(|w| w.usage.reserved > 0 || w.usage.used.checked_add(amount).is_none()) {
        return None;
    }
    let op = MetricOp::of_found(&f, metric, now);
    let usages: Vec<_> = f.windows.iter().map(|w| w.usage).collect();
    let o = op.decide(&usages, amount);
    hotpath::served(Path::Hot, "quota_check");
    Some(op.decision(&usages, amount, &o, false))
}

/// One row of `quota_status`.
pub struct StatusRow {
    pub metric: String,
    pub period: Period,
    pub limit_value: i64,
    pub bonus: i64,
    pub used: i64,
    pub remaining: i64,
    pub reset_at: Option<DateTime<Utc>>,
    pub enforcement: Enforcement,
    pub reserved: i64,
    pub source: Source,
    /// The subject's scheduled plan change, if any (the same on every row of a level).
    pub next: Option<storage::NextPlan>,
    /// Whose window (0.8.0): the subject's own (level 0) or one of its pools' (1 and up).
    pub subject: String,
    pub level: usize,
}

pub fn status(subject: &str) -> Result<Vec<StatusRow>> {
    storage::stable(|c| {
        let now = clock::now();
        let s = resolve_subject(c, subject, Unknown::Evaluate, now)?;
        // The subject's own rows, then each pool's (nearest first).
        let pools = super::pool::chain(c, &s, Unknown::Evaluate, now)?;
        let mut rows = Vec::new();
        for (level, owner) in std::iter::once(&s).chain(&pools).enumerate() {
            for (metric, limit) in all_subject_limits(c, owner, now)? {
                rows.push(status_row(c, owner, level, metric, limit, now)?);
            }
        }
        Ok(rows)
    })
}

/// One limit alone: its own state, as a check of 0 answers it (a rate limit as
/// redis-cell does: its burst capacity and what is left of it now).
fn status_row(c: &mut SpiClient<'_>, owner: &storage::Subject, level: usize, metric: String, limit: Limit, now: DateTime<Utc>) -> Result<StatusRow> {
    let limits = [limit];
    let op = MetricOp::current(c, owner, &metric, &limits, now, false)?;
    let usages = op.read(c)?;
    let o = op.decide(&usages, 0);
    let d = op.decision(&usages, 0, &o, false);
    let [limit] = limits;
    Ok(StatusRow {
        period: limit.period,
        limit_value: d.limit_value,
        bonus: d.bonus,
        used: d.used,
        remaining: d.remaining,
        reset_at: d.reset_at,
        enforcement: limit.enforcement,
        reserved: d.reserved,
        source: limit.source,
        next: owner.next.clone(),
        subject: owner.id.clone(),
        level,
        metric,
    })
}
