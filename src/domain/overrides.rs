//! Overrides per subject (limits v2): an admin gives one subject a different limit on one
//! metric and window without a custom plan, for a customer's bigger contract or a
//! promotion. Pure Rust, no PostgreSQL.
//!
//! - `max` replaces the plan's limit value for that window; `add` adds to it.
//! - An override of a window the subject's plan does not limit adds that limit (hard,
//!   with the metric's per-request cap); `add` then adds to zero.
//! - An override with an expiry stops counting at that instant; the plan's limit is back.
//! - The plan's later changes do not undo an override: it is applied to whatever the plan
//!   says at the time of each call.
//! - A bonus goes on top of the overridden limit, as on top of a plan's.

use chrono::{DateTime, Utc};
use std::fmt;
use std::str::FromStr;

use super::limits::{Enforcement, Limit, Source};
use super::period::Period;

/// How an override changes the plan's limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The subject's limit is this value.
    Max,
    /// The subject's limit is the plan's plus this value.
    Add,
}

impl Mode {
    pub const NAMES: &'static str = "max, add";
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Max => "max",
            Mode::Add => "add",
        }
    }
}

impl FromStr for Mode {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "max" => Ok(Mode::Max),
            "add" => Ok(Mode::Add),
            _ => Err(()),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One subject's override of one metric's window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Override {
    pub period: Period,
    pub mode: Mode,
    pub value: i64,
    pub expires_at: Option<DateTime<Utc>>,
}

impl Override {
    pub fn in_force(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

/// The subject's limits on a metric: the plan's (`plan`, in period order) with the
/// overrides in force at `now` applied, in period order. Empty only if both are.
pub fn apply(plan: Vec<Limit>, overrides: &[Override], now: DateTime<Utc>) -> Vec<Limit> {
    let cap = plan.iter().filter_map(|l| l.per_request_max).min();
    let mut limits = plan;
    for o in overrides.iter().filter(|o| o.in_force(now)) {
        match limits.iter_mut().find(|l| l.period == o.period) {
            Some(l) => {
                l.limit_value = match o.mode {
                    Mode::Max => o.value,
                    Mode::Add => l.limit_value.saturating_add(o.value),
                };
                l.source = Source::Override;
            }
            None => limits.push(Limit {
                period: o.period,
                limit_value: o.value,
                enforcement: Enforcement::Hard,
                per_request_max: cap,
                alerts: Vec::new(),
                source: Source::Override,
                burst: 0,
            }),
        }
    }
    limits.sort_by(|a, b| a.period.as_str().cmp(b.period.as_str()));
    limits
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn plan(period: Period, value: i64) -> Limit {
        Limit {
            period,
            limit_value: value,
            enforcement: Enforcement::Soft,
            per_request_max: Some(50),
            alerts: vec![80],
            source: Source::Plan,
            burst: 0,
        }
    }

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, h, 0, 0).unwrap()
    }

    #[test]
    fn max_replaces_add_adds_and_both_keep_the_plans_other_settings() {
        let o = |mode, value| Override { period: Period::Day, mode, value, expires_at: None };
        let got = apply(vec![plan(Period::Day, 100)], &[o(Mode::Max, 500)], at(0));
        assert_eq!(
            (got[0].limit_value, got[0].source, got[0].enforcement, got[0].per_request_max),
            (500, Source::Override, Enforcement::Soft, Some(50))
        );
        let got = apply(vec![plan(Period::Day, 100)], &[o(Mode::Add, 30)], at(0));
        assert_eq!(got[0].limit_value, 130);
        assert_eq!(got[0].alerts, vec![80], "the plan's alerts stay");
    }

    #[test]
    fn a_window_the_plan_does_not_limit_is_added_hard_in_period_order() {
        let o = Override { period: Period::Week, mode: Mode::Add, value: 700, expires_at: None };
        let got = apply(vec![plan(Period::Day, 100), plan(Period::Month, 3000)], &[o], at(0));
        let periods: Vec<&str> = got.iter().map(|l| l.period.as_str()).collect();
        assert_eq!(periods, ["day", "month", "week"]);
        assert_eq!(
            (got[2].limit_value, got[2].enforcement, got[2].per_request_max, got[2].source),
            (700, Enforcement::Hard, Some(50), Source::Override)
        );
        assert_eq!(got[0].source, Source::Plan);
        assert_eq!(apply(vec![], &[Override { period: Period::Day, mode: Mode::Max, value: 5, expires_at: None }], at(0)).len(), 1);
    }

    #[test]
    fn an_expired_override_no_longer_counts() {
        let o = Override { period: Period::Day, mode: Mode::Max, value: 500, expires_at: Some(at(12)) };
        assert_eq!(apply(vec![plan(Period::Day, 100)], std::slice::from_ref(&o), at(11))[0].limit_value, 500);
        assert_eq!(apply(vec![plan(Period::Day, 100)], &[o], at(12))[0].limit_value, 100, "at the expiry instant the plan is back");
    }

    #[test]
    fn add_saturates() {
        let o = Override { period: Period::Day, mode: Mode::Add, value: i64::MAX, expires_at: None };
        assert_eq!(apply(vec![plan(Period::Day, 100)], &[o], at(0))[0].limit_value, i64::MAX);
    }
}
