//! Rate limits: the generic cell rate algorithm (GCRA), with the semantics of redis-cell's
//! `CL.THROTTLE key max_burst count period [quantity]`. Pure Rust, no PostgreSQL.
//!
//! A rate of `count` per `period` admits one unit every emission interval
//! `T = period / count`, and up to `max_burst` more at once: the limit is `max_burst + 1`.
//! The whole state of a key is one instant, its theoretical arrival time (TAT): when the
//! key would be back to zero use if nothing more came. A request of `quantity` units
//! moves the TAT `quantity * T` later, and is admitted when the new TAT is at most
//! `tau = T * (max_burst + 1)` ahead of now. A refused request changes nothing.
//!
//! Instants and durations are microseconds (PostgreSQL's resolution). `T` is truncated to
//! a whole microsecond, as redis-cell truncates it to a nanosecond.

/// The largest `tau`, the burst's span: a thousand years (365,250 days).
pub const MAX_TOLERANCE_US: i64 = 365_250 * 86_400_000_000;

/// A rate: `count` units per `period_us`, with `max_burst` more at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub max_burst: i64,
    pub count: i64,
    pub period_us: i64,
}

/// The answer to one request, as `CL.THROTTLE` gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttle {
    pub limited: bool,
    /// `max_burst + 1`.
    pub limit: i64,
    /// Units that could still be taken at once after this request.
    pub remaining: i64,
    /// When a refused request could be retried; `None` when it was admitted, or when it is
    /// larger than the limit and can never be admitted.
    pub retry_after_us: Option<i64>,
    /// Until the key is back to its full capacity.
    pub reset_after_us: i64,
    /// The key's new state (unchanged when limited).
    pub tat_us: i64,
}

impl Rate {
    /// A valid rate: `max_burst >= 0`, `count >= 1`, and a period of at least `count`
    /// microseconds (an emission interval of at least 1 µs).
    /// Err: the argument at fault and why.
    pub fn new(max_burst: i64, count: i64, period_us: i64) -> Result<Self, (&'static str, &'static str)> {
        if max_burst < 0 {
            return Err(("max_burst", "max_burst must be at least 0"));
        }
        if count < 1 {
            return Err(("count", "count must be at least 1"));
        }
        if period_us < count {
            return Err(("count", "count must be at most one per microsecond of the period"));
        }
        let rate = Rate { max_burst, count, period_us };
        // A TAT is at most `tau` ahead of the clock (at most year 9999): a thousand years
        // more keeps every instant a valid timestamp.
        match rate.tolerance() {
            Some(tau) if tau <= MAX_TOLERANCE_US => Ok(rate),
            _ => Err(("max_burst", "(max_burst + 1) * period / count must be at most 1000 years")),
        }
    }

    /// The emission interval `T`.
    pub fn emission_us(&self) -> i64 {
        self.period_us / self.count
    }

    /// `tau`, for a valid rate (`new` checked it fits).
    pub fn tolerance_us(&self) -> i64 {
        self.tolerance().unwrap_or(i64::MAX)
    }

    /// `tau = T * (max_burst + 1)`; None on overflow.
    fn tolerance(&self) -> Option<i64> {
        self.emission_us().checked_mul(self.max_burst.checked_add(1)?)
    }

    /// The limit `CL.THROTTLE` reports.
    pub fn limit(&self) -> i64 {
        self.max_burst + 1
    }

    /// Decide a request of `quantity` units (>= 0; 0 reads the state) at `now_us`, for a key
    /// whose stored TAT is `tat_us` (None: never seen, or expired). `None` when the
    /// arithmetic would overflow (a quantity or an instant out of any real range).
    pub fn throttle(&self, now_us: i64, tat_us: Option<i64>, quantity: i64) -> Option<Throttle> {
        let t = self.emission_us();
        let tau = self.tolerance()?;
        // A TAT in the past means a key back at full capacity: the same as a new key.
        let tat = tat_us.map_or(now_us, |tat| tat.max(now_us));
        let increment = quantity.checked_mul(t)?;
        let new_tat = tat.checked_add(increment)?;
        let allow_at = new_tat.checked_sub(tau)?;
        let (limited, retry_after_us, ttl, stored) = if now_us < allow_at {
            let retry = (increment <= tau).then(|| allow_at - now_us);
            (true, retry, tat - now_us, tat)
        } else {
            (false, None, new_tat - now_us, new_tat)
        };
        let next = tau - ttl;
        let remaining = if next > -t { next / t } else { 0 };
        Some(Throttle { limited, limit: self.limit(), remaining, retry_after_us, reset_after_us: ttl, tat_us: stored })
    }
}

