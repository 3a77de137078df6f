//! Reservations: `quota_reserve` holds an amount against the limit until
//! `quota_commit` settles it, `quota_release` cancels it, or it expires.

use chrono::{DateTime, Utc};
use pgrx::pg_sys;
use pgrx::spi::SpiClient;
use serde_json::json;

use super::args::{fits_counter, metadata_fits};
use super::idempotency;
use super::subject::{resolve_limit, resolve_subject, Unknown};
use super::window::WindowOp;
use crate::domain::decision::Decision;
use crate::domain::error::{self, positive_amount, QuotaError, Result};
use crate::domain::events;
use crate::domain::limits::{self, evaluate, Limit, Usage};
use crate::pg::clock;
use crate::pg::stats;
use crate::storage::{self, schema::LedgerKind, Subject};

pub struct ReserveRequest<'a> {
    pub subject: &'a str,
    pub metric: &'a str,
    pub amount: i64,
    pub ttl: pgrx::datum::Interval,
    pub idempotency_key: Option<&'a str>,
    pub metadata: Option<pg_sys::Datum>,
    pub no_raise: bool,
}

/// A hold and the decision that granted it (`id` is None when refused without raising).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Hold {
    pub id: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub decision: Decision,
}

fn positive_ttl(ttl: &pgrx::datum::Interval) -> Result<()> {
    let parts = [ttl.months() as i64, ttl.days() as i64, ttl.micros()];
    // At most about ten years, so that the expiry stays a valid timestamp.
    let bounded = ttl.months() <= 120 && ttl.days() <= 3660 && ttl.micros() <= 3660 * 86_400_000_000;
    if bounded && parts.iter().all(|p| *p >= 0) && parts.iter().any(|p| *p > 0) {
        Ok(())
    } else {
        Err(QuotaError::invalid(
            "ttl",
            "interval",
            "ttl must be a positive interval",
            "Pass how long the hold may last, such as '15 minutes' (at most ten years).",
        ))
    }
}

/// Hold `amount` against the limit until committed, released or expired.
pub fn reserve(req: ReserveRequest<'_>) -> Result<Hold> {
    positive_amount("amount", req.amount)?;
    metadata_fits(req.metadata)?;
    positive_ttl(&req.ttl)?;
    if let Some(key) = req.idempotency_key {
        error::name("idempotency_key", key)?;
    }
    storage::volatile(|c| {
        let now = clock::now();
        let s = resolve_subject(c, req.subject, Unknown::Create, now)?;
        let limit = resolve_limit(c, &s, req.metric)?;
        let op = WindowOp::current(&s, req.metric, &limit, now);
        let refused = |err: QuotaError| {
            if let QuotaError::Exceeded(d) | QuotaError::OverRequestCap(d) = &err {
                stats::refused(d, s.tenant.as_deref());
            }
            match (req.no_raise, err) {
                (true, QuotaError::Exceeded(d) | QuotaError::OverRequestCap(d)) => Ok(Hold { id: None, expires_at: None, decision: *d }),
                (_, err) => Err(err),
            }
        };
        if limit.per_request_max.is_some_and(|cap| req.amount > cap) {
            return refused(QuotaError::OverRequestCap(Box::new(op.decision(op.read(c)?, req.amount, false))));
        }
        if let Some(key) = req.idempotency_key {
            if idempotency::replay(c, &s.id, key, "reserve", &[req.metric])?.is_some() {
                let (_, response) = storage::find_key(c, &s.id, key).expect("the key was just found");
                let mut hold: Hold = storage::stored_json("quota.idempotency_keys", "response", &response)?;
                if hold.decision.metric != req.metric {
                    return Err(idempotency::reused(&s.id, key, format!("a request on {}", hold.decision.metric)));
                }
                hold.decision = hold.decision.replayed();
                return Ok(hold);
            }
        }
        let (usage, _) = op.lock(c)?;
        fits_counter(usage, req.amount)?;
        let verdict = evaluate(&limit, usage, req.amount);
        if !verdict.allowed {
            return refused(QuotaError::Exceeded(Box::new(op.decision(usage, req.amount, false))));
        }
        let after = Usage { reserved: usage.reserved + req.amount, ..usage };
        op.store(c, after);
        let new = storage::NewReservation {
            subject: &s.id,
            metric: req.metric,
            window: &op.window,
            amount: req.amount,
            ttl: req.ttl,
            idempotency_key: req.idempotency_key,
            metadata: req.metadata,
            at: now,
        };
        let (id, expires_at) = storage::insert_reservation(c, &new);
        op.append(c, LedgerKind::Reserve, req.amount, 0, req.idempotency_key, req.metadata);
        let mut d = op.decision(after, req.amount, false);
        d.allowed = true;
        d.reason = verdict.reason.as_str().to_string();
        let hold = Hold { id: Some(id.to_string()), expires_at: Some(expires_at), decision: d };
        if let Some(key) = req.idempotency_key {
            idempotency::save(c, &s.id, key, "reserve", &hold, now);
        }
        Ok(hold)
    })
}

fn unknown_reservation(id: pgrx::Uuid) -> QuotaError {
    QuotaError::invalid("reservation", id, format!("unknown reservation {id}"), "Pass the id that quota.quota_reserve returned.")
}

