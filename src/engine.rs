//! The quota engine: each SQL-facing operation as one function that loads state through
//! `store`, decides with the pure modules (`period`, `limits`, `bonus`) and writes the
//! result. Errors are returned, never raised here, so nothing is left half-done in Rust.
//!
//! Concurrency: every change to a window happens under that window's row lock
//! (`store::lock_window`), taken in metric order, inside the caller's transaction. Usage
//! that rolls back is never counted, and two sessions can never both take the last unit.

use chrono::{DateTime, Utc};
use pgrx::pg_sys;
use pgrx::spi::{Spi, SpiClient};
use serde_json::Value;

use crate::bonus::{self, ReferenceScope, Rule};
use crate::clock;
use crate::decision::Decision;
use crate::error::{non_empty, positive_amount, QuotaError, Result};
use crate::gucs;
use crate::limits::{self, evaluate, Enforcement, Limit, Usage};
use crate::period::{self, Period};
use crate::store::{self, Entry, Kind, Subject};

/// Whether an operation may create an unknown subject on `quota.default_plan`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unknown {
    /// Consume, refund, bonus: create and store it.
    Create,
    /// Check, status: evaluate it on the default plan without writing.
    Evaluate,
}

fn resolve_subject(c: &mut SpiClient<'_>, id: &str, unknown: Unknown, now: DateTime<Utc>) -> Result<Subject> {
    non_empty("subject", id)?;
    if let Some(s) = store::find_subject(c, id) {
        return Ok(s);
    }
    let Some(plan) = gucs::default_plan() else {
        return Err(QuotaError::UnknownSubject { subject: id.to_string() });
    };
    if store::plan_bonus_cap(c, &plan).is_none() {
        return Err(QuotaError::invalid(
            "quota.default_plan",
            &plan,
            format!("quota.default_plan names plan \"{plan}\", which does not exist"),
            "Create the plan with quota.set_limit, or change quota.default_plan.",
        ));
    }
    if unknown == Unknown::Create {
        store::insert_subject(c, id, &plan, now);
        // A concurrent creator may have won with other values: read what is stored.
        return Ok(store::find_subject(c, id).expect("subject exists after insert"));
    }
    Ok(Subject { id: id.to_string(), plan, tenant: None, anchor: now, tz: chrono_tz::Tz::UTC, stored: false })
}

fn resolve_limit(c: &mut SpiClient<'_>, subject: &Subject, metric: &str) -> Result<Limit> {
    non_empty("metric", metric)?;
    store::limit(c, &subject.plan, metric).ok_or_else(|| unknown_metric(subject, metric))
}

fn unknown_metric(subject: &Subject, metric: &str) -> QuotaError {
    QuotaError::invalid(
        "metric",
        metric,
        format!("plan \"{}\" of subject \"{}\" has no limit on metric \"{metric}\"", subject.plan, subject.id),
        format!(
            "Add one with quota.set_limit('{}', '{}', 'day', <limit>), or check the metric's spelling.",
            subject.plan.replace('\'', "''"),
            metric.replace('\'', "''")
        ),
    )
}

fn decision(subject: &Subject, metric: &str, limit: &Limit, usage: Usage, requested: i64, now: DateTime<Utc>, applied: bool) -> Decision {
    let w = subject.window(limit.period, now);
    let verdict = evaluate(limit, usage, requested);
    Decision::new(&subject.id, metric, limit, usage, requested, w.end, &verdict, applied)
}

// Check and status ---------------------------------------------------------------------

/// A dry run: writes nothing. `used`/`remaining` are before the request.
pub fn check(subject: &str, items: &[(String, i64)]) -> Result<Vec<Decision>> {
    for (_, amount) in items {
        if *amount < 0 {
            return Err(QuotaError::invalid("amount", amount, format!("amount must not be negative, got {amount}"), "Pass 0 to read the state, or a positive amount to test a request."));
        }
    }
    Spi::connect_mut(|c| {
        let now = clock::now();
        let s = resolve_subject(c, subject, Unknown::Evaluate, now)?;
        items
            .iter()
            .map(|(metric, amount)| {
                let limit = resolve_limit(c, &s, metric)?;
                let usage = store::read_window(c, &s.id, metric, &s.window(limit.period, now));
                fits_counter(usage, *amount)?;
                Ok(decision(&s, metric, &limit, usage, *amount, now, false))
            })
            .collect()
    })
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
}