/// Whole seconds as redis-cell reports durations: a partial second rounds up, so that a
/// caller never retries too early (`-1` for none).
pub fn redis_seconds(us: Option<i64>) -> i64 {
    us.map_or(-1, |us| us / 1_000_000 + i64::from(us % 1_000_000 > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn cell(t: &Throttle) -> (i64, i64, i64, i64, i64) {
        (t.limited as i64, t.limit, t.remaining, redis_seconds(t.retry_after_us), redis_seconds(Some(t.reset_after_us)))
    }

    /// redis-cell's README: `CL.THROTTLE user123 15 30 60 1` on a new key.
    #[test]
    fn redis_cell_published_example() {
        let rate = Rate::new(15, 30, 60 * S).unwrap();
        let t = rate.throttle(1_000 * S, None, 1).unwrap();
        assert_eq!(cell(&t), (0, 16, 15, -1, 2));
    }

    /// The burst: 16 at once pass, the 17th is refused with retry after one interval (2 s),
    /// and one interval later one more passes.
    #[test]
    fn burst_then_refusal_then_refill() {
        let rate = Rate::new(15, 30, 60 * S).unwrap();
        let now = 1_000 * S;
        let mut tat = None;
        for i in 0..16 {
            let t = rate.throttle(now, tat, 1).unwrap();
            assert!(!t.limited, "request {i}");
            assert_eq!(t.remaining, 15 - i);
            tat = Some(t.tat_us);
        }
        let refused = rate.throttle(now, tat, 1).unwrap();
        assert_eq!(cell(&refused), (1, 16, 0, 2, 32));
        assert_eq!(refused.tat_us, tat.unwrap(), "a refusal changes nothing");
        let later = rate.throttle(now + 2 * S, tat, 1).unwrap();
        assert_eq!(cell(&later), (0, 16, 0, -1, 32));
    }

    #[test]
    fn quantity_larger_than_the_limit_never_passes_and_has_no_retry() {
        let rate = Rate::new(4, 5, 10 * S).unwrap();
        let t = rate.throttle(0, None, 6).unwrap();
        assert_eq!(cell(&t), (1, 5, 5, -1, 0));
        let t = rate.throttle(0, None, 5).unwrap();
        assert_eq!(cell(&t), (0, 5, 0, -1, 10));
    }

    #[test]
    fn an_old_state_is_a_full_bucket() {
        let rate = Rate::new(2, 1, S).unwrap();
        let old = rate.throttle(0, Some(-50 * S), 3).unwrap();
        assert_eq!(old, rate.throttle(0, None, 3).unwrap());
        // Refused with a stale TAT: the reported state is that of a full bucket.
        let refused = rate.throttle(0, Some(-50 * S), 4).unwrap();
        assert_eq!((refused.limited, refused.remaining, refused.reset_after_us), (true, 3, 0));
    }

    /// 5 per 7 s: an interval of 1.4 s, which redis-cell reports as 2 (rounded up).
    #[test]
    fn partial_seconds_round_up() {
        let rate = Rate::new(0, 5, 7 * S).unwrap();
        let t = rate.throttle(0, None, 1).unwrap();
        assert_eq!((t.reset_after_us, redis_seconds(Some(t.reset_after_us))), (1_400_000, 2));
        let refused = rate.throttle(0, Some(t.tat_us), 1).unwrap();
        assert_eq!((refused.retry_after_us, redis_seconds(refused.retry_after_us)), (Some(1_400_000), 2));
        assert_eq!(redis_seconds(Some(2 * S)), 2);
    }

    #[test]
    fn zero_quantity_reads_without_taking() {
        let rate = Rate::new(1, 1, S).unwrap();
        let first = rate.throttle(0, None, 1).unwrap();
        let read = rate.throttle(0, Some(first.tat_us), 0).unwrap();
        assert_eq!((read.limited, read.remaining, read.tat_us), (false, 1, first.tat_us));
    }

    #[test]
    fn bad_rates_and_overflow_are_refused() {
        assert!(Rate::new(-1, 1, S).is_err());
        assert!(Rate::new(0, 0, S).is_err());
        assert!(Rate::new(0, 10, 9).is_err());
        assert!(Rate::new(i64::MAX, 1, S).is_err());
        assert_eq!(Rate::new(365_250 * 86_400, 1, S).map(|_| ()), Err(("max_burst", "(max_burst + 1) * period / count must be at most 1000 years")));
        assert!(Rate::new(365_250 * 86_400 - 1, 1, S).is_ok());
        assert_eq!(Rate::new(0, 10, 9).map(|_| ()).unwrap_err().0, "count");
        let rate = Rate::new(0, 1, S).unwrap();
        assert_eq!(rate.throttle(0, None, i64::MAX), None);
        assert_eq!(rate.throttle(i64::MAX - 1, None, 1), None);
    }
}