/// A reservation locked with its window (the window first, then the hold).
struct Locked {
    hold: storage::Reservation,
    subject: Subject,
    limit: Limit,
    usage: Usage,
}

/// Load a reservation with its subject and limit, and lock its window then itself.
fn lock_reservation(c: &mut SpiClient<'_>, id: pgrx::Uuid, now: DateTime<Utc>) -> Result<Locked> {
    let r = storage::find_reservation(c, id)?.ok_or_else(|| unknown_reservation(id))?;
    // A hold on another tenant's subject looks like no hold at all.
    let scope = crate::pg::roles::scope()?;
    let subject = storage::find_subject(c, &r.subject)?.filter(|s| scope.admits(s.tenant.as_deref())).ok_or_else(|| unknown_reservation(id))?;
    let limit = resolve_limit(c, &subject, &r.metric)?;
    let (usage, _) = WindowOp::of(&subject, &r.metric, &limit, r.window, now).lock(c)?;
    let hold = storage::lock_reservation(c, id)?.ok_or_else(|| unknown_reservation(id))?;
    Ok(Locked { hold, subject, limit, usage })
}

/// Settle a hold: usage becomes `actual` (default: the held amount) and the rest of the
/// hold is released. More than held is consumed like quota_consume: allowed under a soft
/// limit, and under a hard limit only if it fits (else QT429 and nothing changes).
/// Settling twice answers the first settlement again.
pub fn commit(id: pgrx::Uuid, actual: Option<i64>, metadata: Option<pg_sys::Datum>) -> Result<Decision> {
    metadata_fits(metadata)?;
    if let Some(a) = actual.filter(|a| *a < 0) {
        return Err(QuotaError::invalid(
            "actual_amount",
            a,
            "actual_amount must not be negative",
            "Pass the amount really used (0 or more), or NULL for the held amount.",
        ));
    }
    storage::volatile(|c| {
        let now = clock::now();
        let Locked { hold: r, subject: s, limit, usage } = lock_reservation(c, id, now)?;
        match r.status.as_str() {
            "committed" => {
                let d: Decision = storage::stored_json("quota.reservations", "response", r.response.as_deref().unwrap_or("null"))?;
                return Ok(d.replayed());
            }
            "released" => {
                return Err(QuotaError::invalid(
                    "reservation",
                    id,
                    format!("reservation {id} was released"),
                    "Reserve again, or record the usage with quota.quota_consume.",
                ))
            }
            _ => {}
        }
        let op = WindowOp::of(&s, &r.metric, &limit, r.window, now);
        // An expired hold no longer counts: the whole actual amount must then fit.
        let held = if r.status == "held" { r.amount } else { 0 };
        let actual = actual.unwrap_or(r.amount);
        let base = Usage { reserved: usage.reserved - held.min(usage.reserved), ..usage };
        fits_counter(base, actual)?;
        let no_cap = Limit { per_request_max: None, ..limit.clone() };
        let verdict = if actual <= held {
            limits::Verdict { allowed: true, reason: limits::Reason::Ok, used_after: base.used + actual, overage: 0 }
        } else {
            evaluate(&no_cap, base, actual)
        };
        if !verdict.allowed {
            let refused = Decision::new(&s.id, &r.metric, &limit, base, actual, r.window.end, &verdict, false);
            stats::refused(&refused, s.tenant.as_deref());
            return Err(QuotaError::Exceeded(Box::new(refused)));
        }
        stats::consumed(&r.metric, actual, verdict.overage > 0);
        let after = Usage { used: verdict.used_after, ..base };
        op.write(c, usage, after, None);
        op.append(c, LedgerKind::Commit, actual, verdict.overage, None, metadata);
        let d = Decision::new(&s.id, &r.metric, &limit, base, actual, r.window.end, &verdict, true);
        storage::settle_reservation(c, id, "committed", Some(actual), Some(&serde_json::to_string(&d).expect("decision serialises")), now);
        op.emit(c, events::EventKind::ReservationCommitted, after, json!({"reservation": id.to_string(), "amount": actual, "held": r.amount}));
        Ok(d)
    })
}

/// Cancel a hold. True if this call released it; false if it was already released or
/// had expired. A committed reservation cannot be released (use quota_refund).
pub fn release(id: pgrx::Uuid, reason: Option<&str>) -> Result<bool> {
    storage::volatile(|c| {
        let now = clock::now();
        let Locked { hold: r, subject: s, limit, usage } = lock_reservation(c, id, now)?;
        match r.status.as_str() {
            "held" => {}
            "committed" => {
                return Err(QuotaError::invalid(
                    "reservation",
                    id,
                    format!("reservation {id} was already committed"),
                    "Give committed usage back with quota.quota_refund.",
                ))
            }
            _ => return Ok(false),
        }
        let op = WindowOp::of(&s, &r.metric, &limit, r.window, now);
        op.store(c, Usage { reserved: usage.reserved - r.amount.min(usage.reserved), ..usage });
        op.append(c, LedgerKind::Release, r.amount, 0, None, None);
        storage::settle_reservation(c, id, "released", None, Some(&json!({ "reason": reason }).to_string()), now);
        Ok(true)
    })
}
