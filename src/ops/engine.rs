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
use serde_json::{json, Value};

use crate::bonus::{self, ReferenceScope, Rule};
use crate::clock;
use crate::decision::Decision;
use crate::error::{self, positive_amount, QuotaError, Result};
use crate::events;
use crate::fastpath;
use crate::gucs;
use crate::installed;
use crate::limits::{self, evaluate, Enforcement, Limit, Usage};
use crate::period::{self, Period, Window};
use crate::privilege;
use crate::stats;
use crate::store::{self, Entry, Kind, Subject};
use crate::tenancy;

/// Whether an operation may create an unknown subject on `quota.default_plan`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unknown {
    /// Consume, refund, bonus: create and store it.
    Create,
    /// Check, status: evaluate it on the default plan without writing.
    Evaluate,
}

fn resolve_subject(c: &mut SpiClient<'_>, id: &str, unknown: Unknown, now: DateTime<Utc>) -> Result<Subject> {
    known_name("subject", id)?;
    let scope = tenancy::current()?;
    let unknown_subject = || QuotaError::UnknownSubject { subject: id.to_string() };
    if let Some(s) = store::find_subject(c, id) {
        // Another tenant's subject looks exactly like one that does not exist.
        if !scope.admits(s.tenant.as_deref()) {
            return Err(unknown_subject());
        }
        return Ok(s);
    }
    let Some(plan) = gucs::default_plan().filter(|_| scope.may_create()) else {
        return Err(unknown_subject());
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
        store::insert_subject(c, id, &plan, scope.creates_in(), now);
        // A concurrent creator may have won with other values (even another tenant):
        // read what is stored.
        return store::find_subject(c, id).filter(|s| scope.admits(s.tenant.as_deref())).ok_or_else(unknown_subject);
    }
    let tenant = scope.creates_in().map(str::to_string);
    Ok(Subject { id: id.to_string(), plan, tenant, anchor: now, tz: chrono_tz::Tz::UTC, stored: false })
}

