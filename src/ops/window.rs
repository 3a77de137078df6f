//! One subject's window of one limit (metric and period), the unit every operation
//! changes: read it, lock it (expiring lapsed holds), write its new usage, record the
//! change in the ledger and announce what it crossed. Operations build a `WindowOp`
//! instead of threading the subject, metric, limit, window and clock through each call;
//! `ops::metric` groups the windows of all of a metric's limits.

use chrono::{DateTime, Utc};
use pgrx::pg_sys;
use pgrx::spi::SpiClient;
use serde_json::{json, Value};

use crate::domain::error::Result;
use crate::domain::events;
use crate::domain::limits::{Enforcement, Limit, Usage};
use crate::domain::period::Window;
use crate::pg::gucs;
use crate::storage::{self, schema::LedgerKind, schema::LedgerRow, Subject, WindowKey};

pub struct WindowOp<'a> {
    pub subject: &'a Subject,
    pub metric: &'a str,
    pub limit: &'a Limit,
    pub window: Window,
    pub now: DateTime<Utc>,
}

/// What a change of usage announces: the alert thresholds it crossed and whether it went
/// over a soft limit.
pub struct Announced {
    crossed: Vec<i32>,
    over: bool,
}

impl Announced {
    pub fn anything(&self) -> bool {
        self.crossed_or_over() || gucs::notify_every_consume()
    }

    /// A threshold crossed or a soft limit gone over (what is announced whatever the
    /// settings).
    pub fn crossed_or_over(&self) -> bool {
        !self.crossed.is_empty() || self.over
    }
}

/// What a change from `before` to `after` announces. The crossed thresholds are recorded
/// in `after.alerted`, so each fires once per window.
pub fn announce(before: Usage, after: &mut Usage, limit: &Limit) -> Announced {
    let effective = after.effective_limit(limit);
    let crossed = events::crossed(&limit.alerts, before.alerted, after.used, effective);
    if let Some(&top) = crossed.last() {
        after.alerted = top;
    }
    let over = limit.enforcement == Enforcement::Soft && events::went_over(before.used, after.used, effective);
    Announced { crossed, over }
}

impl<'a> WindowOp<'a> {
    /// The subject's current window of `limit`'s period.
    pub fn current(subject: &'a Subject, metric: &'a str, limit: &'a Limit, now: DateTime<Utc>) -> Self {
        WindowOp { window: subject.window(limit.period, now), subject, metric, limit, now }
    }

    /// A given window (a reservation's, which may no longer be the current one).
    pub fn of(subject: &'a Subject, metric: &'a str, limit: &'a Limit, window: Window, now: DateTime<Utc>) -> Self {
        WindowOp { subject, metric, limit, window, now }
    }

    /// The window row's key.
    pub fn key(&self) -> WindowKey<'_> {
        WindowKey { subject: &self.subject.id, metric: self.metric, period: self.limit.period.as_str(), window: &self.window }
    }

    /// The usage for a read-only answer: holds that have lapsed no longer count, even
    /// before anything has marked them expired.
    pub fn read(&self, c: &mut SpiClient<'_>) -> Result<Usage> {
        let mut u = storage::read_window(c, &self.key())?;
        if u.reserved > 0 {
            u.reserved -= storage::expired_held(c, &self.key(), self.now).min(u.reserved);
        }
        Ok(u)
    }

    /// Lock the window for a change (creating its row). Lapsed holds are expired first
    /// (ledger rows and reservation_expired events), so they stop counting against the
    /// limit. Returns the usage and how many holds expired.
    pub fn lock(&self, c: &mut SpiClient<'_>) -> Result<(Usage, usize)> {
        let mut u = storage::lock_window(c, &self.key())?;
        if u.reserved == 0 {
            return Ok((u, 0));
        }
        let lapsed = storage::expire_held(c, &self.key(), self.now);
        for (id, amount) in &lapsed {
            u.reserved -= (*amount).min(u.reserved);
            self.append(c, LedgerKind::Expire, *amount, 0, None, None);
            self.emit(c, events::EventKind::ReservationExpired, u, json!({"reservation": id.to_string(), "amount": amount}));
        }
        if !lapsed.is_empty() {
            self.store(c, u);
        }
        Ok((u, lapsed.len()))
    }

    /// Write the window's usage as it is (no announcement).
    pub fn store(&self, c: &mut SpiClient<'_>, usage: Usage) {
        storage::write_window(c, &self.key(), usage);
    }

    /// Write the new usage and announce what the change crossed; with `consumed`
    /// (and quota.notify_every_consume) also the consume itself.
    pub fn write(&self, c: &mut SpiClient<'_>, before: Usage, mut after: Usage, consumed: Option<i64>) {
        let announced = announce(before, &mut after, self.limit);
        self.store(c, after);
        self.emit_announced(c, after, &announced, consumed);
    }

    /// Send what `announce` found (the hot path writes the usage itself, then calls this).
    pub fn emit_announced(&self, c: &mut SpiClient<'_>, after: Usage, a: &Announced, consumed: Option<i64>) {
        for t in &a.crossed {
            let mut e = self.event(events::EventKind::ThresholdCrossed, after, Value::Null);
            e.threshold = Some(*t);
            storage::emit(c, &e);
        }
        if a.over {
            self.emit(c, events::EventKind::SoftLimitExceeded, after, Value::Null);
        }
        if let Some(amount) = consumed.filter(|_| gucs::notify_every_consume()) {
            self.emit(c, events::EventKind::Consumed, after, json!({"amount": amount}));
        }
    }

    /// Append a ledger row for this window.
    pub fn append(&self, c: &mut SpiClient<'_>, kind: LedgerKind, amount: i64, overage: i64, key: Option<&str>, metadata: Option<pg_sys::Datum>) {
        storage::append(c, &self.ledger_row(kind, amount, overage, key, metadata));
    }

    /// The ledger row of a change of this window (both paths append it).
    pub fn ledger_row<'r>(
        &'r self,
        kind: LedgerKind,
        amount: i64,
        overage: i64,
        key: Option<&'r str>,
        metadata: Option<pg_sys::Datum>,
    ) -> LedgerRow<'r> {
        LedgerRow {
            subject: &self.subject.id,
            tenant: self.subject.tenant.as_deref(),
            metric: self.metric,
            period: self.limit.period.as_str(),
            window_start: self.window.start,
            kind,
            amount,
            overage,
            idempotency_key: key,
            metadata,
            created_at: self.now,
        }
    }

    pub fn emit(&self, c: &mut SpiClient<'_>, kind: events::EventKind, usage: Usage, extra: Value) {
        storage::emit(c, &self.event(kind, usage, extra));
    }

    fn event(&self, kind: events::EventKind, u: Usage, extra: Value) -> events::Event {
        events::Event {
            kind,
            subject: self.subject.id.clone(),
            metric: self.metric.to_string(),
            period: self.limit.period.as_str(),
            window_start: self.window.start,
            used: u.used,
            limit: u.effective_limit(self.limit),
            threshold: None,
            occurred_at: self.now,
            extra,
        }
    }
}
