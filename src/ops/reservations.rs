//! Reservations: `quota_reserve` holds an amount against every limit of the metric until
//! `quota_commit` settles it, `quota_release` cancels it, or it expires.

use chrono::{DateTime, Utc};
use pgrx::pg_sys;
use pgrx::spi::SpiClient;
use serde_json::json;

use super::args::{fits_counter, metadata_fits};
use super::idempotency;
use super::metric::MetricOp;
use super::pool;
use super::subject::{resolve_limits, resolve_subject, subject_limits, Unknown};
use super::window::WindowOp;
use crate::domain::decision::Decision;
use crate::domain::error::{self, positive_amount, QuotaError, Result};
use crate::domain::events;
use crate::domain::limits::{self, Enforcement, Limit, Source, Usage};
use crate::domain::period::Period;
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
        let limits = resolve_limits(c, &s, req.metric, now)?;
        // A hold lies in every level's windows: the subject's and its pools' (`ops::pool`).
        let pools = pool::chain(c, &s, Unknown::Create, now)?;
        let pool_limits = pool::pool_limits(c, &pools, req.metric, now)?;
        let mut op = MetricOp::current(c, &s, req.metric, &limits, now, true)?.with_pools(c, &pools, &pool_limits, true, false)?;
        let refused = |err: QuotaError| {
            if let QuotaError::Exceeded(d) | QuotaError::OverRequestCap(d) = &err {
                stats::refused(d, s.tenant.as_deref());
            }
            match (req.no_raise, err) {
                (true, QuotaError::Exceeded(d) | QuotaError::OverRequestCap(d)) => Ok(Hold { id: None, expires_at: None, decision: *d }),
                (_, err) => Err(err),
            }
        };
        if op.cap().is_some_and(|cap| req.amount > cap) {
            return refused(QuotaError::OverRequestCap(Box::new(op.answer(c, req.amount)?)));
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
        // The hold must fit every hard limit of the metric, and lies in each window.
        let usages = op.lock(c)?;
        for u in &usages {
            fits_counter(*u, req.amount)?;
        }
        let outcome = op.decide(&usages, req.amount);
        if !outcome.allowed {
            if req.no_raise {
                op.discard_opened(c);
            }
            return refused(QuotaError::Exceeded(Box::new(op.decision(&usages, req.amount, &outcome, false))));
        }
        let mut held: Option<(pgrx::Uuid, DateTime<Utc>)> = None;
        let mut afters = Vec::with_capacity(usages.len());
        for ((w, u), t) in op.windows.iter().zip(&usages).zip(&outcome.throttles) {
            // A rate limit is taken when the hold is made: a commit takes from it only
            // what goes beyond the hold, and a release gives nothing back.
            if let Some(t) = t {
                w.tat.set(DateTime::from_timestamp_micros(t.tat_us));
            }
            let after = Usage { reserved: u.reserved + req.amount, ..*u };
            w.store(c, after);
            let new = storage::NewReservation {
                key: w.key(),
                via: w.via,
                id: held.map(|(id, _)| id),
                amount: req.amount,
                ttl: req.ttl,
                idempotency_key: req.idempotency_key,
                metadata: req.metadata,
                at: now,
            };
            let row = storage::insert_reservation(c, &new);
            held.get_or_insert(row);
            w.append(c, LedgerKind::Reserve, req.amount, 0, req.idempotency_key, req.metadata);
            afters.push(after);
        }
        let Some((id, expires_at)) = held else { unreachable!("resolve_limits gives at least one limit") };
        let d = op.decision(&afters, req.amount, &outcome, false);
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

/// A reservation locked with its windows (the windows first, level by level and each
/// level in period order, then the hold's rows).
struct Locked {
    hold: storage::Reservation,
    /// The member's subject, then each pool the hold lies in.
    subjects: Vec<Subject>,
    /// Per hold row: which of `subjects` and at which level.
    owners: Vec<(usize, usize)>,
    /// The limit of each of the hold's windows, without its per-request cap (a hold was
    /// capped when made).
    limits: Vec<Limit>,
    usages: Vec<Usage>,
    /// A rate limit's state (window_end) as locked, per window.
    tats: Vec<Option<DateTime<Utc>>>,
}

/// The limit of a hold's window: the plan's limit on the metric for that period (on a
/// database before limits v2, whose rows have no period, the metric's one limit). A
/// period the plan no longer limits still has its hold settled, against no limit.
pub(super) fn hold_limit(limits: &[Limit], period: &str) -> Limit {
    let found = if period.is_empty() { limits.first() } else { limits.iter().find(|l| l.period.as_str() == period) };
    match found {
        Some(l) => Limit { per_request_max: None, ..l.clone() },
        None => Limit {
            period: period.parse().unwrap_or(Period::Lifetime),
            limit_value: i64::MAX,
            enforcement: Enforcement::Soft,
            per_request_max: None,
            alerts: Vec::new(),
            source: Source::Plan,
            burst: 0,
        },
    }
}

/// Load a reservation with its subjects and limits, and lock its windows then itself. A
/// pool row whose pool is no longer in the member's chain (membership changed) is still
/// settled in that pool's window, after the chain's levels.
fn lock_reservation(c: &mut SpiClient<'_>, id: pgrx::Uuid, now: DateTime<Utc>) -> Result<Locked> {
    let scope = crate::pg::roles::scope()?;
    let r = storage::find_reservation(c, id)?.ok_or_else(|| super::pause::unknown(&scope, unknown_reservation(id)))?;
    // A hold on another tenant's subject looks like no hold at all.
    let member = storage::find_subject(c, &r.subject)?
        .filter(|s| scope.admits(s.tenant.as_deref()))
        .ok_or_else(|| super::pause::unknown(&scope, unknown_reservation(id)))?;
    super::pause::refuse_paused(member.tenant.as_deref())?;
    let member = super::schedule::store_due(c, member, now)?;
    let mut subjects = vec![member.clone()];
    subjects.extend(pool::chain(c, &member, Unknown::Create, now)?);
    let mut owners = Vec::with_capacity(r.windows.len());
    for hw in &r.windows {
        let i = match subjects.iter().position(|s| s.id == hw.subject) {
            Some(i) => i,
            None => {
                let p = storage::find_subject(c, &hw.subject)?.ok_or_else(|| unknown_reservation(id))?;
                subjects.push(super::schedule::store_due(c, p, now)?);
                subjects.len() - 1
            }
        };
        owners.push((i, i));
    }
    let mut limits = Vec::with_capacity(r.windows.len());
    for (hw, (i, _)) in r.windows.iter().zip(&owners) {
        let of_subject = if *i == 0 { resolve_limits(c, &subjects[0], &r.metric, now)? } else { subject_limits(c, &subjects[*i], &r.metric, now)? };
        limits.push(hold_limit(&of_subject, &hw.period));
    }
    let (mut usages, mut tats) = (vec![Usage::default(); limits.len()], vec![None; limits.len()]);
    // Level by level (the member's windows, then each pool's), as every path locks.
    let mut order: Vec<usize> = (0..limits.len()).collect();
    order.sort_by_key(|&k| owners[k].1);
    for k in order {
        let (hw, l) = (&r.windows[k], &limits[k]);
        let (u, _, end) = WindowOp::of(&subjects[owners[k].0], &r.metric, l, hw.window, now).lock(c)?;
        usages[k] = u;
        tats[k] = end.filter(|_| matches!(l.period, Period::Rate(_)));
    }
    let hold = storage::lock_reservation(c, id)?.ok_or_else(|| unknown_reservation(id))?;
    Ok(Locked { hold, subjects, owners, limits, usages, tats })
}

/// The hold's windows as one operation, with each rate limit's state as locked.
fn hold_op<'a>(
    r: &'a storage::Reservation,
    subjects: &'a [Subject],
    owners: &[(usize, usize)],
    limits: &'a [Limit],
    tats: &[Option<DateTime<Utc>>],
    now: DateTime<Utc>,
) -> MetricOp<'a> {
    let windows: Vec<WindowOp> = r
        .windows
        .iter()
        .zip(limits)
        .zip(owners)
        .map(|((hw, l), (i, level))| {
            let mut w = WindowOp::of(&subjects[*i], &r.metric, l, hw.window, now);
            // A pool's rows name its member the hold came through (one level below; the
            // member itself for a pool no longer in its chain).
            let below = level.checked_sub(1).map(|b| subjects.get(b).filter(|_| *i == *level).unwrap_or(&subjects[0]));
            (w.level, w.via) = (*level, below.map(|b| b.id.as_str()));
            w
        })
        .collect();
    windows.iter().zip(tats).for_each(|(w, t)| w.tat.set(*t));
    MetricOp { metric: &r.metric, windows }
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
        let Locked { hold: r, subjects, owners, limits, usages, tats } = lock_reservation(c, id, now)?;
        let s = &subjects[0];
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
        let op = hold_op(&r, &subjects, &owners, &limits, &tats, now);
        // An expired hold no longer counts: the whole actual amount must then fit.
        let held = if r.status == "held" { r.amount } else { 0 };
        let actual = actual.unwrap_or(r.amount);
        let bases: Vec<Usage> = usages.iter().map(|u| Usage { reserved: u.reserved - held.min(u.reserved), ..*u }).collect();
        for b in &bases {
            fits_counter(*b, actual)?;
        }
        // A rate limit took the hold's amount when it was made: only what goes beyond it.
        let mut outcome = op.decide_paced(&bases, actual, Some((actual - r.amount).max(0)));
        if actual <= held {
            // Within the hold: it was admitted when made.
            for (v, b) in outcome.verdicts.iter_mut().zip(&bases) {
                *v = limits::Verdict { allowed: true, reason: limits::Reason::Ok, used_after: b.used + actual, overage: 0 };
            }
            outcome.allowed = true;
            outcome.refused_by.clear();
            outcome.named = None;
        }
        if !outcome.allowed {
            let refused = op.decision(&bases, actual, &outcome, false);
            stats::refused(&refused, s.tenant.as_deref());
            return Err(QuotaError::Exceeded(Box::new(refused)));
        }
        let d = op.decision(&bases, actual, &outcome, true);
        stats::consumed(&r.metric, actual, d.overage > 0);
        let mut binding_after = usages[outcome.binding];
        for ((((w, u), b), v), t) in op.windows.iter().zip(&usages).zip(&bases).zip(&outcome.verdicts).zip(&outcome.throttles) {
            if let Some(t) = t.filter(|t| !t.limited) {
                w.tat.set(DateTime::from_timestamp_micros(t.tat_us));
            }
            let after = Usage { used: v.used_after, ..*b };
            w.write(c, *u, after, None);
            w.append(c, LedgerKind::Commit, actual, v.overage, None, metadata);
            if std::ptr::eq(w, &op.windows[outcome.binding]) {
                binding_after = after;
            }
        }
        storage::settle_reservation(c, id, "committed", Some(actual), Some(&serde_json::to_string(&d).expect("decision serialises")), now);
        op.windows[outcome.binding].emit(
            c,
            events::EventKind::ReservationCommitted,
            binding_after,
            json!({"reservation": id.to_string(), "amount": actual, "held": r.amount}),
        );
        Ok(d)
    })
}

/// Cancel a hold. True if this call released it; false if it was already released or
/// had expired. A committed reservation cannot be released (use quota_refund).
pub fn release(id: pgrx::Uuid, reason: Option<&str>) -> Result<bool> {
    storage::volatile(|c| {
        let now = clock::now();
        let Locked { hold: r, subjects, owners, limits, usages, tats } = lock_reservation(c, id, now)?;
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
        for (w, u) in hold_op(&r, &subjects, &owners, &limits, &tats, now).windows.iter().zip(&usages) {
            w.store(c, Usage { reserved: u.reserved - r.amount.min(u.reserved), ..*u });
            w.append(c, LedgerKind::Release, r.amount, 0, None, None);
        }
        storage::settle_reservation(c, id, "released", None, Some(&json!({ "reason": reason }).to_string()), now);
        Ok(true)
    })
}