fn resolve_limit(c: &mut SpiClient<'_>, subject: &Subject, metric: &str) -> Result<Limit> {
    known_name("metric", metric)?;
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

// Windows: read, lock (expiring lapsed holds), write (announcing thresholds) ------------

/// The window's usage for a read-only answer: holds that have lapsed no longer count,
/// even before anything has marked them expired.
fn read_window(c: &mut SpiClient<'_>, s: &Subject, metric: &str, w: &Window, now: DateTime<Utc>) -> Usage {
    let mut u = store::read_window(c, &s.id, metric, w);
    if u.reserved > 0 {
        u.reserved -= store::expired_held(c, &s.id, metric, w, now).min(u.reserved);
    }
    u
}

/// Lock the window for a change. Lapsed holds are expired first (ledger rows and
/// reservation_expired events), so they stop counting against the limit. Returns the
/// usage and how many holds expired.
fn lock_window(c: &mut SpiClient<'_>, s: &Subject, metric: &str, limit: &Limit, w: &Window, now: DateTime<Utc>) -> (Usage, usize) {
    let mut u = store::lock_window(c, &s.id, metric, w);
    if u.reserved == 0 {
        return (u, 0);
    }
    let lapsed = store::expire_held(c, &s.id, metric, w, now);
    for (id, amount) in &lapsed {
        u.reserved -= (*amount).min(u.reserved);
        store::append(
            c,
            &Entry { subject: s, metric, window: w, kind: Kind::Expire, amount: *amount, overage: 0, idempotency_key: None, metadata: None, at: now },
        );
        store::emit(c, &event(events::Kind::ReservationExpired, s, metric, limit, w, u, now, json!({"reservation": id.to_string(), "amount": amount})));
    }
    if !lapsed.is_empty() {
        store::write_window(c, &s.id, metric, w, u);
    }
    (u, lapsed.len())
}

/// Write a window's new usage and announce what it crossed (see `announce`).
#[allow(clippy::too_many_arguments)]
fn write_usage(
    c: &mut SpiClient<'_>,
    s: &Subject,
    metric: &str,
    limit: &Limit,
    w: &Window,
    before: Usage,
    mut after: Usage,
    now: DateTime<Utc>,
    consumed: Option<i64>,
) {
    let events = announce(before, &mut after, limit);
    store::write_window(c, &s.id, metric, w, after);
    emit_all(c, s, metric, limit, w, after, now, &events, consumed);
}

/// What a change of usage announces: the alert thresholds it crosses (recorded in
/// `after.alerted`, so each fires once per window) and whether it goes over a soft limit.
fn announce(before: Usage, after: &mut Usage, limit: &Limit) -> (Vec<i32>, bool) {
    let effective = after.effective_limit(limit);
    let crossed = events::crossed(&limit.alerts, before.alerted, after.used, effective);
    if let Some(&top) = crossed.last() {
        after.alerted = top;
    }
    let over = limit.enforcement == Enforcement::Soft && events::went_over(before.used, after.used, effective);
    (crossed, over)
}

/// Send what `announce` found, and (with quota.notify_every_consume) the consume itself.
#[allow(clippy::too_many_arguments)]
fn emit_all(
    c: &mut SpiClient<'_>,
    s: &Subject,
    metric: &str,
    limit: &Limit,
    w: &Window,
    after: Usage,
    now: DateTime<Utc>,
    (crossed, over): &(Vec<i32>, bool),
    consumed: Option<i64>,
) {
    for t in crossed {
        let mut e = event(events::Kind::ThresholdCrossed, s, metric, limit, w, after, now, Value::Null);
        e.threshold = Some(*t);
        store::emit(c, &e);
    }
    if *over {
        store::emit(c, &event(events::Kind::SoftLimitExceeded, s, metric, limit, w, after, now, Value::Null));
    }
    if let Some(amount) = consumed.filter(|_| gucs::notify_every_consume()) {
        store::emit(c, &event(events::Kind::Consumed, s, metric, limit, w, after, now, json!({"amount": amount})));
    }
}

#[allow(clippy::too_many_arguments)]
fn event(kind: events::Kind, s: &Subject, metric: &str, limit: &Limit, w: &Window, u: Usage, now: DateTime<Utc>, extra: Value) -> events::Event {
    events::Event {
        kind,
        subject: s.id.clone(),
        metric: metric.to_string(),
        window_start: w.start,
        used: u.used,
        limit: u.effective_limit(limit),
        threshold: None,
        occurred_at: now,
        extra,
    }
}

// Check and status ---------------------------------------------------------------------

/// A dry run: writes nothing. `used`/`remaining` are before the request.
pub fn check(subject: &str, items: &[(String, i64)]) -> Result<Vec<Decision>> {
    known_name("subject", subject)?;
    for (metric, amount) in items {
        known_name("metric", metric)?;
        if *amount < 0 {
            return Err(QuotaError::invalid("amount", amount, format!("amount must not be negative, got {amount}"), "Pass 0 to read the state, or a positive amount to test a request."));
        }
    }
    let now = clock::now();
    if let [(metric, amount)] = items {
        if let Some(d) = check_fast(subject, metric, *amount, now) {
            stats::checked(&d.metric);
            return Ok(vec![d]);
        }
    }
    let answers = privilege::as_owner(|| Spi::connect_mut(|c| {
        let s = resolve_subject(c, subject, Unknown::Evaluate, now)?;
        items
            .iter()
            .map(|(metric, amount)| {
                let limit = resolve_limit(c, &s, metric)?;
                let usage = read_window(c, &s, metric, &s.window(limit.period, now), now);
                fits_counter(usage, *amount)?;
                Ok(decision(&s, metric, &limit, usage, *amount, now, false))
            })
            .collect::<Result<Vec<_>>>()
    }))?;
    answers.iter().for_each(|d| stats::checked(&d.metric));
    Ok(answers)
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
}

pub fn status(subject: &str) -> Result<Vec<StatusRow>> {
    Spi::connect_mut(|c| {
        let now = clock::now();
        let s = resolve_subject(c, subject, Unknown::Evaluate, now)?;
        Ok(store::all_limits(c, &s.plan)
            .into_iter()
            .map(|(metric, limit)| {
                let w = s.window(limit.period, now);
                let usage = read_window(c, &s, &metric, &w, now);
                StatusRow {
                    period: limit.period,
                    limit_value: limit.limit_value,
                    bonus: usage.bonus,
                    used: usage.used,
                    remaining: usage.remaining(&limit),
                    reset_at: w.end,
                    enforcement: limit.enforcement,
                    reserved: usage.reserved,
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
    known_name("subject", req.subject)?;
    validate_items(&mut items)?;
    if let Some(key) = req.idempotency_key {
        error::name("idempotency_key", key)?;
    }
    metadata_fits(req.metadata)?;
    let now = clock::now();
    if let ([(metric, amount)], None) = (items.as_slice(), req.idempotency_key) {
        if let Some(d) = consume_fast(req.subject, metric, *amount, req.metadata, now) {
            return Ok(vec![d]);
        }
    } else if req.idempotency_key.is_none() {
        if let Some(ds) = consume_many_fast(req.subject, &items, req.metadata, now)? {
            return Ok(ds);
        }
    }
    privilege::as_owner(|| Spi::connect_mut(|c| {
        let s = resolve_subject(c, req.subject, Unknown::Create, now)?;
        let limits = items.iter().map(|(m, _)| resolve_limit(c, &s, m)).collect::<Result<Vec<_>>>()?;

        // An earlier call with the same key answers again (see `replay`).
        if let Some(key) = req.idempotency_key {
            let metrics: Vec<&str> = items.iter().map(|(m, _)| m.as_str()).collect();
            if let Some(replay) = replay(c, &s.id, key, "consume", &metrics)? {
                return Ok(replay);
            }
        }

        // The per-request cap needs no lock: refuse before touching any row.
        for ((metric, amount), limit) in items.iter().zip(&limits) {
            if limit.per_request_max.is_some_and(|cap| *amount > cap) {
                let usage = read_window(c, &s, metric, &s.window(limit.period, now), now);
                let refused = decision(&s, metric, limit, usage, *amount, now, false);
                return refuse(QuotaError::OverRequestCap(Box::new(refused)), &items, &limits, &s, c, now, req.no_raise);
            }
        }

        // Lock every window, in metric order (items are sorted), then decide.
        let windows: Vec<_> = limits.iter().map(|l| s.window(l.period, now)).collect();
        let usages: Vec<Usage> =
            items.iter().zip(&windows).zip(&limits).map(|(((metric, _), w), l)| lock_window(c, &s, metric, l, w, now).0).collect();

        let mut decisions = Vec::with_capacity(items.len());
        for (((metric, amount), limit), usage) in items.iter().zip(&limits).zip(&usages) {
            fits_counter(*usage, *amount)?;
            let verdict = evaluate(limit, *usage, *amount);
            if !verdict.allowed {
                let refused = Decision::new(&s.id, metric, limit, *usage, *amount, windows[decisions.len()].end, &verdict, false);
                return refuse(QuotaError::Exceeded(Box::new(refused)), &items, &limits, &s, c, now, req.no_raise);
            }
            let w = &windows[decisions.len()];
            let d = Decision { window_start: w.start, ..Decision::new(&s.id, metric, limit, *usage, *amount, w.end, &verdict, true) };
            decisions.push((verdict, d));
        }

        for (i, (verdict, d)) in decisions.iter().enumerate() {
            stats::consumed(&d.metric, d.requested, verdict.overage > 0);
            let after = Usage { used: verdict.used_after, ..usages[i] };
            write_usage(c, &s, &d.metric, &limits[i], &windows[i], usages[i], after, now, Some(d.requested));
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
    }))
}

/// What the hot path may write for `amount` more on a window: the usage afterwards and
/// the overage. None (caps, refusals, a counter that would overflow: `evaluate` refuses
/// those with checked arithmetic): the general path's full answer is needed. Very large
/// limits ("unlimited") stay on the hot path.
fn plan(limit: &Limit, before: Usage, amount: i64) -> Option<fastpath::Plan> {
    if limit.per_request_max.is_some_and(|cap| amount > cap) {
        return None;
    }
    let verdict = evaluate(limit, before, amount);
    if !verdict.allowed {
        return None;
    }
    let mut after = Usage { used: verdict.used_after, ..before };
    announce(before, &mut after, limit);
    Some(fastpath::Plan { after, overage: verdict.overage })
}

/// After the hot path wrote a consume: its events, stats and decision.
fn consumed_fast(f: &fastpath::Found, metric: &str, amount: i64, mut after: Usage, now: DateTime<Utc>) -> Decision {
    let before = f.usage;
    let verdict = evaluate(&f.limit, before, amount);
    let found = announce(before, &mut after, &f.limit);
    if !found.0.is_empty() || found.1 || gucs::notify_every_consume() {
        privilege::as_owner(|| Spi::connect_mut(|c| emit_all(c, &f.subject, metric, &f.limit, &f.window, after, now, &found, Some(amount))));
    }
    stats::consumed(metric, amount, verdict.overage > 0);
    Decision { window_start: f.window.start, ..Decision::new(&f.subject.id, metric, &f.limit, before, amount, f.window.end, &verdict, true) }
}

/// The common consume without SPI (see `fastpath`); None: take the general path. The
/// decision is this module's: `fastpath` only reads and writes.
fn consume_fast(subject: &str, metric: &str, amount: i64, metadata: Option<pg_sys::Datum>, now: DateTime<Utc>) -> Option<Decision> {
    let decide = |limit: &Limit, before: Usage| plan(limit, before, amount);
    let scope = tenancy::current().ok()?;
    let (f, after) = fastpath::consume(subject, metric, amount, metadata, now, &scope, decide)?;
    let d = consumed_fast(&f, metric, amount, after, now);
    hot_path_taken("quota_consume");
    Some(d)
}

/// The common multi-metric consume without SPI: all windows locked, all decided, then
/// all written (see `fastpath::consume_many`); Ok(None): take the general path.
fn consume_many_fast(subject: &str, items: &[(String, i64)], metadata: Option<pg_sys::Datum>, now: DateTime<Utc>) -> Result<Option<Vec<Decision>>> {
    let decide = |found: &[fastpath::Found]| found.iter().zip(items).map(|(f, (_, amount))| plan(&f.limit, f.usage, *amount)).collect();
    let scope = tenancy::current()?;
    let Some(written) = fastpath::consume_many(subject, items, metadata, now, &scope, decide)? else { return Ok(None) };
    let decisions = written.iter().zip(items).map(|((f, after), (metric, amount))| consumed_fast(f, metric, *amount, *after, now)).collect();
    hot_path_taken("quota_consume");
    Ok(Some(decisions))
}

/// The common check without SPI (None: take the general path). Windows with open holds
/// go the general way, which discounts lapsed holds.
fn check_fast(subject: &str, metric: &str, amount: i64, now: DateTime<Utc>) -> Option<Decision> {
    let scope = tenancy::current().ok()?;
    let f = fastpath::check(subject, metric, now, &scope)?;
    if f.usage.reserved > 0 || f.usage.used.checked_add(amount).is_none() {
        return None;
    }
    let verdict = evaluate(&f.limit, f.usage, amount);
    hot_path_taken("quota_check");
    Some(Decision::new(&f.subject.id, metric, &f.limit, f.usage, amount, f.window.end, &verdict, false))
}

/// `SET client_min_messages = debug2` shows which calls the hot path served.
fn hot_path_taken(operation: &str) {
    fastpath::note(format_args!("{operation}: served by the hot path"));
}

/// A name argument within its bound (`error::name`), or one already stored: names
/// stored before the bounds existed keep working.
fn known_name<'a>(argument: &'static str, value: &'a str) -> Result<&'a str> {
    match error::name(argument, value) {
        Err(_) if !value.is_empty() && store::name_is_stored(argument, value) => Ok(value),
        other => other,
    }
}

/// Metadata is stored as given, up to `quota.max_metadata_bytes`.
fn metadata_fits(metadata: Option<pg_sys::Datum>) -> Result<()> {
    let Some(datum) = metadata else { return Ok(()) };
    // SAFETY: a jsonb argument is a valid varlena (possibly toasted: its stored size).
    let size = unsafe { pg_sys::toast_raw_datum_size(datum) };
    let max = gucs::max_metadata_bytes();
    if size > max {
        return Err(QuotaError::invalid(
            "metadata",
            format!("{size} bytes"),
            format!("metadata is {size} bytes, more than quota.max_metadata_bytes ({max})"),
            "Store less in metadata (an id that points to your own record, say), or ask a superuser to raise quota.max_metadata_bytes.",
        ));
    }
    Ok(())
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
        known_name("metric", metric)?;
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
    if let QuotaError::Exceeded(d) | QuotaError::OverRequestCap(d) = &err {
        stats::refused(d, s.tenant.as_deref());
    }
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
            let usage = read_window(c, &s, metric, &s.window(limit.period, now), now);
            decision(s, metric, limit, usage, *amount, now, false).blocked_by_other_metric()
        })
        .collect())
}

/// The stored answer of an earlier call with this key, marked as a replay.
/// The stored answer of an earlier call with this key, marked as a replay. The key is
/// locked first (a transaction-scoped advisory lock on subject + key), so a concurrent call
/// with the same key waits here until the first commits or aborts, whatever metrics or
/// windows the two calls touch; in READ COMMITTED it then sees the stored answer.
/// A key reused for another operation or other metrics is 22023.
fn replay(c: &mut SpiClient<'_>, subject: &str, key: &str, operation: &str, metrics: &[&str]) -> Result<Option<Vec<Decision>>> {
    store::lock_key(c, subject, key);
    let Some((op, response)) = store::find_key(c, subject, key) else {
        return Ok(None);
    };
    let reused = |what: String| {
        QuotaError::invalid(
            "idempotency_key",
            key,
            format!("idempotency key \"{key}\" was already used by {what} for subject \"{subject}\""),
            "Use a distinct idempotency key per request.",
        )
    };
    if op != operation {
        return Err(reused(format!("a {op}")));
    }
    if operation == "reserve" {
        return Ok(Some(Vec::new()));
    }
    let decisions: Vec<Decision> = serde_json::from_str(&response).expect("stored response is a decision list");
    let mut stored: Vec<&str> = decisions.iter().map(|d| d.metric.as_str()).collect();
    let mut asked = metrics.to_vec();
    stored.sort_unstable();
    asked.sort_unstable();
    if stored != asked {
        return Err(reused(format!("a request on {}", stored.join(", "))));
    }
    Ok(Some(decisions.into_iter().map(Decision::replayed).collect()))
}

// Reservations -------------------------------------------------------------------------

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
        Err(QuotaError::invalid("ttl", "interval", "ttl must be a positive interval", "Pass how long the hold may last, such as '15 minutes' (at most ten years)."))
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
    Spi::connect_mut(|c| {
        let now = clock::now();
        let s = resolve_subject(c, req.subject, Unknown::Create, now)?;
        let limit = resolve_limit(c, &s, req.metric)?;
        let w = s.window(limit.period, now);
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
            let usage = read_window(c, &s, req.metric, &w, now);
            return refused(QuotaError::OverRequestCap(Box::new(decision(&s, req.metric, &limit, usage, req.amount, now, false))));
        }
        if let Some(key) = req.idempotency_key {
            if replay(c, &s.id, key, "reserve", &[req.metric])?.is_some() {
                let (_, response) = store::find_key(c, &s.id, key).expect("the key was just found");
                let mut hold: Hold = serde_json::from_str(&response).expect("stored response is a hold");
                if hold.decision.metric != req.metric {
                    return Err(QuotaError::invalid(
                        "idempotency_key",
                        key,
                        format!("idempotency key \"{key}\" was already used by a request on {} for subject \"{}\"", hold.decision.metric, s.id),
                        "Use a distinct idempotency key per request.",
                    ));
                }
                hold.decision = hold.decision.replayed();
                return Ok(hold);
            }
        }
        let (usage, _) = lock_window(c, &s, req.metric, &limit, &w, now);
        fits_counter(usage, req.amount)?;
        let verdict = evaluate(&limit, usage, req.amount);
        if !verdict.allowed {
            return refused(QuotaError::Exceeded(Box::new(decision(&s, req.metric, &limit, usage, req.amount, now, false))));
        }
        let after = Usage { reserved: usage.reserved + req.amount, ..usage };
        store::write_window(c, &s.id, req.metric, &w, after);
        let new = store::NewReservation {
            subject: &s.id,
            metric: req.metric,
            window: &w,
            amount: req.amount,
            ttl: req.ttl,
            idempotency_key: req.idempotency_key,
            metadata: req.metadata,
            at: now,
        };
        let (id, expires_at) = store::insert_reservation(c, &new);
        store::append(
            c,
            &Entry {
                subject: &s,
                metric: req.metric,
                window: &w,
                kind: Kind::Reserve,
                amount: req.amount,
                overage: 0,
                idempotency_key: req.idempotency_key,
                metadata: req.metadata,
                at: now,
            },
        );
        let mut d = decision(&s, req.metric, &limit, after, req.amount, now, false);
        d.allowed = true;
        d.reason = verdict.reason.as_str().to_string();
        let hold = Hold { id: Some(id.to_string()), expires_at: Some(expires_at), decision: d };
        if let Some(key) = req.idempotency_key {
            store::save_key(c, &s.id, key, "reserve", &serde_json::to_string(&hold).expect("hold serialises"), now);
        }
        Ok(hold)
    })
}

fn unknown_reservation(id: pgrx::Uuid) -> QuotaError {
    QuotaError::invalid("reservation", id, format!("unknown reservation {id}"), "Pass the id that quota.quota_reserve returned.")
}

/// Load a reservation with its subject and limit, and lock its window then itself.
fn lock_reservation(c: &mut SpiClient<'_>, id: pgrx::Uuid, now: DateTime<Utc>) -> Result<(store::Reservation, Subject, Limit, Usage)> {
    let r = store::find_reservation(c, id).ok_or_else(|| unknown_reservation(id))?;
    // A hold on another tenant's subject looks like no hold at all.
    let scope = tenancy::current()?;
    let s = store::find_subject(c, &r.subject).filter(|s| scope.admits(s.tenant.as_deref())).ok_or_else(|| unknown_reservation(id))?;
    let limit = resolve_limit(c, &s, &r.metric)?;
    let (usage, _) = lock_window(c, &s, &r.metric, &limit, &r.window, now);
    let r = store::lock_reservation(c, id).ok_or_else(|| unknown_reservation(id))?;
    Ok((r, s, limit, usage))
}

/// Settle a hold: usage becomes `actual` (default: the held amount) and the rest of the
/// hold is released. More than held is consumed like quota_consume: allowed under a soft
/// limit, and under a hard limit only if it fits (else QT429 and nothing changes).
/// Settling twice answers the first settlement again.
pub fn commit(id: pgrx::Uuid, actual: Option<i64>, metadata: Option<pg_sys::Datum>) -> Result<Decision> {
    metadata_fits(metadata)?;
    if let Some(a) = actual.filter(|a| *a < 0) {
        return Err(QuotaError::invalid("actual_amount", a, "actual_amount must not be negative", "Pass the amount really used (0 or more), or NULL for the held amount."));
    }
    Spi::connect_mut(|c| {
        let now = clock::now();
        let (r, s, limit, usage) = lock_reservation(c, id, now)?;
        match r.status.as_str() {
            "committed" => {
                let d: Decision = serde_json::from_str(r.response.as_deref().unwrap_or("null")).expect("stored decision");
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
        write_usage(c, &s, &r.metric, &limit, &r.window, usage, after, now, None);
        store::append(
            c,
            &Entry {
                subject: &s,
                metric: &r.metric,
                window: &r.window,
                kind: Kind::Commit,
                amount: actual,
                overage: verdict.overage,
                idempotency_key: None,
                metadata,
                at: now,
            },
        );
        let d = Decision::new(&s.id, &r.metric, &limit, base, actual, r.window.end, &verdict, true);
        store::settle_reservation(c, id, "committed", Some(actual), Some(&serde_json::to_string(&d).expect("decision serialises")), now);
        let extra = json!({"reservation": id.to_string(), "amount": actual, "held": r.amount});
        store::emit(c, &event(events::Kind::ReservationCommitted, &s, &r.metric, &limit, &r.window, after, now, extra));
        Ok(d)
    })
}

/// Cancel a hold. True if this call released it; false if it was already released or
/// had expired. A committed reservation cannot be released (use quota_refund).
pub fn release(id: pgrx::Uuid, reason: Option<&str>) -> Result<bool> {
    Spi::connect_mut(|c| {
        let now = clock::now();
        let (r, s, limit, usage) = lock_reservation(c, id, now)?;
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
        let after = Usage { reserved: usage.reserved - r.amount.min(usage.reserved), ..usage };
        store::write_window(c, &s.id, &r.metric, &r.window, after);
        store::append(
            c,
            &Entry { subject: &s, metric: &r.metric, window: &r.window, kind: Kind::Release, amount: r.amount, overage: 0, idempotency_key: None, metadata: None, at: now },
        );
        let note = json!({ "reason": reason }).to_string();
        store::settle_reservation(c, id, "released", None, Some(&note), now);
        let _ = limit;
        Ok(true)
    })
}

/// Sweep lapsed holds everywhere (they also expire lazily on the next access). Safe to
/// run concurrently and from pg_cron. Returns how many holds expired. Each window is
/// swept in a subtransaction: one that fails is logged at WARNING and left for the next
/// run, and the sweep goes on with the rest.
pub fn maintenance() -> Result<i64> {
    Spi::connect_mut(|c| {
        let now = clock::now();
        let mut expired = 0;
        let mut failed = 0i64;
        loop {
            let batch = store::lapsed_windows(c, now, 1000, failed);
            if batch.is_empty() {
                return Ok(expired);
            }
            let mut progressed = false;
            for (subject, metric, w) in batch {
                let swept = subtransaction(|| {
                    let Some(s) = store::find_subject(c, &subject) else { return 0 };
                    let Some(limit) = store::limit(c, &s.plan, &metric) else { return 0 };
                    lock_window(c, &s, &metric, &limit, &w, now).1
                });
                match swept {
                    Ok(n) => {
                        expired += n as i64;
                        progressed |= n > 0;
                    }
                    Err(why) => {
                        failed += 1;
                        pgrx::warning!(
                            "quota.maintenance: could not expire the holds of subject \"{}\" on {}: {why}; left for the next run",
                            error::quoted(&subject),
                            error::quoted(&metric)
                        );
                    }
                }
            }
            if !progressed {
                return Ok(expired);
            }
        }
    })
}

/// Run `f` in a subtransaction: its effects are kept when it succeeds, rolled back (and
/// the error's message returned) when it fails.
pub fn subtransaction<R>(f: impl FnOnce() -> R) -> std::result::Result<R, String> {
    // SAFETY: the standard internal-subtransaction protocol (as PL/pgSQL's exception
    // blocks): begin, then release or roll back, restoring the memory context and
    // resource owner of the caller.
    let (context, owner) = unsafe { (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner) };
    // SAFETY: inside a transaction (every caller is a SQL function); a NULL name is allowed.
    unsafe { pg_sys::BeginInternalSubTransaction(std::ptr::null()) };
    // SAFETY: restores the two globals saved above, both still valid in the parent.
    let restore = move || unsafe {
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
    };
    pgrx::PgTryBuilder::new(std::panic::AssertUnwindSafe(|| {
        let r = f();
        // SAFETY: `f` returned normally inside the subtransaction begun above.
        unsafe { pg_sys::ReleaseCurrentSubTransaction() };
        restore();
        Ok(r)
    }))
    .catch_others(|e| {
        // SAFETY: the error was caught (and its state flushed by pgrx) inside the
        // subtransaction begun above, which is still the current one.
        unsafe { pg_sys::RollbackAndReleaseCurrentSubTransaction() };
        restore();
        Err(match e {
            pgrx::pg_sys::panic::CaughtError::PostgresError(r) | pgrx::pg_sys::panic::CaughtError::ErrorReport(r) => r.message().to_string(),
            pgrx::pg_sys::panic::CaughtError::RustPanic { ereport, .. } => ereport.message().to_string(),
        })
    })
    .execute()
}

// Refund and reset ---------------------------------------------------------------------

/// Give usage back in the current window; never below zero.
pub fn refund(subject: &str, metric: &str, amount: i64, key: Option<&str>) -> Result<Decision> {
    positive_amount("amount", amount)?;
    if let Some(key) = key {
        error::name("idempotency_key", key)?;
    }
    Spi::connect_mut(|c| {
        let now = clock::now();
        let s = resolve_subject(c, subject, Unknown::Create, now)?;
        let limit = resolve_limit(c, &s, metric)?;
        let w = s.window(limit.period, now);
        if let Some(key) = key {
            if let Some(mut replay) = replay(c, &s.id, key, "refund", &[metric])? {
                return Ok(replay.remove(0));
            }
        }
        let (usage, _) = lock_window(c, &s, metric, &limit, &w, now);
        let (used, given) = limits::refund(usage.used, amount);
        stats::refunded(metric, given);
        let after = Usage { used, ..usage };
        write_usage(c, &s, metric, &limit, &w, usage, after, now, None);
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

/// Give back what a row's insert was charged (`enforce`'s row charges): `amount` to the
/// window it was charged in, if that window is still the subject's current one, never
/// more than the window's usage. A subject that is gone, out of the session's scope or no
/// longer limited on the metric gets nothing back. Returns what was given back.
pub fn refund_charge(subject: &str, metric: &str, window_start: Option<DateTime<Utc>>, amount: i64) -> Result<i64> {
    let scope = tenancy::current()?;
    privilege::as_owner(|| Spi::connect_mut(|c| {
        let now = clock::now();
        let Some(s) = store::find_subject(c, subject).filter(|s| scope.admits(s.tenant.as_deref())) else { return Ok(0) };
        let Some(limit) = store::limit(c, &s.plan, metric) else { return Ok(0) };
        let w = s.window(limit.period, now);
        if w.start != window_start || amount <= 0 {
            return Ok(0);
        }
        let (usage, _) = lock_window(c, &s, metric, &limit, &w, now);
        let (used, given) = limits::refund(usage.used, amount);
        if given == 0 {
            return Ok(0);
        }
        stats::refunded(metric, given);
        write_usage(c, &s, metric, &limit, &w, usage, Usage { used, ..usage }, now, None);
        store::append(
            c,
            &Entry { subject: &s, metric, window: &w, kind: Kind::Refund, amount: given, overage: 0, idempotency_key: None, metadata: None, at: now },
        );
        Ok(given)
    }))
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
            let (usage, _) = lock_window(c, &s, &metric, &limit, &w, now);
            if usage.used == 0 {
                continue;
            }
            store::write_window(c, &s.id, &metric, &w, Usage { used: 0, ..usage });
            store::emit(c, &event(events::Kind::Reset, &s, &metric, &limit, &w, Usage { used: 0, ..usage }, now, json!({"emptied": usage.used})));
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
    error::name("kind", kind)?;
    if let Some(r) = reference {
        error::name("reference", r)?;
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
            let usage = read_window(c, &s, metric, &w, now);
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
        let (usage, _) = lock_window(c, &s, metric, &limit, &w, now);
        let bonus = usage.bonus.checked_add(rule.amount).ok_or_else(|| overflow(rule.amount))?;
        let after = Usage { bonus, ..usage };
        store::write_window(c, &s.id, metric, &w, after);
        stats::bonus_applied(metric);
        store::emit(c, &event(events::Kind::BonusApplied, &s, metric, &limit, &w, after, now, json!({"kind": kind, "amount": rule.amount})));
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
    known_name("plan", plan)?;
    known_name("metric", metric)?;
    let limit = Limit { period: parse_period(period)?, limit_value, enforcement: parse_enforcement(enforcement)?, per_request_max, alerts: vec![] };
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

/// Thresholds (percent of the effective limit) at which threshold events fire.
pub fn set_alerts(plan: &str, metric: &str, thresholds: Vec<Option<i32>>) -> Result<()> {
    known_name("metric", metric)?;
    let mut t = Vec::with_capacity(thresholds.len());
    for v in thresholds {
        match v {
            Some(p) if (1..=1000).contains(&p) => t.push(p),
            other => {
                return Err(QuotaError::invalid(
                    "thresholds",
                    other.map_or("NULL".to_string(), |p| p.to_string()),
                    "thresholds must be percentages between 1 and 1000",
                    "Pass an array such as ARRAY[80, 100].",
                ))
            }
        }
    }
    Spi::connect_mut(|c| {
        existing_plan(c, plan)?;
        if store::set_alerts(c, plan, metric, t) {
            Ok(())
        } else {
            Err(QuotaError::invalid("metric", metric, format!("plan \"{plan}\" has no limit on metric \"{metric}\""), "Create the limit first with quota.set_limit."))
        }
    })
}

pub fn remove_limit(plan: &str, metric: &str) -> Result<bool> {
    known_name("plan", plan)?;
    known_name("metric", metric)?;
    Spi::connect_mut(|c| Ok(store::delete_limit(c, plan, metric)))
}

fn existing_plan(c: &mut SpiClient<'_>, plan: &str) -> Result<Option<i32>> {
    known_name("plan", plan)?;
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
    known_name("subject", subject)?;
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
        Some(t) if !clock::in_range(t) => {
            return Err(QuotaError::invalid(
                "cycle_anchor",
                "out of range",
                "cycle_anchor must be a finite timestamp between the years 1 and 9999",
                "Pass the start of the first billing cycle.",
            ))
        }
        other => other.map(clock::from_pg),
    };
    if let Some(t) = tenant {
        error::name("tenant", t)?;
    }
    let scope = tenancy::current()?;
    let tenant = scope.assignable(tenant).map_err(|why| {
        QuotaError::invalid("tenant", tenant.unwrap_or(""), why, "Leave tenant NULL to use the session's quota.tenant, or run as quota_admin without quota.tenant.")
    })?;
    Spi::connect_mut(|c| {
        existing_plan(c, plan)?;
        // The upsert itself refuses a row of another tenant (a concurrent creator).
        if !store::upsert_subject(c, subject, plan, tenant.as_deref(), anchor, time_zone, clock::now(), &scope) {
            return Err(QuotaError::UnknownSubject { subject: subject.to_string() });
        }
        Ok(())
    })
}

pub fn set_bonus_rule(plan: &str, metric: &str, kind: &str, amount: i64, reference_scope: Option<&str>) -> Result<()> {
    known_name("metric", metric)?;
    error::name("kind", kind)?;
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

/// Delete a subject in the session's scope; its dependent state goes with it (trigger
/// `quota.forget_subject`, sql/tenants.sql). False when there was none to delete.
pub fn delete_subject(subject: &str) -> Result<bool> {
    known_name("subject", subject)?;
    installed::requires(installed::BINDINGS, "quota.delete_subject")?;
    let scope = tenancy::current()?;
    Spi::connect_mut(|c| {
        let Some(s) = store::lock_subject(c, subject).filter(|s| scope.admits(s.tenant.as_deref())) else { return Ok(false) };
        Ok(store::delete_subject(c, &s.id))
    })
}

pub fn bind_tenant(role: &str, tenant: &str) -> Result<()> {
    error::name("role_name", role)?;
    error::name("tenant", tenant)?;
    installed::requires(installed::BINDINGS, "quota.bind_tenant")?;
    let oid = std::ffi::CString::new(role)
        // SAFETY: a catalog lookup by name.
        .map_or(pg_sys::InvalidOid, |name| unsafe { pg_sys::get_role_oid(name.as_ptr(), true) });
    if oid == pg_sys::InvalidOid {
        return Err(QuotaError::invalid(
            "role_name",
            role,
            format!("role \"{}\" does not exist", error::quoted(role)),
            "Create the role first (CREATE ROLE ... IN ROLE quota_app), then bind it.",
        ));
    }
    Spi::connect_mut(|c| {
        store::bind_tenant(c, role, oid, tenant);
        Ok(())
    })
}

pub fn unbind_tenant(role: &str, tenant: Option<&str>) -> Result<i32> {
    error::name("role_name", role)?;
    if let Some(t) = tenant {
        error::name("tenant", t)?;
    }
    installed::requires(installed::BINDINGS, "quota.unbind_tenant")?;
    Spi::connect_mut(|c| Ok(store::unbind_tenant(c, role, tenant)))
}

/// Parse `{"messages": 1, "tokens": 350}` into (metric, amount) pairs.
/// `amounts` is the jsonb's text form; numbers that do not fit an i64 are refused, never
/// rounded.
pub fn parse_amounts(text: &str) -> Result<Vec<(String, i64)>> {
    let bad = |why: &str| {
        QuotaError::invalid("amounts", text, format!("amounts {why}"), "Pass a JSON object of metric to positive integer, such as {\"messages\": 1, \"tokens\": 350}.")
    };
    let amounts: Value = serde_json::from_str(text).map_err(|_| bad("values must be integers"))?;
    let obj = amounts.as_object().ok_or_else(|| bad("must be a JSON object"))?;
    obj.iter()
        .map(|(k, v)| v.as_i64().map(|n| (k.clone(), n)).ok_or_else(|| bad("values must be integers")))
        .collect()
}
