//! All of a metric's limits at once: "20,000 tokens a day and 300,000 a month". A
//! `MetricOp` holds one `WindowOp` per limit, in period order (the lock order every path
//! uses), and turns `domain::multi`'s decision over them into one `Decision` per metric:
//! the binding limit's when allowed, the named refusing limit's (with every refusing
//! limit listed) when refused.

use chrono::{DateTime, Utc};
use pgrx::pg_sys;
use pgrx::spi::SpiClient;

use super::window::WindowOp;
use crate::domain::decision::{Decision, RefusedLimit};
use crate::domain::error::Result;
use crate::domain::limits::{Limit, Usage};
use crate::domain::multi::{self, Outcome, Pace};
use crate::domain::period::{Period, Window};
use crate::domain::rate::Rate;
use crate::storage::{schema::LedgerKind, Subject};

pub struct MetricOp<'a> {
    pub metric: &'a str,
    /// One per limit, in period order.
    pub windows: Vec<WindowOp<'a>>,
}

impl<'a> MetricOp<'a> {
    /// The subject's current windows of every limit in `limits` (the metric's, in period
    /// order: `storage::limits` gives them so). `counting`: this call counts usage (a
    /// consume or a reserve), and so opens first-use windows (`WindowOp::current`).
    pub fn current(
        c: &mut SpiClient<'_>,
        subject: &'a Subject,
        metric: &'a str,
        limits: &'a [Limit],
        now: DateTime<Utc>,
        counting: bool,
    ) -> Result<Self> {
        let windows = limits.iter().map(|l| WindowOp::current(c, subject, metric, l, now, counting)).collect::<Result<_>>()?;
        Ok(MetricOp { metric, windows })
    }

    /// The windows of each pool's limits on the metric, after the member's: `pools`
    /// nearest first, `limits` each one's (a pool without limits on the metric adds
    /// none). `sliced`: a consume, which draws from the pools' sliced windows
    /// (`pool::slice_for`).
    pub fn with_pools(mut self, c: &mut SpiClient<'_>, pools: &'a [Subject], limits: &'a [Vec<Limit>], counting: bool, sliced: bool) -> Result<Self> {
        let Some(member) = self.windows.first().map(|w| w.subject) else { return Ok(self) };
        let now = self.windows[0].now;
        for (i, (p, ls)) in pools.iter().zip(limits).enumerate() {
            // The ledger's `via`: the pool's member the call came through (one level below).
            let below = super::pool::through(member, pools, i);
            let shared = sliced && !ls.is_empty() && super::pool::shared(c, p);
            for l in ls {
                let mut w = WindowOp::current(c, p, self.metric, l, now, counting)?;
                w.level = i + 1;
                w.via = Some(&below.id);
                w.slice = if sliced { super::pool::slice_for(w.level, l, shared) } else { None };
                self.windows.push(w);
            }
        }
        Ok(self)
    }

    /// The deepest level of its windows (0: the subject's own only).
    pub fn levels(&self) -> usize {
        self.windows.iter().map(|w| w.level).max().unwrap_or(0)
    }

    /// The windows the hot path found (`hotpath::Found`), each with its rate state.
    /// A pool's window (level 1 and up) is its pool's, naming the member; one drawn from a
    /// slice is marked drawn (the hot path wrote the slice, not the counter).
    pub fn of_found(f: &'a crate::hotpath::Found, metric: &'a str, now: DateTime<Utc>) -> Self {
        let windows: Vec<WindowOp> = f
            .windows
            .iter()
            .map(|w| {
                let mut op = WindowOp::of(f.owner(w), metric, &w.limit, w.window, now);
                (op.level, op.via, op.slice) = (w.level, w.level.checked_sub(1).map(|below| f.at_level(below).id.as_str()), w.slice);
                op.drawn.set(w.slice.is_some());
                op.tat.set(w.tat);
                op
            })
            .collect();
        MetricOp { metric, windows }
    }

    /// The metric's per-request cap (`set_limit` keeps it equal on every window; the
    /// smallest counts if a direct write made them differ).
    pub fn cap(&self) -> Option<i64> {
        self.windows.iter().filter_map(|w| w.limit.per_request_max).min()
    }

    /// Every window's usage without locking (see `WindowOp::read`).
    pub fn read(&self, c: &mut SpiClient<'_>) -> Result<Vec<Usage>> {
        self.windows.iter().map(|w| w.read(c)).collect()
    }

