//! `quota_consume` and `quota_try_consume`: check and increment atomically, for one
//! metric or several (all or nothing). The hot path serves the common case; the general
//! path every case.

use chrono::{DateTime, Utc};
use pgrx::pg_sys;
use pgrx::spi::SpiClient;

use super::args::{fits_counter, known_name, metadata_fits, validate_items};
use super::idempotency;
use super::metric::{pace_of, MetricOp};
use super::pool;
use super::subject::{resolve_limits, resolve_subject, Unknown};
use super::window::announce;
use crate::domain::decision::Decision;
use crate::domain::error::{self, QuotaError, Result};
use crate::domain::limits::Usage;
use crate::domain::multi;
use crate::hotpath::{self, Path};
use crate::pg::clock;
use crate::pg::privilege;
use crate::pg::stats;
use crate::storage::{self, Subject};

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
    known_name("subject", req.subject)?;
    validate_items(&mut items)?;
    if let Some(key) = req.idempotency_key {
        error::name("idempotency_key", key)?;
    }
    metadata_fits(req.metadata)?;
    let now = clock::now();
    if req.idempotency_key.is_none() {
        if let Some(ds) = consume_fast(req.subject, &items, req.metadata, now)? {
            hotpath::served(Path::Hot, "quota_consume");
            return Ok(ds);
        }
    }
    hotpath::served(Path::General, "quota_consume");
    privilege::as_owner(|| storage::volatile(|c| consume_general(c, req.subject, &items, req.idempotency_key, req.metadata, req.no_raise, now)))
}

fn consume_general(
    c: &mut SpiClient<'_>,
    subject: &str,
    items: &[(String, i64)],
    key: Option<&str>,
    metadata: Option<pg_sys::Datum>,
    no_raise: bool,
    now: DateTime<Utc>,
) -> Result<Vec<Decision>> {
    let s = resolve_subject(c, subject, Unknown::Create, now)?;
    let limits = items.iter().map(|(m, _)| resolve_limits(c, &s, m, now)).collect::<Result<Vec<_>>>()?;
    // Its pools' limits on each metric (`ops::pool`): every level must fit too.
    let pools = pool::chain(c, &s, Unknown::Create, now)?;
    let pool_limits = items.iter().map(|(m, _)| pool::pool_limits(c, &pools, m, now)).collect::<Result<Vec<_>>>()?;

    // An earlier call with the same key answers again (see `idempotency::replay`).
    if let Some(key) = key {
        let metrics: Vec<&str> = items.iter().map(|(m, _)| m.as_str()).collect();
        if let Some(replay) = idempotency::replay(c, &s.id, key, "consume", &metrics)? {
            return Ok(replay);
        }
    }
    let mut ops: Vec<MetricOp> = items
        .iter()
        .zip(&limits)
        .zip(&pool_limits)
        .map(|(((metric, _), limits), pl)| MetricOp::current(c, &s, metric, limits, now, true)?.with_pools(c, &pools, pl, true, true))
        .collect::<Result<_>>()?;

    // The per-request cap needs no lock: refuse before touching any row.
    for ((_, amount), op) in items.iter().zip(&ops) {
        if op.cap().is_some_and(|cap| *amount > cap) {
            let refused = op.answer(c, *amount)?;
            return refuse(c, QuotaError::OverRequestCap(Box::new(refused)), items, &ops, &s, no_raise);
        }
    }

    // Lock every window, level by level (the member's, then its pool's...), each level in
    // (metric, period) order (items are sorted, and each metric's windows are in period
    // order), then decide.
    let mut usages: Vec<Vec<Usage>> = ops.iter().map(|op| vec![Usage::default(); op.windows.len()]).collect();
    for level in 0..=ops.iter().map(MetricOp::levels).max().unwrap_or(0) {
        for (op, u) in ops.iter_mut().zip(usages.iter_mut()) {
            op.lock_level(c, level, u)?;
        }
    }
    let mut decided = Vec::with_capacity(items.len());
    for (((_, amount), op), usages) in items.iter().zip(&ops).zip(&usages) {
        for u in usages {
            fits_counter(*u, *amount)?;
        }
        let outcome = op.decide(usages, *amount);
        if !outcome.allowed {
            let refused = op.decision(usages, *amount, &outcome, false);
            return refuse(c, QuotaError::Exceeded(Box::new(refused)), items, &ops, &s, no_raise);
        }
    }
    // Then take the amounts from the pools' sliced windows (`ops::pool`), and decide
    // again: a window whose slices had to be gathered back is now exact, and may refuse.
    for level in 1..=ops.iter().map(MetricOp::levels).max().unwrap_or(0) {
        for (((_, amount), op), usages) in items.iter().zip(&ops).zip(usages.iter_mut()) {
            op.acquire(c, level, usages, *amount)?;
        }
    }
    for (((_, amount), op), usages) in items.iter().zip(&ops).zip(&usages) {
        let outcome = op.decide(usages, *amount);
        if !outcome.allowed {
            let refused = op.decision(usages, *amount, &outcome, false);
            return refuse(c, QuotaError::Exceeded(Box::new(refused)), items, &ops, &s, no_raise);
        }
        decided.push((op.decision(usages, *amount, &outcome, true), outcome));
    }

    for ((op, usages), (d, outcome)) in ops.iter().zip(&usages).zip(&decided) {
        stats::consumed(&d.metric, d.requested, d.overage > 0);
        op.consume(c, usages, d.requested, outcome, key, metadata);
    }
    let decisions: Vec<Decision> = decided.into_iter().map(|(d, _)| d).collect();
    if let Some(key) = key {
        idempotency::save(c, &s.id, key, "consume", &decisions, now);
    }
    Ok(decisions)
}

