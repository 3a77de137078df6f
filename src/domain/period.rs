//! Period math: which window a moment falls into, for each kind of period.
//!
//! Pure Rust (chrono + chrono-tz), no PostgreSQL. Every boundary is computed in the
//! subject's IANA time zone, so a day is 23 or 25 hours long across a DST change, and a
//! billing cycle is always derived from its anchor (never from the previous window), so
//! month-end clamping cannot drift: an anchor on Jan 31 gives Feb 28/29, then Mar 31.

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use std::fmt;
use std::str::FromStr;

use super::rolling::Length;

/// The kinds of period a limit can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    Day,
    /// ISO week, starting Monday 00:00 local time.
    Week,
    /// Calendar month, starting on the 1st at 00:00 local time.
    Month,
    /// Monthly, anchored on the subject's `cycle_anchor` (day of month and time of day).
    BillingCycle,
    /// Never resets (gauges such as tracked_products).
    Lifetime,
    /// A window that opens at the subject's first use and lasts this long ('5 hours'):
    /// `rolling`.
    FirstUse(Span),
    /// A rate limit, the limit's count per this long ('per 1 minute'), paced by GCRA:
    /// `rate`.
    Rate(Span),
}

/// A length with its canonical spelling kept inline ('5 hours', 'per 1 minute'), so that a
/// `Period` stays `Copy` and lends its name as a `&str`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    length: Length,
    name: [u8; SPAN_NAME],
    len: u8,
}

/// Room for the longest name: "per 31622400 seconds".
const SPAN_NAME: usize = 24;

impl Span {
    fn new(length: Length, prefix: &str) -> Span {
        let text = format!("{prefix}{}", length.canonical());
        let mut name = [0u8; SPAN_NAME];
        name[..text.len()].copy_from_slice(text.as_bytes());
        Span { length, name, len: text.len() as u8 }
    }
    pub fn length(&self) -> Length {
        self.length
    }
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.name[..self.len as usize]).expect("an ASCII name")
    }
}

impl Period {
    pub const NAMES: &'static str = "day, week, month, billing_cycle, lifetime, a length that opens at first use ('5 hours'), or a rate ('per 1 minute', with quota.set_rate_limit)";

    pub fn as_str(&self) -> &str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
            Period::BillingCycle => "billing_cycle",
            Period::Lifetime => "lifetime",
            Period::FirstUse(s) | Period::Rate(s) => s.as_str(),
        }
    }

    /// Day, week, month, billing cycle or lifetime: a window that the clock and the
    /// subject's zone alone determine.
    pub fn is_calendar(&self) -> bool {
        !matches!(self, Period::FirstUse(_) | Period::Rate(_))
    }

    /// Parse a period as `set_limit` takes it; Err: why, for a 22023 message.
    pub fn parse(text: &str) -> Result<Period, String> {
        if let Ok(p) = text.parse::<Period>() {
            return Ok(p);
        }
        let t = text.trim();
        if let Some(rest) = t.strip_prefix("per ") {
            let rest = rest.trim();
            let rest = if rest.starts_with(|c: char| c.is_ascii_digit()) { rest.to_string() } else { format!("1 {rest}") };
            return Length::parse(&rest).map(|l| Period::Rate(Span::new(l, "per ")));
        }
        if t.starts_with(|c: char| c.is_ascii_digit()) {
            return Length::parse(t).map(|l| Period::FirstUse(Span::new(l, "")));
        }
        Err(format!("unknown period \"{}\"", super::error::quoted(text)))
    }
}

