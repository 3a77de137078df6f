//! Changes to usage other than consuming: refunds (by call, and of a table row's charge),
//! resets, and bonuses.

use chrono::{DateTime, Utc};
use pgrx::spi::SpiClient;
use serde_json::json;

use super::args::overflow;
use super::idempotency;
use super::metric::MetricOp;
use super::pool;
use super::subject::{all_subject_limits, resolve_limits, resolve_subject, subject_limits, Unknown};
use super::window::WindowOp;
use crate::domain::bonus;
use crate::domain::decision::Decision;
use crate::domain::error::{self, positive_amount, QuotaError, Result};
use crate::domain::events;
use crate::domain::limits::{self, Limit, Usage};
use crate::domain::period::Period;
use crate::pg::clock;
use crate::pg::privilege;
use crate::pg::stats;
use crate::storage::{self, schema::LedgerKind};

/// Give usage back in every current window of the metric (usage is counted in each of
/// them); never below zero in any. The answer is the binding limit's.
pub fn refund(subject: &str, metric: &str, amount: i64, key: Option<&str>) -> Result<Decision> {
    positive_amount("amount", amount)?;
    if let Some(key) = key {
        error::name("idempotency_key", key)?;
    }
    storage::volatile(|c| {
        let now = clock::now();
        let s = resolve_subject(c, subject, Unknown::Create, now)?;
        let limits = resolve_limits(c, &s, metric, now)?;
        if let Some(key) = key {
            if let Some(mut replay) = idempotency::replay(c, &s.id, key, "refund", &[metric])? {
                return Ok(replay.remove(0));
            }
        }
        // Every level gives back: the subject's windows and its pools' (`ops::pool`).
        let pools = pool::chain(c, &s, Unknown::Create, now)?;
        let pool_limits = pool::pool_limits(c, &pools, metric, now)?;
        let mut op = MetricOp::current(c, &s, metric, &limits, now, false)?.with_pools(c, &pools, &pool_limits, false, false)?;
        let usages = op.lock(c)?;
        // The subject's windows give back up to `amount`; each pool's, level by level, at
        // most what the level below gave back and what came through it into that window
        // (never another member's usage).
        let mut given = vec![0i64; op.levels() + 1];
        let mut afters = Vec::with_capacity(usages.len());
        for (w, u) in op.windows.iter().zip(&usages) {
            let cap = match (w.level, w.via) {
                (0, _) => amount,
                (level, Some(via)) => given[level - 1].min(storage::contribution(c, &w.key(), via).max(0)),
                (_, None) => 0,
            };
            let after = if w.level == 0 || cap > 0 { give_back(c, w, *u, cap, key) } else { *u };
            given[w.level] = given[w.level].max(u.used - after.used);
            afters.push(after);
        }
        let given = given[0];
        stats::refunded(metric, given);
        let o = op.decide(&afters, 0);
        let d = Decision { requested: amount, ..op.decision(&afters, 0, &o, false) };
        if let Some(key) = key {
            idempotency::save(c, &s.id, key, "refund", &[&d], now);
        }
        Ok(d)
    })
}

/// Lower the locked window's usage by `amount` (never below zero), with its ledger row
/// and announcements; returns the usage after.
fn give_back(c: &mut SpiClient<'_>, op: &WindowOp, usage: Usage, amount: i64, key: Option<&str>) -> Usage {
    let (used, given) = limits::refund(usage.used, amount);
    let after = Usage { used, ..usage };
    op.write(c, usage, after, None);
    op.append(c, LedgerKind::Refund, given, 0, key, None);
    after
}

