//! Limit arithmetic: given a limit, the window's usage and a requested amount, decide.
//!
//! Pure Rust. All arithmetic is checked: an effective limit that would overflow saturates
//! at `i64::MAX`, and a request that would push usage past `i64::MAX` is refused (hard) or
//! reported as an argument error by the caller (soft).

use serde::Serialize;
use std::fmt;
use std::str::FromStr;

use crate::domain::period::Period;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enforcement {
    /// Requests that do not fit are refused (QT429).
    Hard,
    /// Requests that do not fit are allowed; the overage is reported and recorded.
    Soft,
}

impl Enforcement {
    pub const NAMES: &'static str = "hard, soft";
    pub fn as_str(self) -> &'static str {
        match self {
            Enforcement::Hard => "hard",
            Enforcement::Soft => "soft",
        }
    }
}

impl FromStr for Enforcement {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "hard" => Ok(Enforcement::Hard),
            "soft" => Ok(Enforcement::Soft),
            _ => Err(()),
        }
    }
}

impl fmt::Display for Enforcement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One limit on one metric: a plan's, or a subject's override of it (`overrides`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limit {
    pub period: Period,
    pub limit_value: i64,
    pub enforcement: Enforcement,
    pub per_request_max: Option<i64>,
    /// Percentages of the limit at which a threshold event fires (once per window each).
    pub alerts: Vec<i32>,
    pub source: Source,
    /// A rate limit's burst (`Period::Rate`): how many units more than one may go at once
    /// (redis-cell's `max_burst`). 0 for every other period.
    pub burst: i64,
}

/// Where a subject's limit comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Plan,
    /// The subject's override (`domain::overrides`).
    Override,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Plan => "plan",
            Source::Override => "override",
        }
    }
}

/// What a window holds right now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub used: i64,
    pub bonus: i64,
    /// Held by open reservations: counts against the limit, not yet used.
    pub reserved: i64,
    /// The highest alert threshold (percent) already announced in this window.
    pub alerted: i32,
}

impl Usage {
    pub fn new(used: i64, bonus: i64) -> Usage {
        Usage { used, bonus, ..Usage::default() }
    }
    /// Plan limit plus the window's bonus, saturating.
    pub fn effective_limit(&self, limit: &Limit) -> i64 {
        limit.limit_value.saturating_add(self.bonus)
    }
    /// Used plus held.
    pub fn taken(&self) -> i64 {
        self.used.saturating_add(self.reserved)
    }
    /// Never negative: a soft overage shows as `used > limit`, not as a negative remainder.
    pub fn remaining(&self, limit: &Limit) -> i64 {
        self.effective_limit(limit).saturating_sub(self.taken()).max(0)
    }
}

/// The reason codes a decision can carry (the `reason` column of `quota.decision`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Fits under the limit.
    Ok,
    /// Over a soft limit: allowed, with an overage.
    SoftLimitExceeded,
    /// Over a hard limit: refused.
    QuotaExceeded,
    /// Larger than the per-request cap: refused whatever the enforcement.
    PerRequestCapExceeded,
    /// The idempotency key was seen before; this is the first decision, replayed.
    IdempotentReplay,
    /// Faster than a rate limit allows (`Period::Rate`): refused until `retry_after`.
    RateLimited,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Ok => "ok",
            Reason::SoftLimitExceeded => "soft_limit_exceeded",
            Reason::QuotaExceeded => "quota_exceeded",
            Reason::PerRequestCapExceeded => "per_request_cap_exceeded",
            Reason::IdempotentReplay => "idempotent_replay",
            Reason::RateLimited => "rate_limited",
        }
    }
    pub fn parse(s: &str) -> Option<Reason> {
        [Reason::Ok, Reason::SoftLimitExceeded, Reason::QuotaExceeded, Reason::PerRequestCapExceeded, Reason::IdempotentReplay, Reason::RateLimited]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// The outcome of evaluating one request against one window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    pub reason: Reason,
    /// Usage after the request if it is applied (equal to `used` when refused).
    pub used_after: i64,
    /// How far past the effective limit the request takes usage (soft limits only).
    pub overage: i64,
}

/// Decide whether `amount` more fits. `amount` is ≥ 0 (0 is a pure status probe).
pub fn evaluate(limit: &Limit, usage: Usage, amount: i64) -> Verdict {
    let refused = |reason| Verdict { allowed: false, reason, used_after: usage.used, overage: 0 };
    if let Some(cap) = limit.per_request_max {
        if amount > cap {
            return refused(Reason::PerRequestCapExceeded);
        }
    }
    let effective = usage.effective_limit(limit);
    // Open reservations count against the limit like usage does.
    let (Some(used_after), Some(taken_after)) = (usage.used.checked_add(amount), usage.taken().checked_add(amount)) else {
        // Past i64::MAX can never fit; callers treat it as an argument error.
        return refused(Reason::QuotaExceeded);
    };
    if taken_after <= effective {
        return Verdict { allowed: true, reason: Reason::Ok, used_after, overage: 0 };
    }
    match limit.enforcement {
        Enforcement::Hard => refused(Reason::QuotaExceeded),
        Enforcement::Soft => {
            // The part of this request that lies beyond the effective limit.
            let beyond_before = usage.taken().saturating_sub(effective).max(0);
            let overage = taken_after - effective - beyond_before;
            Verdict { allowed: true, reason: Reason::SoftLimitExceeded, used_after, overage }
        }
    }
}