impl FromStr for Period {
    type Err = ();
    /// The stored (canonical) spellings only; `parse` takes what a caller writes.
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "day" => Ok(Period::Day),
            "week" => Ok(Period::Week),
            "month" => Ok(Period::Month),
            "billing_cycle" => Ok(Period::BillingCycle),
            "lifetime" => Ok(Period::Lifetime),
            other => {
                let rate = other.strip_prefix("per ");
                let length = Length::parse(rate.unwrap_or(other)).map_err(|_| ())?;
                let p = if rate.is_some() { Period::Rate(Span::new(length, "per ")) } else { Period::FirstUse(Span::new(length, "")) };
                // Only the canonical spelling names a stored period.
                (p.as_str() == other).then_some(p).ok_or(())
            }
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A half-open window `[start, end)`. `None` bounds mean unbounded (lifetime).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

/// Parse an IANA zone name ("UTC", "Europe/Paris").
pub fn parse_zone(name: &str) -> Option<Tz> {
    Tz::from_str(name).ok()
}

/// The window of `period` that contains `now`, for a subject in zone `tz` whose billing
/// cycle is anchored at `anchor`.
pub fn window_for(period: Period, now: DateTime<Utc>, tz: Tz, anchor: DateTime<Utc>) -> Window {
    let local = now.with_timezone(&tz).date_naive();
    let (start, end) = match period {
        Period::Lifetime => return Window { start: None, end: None },
        Period::Day => (local, local + Duration::days(1)),
        Period::Week => {
            let monday = local - Duration::days(local.weekday().num_days_from_monday() as i64);
            (monday, monday + Duration::days(7))
        }
        Period::Month => {
            let first = first_of_month(local.year(), local.month());
            (first, add_months(first, 1, 1))
        }
        Period::BillingCycle => return billing_window(now, tz, anchor),
        Period::FirstUse(_) | Period::Rate(_) => unreachable!("only calendar periods have a window the clock determines"),
    };
    let midnight = NaiveTime::MIN;
    Window { start: Some(local_to_utc(tz, start.and_time(midnight))), end: Some(local_to_utc(tz, end.and_time(midnight))) }
}

/// The billing-cycle window containing `now`: cycle `k` starts `k` months after the anchor,
/// on the anchor's day of month clamped to the month's length, at the anchor's local time.
fn billing_window(now: DateTime<Utc>, tz: Tz, anchor: DateTime<Utc>) -> Window {
    let a = anchor.with_timezone(&tz).naive_local();
    let n = now.with_timezone(&tz).naive_local();
    let cycle_start = |k: i64| -> DateTime<Utc> {
        let date = add_months(a.date(), k, a.day());
        local_to_utc(tz, date.and_time(a.time()))
    };
    let mut k = (n.year() as i64 - a.year() as i64) * 12 + (n.month() as i64 - a.month() as i64);
    // The estimate is off by at most one in either direction.
    while cycle_start(k) > now {
        k -= 1;
    }
    while cycle_start(k + 1) <= now {
        k += 1;
    }
    Window { start: Some(cycle_start(k)), end: Some(cycle_start(k + 1)) }
}

fn first_of_month(year: i32, month: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, 1).expect("day 1 exists in every month")
}

/// `date`'s month moved by `k` months, on day `day` clamped to that month's length.
fn add_months(date: NaiveDate, k: i64, day: u32) -> NaiveDate {
    let total = date.year() as i64 * 12 + (date.month() as i64 - 1) + k;
    let (year, month) = (total.div_euclid(12) as i32, total.rem_euclid(12) as u32 + 1);
    let last = days_in_month(year, month);
    NaiveDate::from_ymd_opt(year, month, day.min(last)).expect("clamped day is valid")
}

pub fn days_in_month(year: i32, month: u32) -> u32 {
    let next = if month == 12 { first_of_month(year + 1, 1) } else { first_of_month(year, month + 1) };
    (next - first_of_month(year, month)).num_days() as u32
}

