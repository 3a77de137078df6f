//! Changes to usage other than consuming: refunds (by call, and of a table row's charge),
//! resets, and bonuses.

use chrono::{DateTime, Utc};
use pgrx::spi::SpiClient;
use serde_json::json;

use super::args::overflow;
use super::idempotency;
use super::subject::{resolve_limit, resolve_subject, Unknown};
use super::window::WindowOp;
use crate::domain::bonus;
use crate::domain::decision::Decision;
use crate::domain::error::{self, positive_amount, QuotaError, Result};
use crate::domain::events;
use crate::domain::limits::{self, Usage};
use crate::pg::clock;
use crate::pg::privilege;
use crate::pg::stats;
use crate::storage::{self, schema::LedgerKind};

/// Give usage back in the current window; never below zero.
pub fn refund(subject: &str, metric: &str, amount: i64, key: Option<&str>) -> Result<Decision> {
    positive_amount("amount", amount)?;
    if let Some(key) = key {
        error::name("idempotency_key", key)?;
    }
    storage::volatile(|c| {
        let now = clock::now();
        let s = resolve_subject(c, subject, Unknown::Create, now)?;
        let limit = resolve_limit(c, &s, metric)?;
        if let Some(key) = key {
            if let Some(mut replay) = idempotency::replay(c, &s.id, key, "refund", &[metric])? {
                return Ok(replay.remove(0));
            }
        }
        let op = WindowOp::current(&s, metric, &limit, now);
        let (usage, _) = op.lock(c)?;
        let after = give_back(c, &op, usage, amount, key);
        let d = Decision { requested: amount, ..op.decision(after, 0, false) };
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
    stats::refunded(op.metric, given);
    let after = Usage { used, ..usage };
    op.write(c, usage, after, None);
    op.append(c, LedgerKind::Refund, given, 0, key, None);
    after
}

/// Give back what a row's insert was charged (`enforce`'s row charges): `amount` to the
/// window it was charged in, if that window is still the subject's current one, never
/// more than the window's usage. A subject that is gone, out of the session's scope or no
/// longer limited on the metric gets nothing back. Returns what was given back.
pub fn refund_charge(subject: &str, metric: &str, window_start: Option<DateTime<Utc>>, amount: i64) -> Result<i64> {
    let scope = crate::pg::roles::scope()?;
    privilege::as_owner(|| {
        storage::volatile(|c| {
            let now = clock::now();
            let Some(s) = storage::find_subject(c, subject)?.filter(|s| scope.admits(s.tenant.as_deref())) else { return Ok(0) };
            let Some(limit) = storage::limit(c, &s.plan, metric)? else { return Ok(0) };
            let op = WindowOp::current(&s, metric, &limit, now);
            if op.window.start != window_start || amount <= 0 {
                return Ok(0);
            }
            let (usage, _) = op.lock(c)?;
            // Nothing to give back writes nothing (no ledger row of 0).
            if usage.used == 0 {
                return Ok(0);
            }
            Ok(usage.used - give_back(c, &op, usage, amount, None).used)
        })
    })
}

/// Empty the current window of one metric, or of every metric of the subject's plan.
/// Returns how many windows had usage and were emptied. Bonuses stay.
pub fn reset(subject: &str, metric: Option<&str>) -> Result<i32> {
    storage::volatile(|c| {
        let now = clock::now();
        let s = resolve_subject(c, subject, Unknown::Evaluate, now)?;
        let limits = match metric {
            Some(m) => vec![(m.to_string(), resolve_limit(c, &s, m)?)],
            None => storage::all_limits(c, &s.plan)?,
        };
        if !s.stored {
            return Ok(0);
        }
        let mut emptied = 0;
        for (metric, limit) in &limits {
            let op = WindowOp::current(&s, metric, limit, now);
            let (usage, _) = op.lock(c)?;
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
        let limit = resolve_limit(c, &s, metric)?;
        let op = WindowOp::current(&s, metric, &limit, now);
        let day = s.local_day(now);
        let today = storage::grants_on(c, &s.id, day);
        let cap = storage::plan_bonus_cap(c, &s.plan).flatten();
        let not_applied = |c: &mut SpiClient<'_>, reason: bonus::Refusal| -> Result<BonusOutcome> {
            let usage = op.read(c)?;
            Ok(BonusOutcome { applied: false, reason: reason.as_str(), amount: 0, new_limit: usage.effective_limit(&limit), bonuses_today: today })
        };
        let rule = match bonus::decide(storage::rule(c, &s.plan, metric, kind)?, cap, today) {
            Ok(rule) => rule,
            Err(refusal) => return not_applied(c, refusal),
        };
        if bonus::needs_reference(rule.scope) && reference.is_none() {
            return Err(QuotaError::Null { argument: "reference" });
        }
        let grant = storage::Grant { subject: &s.id, metric, kind, reference, rule, window: &op.window, day, at: now };
        if !storage::insert_grant(c, &grant) {
            return not_applied(c, bonus::Refusal::ReferenceAlreadyUsed);
        }
        let (usage, _) = op.lock(c)?;
        let bonus = usage.bonus.checked_add(rule.amount).ok_or_else(|| overflow(rule.amount))?;
        let after = Usage { bonus, ..usage };
        op.store(c, after);
        stats::bonus_applied(metric);
        op.emit(c, events::EventKind::BonusApplied, after, json!({"kind": kind, "amount": rule.amount}));
        op.append(c, LedgerKind::Bonus, rule.amount, 0, None, None);
        Ok(BonusOutcome {
            applied: true,
            reason: bonus::APPLIED,
            amount: rule.amount,
            new_limit: after.effective_limit(&limit),
            bonuses_today: today + 1,
        })
    })
}
