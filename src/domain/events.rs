//! Events: what happened that an application may want to hear about without polling.
//!
//! Pure Rust: which alert thresholds a change crosses, and the JSON payload. An operation
//! records each event in the `quota.events` outbox and sends it with `pg_notify` on
//! channel `quota_events`; PostgreSQL delivers notifications at COMMIT, so a rolled-back
//! transaction emits nothing.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::domain::decision::iso;

pub const CHANNEL: &str = "quota_events";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    ThresholdCrossed,
    SoftLimitExceeded,
    BonusApplied,
    Reset,
    ReservationCommitted,
    ReservationExpired,
    Consumed,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ThresholdCrossed => "threshold_crossed",
            EventKind::SoftLimitExceeded => "soft_limit_exceeded",
            EventKind::BonusApplied => "bonus_applied",
            EventKind::Reset => "reset",
            EventKind::ReservationCommitted => "reservation_committed",
            EventKind::ReservationExpired => "reservation_expired",
            EventKind::Consumed => "consumed",
        }
    }
}

/// One event, as delivered.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    pub subject: String,
    pub metric: String,
    /// The limit's period: which of the metric's windows (a day and a month window may
    /// both start on the 1st).
    pub period: String,
    pub window_start: Option<DateTime<Utc>>,
    pub used: i64,
    pub limit: i64,
    pub threshold: Option<i32>,
    pub occurred_at: DateTime<Utc>,
    /// Extra fields for some kinds (reservation id, amounts).
    pub extra: Value,
}

impl Event {
    pub fn payload(&self) -> Value {
        let mut v = json!({
            "type": self.kind.as_str(),
            "subject": self.subject,
            "metric": self.metric,
            "period": self.period,
            "window": iso(self.window_start),
            "used": self.used,
            "limit": self.limit,
            "threshold": self.threshold,
            "occurred_at": iso(Some(self.occurred_at)),
        });
        if let (Some(obj), Some(extra)) = (v.as_object_mut(), self.extra.as_object()) {
            for (k, x) in extra {
                obj.insert(k.clone(), x.clone());
            }
        }
        v
    }
}

/// The thresholds (percent of `limit`) that usage going to `used_after` crosses for the
/// first time in the window, given the highest one already announced (`alerted`).
/// Returns them in ascending order; the new `alerted` is the last one.
pub fn crossed(thresholds: &[i32], alerted: i32, used_after: i64, limit: i64) -> Vec<i32> {
    let mut out: Vec<i32> = thresholds.iter().copied().filter(|&t| t > alerted && reached(used_after, limit, t)).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// `used >= limit * percent / 100`, without overflow or rounding surprises.
fn reached(used: i64, limit: i64, percent: i32) -> bool {
    (used as i128) * 100 >= (limit as i128) * (percent as i128)
}

/// Whether a change of usage crosses the effective limit from at-or-under to over.
pub fn went_over(used_before: i64, used_after: i64, limit: i64) -> bool {
    used_before <= limit && used_after > limit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_fire_once_each() {
        assert_eq!(crossed(&[80, 100], 0, 79, 100), Vec::<i32>::new());
        assert_eq!(crossed(&[80, 100], 0, 80, 100), vec![80]);
        assert_eq!(crossed(&[80, 100], 80, 90, 100), Vec::<i32>::new(), "80 was already announced");
        assert_eq!(crossed(&[100, 80], 0, 150, 100), vec![80, 100], "one jump crosses both");
        assert_eq!(crossed(&[50], 0, 3, 5), vec![50], "2.5 of 5 rounds in the user's favour: 3 >= 2.5");
        assert_eq!(crossed(&[50], 0, 2, 5), Vec::<i32>::new());
        assert_eq!(crossed(&[80], 0, i64::MAX, i64::MAX), vec![80], "no overflow");
        assert_eq!(crossed(&[80], 0, 0, 0), vec![80], "a zero limit is reached at once");
    }

    #[test]
    fn soft_overage_crossing() {
        assert!(went_over(10, 11, 10));
        assert!(!went_over(11, 12, 10), "already over");
        assert!(!went_over(5, 10, 10), "exactly at the limit is not over");
    }

    #[test]
    fn payload_shape() {
        let at = DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z").unwrap().with_timezone(&Utc);
        let e = Event {
            kind: EventKind::ThresholdCrossed,
            subject: "u".into(),
            metric: "m".into(),
            period: "lifetime".into(),
            window_start: None,
            used: 8,
            limit: 10,
            threshold: Some(80),
            occurred_at: at,
            extra: json!({"reservation": "r1"}),
        };
        assert_eq!(
            e.payload(),
            json!({"type":"threshold_crossed","subject":"u","metric":"m","period":"lifetime","window":null,"used":8,"limit":10,
                   "threshold":80,"occurred_at":"2026-11-23T12:00:00Z","reservation":"r1"})
        );
    }
}