/// Resolve a local wall-clock time to an instant. An ambiguous time (DST fall-back) takes
/// the earlier instant; a time inside a DST gap moves forward to the first valid instant.
pub fn local_to_utc(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.min(b).with_timezone(&Utc),
        LocalResult::None => {
            // Gaps are at most a few hours; step forward minute by minute to the first
            // valid wall-clock time, then map it back.
            let mut probe = local;
            for _ in 0..(24 * 60) {
                probe += Duration::minutes(1);
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    // The first valid wall-clock time after the gap is the transition.
                    return t.with_timezone(&Utc);
                }
            }
            unreachable!("time zone gap longer than a day")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::New_York;
    use chrono_tz::Europe::Paris;
    use chrono_tz::UTC;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }
    fn win(p: Period, now: &str, tz: Tz, anchor: &str) -> (String, String) {
        let w = window_for(p, utc(now), tz, utc(anchor));
        (w.start.unwrap().to_rfc3339(), w.end.unwrap().to_rfc3339())
    }
    const EPOCH: &str = "2020-01-01T00:00:00Z";

    #[test]
    fn day_in_utc() {
        assert_eq!(win(Period::Day, "2026-11-23T23:59:59Z", UTC, EPOCH), ("2026-11-23T00:00:00+00:00".into(), "2026-11-24T00:00:00+00:00".into()));
        assert_eq!(win(Period::Day, "2026-11-24T00:00:00Z", UTC, EPOCH).0, "2026-11-24T00:00:00+00:00");
    }

    #[test]
    fn day_follows_subject_zone() {
        // 03:00 UTC is still the previous evening in New York (UTC-5 in November).
        assert_eq!(
            win(Period::Day, "2026-11-24T03:00:00Z", New_York, EPOCH),
            ("2026-11-23T05:00:00+00:00".into(), "2026-11-24T05:00:00+00:00".into())
        );
    }

    #[test]
    fn dst_spring_forward_day_is_23_hours() {
        // America/New_York springs forward on 2026-03-08.
        let w = window_for(Period::Day, utc("2026-03-08T12:00:00Z"), New_York, utc(EPOCH));
        assert_eq!(w.end.unwrap() - w.start.unwrap(), Duration::hours(23));
        // Europe/Paris springs forward on 2026-03-29.
        let w = window_for(Period::Day, utc("2026-03-29T12:00:00Z"), Paris, utc(EPOCH));
        assert_eq!(w.end.unwrap() - w.start.unwrap(), Duration::hours(23));
        assert_eq!(w.start.unwrap().to_rfc3339(), "2026-03-28T23:00:00+00:00");
    }

    #[test]
    fn dst_fall_back_day_is_25_hours() {
        let w = window_for(Period::Day, utc("2026-11-01T12:00:00Z"), New_York, utc(EPOCH));
        assert_eq!(w.end.unwrap() - w.start.unwrap(), Duration::hours(25));
        let w = window_for(Period::Day, utc("2026-10-25T12:00:00Z"), Paris, utc(EPOCH));
        assert_eq!(w.end.unwrap() - w.start.unwrap(), Duration::hours(25));
    }

    #[test]
    fn week_is_iso_monday_in_zone() {
        // 2026-11-23 is a Monday; Sunday 22 late evening in New York is still last week.
        assert_eq!(win(Period::Week, "2026-11-25T10:00:00Z", UTC, EPOCH), ("2026-11-23T00:00:00+00:00".into(), "2026-11-30T00:00:00+00:00".into()));
        assert_eq!(win(Period::Week, "2026-11-23T03:00:00Z", New_York, EPOCH).0, "2026-11-16T05:00:00+00:00");
        // A week spanning the Paris fall-back is 7 days + 1 hour.
        let w = window_for(Period::Week, utc("2026-10-22T12:00:00Z"), Paris, utc(EPOCH));
        assert_eq!(w.end.unwrap() - w.start.unwrap(), Duration::hours(7 * 24 + 1));
    }

    #[test]
    fn month_calendar_and_leap_years() {
        assert_eq!(win(Period::Month, "2028-02-29T12:00:00Z", UTC, EPOCH), ("2028-02-01T00:00:00+00:00".into(), "2028-03-01T00:00:00+00:00".into()));
        assert_eq!(win(Period::Month, "2026-12-31T23:00:00Z", UTC, EPOCH), ("2026-12-01T00:00:00+00:00".into(), "2027-01-01T00:00:00+00:00".into()));
        // 23:30 UTC on Oct 31 is already November 1st in Paris.
        assert_eq!(win(Period::Month, "2026-10-31T23:30:00Z", Paris, EPOCH).0, "2026-10-31T23:00:00+00:00");
    }

    #[test]
    fn billing_cycle_clamps_without_drift() {
        let anchor = "2026-01-31T10:00:00Z";
        assert_eq!(
            win(Period::BillingCycle, "2026-02-15T00:00:00Z", UTC, anchor),
            ("2026-01-31T10:00:00+00:00".into(), "2026-02-28T10:00:00+00:00".into())
        );
        assert_eq!(
            win(Period::BillingCycle, "2026-03-01T00:00:00Z", UTC, anchor),
            ("2026-02-28T10:00:00+00:00".into(), "2026-03-31T10:00:00+00:00".into())
        );
        assert_eq!(
            win(Period::BillingCycle, "2026-04-05T00:00:00Z", UTC, anchor),
            ("2026-03-31T10:00:00+00:00".into(), "2026-04-30T10:00:00+00:00".into())
        );
        // Leap year: Feb 29.
        assert_eq!(win(Period::BillingCycle, "2028-03-01T00:00:00Z", UTC, anchor).0, "2028-02-29T10:00:00+00:00");
        // Exactly at a boundary the new cycle has begun.
        assert_eq!(win(Period::BillingCycle, "2026-02-28T10:00:00Z", UTC, anchor).0, "2026-02-28T10:00:00+00:00");
        // Before the anchor, cycles extend backwards.
        assert_eq!(win(Period::BillingCycle, "2025-12-31T09:00:00Z", UTC, anchor).1, "2025-12-31T10:00:00+00:00");
    }

    #[test]
    fn billing_cycle_keeps_local_time_across_dst() {
        // Anchored at 09:00 New York time in January (EST); in July the cycle starts at
        // 09:00 EDT, which is 13:00 UTC.
        let w = window_for(Period::BillingCycle, utc("2026-07-20T00:00:00Z"), New_York, utc("2026-01-15T14:00:00Z"));
        assert_eq!(w.start.unwrap().to_rfc3339(), "2026-07-15T13:00:00+00:00");
    }

    #[test]
    fn lifetime_is_unbounded() {
        let w = window_for(Period::Lifetime, utc("2026-01-01T00:00:00Z"), UTC, utc(EPOCH));
        assert_eq!(w, Window { start: None, end: None });
    }

    #[test]
    fn gap_resolves_forward() {
        // 02:30 on 2026-03-08 does not exist in New York; it resolves to 03:00 EDT = 07:00 UTC.
        let t = local_to_utc(New_York, NaiveDate::from_ymd_opt(2026, 3, 8).unwrap().and_hms_opt(2, 30, 0).unwrap());
        assert_eq!(t.to_rfc3339(), "2026-03-08T07:00:00+00:00");
        // Ambiguous 01:30 on fall-back day takes the earlier (EDT) instant.
        let t = local_to_utc(New_York, NaiveDate::from_ymd_opt(2026, 11, 1).unwrap().and_hms_opt(1, 30, 0).unwrap());
        assert_eq!(t.to_rfc3339(), "2026-11-01T05:30:00+00:00");
    }

    #[test]
    fn parses_names() {
        assert_eq!("billing_cycle".parse::<Period>(), Ok(Period::BillingCycle));
        assert!("daily".parse::<Period>().is_err());
        assert!(parse_zone("Europe/Paris").is_some());
        assert!(parse_zone("Mars/Olympus").is_none());
        assert_eq!(days_in_month(2028, 2), 29);
        assert_eq!(days_in_month(2100, 2), 28);
    }

    #[test]
    fn first_use_and_rate_periods_have_one_spelling() {
        for (text, stored) in
            [("5 hours", "5 hours"), ("300 min", "5 hours"), ("per minute", "per 1 minute"), ("per 90 s", "per 90 seconds"), ("day", "day")]
        {
            let parsed = Period::parse(text);
            assert!(parsed.is_ok(), "{text}: {parsed:?}");
            let p = parsed.expect("checked above");
            assert_eq!(p.as_str(), stored);
            assert_eq!(stored.parse::<Period>(), Ok(p), "{stored} reads back");
        }
        assert!(matches!(Period::parse("5 hours"), Ok(Period::FirstUse(_))));
        assert!(matches!(Period::parse("per 1 minute"), Ok(Period::Rate(_))));
        assert!(!Period::parse("per 1 minute").unwrap().is_calendar());
        assert!("300 min".parse::<Period>().is_err(), "only the canonical spelling is a stored period");
        assert!(Period::parse("1 day").unwrap_err().contains("'day'"));
        assert!(Period::parse("fortnight").is_err());
        let longest = Period::parse("per 31622399 seconds").unwrap();
        assert_eq!(longest.as_str(), "per 31622399 seconds");
    }
}
