//! `quota_consume` and `quota_try_consume`: check and increment atomically, for one
//! metric or several (all or nothing). The hot path serves the common case; the general
//! path every case.

use chrono::{DateTime, Utc};
use pgrx::pg_sys;
use pgrx::spi::SpiClient;

use super::args::{fits_counter, known_name, metadata_fits, validate_items};
use super::idempotency;
use super::subject::{resolve_limit, resolve_subject, Unknown};
use super::window::{announce, WindowOp};
use crate::domain::decision::Decision;
use crate::domain::error::{self, QuotaError, Result};
use crate::domain::limits::{evaluate, Limit, Usage};
use crate::hotpath::{self, Path};
use crate::pg::clock;
use crate::pg::privilege;
use crate::pg::stats;
use crate::storage::{self, schema::LedgerKind, Subject};

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
    let limits = items.iter().map(|(m, _)| resolve_limit(c, &s, m)).collect::<Result<Vec<_>>>()?;

    // An earlier call with the same key answers again (see `idempotency::replay`).
    if let Some(key) = key {
        let metrics: Vec<&str> = items.iter().map(|(m, _)| m.as_str()).collect();
        if let Some(replay) = idempotency::replay(c, &s.id, key, "consume", &metrics)? {
            return Ok(replay);
        }
    }
    let ops: Vec<WindowOp> = items.iter().zip(&limits).map(|((metric, _), limit)| WindowOp::current(&s, metric, limit, now)).collect();

    // The per-request cap needs no lock: refuse before touching any row.
    for ((_, amount), op) in items.iter().zip(&ops) {
        if op.limit.per_request_max.is_some_and(|cap| *amount > cap) {
            let refused = op.decision(op.read(c)?, *amount, false);
            return refuse(c, QuotaError::OverRequestCap(Box::new(refused)), items, &ops, &s, no_raise);
        }
    }

    // Lock every window, in metric order (items are sorted), then decide.
    let usages = ops.iter().map(|op| Ok(op.lock(c)?.0)).collect::<Result<Vec<Usage>>>()?;
    let mut decided = Vec::with_capacity(items.len());
    for (((_, amount), op), usage) in items.iter().zip(&ops).zip(&usages) {
        fits_counter(*usage, *amount)?;
        let verdict = evaluate(op.limit, *usage, *amount);
        if !verdict.allowed {
            let refused = op.decision(*usage, *amount, false);
            return refuse(c, QuotaError::Exceeded(Box::new(refused)), items, &ops, &s, no_raise);
        }
        let d = Decision { window_start: op.window.start, ..op.decision(*usage, *amount, true) };
        decided.push((verdict, d));
    }

    for ((op, usage), (verdict, d)) in ops.iter().zip(&usages).zip(&decided) {
        stats::consumed(&d.metric, d.requested, verdict.overage > 0);
        op.write(c, *usage, Usage { used: verdict.used_after, ..*usage }, Some(d.requested));
        op.append(c, LedgerKind::Consume, d.requested, verdict.overage, key, metadata);
    }
    let decisions: Vec<Decision> = decided.into_iter().map(|(_, d)| d).collect();
    if let Some(key) = key {
        idempotency::save(c, &s.id, key, "consume", &decisions, now);
    }
    Ok(decisions)
}

/// A refusal: raise it, or (no_raise) answer with every metric marked not allowed.
fn refuse(c: &mut SpiClient<'_>, err: QuotaError, items: &[(String, i64)], ops: &[WindowOp], s: &Subject, no_raise: bool) -> Result<Vec<Decision>> {
    if let QuotaError::Exceeded(d) | QuotaError::OverRequestCap(d) = &err {
        stats::refused(d, s.tenant.as_deref());
    }
    let refused = match err {
        QuotaError::Exceeded(d) | QuotaError::OverRequestCap(d) if no_raise => *d,
        other => return Err(other),
    };
    items
        .iter()
        .zip(ops)
        .map(|((metric, amount), op)| {
            if *metric == refused.metric {
                return Ok(refused.clone());
            }
            Ok(op.decision(op.read(c)?, *amount, false).blocked_by_other_metric())
        })
        .collect()
}

/// What the hot path may write for `amount` more on a window: the usage afterwards and
/// the overage. None (caps, refusals, a counter that would overflow: `evaluate` refuses
/// those with checked arithmetic): the general path's full answer is needed. A window
/// with holds goes the general way too, which expires lapsed holds first
/// (`WindowOp::lock`), as `check_fast` does. Very large limits ("unlimited") stay on the
/// hot path.
fn hot_write(limit: &Limit, before: Usage, amount: i64) -> Option<hotpath::Write> {
    if before.reserved > 0 || limit.per_request_max.is_some_and(|cap| amount > cap) {
        return None;
    }
    let verdict = evaluate(limit, before, amount);
    if !verdict.allowed {
        return None;
    }
    let mut after = Usage { used: verdict.used_after, ..before };
    announce(before, &mut after, limit);
    Some(hotpath::Write { after, overage: verdict.overage })
}

/// The common consume without SPI: every window locked, decided, then written (see
/// `hotpath::consume`); Ok(None): take the general path. The decisions are this
/// module's: `hotpath` only reads and writes.
fn consume_fast(subject: &str, items: &[(String, i64)], metadata: Option<pg_sys::Datum>, now: DateTime<Utc>) -> Result<Option<Vec<Decision>>> {
    let decide = |found: &[hotpath::Found]| found.iter().zip(items).map(|(f, (_, amount))| hot_write(&f.limit, f.usage, *amount)).collect();
    let Ok(scope) = crate::pg::roles::scope() else { return Ok(None) };
    let Some(written) = hotpath::consume(subject, items, metadata, now, &scope, decide)? else { return Ok(None) };
    Ok(Some(written.iter().zip(items).map(|((f, after), (metric, amount))| consumed_fast(f, metric, *amount, *after, now)).collect()))
}

/// After the hot path wrote a consume: its events, stats and decision.
fn consumed_fast(f: &hotpath::Found, metric: &str, amount: i64, mut after: Usage, now: DateTime<Utc>) -> Decision {
    let before = f.usage;
    let verdict = evaluate(&f.limit, before, amount);
    let op = WindowOp::of(&f.subject, metric, &f.limit, f.window, now);
    let announced = announce(before, &mut after, &f.limit);
    if announced.anything() {
        privilege::as_owner(|| storage::volatile(|c| op.emit_announced(c, after, &announced, Some(amount))));
    }
    stats::consumed(metric, amount, verdict.overage > 0);
    Decision { window_start: f.window.start, ..op.decision(before, amount, true) }
}