    /// Lock every window, level by level, each in period order (see `WindowOp::lock`).
    pub fn lock(&mut self, c: &mut SpiClient<'_>) -> Result<Vec<Usage>> {
        let mut usages = vec![Usage::default(); self.windows.len()];
        for level in 0..=self.levels() {
            self.lock_level(c, level, &mut usages)?;
        }
        Ok(usages)
    }

    /// Lock the windows of one level, in period order, into `usages`. A pool window drawn
    /// from in slices is not locked (`pool::acquire` takes the amount there later).
    pub fn lock_level(&mut self, c: &mut SpiClient<'_>, level: usize, usages: &mut [Usage]) -> Result<()> {
        for (w, usage) in self.windows.iter_mut().zip(usages.iter_mut()).filter(|(w, _)| w.level == level) {
            if w.slice.is_some() {
                // Decided by `acquire` (exactly, after a gather, when it refuses): the first
                // decision sees it empty, and so refuses there only what can never fit.
                *usage = Usage::default();
                continue;
            }
            let (mut u, _, mut end) = w.lock(c)?;
            if let (Period::FirstUse(span), false) = (w.limit.period, w.closed) {
                // Another call opened this window first: its close is the row's. If that is
                // already past by this call's clock (a transaction that began long after,
                // or waited that long), the window is over for this call: it opens the next
                // one, keyed by that close.
                while let Some(close) = end.filter(|close| *close <= w.now) {
                    w.window = Window { start: Some(close), end: Some(w.now + chrono::Duration::seconds(span.length().seconds())) };
                    (u, _, end) = w.lock(c)?;
                }
                w.window.end = end;
            }
            *usage = u;
        }
        Ok(())
    }

    /// After a decision that admits `amount` on the usages read: take it in every sliced
    /// pool window of `level` (`pool::acquire`; callers go level by level over every
    /// metric, the hot path's order). A window whose slices had to be gathered gets its
    /// exact usage in `usages`; decide again.
    pub fn acquire(&self, c: &mut SpiClient<'_>, level: usize, usages: &mut [Usage], amount: i64) -> Result<()> {
        for (w, usage) in self.windows.iter().zip(usages.iter_mut()).filter(|(w, _)| w.level == level) {
            let Some(slice) = w.slice else { continue };
            match super::pool::acquire(c, w, slice, amount)? {
                super::pool::Acquired::Drawn(u) => {
                    w.drawn.set(true);
                    *usage = u;
                }
                super::pool::Acquired::Locked(u) => *usage = u,
            }
        }
        Ok(())
    }

    /// Give back what `acquire` drew (a refusal that is answered, not raised).
    pub fn undraw(&self, c: &mut SpiClient<'_>, amount: i64) {
        for w in self.windows.iter().filter(|w| w.drawn.replace(false)) {
            if let Some(slice) = w.slice {
                crate::storage::slices::undraw(c, &w.key(), slice, amount);
            }
        }
    }

    /// The decision over every window for `amount` more.
    pub fn decide(&self, usages: &[Usage], amount: i64) -> Outcome {
        self.decide_paced(usages, amount, None)
    }

    /// The decision for `amount` more, taking `rate_quantity` (when given) from the rate
    /// limits instead of the amount.
    pub fn decide_paced(&self, usages: &[Usage], amount: i64, rate_quantity: Option<i64>) -> Outcome {
        let now_us = self.windows.first().map_or(0, |w| w.now.timestamp_micros());
        let ws: Vec<multi::Window> = self
            .windows
            .iter()
            .zip(usages)
            .map(|(w, u)| {
                let rate = pace(w, now_us).map(|p| Pace { quantity: rate_quantity, ..p });
                multi::Window { limit: w.limit, usage: *u, reset_at: w.window.end, rate }
            })
            .collect();
        multi::decide(&ws, amount)
    }

    /// After a refusal that does not roll back: the first-use windows this call opened
    /// are closed again (only counting calls that went through open one).
    pub fn discard_opened(&self, c: &mut SpiClient<'_>) {
        self.windows.iter().for_each(|w| w.discard_opened(c));
    }

