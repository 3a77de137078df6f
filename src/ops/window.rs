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
use crate::domain::period::{Period, Window};
use crate::pg::clock;
use crate::pg::gucs;
use crate::pg::installed;
use crate::storage::{self, schema::LedgerKind, schema::LedgerRow, Subject, WindowKey};
use std::cell::Cell;

pub struct WindowOp<'a> {
    pub subject: &'a Subject,
    pub metric: &'a str,
    pub limit: &'a Limit,
    /// The window's key is its start. A first-use window's key is the close of the one
    /// before (`rolling`), and its end is its close; a rate limit's key is '-infinity'.
    pub window: Window,
    pub now: DateTime<Utc>,
    /// A first-use window that is not open and that this call does not open: it reads as
    /// empty and nothing is written to it.
    pub closed: bool,
    /// A rate limit's state, the theoretical arrival time (its row's window_end), as last
    /// read or locked; then the new one a consume writes.
    pub tat: Cell<Option<DateTime<Utc>>>,
    /// Whether this call created the window's row (a first-use window opening).
    pub opened: Cell<bool>,
    /// Whose window (0.8.0): 0 the subject's own, 1 its pool's, and up.
    pub level: usize,
    /// At a pool's level, the pool's member the call came through (the ledger's `via`).
    pub via: Option<&'a str>,
    /// A pool window members draw from in slices: this session's slice (`ops::pool`).
    pub slice: Option<i32>,
    /// Whether this call drew its amount from the slice (the counter row is not written).
    pub drawn: Cell<bool>,
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
    // A rate limit's usage only counts units admitted: it has no thresholds to cross.
    if matches!(limit.period, Period::Rate(_)) {
        return Announced { crossed: Vec::new(), over: false };
    }
    let effective = after.effective_limit(limit);
    let crossed = events::crossed(&limit.alerts, before.alerted, after.used, effective);
    if let Some(&top) = crossed.last() {
        after.alerted = top;
    }
    let over = limit.enforcement == Enforcement::Soft && events::went_over(before.used, after.used, effective);
    Announced { crossed, over }
}

impl<'a> WindowOp<'a> {
    /// The subject's current window of `limit`'s period. A first-use window is read from
    /// the table: the open one, or, for a call that counts usage (`counting`: consume,
    /// reserve), the one it opens now; else none (`closed`).
    pub fn current(
        c: &mut SpiClient<'_>,
        subject: &'a Subject,
        metric: &'a str,
        limit: &'a Limit,
        now: DateTime<Utc>,
        counting: bool,
    ) -> Result<Self> {
        let (window, closed) = match limit.period {
            Period::FirstUse(span) => {
                let last = if subject.stored { storage::last_window(c, &subject.id, metric, limit.period.as_str()) } else { None };
                let open = last.as_ref().and_then(|(key, end)| Some((*key, (*end)?))).filter(|(_, end)| now < *end);
                match (open, last) {
                    (Some((key, end)), _) => (Window { start: clock::window_start(key), end: Some(end) }, false),
                    (None, last) => {
                        // The next window's key is the last one's close: two first uses
                        // racing to open it meet on the same row.
                        let key = match last {
                            Some((key, end)) => {
                                Some(end.ok_or_else(|| storage::corrupt("quota.counters", "window_end", format!("NULL (window {key})")))?)
                            }
                            None => None,
                        };
                        let end = counting.then(|| now + chrono::Duration::seconds(span.length().seconds()));
                        (Window { start: key, end }, !counting)
                    }
                }
            }
            Period::Rate(_) => (Window { start: None, end: None }, false),
            _ => (subject.window(limit.period, now), false),
        };
        Ok(WindowOp { window, closed, ..WindowOp::of(subject, metric, limit, Window { start: None, end: None }, now) })
    }

    /// A given window (a reservation's, which may no longer be the current one).
    pub fn of(subject: &'a Subject, metric: &'a str, limit: &'a Limit, window: Window, now: DateTime<Utc>) -> Self {
        WindowOp {
            subject,
            metric,
            limit,
            window,
            now,
            closed: false,
            tat: Cell::new(None),
            opened: Cell::new(false),
            level: 0,
            via: None,
            slice: None,
            drawn: Cell::new(false),
        }
    }