/// A refusal: raise it, or (no_raise) answer with every metric marked not allowed.
fn refuse(c: &mut SpiClient<'_>, err: QuotaError, items: &[(String, i64)], ops: &[MetricOp], s: &Subject, no_raise: bool) -> Result<Vec<Decision>> {
    if let QuotaError::Exceeded(d) | QuotaError::OverRequestCap(d) = &err {
        stats::refused(d, s.tenant.as_deref());
    }
    let refused = match err {
        QuotaError::Exceeded(d) | QuotaError::OverRequestCap(d) if no_raise => *d,
        other => return Err(other),
    };
    // Answered, not raised: nothing rolls back, so the windows opened here close again,
    // and what was drawn from pools' slices goes back.
    ops.iter().zip(items).for_each(|(op, (_, amount))| {
        op.undraw(c, *amount);
        op.discard_opened(c)
    });
    items
        .iter()
        .zip(ops)
        .map(|((metric, amount), op)| {
            if *metric == refused.metric {
                return Ok(refused.clone());
            }
            Ok(op.answer(c, *amount)?.blocked_by_other_metric())
        })
        .collect()
}

/// What the hot path may write for `amount` more on a metric's windows: each window's
/// usage afterwards and overage. None (the cap, a refusal by any hard limit, a counter
/// that would overflow: `evaluate` refuses those with checked arithmetic): the general
/// path's full answer is needed. A window with holds goes the general way too, which
/// expires lapsed holds first (`WindowOp::lock`), as `check_fast` does. Very large limits
/// ("unlimited") stay on the hot path.
fn hot_write(f: &hotpath::Found, amount: i64, now: DateTime<Utc>) -> Option<hotpath::Write> {
    if f.windows.iter().any(|w| w.usage.reserved > 0 || w.limit.per_request_max.is_some_and(|cap| amount > cap)) {
        return None;
    }
    let now_us = now.timestamp_micros();
    let ws: Vec<multi::Window> = f
        .windows
        .iter()
        .map(|w| multi::Window { limit: &w.limit, usage: w.usage, reset_at: w.window.end, rate: pace_of(&w.limit, w.tat, now_us) })
        .collect();
    let o = multi::decide(&ws, amount);
    if !o.allowed {
        return None;
    }
    let mut write = hotpath::Write { after: Vec::with_capacity(ws.len()), overage: Vec::with_capacity(ws.len()), tat: Vec::with_capacity(ws.len()) };
    for ((w, v), t) in f.windows.iter().zip(&o.verdicts).zip(&o.throttles) {
        let mut after = Usage { used: v.used_after, ..w.usage };
        announce(w.usage, &mut after, &w.limit);
        write.after.push(after);
        write.overage.push(v.overage);
        write.tat.push(t.and_then(|t| DateTime::from_timestamp_micros(t.tat_us)));
    }
    Some(write)
}

/// The common consume without SPI: every window found, decided, then written (see
/// `hotpath::consume`); Ok(None): take the general path. The decisions are this
/// module's: `hotpath` only reads and writes.
fn consume_fast(subject: &str, items: &[(String, i64)], metadata: Option<pg_sys::Datum>, now: DateTime<Utc>) -> Result<Option<Vec<Decision>>> {
    let decide = |found: &[hotpath::Found]| found.iter().zip(items).map(|(f, (_, amount))| hot_write(f, *amount, now)).collect();
    // Calendar and rate limits only (`hotpath::find_all`): a first-use window needs the
    // general path's reads.
    let Ok(scope) = crate::pg::roles::scope() else { return Ok(None) };
    let Some(written) = hotpath::consume(subject, items, metadata, now, &scope, decide)? else { return Ok(None) };
    Ok(Some(written.iter().zip(items).map(|((f, after), (metric, amount))| consumed_fast(f, metric, *amount, after, now)).collect()))
}

/// After the hot path wrote a consume: its events, stats and decision (the same the
/// general path's `MetricOp` gives).
fn consumed_fast(f: &hotpath::Found, metric: &str, amount: i64, after: &[Usage], now: DateTime<Utc>) -> Decision {
    let op = MetricOp::of_found(f, metric, now);
    let before: Vec<Usage> = f.windows.iter().map(|w| w.usage).collect();
    let o = op.decide(&before, amount);
    // A draw from a pool's slice announces nothing, as on the general path.
    for (i, ((w, b), a)) in op.windows.iter().zip(&before).zip(after).enumerate().filter(|(_, ((w, _), _))| !w.drawn.get()) {
        let mut after = *a;
        let announced = announce(*b, &mut after, w.limit);
        let consumed = (i == op.announcing(&o)).then_some(amount);
        if announced.anything() && (consumed.is_some() || announced.crossed_or_over()) {
            privilege::as_owner(|| storage::volatile(|c| w.emit_announced(c, after, &announced, consumed)));
        }
    }
    let d = op.decision(&before, amount, &o, true);
    stats::consumed(metric, amount, d.overage > 0);
    d
}