/// Give back what a row's insert was charged in one window (`enforce`'s row charges, one
/// per window charged): `amount` to that window, if it is still the subject's current
/// one of that period, never more than the window's usage. A subject that is gone, out
/// of the session's scope or no longer limited on the metric for that period gets
/// nothing back. Returns what was given back.
pub fn refund_charge(subject: &str, metric: &str, period: &str, window_start: Option<DateTime<Utc>>, amount: i64) -> Result<i64> {
    let scope = crate::pg::roles::scope()?;
    privilege::as_owner(|| {
        storage::volatile(|c| {
            let now = clock::now();
            let Some(s) = storage::find_subject(c, subject)?.filter(|s| scope.admits(s.tenant.as_deref())) else {
                super::pause::absent(&scope)?;
                return Ok(0);
            };
            super::pause::refuse_paused(s.tenant.as_deref())?;
            let s = super::schedule::store_due(c, s, now)?;
            let limits = subject_limits(c, &s, metric, now)?;
            // A charge made before limits v2 has no period: the metric's one limit then.
            let Some(limit) = limits.iter().find(|l| l.period.as_str() == period || (period.is_empty() && limits.len() == 1)) else { return Ok(0) };
            let op = WindowOp::current(c, &s, metric, limit, now, false)?;
            if op.closed || op.window.start != window_start || amount <= 0 {
                return Ok(0);
            }
            let (usage, _, _) = op.lock(c)?;
            // Nothing to give back writes nothing (no ledger row of 0).
            if usage.used == 0 {
                return Ok(0);
            }
            let given = usage.used - give_back(c, &op, usage, amount, None).used;
            // Its pools give back too, level by level, in their current window of the same
            // period (with the subject's first period, also those of periods the subject
            // does not limit): at most what the level below gave back and what came
            // through it into that window.
            let first = limits.first().is_some_and(|l| l.period == limit.period);
            let pools = pool::chain(c, &s, Unknown::Create, now)?;
            let mut below_gave = given;
            for (level, (p, pool_limits)) in pools.iter().zip(pool::pool_limits(c, &pools, metric, now)?).enumerate() {
                let below = pool::through(&s, &pools, level);
                let mut gave = 0;
                let ours = |l: &&Limit| l.period == limit.period || (first && !limits.iter().any(|m| m.period == l.period));
                for pool_limit in pool_limits.iter().filter(ours) {
                    let mut w = WindowOp::current(c, p, metric, pool_limit, now, false)?;
                    (w.level, w.via) = (level + 1, Some(below.id.as_str()));
                    let (usage, _, _) = w.lock(c)?;
                    let cap = below_gave.min(storage::contribution(c, &w.key(), &below.id).max(0));
                    if usage.used > 0 && cap > 0 {
                        gave = gave.max(usage.used - give_back(c, &w, usage, cap, None).used);
                    }
                }
                below_gave = gave;
            }
            stats::refunded(metric, given);
            Ok(given)
        })
    })
}

/// Empty the current windows of one metric (every limit of it), or of every metric of the
/// subject's plan. Returns how many windows had usage and were emptied. Bonuses stay.
pub fn reset(subject: &str, metric: Option<&str>) -> Result<i32> {
    storage::volatile(|c| {
        let now = clock::now();
        let s = resolve_subject(c, subject, Unknown::Evaluate, now)?;
        // A reset writes: a scheduled change that is due is stored first.
        let s = if s.stored { super::schedule::store_due(c, s, now)? } else { s };
        let limits = match metric {
            Some(m) => resolve_limits(c, &s, m, now)?.into_iter().map(|l| (m.to_string(), l)).collect(),
            None => all_subject_limits(c, &s, now)?,
        };
        if !s.stored {
            return Ok(0);
        }
        let mut emptied = 0;
        for (metric, limit) in &limits {
            let op = WindowOp::current(c, &s, metric, limit, now, false)?;
            let (usage, _, _) = op.lock(c)?;
            if usage.used == 0 {
                continue;
            }
            let after = Usage { used: 0, ..usage };
            op.store(c, after);
            op.emit(c, events::EventKind::Reset, after, json!({"emptied": usage.used}));
            op.append(c, LedgerKind::Reset, usage.used, 0, None, None);
            emptied += 1;
        }
        Ok(emptied)
    })
}

