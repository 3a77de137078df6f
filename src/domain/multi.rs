//! Several limits on one metric (limits v2): "20,000 tokens a day and 300,000 a month".
//! A request must fit every hard limit of the metric, all or nothing; soft limits let it
//! through and record their overage, as with one limit. Pure Rust, no PostgreSQL.
//!
//! - The **binding** limit, which the decision reports, is the hard limit with the
//!   smallest remaining after the request; on a tie, the one that resets last (a limit that
//!   never resets counts as last). With no hard limit, the same rule over the soft ones.
//! - A refusal **names** the refusing limit that resets last, so that `Retry-After` from
//!   its `reset_at` is right (retrying when an earlier one resets would still be refused),
//!   and lists every refusing limit. A per-request cap refusal (QT413) comes first: no
//!   wait makes that request fit.

use chrono::{DateTime, Utc};

use super::limits::{evaluate, Enforcement, Limit, Reason, Usage, Verdict};
use super::rate::{Rate, Throttle};

/// One limit of the metric with its current window.
#[derive(Clone, Debug)]
pub struct Window<'a> {
    pub limit: &'a Limit,
    pub usage: Usage,
    /// When the window closes; None for a lifetime limit (or a first-use window not open).
    pub reset_at: Option<DateTime<Utc>>,
    /// A rate limit's pace instead of a window's count.
    pub rate: Option<Pace>,
}

/// A rate limit's state for one decision: its rate, its stored theoretical arrival time
/// and the clock (microseconds since the Unix epoch).
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    pub rate: Rate,
    pub tat_us: Option<i64>,
    pub now_us: i64,
    /// What to take from the rate when it is not the request's amount: a commit takes
    /// only what goes beyond its hold (the hold took its amount when it was made).
    pub quantity: Option<i64>,
}

/// A rate limit's verdict: GCRA admits the quantity or not; usage counts the amount.
fn paced(limit: &Limit, pace: &Pace, usage: Usage, amount: i64) -> (Verdict, Option<Throttle>) {
    let refused = |reason| Verdict { allowed: false, reason, used_after: usage.used, overage: 0 };
    if limit.per_request_max.is_some_and(|cap| amount > cap) {
        return (refused(Reason::PerRequestCapExceeded), None);
    }
    let quantity = pace.quantity.unwrap_or(amount);
    let (Some(t), Some(used_after)) = (pace.rate.throttle(pace.now_us, pace.tat_us, quantity), usage.used.checked_add(amount)) else {
        return (refused(Reason::QuotaExceeded), None);
    };
    let v = if t.limited { refused(Reason::RateLimited) } else { Verdict { allowed: true, reason: Reason::Ok, used_after, overage: 0 } };
    (v, Some(t))
}

/// When a window's limit lets the request (or one like it) through again: its reset, or
/// for a rate limit when it could be retried (refused) or is back to full (admitted).
fn reset_of(w: &Window<'_>, t: Option<&Throttle>) -> Option<DateTime<Utc>> {
    match (w.rate, t) {
        (Some(p), Some(t)) => {
            let after = if t.limited { t.retry_after_us.unwrap_or(t.reset_after_us) } else { t.reset_after_us };
            DateTime::from_timestamp_micros(p.now_us.saturating_add(after))
        }
        _ => w.reset_at,
    }
}

/// The decision over all the metric's limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub allowed: bool,
    /// One per window, in the order given.
    pub verdicts: Vec<Verdict>,
    /// The limit the decision reports (index into the windows).
    pub binding: usize,
    /// Every refusing limit, in the order given.
    pub refused_by: Vec<usize>,
    /// The refusing limit a refusal names (QT413 first, else the one that resets last).
    pub named: Option<usize>,
    /// Each rate limit's GCRA answer (None for the other windows).
    pub throttles: Vec<Option<Throttle>>,
    /// When each window lets requests through again (see `reset_of`).
    pub resets: Vec<Option<DateTime<Utc>>>,
}

/// What remains of a window after the request if it is admitted, else now.
fn remaining_after(w: &Window<'_>, v: &Verdict, t: Option<&Throttle>, amount: i64) -> i64 {
    if let Some(t) = t {
        return t.remaining;
    }
    if v.allowed {
        w.usage.effective_limit(w.limit).saturating_sub(w.usage.taken().saturating_add(amount)).max(0)
    } else {
        w.usage.remaining(w.limit)
    }
}

