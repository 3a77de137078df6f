//! The decision record: what `quota_check` / `quota_consume` answer, and what the
//! QT429/QT413 DETAIL carries. Pure Rust; serialised with serde for error payloads and for
//! replaying an idempotent call.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::limits::{Limit, Reason, Usage, Verdict};

/// Mirrors the SQL composite `quota.decision` (same fields, same order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub allowed: bool,
    pub subject: String,
    pub metric: String,
    pub period: String,
    /// For a check, usage before the request. For a consume, usage after it when it was
    /// applied, before it when refused.
    pub used: i64,
    /// The plan limit, without bonus.
    pub limit_value: i64,
    pub bonus: i64,
    /// `limit_value + bonus - used`, never negative.
    pub remaining: i64,
    pub requested: i64,
    /// When the window ends; `None` for lifetime limits. For a rate limit: when it is back
    /// to full, or, when it refused, when the request may be retried.
    pub reset_at: Option<DateTime<Utc>>,
    pub enforcement: String,
    pub reason: String,
    /// Held by open reservations in this window (counts against the limit).
    #[serde(default)]
    pub reserved: i64,
    /// Whose window this is (0.8.0): 0 the subject's own, 1 its pool's (`subject` is then
    /// the pool), 2 that pool's pool...
    #[serde(default)]
    pub level: i32,
    /// Not part of the SQL type: at a pool's level, the member that asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// Not part of the SQL type: how far past the limit this request went (soft only).
    #[serde(default)]
    pub overage: i64,
    /// Not part of the SQL type: the limit's per-request cap, if any.
    #[serde(default)]
    pub per_request_max: Option<i64>,
    /// Not part of the SQL type: when a request refused by a rate limit may be retried
    /// (microseconds from now), for the QT429 DETAIL. The decision's `reset_at` is then
    /// that instant.
    #[serde(default)]
    pub retry_after: Option<i64>,
    /// Not part of the SQL type: every limit of the metric that refused this request
    /// (period, limit, used, remaining, reset_at), for the QT429 DETAIL. Empty when
    /// allowed.
    #[serde(default)]
    pub refused: Vec<RefusedLimit>,
    /// Not part of the SQL type: each window a consume charged, (period, window start;
    /// None for lifetime), for the consumes that record what they charged (`enforce`'s
    /// row charges).
    #[serde(skip)]
    pub windows: Vec<(String, Option<DateTime<Utc>>)>,
}

/// One limit that refused a request, as the QT429 DETAIL lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedLimit {
    /// Whose limit (0.8.0): the subject, or at `level` 1 and up one of its pools.
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub level: i32,
    pub period: String,
    /// The effective limit (plan limit plus bonus).
    pub limit: i64,
    pub used: i64,
    pub remaining: i64,
    pub reset_at: Option<DateTime<Utc>>,
}

impl Decision {
    /// Build a decision from a verdict. `applied` says whether usage now includes the
    /// request (consume) or not (check, or refused).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        subject: &str,
        metric: &str,
        limit: &Limit,
        usage: Usage,
        requested: i64,
        reset_at: Option<DateTime<Utc>>,
        verdict: &Verdict,
        applied: bool,
    ) -> Decision {
        let shown = Usage { used: if applied { verdict.used_after } else { usage.used }, ..usage };
        Decision {
            allowed: verdict.allowed,
            subject: subject.to_string(),
            metric: metric.to_string(),
            period: limit.period.as_str().to_string(),
            used: shown.used,
            limit_value: limit.limit_value,
            bonus: usage.bonus,
            remaining: shown.remaining(limit),
            requested,
            reset_at,
            enforcement: limit.enforcement.as_str().to_string(),
            reason: verdict.reason.as_str().to_string(),
            reserved: shown.reserved,
            level: 0,
            member: None,
            overage: verdict.overage,
            per_request_max: limit.per_request_max,
            retry_after: None,
            refused: Vec::new(),
            windows: Vec::new(),
        }
    }

    /// The effective limit: plan limit plus bonus.
    pub fn effective_limit(&self) -> i64 {
        self.limit_value.saturating_add(self.bonus)
    }

    /// A not-applied decision (usage before the request), marked as refused because
    /// another metric of the same all-or-nothing request did not fit.
    pub fn blocked_by_other_metric(mut self) -> Decision {
        if self.allowed {
            self.allowed = false;
            self.reason = "other_metric_refused".to_string();
        }
        self
    }

    /// The same decision, marked as a replay of an earlier idempotent call.
    pub fn replayed(mut self) -> Decision {
        self.reason = Reason::IdempotentReplay.as_str().to_string();
        self
    }
}

/// ISO 8601 in UTC with a `Z`, as used in every JSON payload.
pub fn iso(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::limits::{evaluate, Enforcement, Source};
    use crate::domain::period::Period;

    fn limit() -> Limit {
        Limit {
            period: Period::Day,
            limit_value: 5,
            enforcement: Enforcement::Hard,
            per_request_max: None,
            alerts: vec![],
            source: Source::Plan,
            burst: 0,
        }
    }

    #[test]
    fn consume_shows_usage_after_check_shows_before() {
        let u = Usage::new(2, 1);
        let v = evaluate(&limit(), u, 3);
        let applied = Decision::new("u", "m", &limit(), u, 3, None, &v, true);
        assert_eq!((applied.used, applied.remaining, applied.allowed), (5, 1, true));
        let probe = Decision::new("u", "m", &limit(), u, 3, None, &v, false);
        assert_eq!((probe.used, probe.remaining), (2, 4));
        assert_eq!(probe.effective_limit(), 6);
    }

    #[test]
    fn blocked_by_other_metric_keeps_the_usage_before() {
        let u = Usage::new(2, 0);
        let v = evaluate(&limit(), u, 1);
        let d = Decision::new("u", "m", &limit(), u, 1, None, &v, false).blocked_by_other_metric();
        assert_eq!((d.allowed, d.reason.as_str(), d.used, d.remaining), (false, "other_metric_refused", 2, 3));
    }

    #[test]
    fn round_trips_through_json() {
        let u = Usage::new(0, 0);
        let v = evaluate(&limit(), u, 1);
        let reset = DateTime::parse_from_rfc3339("2026-11-24T00:00:00Z").unwrap().with_timezone(&Utc);
        let d = Decision::new("u", "m", &limit(), u, 1, Some(reset), &v, true);
        let back: Decision = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(back, d);
        assert_eq!(back.replayed().reason, "idempotent_replay");
        assert_eq!(iso(Some(reset)).unwrap(), "2026-11-24T00:00:00Z");
    }
}