    /// The window row's key.
    pub fn key(&self) -> WindowKey<'_> {
        WindowKey { subject: &self.subject.id, metric: self.metric, period: self.limit.period.as_str(), window: &self.window }
    }

    /// The usage for a read-only answer: holds that have lapsed no longer count, even
    /// before anything has marked them expired.
    pub fn read(&self, c: &mut SpiClient<'_>) -> Result<Usage> {
        if self.closed {
            return Ok(Usage::default());
        }
        let (u, end) = storage::read_window(c, &self.key())?;
        self.keep_tat(end);
        let mut u = super::schedule::carried_usage(c, self.subject, self.metric, self.limit, &self.window, u, self.now)?;
        // A pool's slices hold allowance (in `reserved`) and usage (`ops::pool`); a
        // database before 0.8.0 has none.
        if u.reserved > 0 && installed::at_least(installed::POOLS) {
            u = super::pool::with_slices(u, storage::slices::held(c, &self.key()));
        }
        if u.reserved > 0 {
            u.reserved -= storage::expired_held(c, &self.key(), self.now).min(u.reserved);
        }
        Ok(u)
    }

    fn keep_tat(&self, end: Option<DateTime<Utc>>) {
        if matches!(self.limit.period, Period::Rate(_)) {
            self.tat.set(end);
        }
    }

    /// Lock the window for a change (creating its row). Lapsed holds are expired first
    /// (ledger rows and reservation_expired events), so they stop counting against the
    /// limit. Returns the usage, how many holds expired, and the row's window_end (for a
    /// first-use window that another call opened first, its close).
    pub fn lock(&self, c: &mut SpiClient<'_>) -> Result<(Usage, usize, Option<DateTime<Utc>>)> {
        self.lock_with(c, true)
    }

    /// `lock`, gathering a pool window's slices back first (`gather`), or leaving them as
    /// they are (a slice's refill, `ops::pool`).
    pub fn lock_with(&self, c: &mut SpiClient<'_>, gather: bool) -> Result<(Usage, usize, Option<DateTime<Utc>>)> {
        if self.closed {
            return Ok((Usage::default(), 0, None));
        }
        // A pool's window whose slices hold allowance: every change but a member's draw
        // works on the whole window, so the slices are gathered back, before the counter
        // row is locked (the order of every path that takes both, `ops::pool`); again
        // after, for what was granted meanwhile (usually nothing).
        let slices = gather && installed::at_least(installed::POOLS);
        let before =
            if slices && storage::read_window(c, &self.key())?.0.reserved > 0 { storage::slices::gather(c, &self.key()) } else { Default::default() };
        let (mut u, end, created) = storage::lock_window(c, &self.key())?;
        self.keep_tat(end);
        self.opened.set(created && matches!(self.limit.period, Period::FirstUse(_)));
        if u.reserved == 0 && before.granted == 0 {
            return Ok((u, 0, end));
        }
        let after = if slices && u.reserved > 0 { storage::slices::gather(c, &self.key()) } else { Default::default() };
        for h in [before, after] {
            if h.granted > 0 || h.used > 0 {
                u = super::pool::with_slices(u, h);
                self.store(c, u);
            }
        }
        if u.reserved == 0 {
            return Ok((u, 0, end));
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
        Ok((u, lapsed.len(), end))
    }

    /// Write the window's usage as it is (no announcement); a rate limit's new state with it.
    pub fn store(&self, c: &mut SpiClient<'_>, usage: Usage) {
        if self.closed {
            return;
        }
        let tat = if matches!(self.limit.period, Period::Rate(_)) { self.tat.get() } else { None };
        storage::write_window(c, &self.key(), usage, tat);
    }

    /// Delete the row this call created for a first-use window, after a refusal that does
    /// not roll back (a refused consume does not open a window).
    pub fn discard_opened(&self, c: &mut SpiClient<'_>) {
        if self.opened.get() {
            storage::discard_window(c, &self.key());
        }
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
        if self.closed {
            return;
        }
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
            via: self.via,
        }
    }

    pub fn emit(&self, c: &mut SpiClient<'_>, kind: events::EventKind, usage: Usage, extra: Value) {
        if self.closed {
            return;
        }
        storage::emit(c, &self.event(kind, usage, extra));
    }

    /// When the window began, as events report it: a first-use window's key is the close
    /// of the one before, so it began its length before its own close.
    fn opened(&self) -> Option<DateTime<Utc>> {
        match (self.limit.period, self.window.end) {
            (Period::FirstUse(span), Some(end)) => Some(end - chrono::Duration::seconds(span.length().seconds())),
            _ => self.window.start,
        }
    }

    fn event(&self, kind: events::EventKind, u: Usage, extra: Value) -> events::Event {
        events::Event {
            kind,
            subject: self.subject.id.clone(),
            metric: self.metric.to_string(),
            period: self.limit.period.as_str().to_string(),
            window_start: self.opened(),
            used: u.used,
            limit: u.effective_limit(self.limit),
            threshold: None,
            occurred_at: self.now,
            extra,
        }
    }
}