/// Later reset first: `None` (never) is the latest of all.
fn resets_later(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> bool {
    match (a, b) {
        (None, Some(_)) => true,
        (Some(x), Some(y)) => x > y,
        _ => false,
    }
}

/// Decide `amount` (≥ 0) against every window of the metric (at least one).
pub fn decide(windows: &[Window<'_>], amount: i64) -> Outcome {
    assert!(!windows.is_empty(), "a metric in a plan has at least one limit");
    let (verdicts, throttles): (Vec<Verdict>, Vec<Option<Throttle>>) = windows
        .iter()
        .map(|w| match &w.rate {
            Some(p) => paced(w.limit, p, w.usage, amount),
            None => (evaluate(w.limit, w.usage, amount), None),
        })
        .unzip();
    let resets: Vec<Option<DateTime<Utc>>> = windows.iter().zip(&throttles).map(|(w, t)| reset_of(w, t.as_ref())).collect();
    let refused_by: Vec<usize> = (0..windows.len()).filter(|&i| !verdicts[i].allowed).collect();
    let hard = windows.iter().any(|w| w.limit.enforcement == Enforcement::Hard);
    let candidates = (0..windows.len()).filter(|&i| !hard || windows[i].limit.enforcement == Enforcement::Hard);
    let binding = candidates
        .min_by(|&a, &b| {
            let ra = remaining_after(&windows[a], &verdicts[a], throttles[a].as_ref(), amount);
            let rb = remaining_after(&windows[b], &verdicts[b], throttles[b].as_ref(), amount);
            ra.cmp(&rb).then_with(|| {
                if resets_later(resets[a], resets[b]) {
                    std::cmp::Ordering::Less
                } else if resets_later(resets[b], resets[a]) {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
        })
        .unwrap_or(0);
    let named = refused_by
        .iter()
        .copied()
        .find(|&i| verdicts[i].reason == Reason::PerRequestCapExceeded)
        .or_else(|| refused_by.iter().copied().reduce(|best, i| if resets_later(resets[i], resets[best]) { i } else { best }));
    Outcome { allowed: refused_by.is_empty(), verdicts, binding, refused_by, named, throttles, resets }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::limits::Source;
    use crate::domain::period::Period;
    use crate::domain::rate::Rate;
    use chrono::TimeZone;

    fn limit(period: Period, value: i64, enforcement: Enforcement, cap: Option<i64>) -> Limit {
        Limit { period, limit_value: value, enforcement, per_request_max: cap, alerts: vec![], source: Source::Plan, burst: 0 }
    }

    fn at(day: u32) -> Option<DateTime<Utc>> {
        Some(Utc.with_ymd_and_hms(2026, 12, day, 0, 0, 0).unwrap())
    }

    /// 20,000 tokens a day and 300,000 a month.
    #[test]
    fn fits_both_or_neither() {
        let (day, month) = (limit(Period::Day, 20_000, Enforcement::Hard, None), limit(Period::Month, 300_000, Enforcement::Hard, None));
        let ws = |d: i64, m: i64| {
            vec![
                Window { limit: &day, usage: Usage::new(d, 0), reset_at: at(1), rate: None },
                Window { limit: &month, usage: Usage::new(m, 0), reset_at: None, rate: None },
            ]
        };
        let o = decide(&ws(1_000, 10_000), 500);
        assert!(o.allowed && o.refused_by.is_empty() && o.named.is_none());
        assert_eq!(o.binding, 0, "the day has 18,500 left after, the month 289,500");
        // The month nearly spent: it binds, and alone refuses.
        let o = decide(&ws(1_000, 299_800), 500);
        assert!(!o.allowed);
        assert_eq!((o.refused_by.clone(), o.named), (vec![1], Some(1)));
        assert!(o.verdicts[0].allowed, "the day alone would have taken it");
        assert_eq!(o.binding, 1);
    }

    #[test]
    fn a_refusal_names_the_limit_that_resets_last() {
        let (day, week) = (limit(Period::Day, 10, Enforcement::Hard, None), limit(Period::Week, 50, Enforcement::Hard, None));
        let ws = [
            Window { limit: &day, usage: Usage::new(10, 0), reset_at: at(1), rate: None },
            Window { limit: &week, usage: Usage::new(50, 0), reset_at: at(7), rate: None },
        ];
        let o = decide(&ws, 1);
        assert_eq!((o.refused_by.clone(), o.named), (vec![0, 1], Some(1)), "both refuse; retrying after the day's reset would still be refused");
        let lifetime = limit(Period::Lifetime, 100, Enforcement::Hard, None);
        let ws = [
            Window { limit: &day, usage: Usage::new(10, 0), reset_at: at(1), rate: None },
            Window { limit: &lifetime, usage: Usage::new(100, 0), reset_at: None, rate: None },
        ];
        assert_eq!(decide(&ws, 1).named, Some(1), "a limit that never resets is the last of all");
    }

    #[test]
    fn the_per_request_cap_is_named_first() {
        let (day, month) = (limit(Period::Day, 10, Enforcement::Hard, None), limit(Period::Month, 1_000, Enforcement::Hard, Some(5)));
        let ws = [
            Window { limit: &day, usage: Usage::new(10, 0), reset_at: at(1), rate: None },
            Window { limit: &month, usage: Usage::new(0, 0), reset_at: at(31), rate: None },
        ];
        let o = decide(&ws, 6);
        assert_eq!(o.named, Some(1));
        assert_eq!(o.verdicts[1].reason, Reason::PerRequestCapExceeded);
    }

    #[test]
    fn ties_bind_on_the_later_reset_and_soft_limits_never_refuse() {
        let (day, month) = (limit(Period::Day, 100, Enforcement::Hard, None), limit(Period::Month, 100, Enforcement::Hard, None));
        let ws = [
            Window { limit: &day, usage: Usage::new(40, 0), reset_at: at(1), rate: None },
            Window { limit: &month, usage: Usage::new(40, 0), reset_at: at(31), rate: None },
        ];
        assert_eq!(decide(&ws, 10).binding, 1, "50 left in both: the month resets last");
        let soft = limit(Period::Day, 5, Enforcement::Soft, None);
        let hard = limit(Period::Month, 1_000, Enforcement::Hard, None);
        let ws = [
            Window { limit: &soft, usage: Usage::new(5, 0), reset_at: at(1), rate: None },
            Window { limit: &hard, usage: Usage::new(0, 0), reset_at: at(31), rate: None },
        ];
        let o = decide(&ws, 3);
        assert!(o.allowed);
        assert_eq!((o.verdicts[0].reason, o.verdicts[0].overage), (Reason::SoftLimitExceeded, 3));
        assert_eq!(o.binding, 1, "the hard limit binds, even with more left");
        let only_soft = [Window { limit: &soft, usage: Usage::new(5, 0), reset_at: at(1), rate: None }];
        assert_eq!(decide(&only_soft, 3).binding, 0);
    }

    #[test]
    fn bonuses_and_holds_count_per_window() {
        let (day, month) = (limit(Period::Day, 10, Enforcement::Hard, None), limit(Period::Month, 100, Enforcement::Hard, None));
        let day_usage = Usage { used: 10, bonus: 5, reserved: 3, alerted: 0 };
        let ws = [
            Window { limit: &day, usage: day_usage, reset_at: at(1), rate: None },
            Window { limit: &month, usage: Usage::new(10, 0), reset_at: at(31), rate: None },
        ];
        assert!(decide(&ws, 2).allowed, "15 effective, 13 taken: 2 fit");
        assert_eq!(decide(&ws, 3).refused_by, vec![0]);
    }

    /// "100 tokens a day and 10 per minute, burst 4": the rate refuses before the day.
    #[test]
    fn a_rate_limit_takes_part_like_any_limit() {
        let day = limit(Period::Day, 100, Enforcement::Hard, None);
        let rate = Limit { burst: 4, ..limit(Period::parse("per 1 minute").unwrap(), 10, Enforcement::Hard, None) };
        let now_us = 1_800_000_000_000_000;
        let pace = |tat_us| Some(Pace { rate: Rate::new(4, 10, 60_000_000).unwrap(), tat_us, now_us, quantity: None });
        let ws = |tat_us| {
            vec![
                Window { limit: &day, usage: Usage::new(10, 0), reset_at: at(1), rate: None },
                Window { limit: &rate, usage: Usage::new(10, 0), reset_at: None, rate: pace(tat_us) },
            ]
        };
        // A fresh bucket takes 5 at once (burst 4 + 1), and binds (0 left after).
        let o = decide(&ws(None), 5);
        assert!(o.allowed);
        assert_eq!((o.binding, o.throttles[1].unwrap().remaining), (1, 0));
        // The bucket full: refused by the rate alone, retry in one emission interval (6 s).
        let full = now_us + 5 * 6_000_000;
        let o = decide(&ws(Some(full)), 1);
        assert_eq!((o.allowed, o.refused_by.clone(), o.named), (false, vec![1], Some(1)));
        assert_eq!(o.verdicts[1].reason, Reason::RateLimited);
        assert_eq!(o.throttles[1].unwrap().retry_after_us, Some(6_000_000));
        assert_eq!(o.resets[1], DateTime::from_timestamp_micros(now_us + 6_000_000));
        // More than the burst ever admits: refused, with no retry time.
        let o = decide(&ws(None), 6);
        assert_eq!((o.allowed, o.throttles[1].unwrap().retry_after_us), (false, None));
    }
}