    /// The answer: the binding window's decision when allowed (usage after the request
    /// when `applied`), else the named refusing window's, listing every refusing limit.
    pub fn decision(&self, usages: &[Usage], amount: i64, o: &Outcome, applied: bool) -> Decision {
        let i = if o.allowed { o.binding } else { o.named.unwrap_or(o.binding) };
        let w = &self.windows[i];
        let verdict = &o.verdicts[i];
        let mut d = Decision::new(&w.subject.id, self.metric, w.limit, usages[i], amount, o.resets[i], verdict, applied && o.allowed);
        d.level = w.level as i32;
        // At a pool's level, the subject that asked.
        d.member = (w.level > 0).then(|| self.windows[0].subject.id.clone());
        if let Some(t) = &o.throttles[i] {
            // A rate limit answers as redis-cell does: the burst capacity, what of it is
            // left now, and when it is full again.
            d.limit_value = t.limit;
            d.bonus = 0;
            d.remaining = t.remaining;
            d.used = t.limit - t.remaining.min(t.limit);
            // Holds took their amount from the pace when they were made: it is in `used`.
            d.reserved = 0;
            // Back to full when admitted; when to retry when refused (`multi::reset_of`).
            d.reset_at = o.resets[i];
            d.retry_after = t.retry_after_us.filter(|_| !o.allowed);
        }
        d.overage = o.verdicts.iter().map(|v| v.overage).max().unwrap_or(0);
        d.refused = o
            .refused_by
            .iter()
            .map(|&r| {
                let (w, u) = (&self.windows[r], usages[r]);
                match &o.throttles[r] {
                    Some(t) => RefusedLimit {
                        subject: w.subject.id.clone(),
                        level: w.level as i32,
                        period: w.limit.period.as_str().to_string(),
                        limit: t.limit,
                        used: t.limit - t.remaining.min(t.limit),
                        remaining: t.remaining,
                        reset_at: o.resets[r],
                    },
                    None => RefusedLimit {
                        subject: w.subject.id.clone(),
                        level: w.level as i32,
                        period: w.limit.period.as_str().to_string(),
                        limit: u.effective_limit(w.limit),
                        used: u.used,
                        remaining: u.remaining(w.limit),
                        reset_at: w.window.end,
                    },
                }
            })
            .collect();
        if applied && o.allowed {
            // The subject's own windows (a row charge is refunded to its pools through them,
            // `adjust::refund_charge`).
            d.windows = self.windows.iter().filter(|w| w.level == 0).map(|w| (w.limit.period.as_str().to_string(), w.window.start)).collect();
        }
        d
    }

    /// The window that announces a consume: the binding one, or the subject's first when
    /// the binding one was drawn from a slice (which announces nothing).
    pub fn announcing(&self, o: &Outcome) -> usize {
        if self.windows[o.binding].drawn.get() {
            0
        } else {
            o.binding
        }
    }

    /// A read-only answer for `amount` (check, and the other metrics of a refused request).
    pub fn answer(&self, c: &mut SpiClient<'_>, amount: i64) -> Result<Decision> {
        let usages = self.read(c)?;
        let o = self.decide(&usages, amount);
        Ok(self.decision(&usages, amount, &o, false))
    }

    /// Write an admitted consume of `amount` into every window (usage, announcements and
    /// one ledger row each, with that window's overage).
    pub fn consume(&self, c: &mut SpiClient<'_>, usages: &[Usage], amount: i64, o: &Outcome, key: Option<&str>, metadata: Option<pg_sys::Datum>) {
        for (i, ((w, u), v)) in self.windows.iter().zip(usages).zip(&o.verdicts).enumerate() {
            if let Some(t) = &o.throttles[i] {
                w.tat.set(DateTime::from_timestamp_micros(t.tat_us));
            }
            // quota.notify_every_consume announces the consume once, on the binding window
            // (the subject's first if that is a pool's window drawn from a slice). A draw
            // from a slice is counted there (`acquire`), not on the counter.
            if !w.drawn.get() {
                w.write(c, *u, Usage { used: v.used_after, ..*u }, (i == self.announcing(o)).then_some(amount));
            }
            w.append(c, LedgerKind::Consume, amount, v.overage, key, metadata);
        }
    }
}

fn pace(w: &WindowOp<'_>, now_us: i64) -> Option<Pace> {
    pace_of(w.limit, w.tat.get(), now_us)
}

/// A rate limit's pace for a decision at `now_us`, from its state `tat` (None for other
/// limits, and for a rate whose numbers are out of range: it then decides as a count).
pub fn pace_of(limit: &Limit, tat: Option<DateTime<Utc>>, now_us: i64) -> Option<Pace> {
    let Period::Rate(span) = limit.period else { return None };
    let rate = Rate::new(limit.burst, limit.limit_value, span.length().seconds().saturating_mul(1_000_000)).ok()?;
    Some(Pace { rate, tat_us: tat.map(|t| t.timestamp_micros()), now_us, quantity: None })
}