pub fn status(subject: &str) -> Result<Vec<StatusRow>> {
    Spi::connect_mut(|c| {
        let now = clock::now();
        let s = resolve_subject(c, subject, Unknown::Evaluate, now)?;
        Ok(store::all_limits(c, &s.plan)
            .into_iter()
            .map(|(metric, limit)| {
                let w = s.window(limit.period, now);
                let usage = store::read_window(c, &s.id, &metric, &w);
                StatusRow {
                    period: limit.period,
                    limit_value: limit.limit_value,
                    bonus: usage.bonus,
                    used: usage.used,
                    remaining: usage.remaining(&limit),
                    reset_at: w.end,
                    enforcement: limit.enforcement,
                    metric,
                }
            })
            .collect())
    })
}

// Consume ------------------------------------------------------------------------------

/// What to consume: (metric, amount) pairs, applied all or nothing.
pub struct ConsumeRequest<'a> {
    pub subject: &'a str,
    pub items: Vec<(String, i64)>,
    pub idempotency_key: Option<&'a str>,
    pub metadata: Option<pg_sys::Datum>,
    /// When true, a refusal is returned as decisions with `allowed = false` instead of
    /// an error (the `quota_try_consume` form).
    pub no_raise: bool,
}

/// Check and increment atomically. On a hard refusal nothing is written.
pub fn consume(req: ConsumeRequest<'_>) -> Result<Vec<Decision>> {
    let mut items = req.items;
    validate_items(&mut items)?;
    if let Some(key) = req.idempotency_key {
        non_empty("idempotency_key", key)?;
    }
    Spi::connect_mut(|c| {
        let now = clock::now();
        let s = resolve_subject(c, req.subject, Unknown::Create, now)?;
        let limits = items.iter().map(|(m, _)| resolve_limit(c, &s, m)).collect::<Result<Vec<_>>>()?;

        // The per-request cap needs no lock: refuse before touching any row.
        for ((metric, amount), limit) in items.iter().zip(&limits) {
            if limit.per_request_max.is_some_and(|cap| *amount > cap) {
                let usage = store::read_window(c, &s.id, metric, &s.window(limit.period, now));
                let refused = decision(&s, metric, limit, usage, *amount, now, false);
                return refuse(QuotaError::OverRequestCap(Box::new(refused)), &items, &limits, &s, c, now, req.no_raise);
            }
        }

        // Lock every window, in metric order (items are sorted), then decide.
        let windows: Vec<_> = limits.iter().map(|l| s.window(l.period, now)).collect();
        let usages: Vec<Usage> =
            items.iter().zip(&windows).map(|((metric, _), w)| store::lock_window(c, &s.id, metric, w)).collect();

        // Under the locks, an earlier call with the same key is visible: replay it.
        if let Some(key) = req.idempotency_key {
            if let Some(replay) = replay(c, &s.id, key, "consume")? {
                return Ok(replay);
            }
        }

        let mut decisions = Vec::with_capacity(items.len());
        for (((metric, amount), limit), usage) in items.iter().zip(&limits).zip(&usages) {
            fits_counter(*usage, *amount)?;
            let verdict = evaluate(limit, *usage, *amount);
            if !verdict.allowed {
                let refused = Decision::new(&s.id, metric, limit, *usage, *amount, windows[decisions.len()].end, &verdict, false);
                return refuse(QuotaError::Exceeded(Box::new(refused)), &items, &limits, &s, c, now, req.no_raise);
            }
            decisions.push((verdict, Decision::new(&s.id, metric, limit, *usage, *amount, windows[decisions.len()].end, &verdict, true)));
        }

        for (i, (verdict, d)) in decisions.iter().enumerate() {
            store::write_window(c, &s.id, &d.metric, &windows[i], Usage { used: verdict.used_after, bonus: usages[i].bonus });
            store::append(
                c,
                &Entry {
                    subject: &s,
                    metric: &d.metric,
                    window: &windows[i],
                    kind: Kind::Consume,
                    amount: d.requested,
                    overage: verdict.overage,
                    idempotency_key: req.idempotency_key,
                    metadata: req.metadata,
                    at: now,
                },
            );
        }
        let decisions: Vec<Decision> = decisions.into_iter().map(|(_, d)| d).collect();
        if let Some(key) = req.idempotency_key {
            store::save_key(c, &s.id, key, "consume", &serde_json::to_string(&decisions).expect("decisions serialise"), now);
        }
        Ok(decisions)
    })
}