pub struct BonusOutcome {
    pub applied: bool,
    pub reason: &'static str,
    pub amount: i64,
    pub new_limit: i64,
    pub bonuses_today: i32,
}

pub fn apply_bonus(subject: &str, metric: &str, kind: &str, reference: Option<&str>) -> Result<BonusOutcome> {
    error::name("kind", kind)?;
    if let Some(r) = reference {
        error::name("reference", r)?;
    }
    storage::volatile(|c| {
        let now = clock::now();
        resolve_subject(c, subject, Unknown::Create, now)?;
        // The subject row lock serialises this subject's bonuses, so the daily cap is exact.
        let s = storage::lock_subject(c, subject)?.expect("subject exists");
        let s = super::schedule::store_due(c, s, now)?;
        let limits = resolve_limits(c, &s, metric, now)?;
        let mut op = MetricOp::current(c, &s, metric, &limits, now, false)?;
        let day = s.local_day(now);
        let today = storage::grants_on(c, &s.id, day);
        let cap = storage::plan_bonus_cap(c, &s.plan).flatten();
        let not_applied = |c: &mut SpiClient<'_>, op: &MetricOp, reason: bonus::Refusal| -> Result<BonusOutcome> {
            let usages = op.read(c)?;
            Ok(BonusOutcome { applied: false, reason: reason.as_str(), amount: 0, new_limit: binding_limit(op, &usages), bonuses_today: today })
        };
        let rule = match bonus::decide(storage::rule(c, &s.plan, metric, kind)?, cap, today) {
            Ok(rule) => rule,
            Err(refusal) => return not_applied(c, &op, refusal),
        };
        if bonus::needs_reference(rule.scope) && reference.is_none() {
            return Err(QuotaError::Null { argument: "reference" });
        }
        // A bonus raises the metric's windows that count now: not a first-use window
        // that is not open, nor a rate limit (a pace has no count to raise).
        let raises = |w: &WindowOp| !w.closed && !matches!(w.limit.period, Period::Rate(_));
        if !op.windows.iter().any(raises) {
            return not_applied(c, &op, bonus::Refusal::NoOpenWindow);
        }
        let grant = storage::Grant { subject: &s.id, metric, kind, reference, rule, window: &op.windows[0].window, day, at: now };
        if !storage::insert_grant(c, &grant) {
            return not_applied(c, &op, bonus::Refusal::ReferenceAlreadyUsed);
        }
        // A bonus raises every current window of the metric: a day-only bonus would be
        // worth nothing while the month binds (README, "Bonuses").
        let usages = op.lock(c)?;
        let mut afters = Vec::with_capacity(usages.len());
        for (w, u) in op.windows.iter().zip(&usages) {
            let bonus = if raises(w) { u.bonus.checked_add(rule.amount).ok_or_else(|| overflow(rule.amount))? } else { u.bonus };
            afters.push((w, Usage { bonus, ..*u }));
        }
        for (w, after) in afters.iter().filter(|(w, _)| raises(w)) {
            w.store(c, *after);
            w.emit(c, events::EventKind::BonusApplied, *after, json!({"kind": kind, "amount": rule.amount}));
            w.append(c, LedgerKind::Bonus, rule.amount, 0, None, None);
        }
        stats::bonus_applied(metric);
        let afters: Vec<Usage> = afters.into_iter().map(|(_, a)| a).collect();
        Ok(BonusOutcome {
            applied: true,
            reason: bonus::APPLIED,
            amount: rule.amount,
            new_limit: binding_limit(&op, &afters),
            bonuses_today: today + 1,
        })
    })
}

/// The limit a bonus answer reports: the binding one's effective limit.
fn binding_limit(op: &MetricOp, usages: &[Usage]) -> i64 {
    let o = op.decide(usages, 0);
    usages[o.binding].effective_limit(op.windows[o.binding].limit)
}