/// `used` after giving back `amount`: never below zero. Returns (new_used, actually_refunded).
pub fn refund(used: i64, amount: i64) -> (i64, i64) {
    let given = amount.min(used).max(0);
    (used - given, given)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim(value: i64, enforcement: Enforcement, cap: Option<i64>) -> Limit {
        Limit { period: Period::Day, limit_value: value, enforcement, per_request_max: cap, alerts: vec![], source: Source::Plan, burst: 0 }
    }
    fn usage(used: i64, bonus: i64) -> Usage {
        Usage::new(used, bonus)
    }

    #[test]
    fn fits_until_the_limit_then_refuses_hard() {
        let l = lim(5, Enforcement::Hard, None);
        for used in 0..5 {
            let v = evaluate(&l, usage(used, 0), 1);
            assert!(v.allowed);
            assert_eq!(v.used_after, used + 1);
        }
        let v = evaluate(&l, usage(5, 0), 1);
        assert_eq!((v.allowed, v.reason, v.used_after), (false, Reason::QuotaExceeded, 5));
        // A request larger than what is left is refused whole, not partially applied.
        assert!(!evaluate(&l, usage(3, 0), 3).allowed);
        assert!(evaluate(&l, usage(3, 0), 2).allowed);
    }

    #[test]
    fn bonus_raises_the_effective_limit() {
        let l = lim(5, Enforcement::Hard, None);
        assert!(evaluate(&l, usage(5, 5), 5).allowed);
        assert!(!evaluate(&l, usage(5, 5), 6).allowed);
        assert_eq!(usage(7, 5).remaining(&l), 3);
        assert_eq!(usage(5, 0).effective_limit(&l), 5);
    }

    #[test]
    fn soft_limit_allows_and_reports_overage() {
        let l = lim(10, Enforcement::Soft, None);
        let v = evaluate(&l, usage(8, 0), 5);
        assert_eq!((v.allowed, v.reason, v.used_after, v.overage), (true, Reason::SoftLimitExceeded, 13, 3));
        // Already over: the whole request is overage.
        let v = evaluate(&l, usage(13, 0), 4);
        assert_eq!(v.overage, 4);
        assert_eq!(usage(13, 0).remaining(&l), 0, "remaining is never negative");
    }

    #[test]
    fn per_request_cap_wins_over_everything() {
        let l = lim(1000, Enforcement::Soft, Some(100));
        let v = evaluate(&l, usage(0, 0), 101);
        assert_eq!((v.allowed, v.reason), (false, Reason::PerRequestCapExceeded));
        assert!(evaluate(&l, usage(0, 0), 100).allowed);
    }

    #[test]
    fn zero_amount_is_a_probe() {
        let l = lim(5, Enforcement::Hard, None);
        assert!(evaluate(&l, usage(5, 0), 0).allowed);
        assert!(!evaluate(&l, usage(6, 0), 0).allowed, "already over a hard limit (plan lowered)");
    }

    #[test]
    fn overflow_never_wraps() {
        let l = lim(i64::MAX, Enforcement::Hard, None);
        assert_eq!(usage(0, i64::MAX).effective_limit(&l), i64::MAX);
        let v = evaluate(&l, usage(i64::MAX - 1, 5), 2);
        assert_eq!((v.allowed, v.reason), (false, Reason::QuotaExceeded));
        assert!(evaluate(&l, usage(i64::MAX - 1, 0), 1).allowed);
        let soft = lim(10, Enforcement::Soft, None);
        assert!(!evaluate(&soft, usage(i64::MAX, 0), 1).allowed);
    }

    #[test]
    fn reservations_count_against_the_limit() {
        let l = lim(10, Enforcement::Hard, None);
        let held = Usage { used: 4, bonus: 0, reserved: 5, alerted: 0 };
        assert_eq!(held.remaining(&l), 1);
        assert!(evaluate(&l, held, 1).allowed);
        let v = evaluate(&l, held, 2);
        assert_eq!((v.allowed, v.reason), (false, Reason::QuotaExceeded));
        // What is held is not used: usage after a consume excludes the hold.
        assert_eq!(evaluate(&l, held, 1).used_after, 5);
        let soft = lim(10, Enforcement::Soft, None);
        assert_eq!(evaluate(&soft, held, 3).overage, 2);
    }

    #[test]
    fn refund_never_goes_below_zero() {
        assert_eq!(refund(10, 3), (7, 3));
        assert_eq!(refund(2, 5), (0, 2));
        assert_eq!(refund(0, 5), (0, 0));
    }

    #[test]
    fn names_round_trip() {
        assert_eq!("soft".parse::<Enforcement>(), Ok(Enforcement::Soft));
        assert!("HARD".parse::<Enforcement>().is_err());
        for r in [Reason::Ok, Reason::SoftLimitExceeded, Reason::QuotaExceeded, Reason::PerRequestCapExceeded, Reason::IdempotentReplay] {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
    }
}