fn overflow(amount: i64) -> QuotaError {
    QuotaError::invalid("amount", amount, "amount would overflow the counter", "Pass a smaller amount.")
}

/// A request that would push a counter past i64::MAX is an argument error, not a refusal.
fn fits_counter(usage: Usage, amount: i64) -> Result<()> {
    usage.used.checked_add(amount).map(|_| ()).ok_or_else(|| overflow(amount))
}

/// Sort by metric (the lock order) and reject bad amounts and duplicate metrics.
fn validate_items(items: &mut [(String, i64)]) -> Result<()> {
    if items.is_empty() {
        return Err(QuotaError::invalid("amounts", "{}", "amounts must name at least one metric", "Pass an object such as {\"messages\": 1, \"tokens\": 350}."));
    }
    for (metric, amount) in items.iter() {
        non_empty("metric", metric)?;
        positive_amount("amount", *amount)?;
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(())
}

/// A refusal: raise it, or (no_raise) answer with every metric marked not allowed.
fn refuse(
    err: QuotaError,
    items: &[(String, i64)],
    limits: &[Limit],
    s: &Subject,
    c: &mut SpiClient<'_>,
    now: DateTime<Utc>,
    no_raise: bool,
) -> Result<Vec<Decision>> {
    if !no_raise {
        return Err(err);
    }
    let refused = match err {
        QuotaError::Exceeded(d) | QuotaError::OverRequestCap(d) => *d,
        other => return Err(other),
    };
    Ok(items
        .iter()
        .zip(limits)
        .map(|((metric, amount), limit)| {
            if *metric == refused.metric {
                return refused.clone();
            }
            let usage = store::read_window(c, &s.id, metric, &s.window(limit.period, now));
            decision(s, metric, limit, usage, *amount, now, false).blocked_by_other_metric()
        })
        .collect())
}

/// The stored answer of an earlier call with this key, marked as a replay.
fn replay(c: &mut SpiClient<'_>, subject: &str, key: &str, operation: &str) -> Result<Option<Vec<Decision>>> {
    let Some((op, response)) = store::find_key(c, subject, key) else {
        return Ok(None);
    };
    if op != operation {
        return Err(QuotaError::invalid(
            "idempotency_key",
            key,
            format!("idempotency key \"{key}\" was already used by a {op} for subject \"{subject}\""),
            "Use a distinct idempotency key per operation.",
        ));
    }
    let decisions: Vec<Decision> = serde_json::from_str(&response).expect("stored response is a decision list");
    Ok(Some(decisions.into_iter().map(Decision::replayed).collect()))
}

// Refund and reset ---------------------------------------------------------------------

/// Give usage back in the current window; never below zero.
pub fn refund(subject: &str, metric: &str, amount: i64, key: Option<&str>) -> Result<Decision> {
    positive_amount("amount", amount)?;
    if let Some(key) = key {
        non_empty("idempotency_key", key)?;
    }
    Spi::connect_mut(|c| {
        let now = clock::now();
        let s = resolve_subject(c, subject, Unknown::Create, now)?;
        let limit = resolve_limit(c, &s, metric)?;
        let w = s.window(limit.period, now);
        let usage = store::lock_window(c, &s.id, metric, &w);
        if let Some(key) = key {
            if let Some(mut replay) = replay(c, &s.id, key, "refund")? {
                return Ok(replay.remove(0));
            }
        }
        let (used, given) = limits::refund(usage.used, amount);
        let after = Usage { used, bonus: usage.bonus };
        store::write_window(c, &s.id, metric, &w, after);
        store::append(
            c,
            &Entry { subject: &s, metric, window: &w, kind: Kind::Refund, amount: given, overage: 0, idempotency_key: key, metadata: None, at: now },
        );
        let d = decision(&s, metric, &limit, after, 0, now, false);
        let d = Decision { requested: amount, ..d };
        if let Some(key) = key {
            store::save_key(c, &s.id, key, "refund", &serde_json::to_string(&[&d]).expect("decision serialises"), now);
        }
        Ok(d)
    })
}

/// Empty the current window of one metric, or of every metric of the subject's plan.
/// Returns how many windows had usage and were emptied. Bonuses stay.
pub fn reset(subject: &str, metric: Option<&str>) -> Result<i32> {
    Spi::connect_mut(|c| {
        let now = clock::now();
        let s = resolve_subject(c, subject, Unknown::Evaluate, now)?;
        let limits = match metric {
            Some(m) => vec![(m.to_string(), resolve_limit(c, &s, m)?)],
            None => store::all_limits(c, &s.plan),
        };
        if !s.stored {
            return Ok(0);
        }
        let mut emptied = 0;
        for (metric, limit) in limits {
            let w = s.window(limit.period, now);
            let usage = store::lock_window(c, &s.id, &metric, &w);
            if usage.used == 0 {
                continue;
            }
            store::write_window(c, &s.id, &metric, &w, Usage { used: 0, bonus: usage.bonus });
            store::append(
                c,
                &Entry { subject: &s, metric: &metric, window: &w, kind: Kind::Reset, amount: usage.used, overage: 0, idempotency_key: None, metadata: None, at: now },
            );
            emptied += 1;
        }
        Ok(emptied)
    })
}

// Bonuses ------------------------------------------------------------------------------

pub struct BonusOutcome {
    pub applied: bool,
    pub reason: &'static str,
    pub amount: i64,
    pub new_limit: i64,
    pub bonuses_today: i32,
}

pub fn apply_bonus(subject: &str, metric: &str, kind: &str, reference: Option<&str>) -> Result<BonusOutcome> {
    non_empty("kind", kind)?;
    if let Some(r) = reference {
        non_empty("reference", r)?;
    }
    Spi::connect_mut(|c| {
        let now = clock::now();
        resolve_subject(c, subject, Unknown::Create, now)?;
        // The subject row lock serialises this subject's bonuses, so the daily cap is exact.
        let s = store::lock_subject(c, subject).expect("subject exists");
        let limit = resolve_limit(c, &s, metric)?;
        let w = s.window(limit.period, now);
        let day = s.local_day(now);
        let today = store::grants_on(c, &s.id, day);
        let cap = store::plan_bonus_cap(c, &s.plan).flatten();
        let not_applied = |c: &mut SpiClient<'_>, reason: bonus::Refusal| {
            let usage = store::read_window(c, &s.id, metric, &w);
            BonusOutcome { applied: false, reason: reason.as_str(), amount: 0, new_limit: usage.effective_limit(&limit), bonuses_today: today }
        };
        let rule = match bonus::decide(store::rule(c, &s.plan, metric, kind), cap, today) {
            Ok(rule) => rule,
            Err(refusal) => return Ok(not_applied(c, refusal)),
        };
        if bonus::needs_reference(rule.scope) && reference.is_none() {
            return Err(QuotaError::Null { argument: "reference" });
        }
        let grant = store::Grant { subject: &s.id, metric, kind, reference, rule, window: &w, day, at: now };
        if !store::insert_grant(c, &grant) {
            return Ok(not_applied(c, bonus::Refusal::ReferenceAlreadyUsed));
        }
        let usage = store::lock_window(c, &s.id, metric, &w);
        let bonus = usage.bonus.checked_add(rule.amount).ok_or_else(|| overflow(rule.amount))?;
        let after = Usage { used: usage.used, bonus };
        store::write_window(c, &s.id, metric, &w, after);
        store::append(
            c,
            &Entry { subject: &s, metric, window: &w, kind: Kind::Bonus, amount: rule.amount, overage: 0, idempotency_key: None, metadata: None, at: now },
        );
        Ok(BonusOutcome { applied: true, reason: bonus::APPLIED, amount: rule.amount, new_limit: after.effective_limit(&limit), bonuses_today: today + 1 })
    })
}

// Administration -----------------------------------------------------------------------

pub fn parse_period(period: &str) -> Result<Period> {
    period.parse().map_err(|_| {
        QuotaError::invalid("period", period, format!("unknown period \"{period}\""), format!("Use one of: {}.", Period::NAMES))
    })
}

pub fn parse_enforcement(enforcement: &str) -> Result<Enforcement> {
    enforcement.parse().map_err(|_| {
        QuotaError::invalid(
            "enforcement",
            enforcement,
            format!("unknown enforcement \"{enforcement}\""),
            format!("Use one of: {}.", Enforcement::NAMES),
        )
    })
}

pub fn set_limit(plan: &str, metric: &str, period: &str, limit_value: i64, enforcement: &str, per_request_max: Option<i64>) -> Result<()> {
    non_empty("plan", plan)?;
    non_empty("metric", metric)?;
    let limit = Limit { period: parse_period(period)?, limit_value, enforcement: parse_enforcement(enforcement)?, per_request_max };
    if limit_value < 0 {
        return Err(QuotaError::invalid("limit_value", limit_value, "limit_value must not be negative", "Pass 0 or more; 0 blocks every request."));
    }
    if let Some(cap) = per_request_max {
        positive_amount("per_request_max", cap)?;
    }
    Spi::connect_mut(|c| {
        store::ensure_plan(c, plan);
        store::upsert_limit(c, plan, metric, &limit);
        Ok(())
    })
}

pub fn remove_limit(plan: &str, metric: &str) -> Result<bool> {
    Spi::connect_mut(|c| Ok(store::delete_limit(c, plan, metric)))
}

fn existing_plan(c: &mut SpiClient<'_>, plan: &str) -> Result<Option<i32>> {
    non_empty("plan", plan)?;
    store::plan_bonus_cap(c, plan).ok_or_else(|| {
        QuotaError::invalid("plan", plan, format!("unknown plan \"{plan}\""), "Create the plan first with quota.set_limit(plan, metric, period, limit).")
    })
}

pub fn assign_plan(
    subject: &str,
    plan: &str,
    tenant: Option<&str>,
    cycle_anchor: Option<pg_sys::TimestampTz>,
    time_zone: Option<&str>,
) -> Result<()> {
    non_empty("subject", subject)?;
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
        Some(t) if t == i64::MIN || t == i64::MAX => {
            return Err(QuotaError::invalid("cycle_anchor", "infinity", "cycle_anchor must be a finite timestamp", "Pass the start of the first billing cycle."))
        }
        other => other.map(clock::from_pg),
    };
    Spi::connect_mut(|c| {
        existing_plan(c, plan)?;
        store::upsert_subject(c, subject, plan, tenant, anchor, time_zone, clock::now());
        Ok(())
    })
}

pub fn set_bonus_rule(plan: &str, metric: &str, kind: &str, amount: i64, reference_scope: Option<&str>) -> Result<()> {
    non_empty("metric", metric)?;
    non_empty("kind", kind)?;
    positive_amount("amount", amount)?;
    let scope = match reference_scope {
        None => ReferenceScope::default_for(kind),
        Some(s) => ReferenceScope::parse(s).ok_or_else(|| {
            QuotaError::invalid("reference_scope", s, format!("unknown reference scope \"{s}\""), format!("Use one of: {}.", ReferenceScope::NAMES))
        })?,
    };
    Spi::connect_mut(|c| {
        existing_plan(c, plan)?;
        store::upsert_rule(c, plan, metric, kind, Rule { amount, scope });
        Ok(())
    })
}

pub fn set_bonus_cap(plan: &str, per_day: Option<i32>) -> Result<()> {
    if let Some(n) = per_day {
        if n < 0 {
            return Err(QuotaError::invalid("per_day", n, "per_day must not be negative", "Pass 0 or more, or NULL for no cap."));
        }
    }
    Spi::connect_mut(|c| {
        existing_plan(c, plan)?;
        store::set_bonus_cap(c, plan, per_day);
        Ok(())
    })
}

/// Parse `{"messages": 1, "tokens": 350}` into (metric, amount) pairs.
pub fn parse_amounts(amounts: &Value) -> Result<Vec<(String, i64)>> {
    let bad = |why: &str| {
        QuotaError::invalid("amounts", amounts, format!("amounts {why}"), "Pass a JSON object of metric to positive integer, such as {\"messages\": 1, \"tokens\": 350}.")
    };
    let obj = amounts.as_object().ok_or_else(|| bad("must be a JSON object"))?;
    obj.iter()
        .map(|(k, v)| v.as_i64().map(|n| (k.clone(), n)).ok_or_else(|| bad("values must be integers")))
        .collect()
}
