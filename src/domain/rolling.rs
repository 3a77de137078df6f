//! Windows that open at first use (limits v2): a length in seconds, minutes or hours
//! ('5 hours', '90 minutes'). The window opens at the first call that counts usage
//! (consume, reserve) and closes exactly that long later; the next opens at the
//! first such call after it closed. Day, week and month stay calendar periods
//! (`period::Period`): a length in days, weeks, months or years is refused, so that
//! '1 day' cannot be taken for 'day'. Pure Rust, no PostgreSQL.

/// The longest first-use window: a year of hours, far beyond any product's "5 hours".
pub const MAX_SECONDS: i64 = 366 * 24 * 3600;

/// A first-use window's length, in whole seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Length(i64);

impl Length {
    pub fn seconds(self) -> i64 {
        self.0
    }

    /// A length of whole seconds, between 1 second and `MAX_SECONDS`.
    pub fn from_seconds(seconds: i64) -> Option<Length> {
        (1..=MAX_SECONDS).contains(&seconds).then_some(Length(seconds))
    }

    /// Parse `<n> <unit>` (unit: second(s), sec, s, minute(s), min, m, hour(s), hr, h; the
    /// space is optional). Err: the reason, for a 22023 message.
    pub fn parse(text: &str) -> Result<Length, String> {
        // Messages quote a short prefix of what was given.
        let shown = super::error::quoted(text);
        let t = text.trim().to_ascii_lowercase();
        let digits = t.chars().take_while(|c| c.is_ascii_digit()).count();
        let (number, unit) = t.split_at(digits);
        let unit = unit.trim();
        if number.is_empty() {
            return Err(format!("a window length is a whole number of seconds, minutes or hours, such as '5 hours' (got \"{shown}\")"));
        }
        let scale = match unit {
            "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
            "d" | "day" | "days" | "w" | "week" | "weeks" | "mon" | "month" | "months" | "y" | "year" | "years" => {
                return Err(format!(
                    "a window that opens at first use is given in seconds, minutes or hours, not \"{}\": \
                     use 'day', 'week' or 'month' for a calendar window, or hours ('24 hours') for a window of that length",
                    super::error::quoted(unit)
                ))
            }
            _ => return Err(format!("unknown unit \"{}\" in window length \"{shown}\" (seconds, minutes or hours)", super::error::quoted(unit))),
        };
        let n: i64 = number.parse().map_err(|_| format!("window length \"{shown}\" is too long"))?;
        let seconds = n.checked_mul(scale).filter(|s| (1..=MAX_SECONDS).contains(s));
        seconds.map(Length).ok_or_else(|| format!("a window length must be between 1 second and {} hours (got \"{shown}\")", MAX_SECONDS / 3600))
    }

    /// The one spelling stored and shown: the largest unit that divides the length.
    pub fn canonical(self) -> String {
        let (n, unit) = match self.0 {
            s if s % 3600 == 0 => (s / 3600, "hour"),
            s if s % 60 == 0 => (s / 60, "minute"),
            s => (s, "second"),
        };
        format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
    }
}

/// A first-use window, `[start, end)` in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Open {
    pub start_us: i64,
    pub end_us: i64,
}

/// The window a call at `now_us` falls in, given the subject's last window (`last`):
/// - not closed yet (`now < end`, even if it opened after `now`): that window;
/// - none, or closed: `None` for a call that does not count usage (check, status, a
///   refused consume, a refund: they never open one); a counting call opens
///   `[now, now + length)`.
pub fn current(last: Option<Open>, now_us: i64, length: Length, counting: bool) -> Option<Open> {
    match last {
        // A window that opened after `now` is open too: the quota clock is the
        // transaction's start, so a transaction that began before another opened the
        // window must use that window, never open a second one over it.
        Some(w) if now_us < w.end_us => Some(w),
        _ if counting => Some(Open { start_us: now_us, end_us: now_us.saturating_add(length.0.saturating_mul(1_000_000)) }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000_000;

    #[test]
    fn lengths_parse_and_print_one_way() {
        for (text, seconds, canonical) in [
            ("5 hours", 18_000, "5 hours"),
            ("90 minutes", 5_400, "90 minutes"),
            ("300 min", 18_000, "5 hours"),
            ("1h", 3_600, "1 hour"),
            (" 45 SECONDS ", 45, "45 seconds"),
            ("1 second", 1, "1 second"),
        ] {
            let parsed = Length::parse(text);
            assert!(parsed.is_ok(), "{text}: {parsed:?}");
            let l = parsed.expect("checked above");
            assert_eq!((l.seconds(), l.canonical().as_str()), (seconds, canonical), "{text}");
        }
    }

    #[test]
    fn days_months_and_nonsense_are_refused() {
        for text in
            ["1 day", "2 days", "1 week", "1 month", "1 year", "24h ", "0 hours", "hours", "-5 hours", "5 fortnights", "99999999999999999999 s", ""]
        {
            let r = Length::parse(text);
            if text == "24h " {
                assert_eq!(r.map(Length::seconds), Ok(86_400));
            } else {
                assert!(r.is_err(), "{text:?} parsed");
            }
        }
        assert!(Length::parse("1 day").unwrap_err().contains("'day'"));
        assert!(Length::parse("8785 hours").is_err());
        assert!(Length::parse("8784 hours").is_ok());
    }

    #[test]
    fn only_counting_calls_open_a_window_and_it_closes_exactly() {
        let five = Length::parse("5 hours").unwrap();
        assert_eq!(current(None, 10 * H, five, false), None);
        let w = current(None, 10 * H, five, true).unwrap();
        assert_eq!(w, Open { start_us: 10 * H, end_us: 15 * H });
        assert_eq!(current(Some(w), 15 * H - 1, five, true), Some(w));
        assert_eq!(current(Some(w), 15 * H, five, false), None, "closed at its end: a check sees none");
        let next = current(Some(w), 16 * H + 7, five, true).unwrap();
        assert_eq!(next, Open { start_us: 16 * H + 7, end_us: 21 * H + 7 }, "the next opens at the first use after");
    }

    /// Two first uses racing: a transaction that started before the other opened the
    /// window (its clock is earlier than the window's start) joins that window.
    #[test]
    fn an_earlier_clock_joins_the_window_opened_after_it() {
        let five = Length::parse("5 hours").unwrap();
        let opened = Open { start_us: 10 * H + 500_000, end_us: 15 * H + 500_000 };
        assert_eq!(current(Some(opened), 10 * H, five, true), Some(opened));
    }

    /// First-use windows are lengths of real time: across a DST change a 5-hour window is
    /// five hours of UTC, whatever the subject's zone says on the wall clock.
    #[test]
    fn dst_does_not_stretch_a_window() {
        use chrono::{TimeZone, Utc};
        let start = Utc.with_ymd_and_hms(2026, 3, 29, 0, 30, 0).unwrap(); // Europe/Paris springs forward at 01:00 UTC
        let w = current(None, start.timestamp_micros(), Length::parse("5 hours").unwrap(), true).unwrap();
        assert_eq!(w.end_us - w.start_us, 5 * H);
        let paris = chrono_tz::Europe::Paris;
        let (open, close) = (Utc.timestamp_micros(w.start_us).unwrap(), Utc.timestamp_micros(w.end_us).unwrap());
        assert_eq!(
            (open.with_timezone(&paris).format("%H:%M").to_string(), close.with_timezone(&paris).format("%H:%M").to_string()),
            ("01:30".to_string(), "07:30".to_string()),
            "six wall-clock hours in Paris, five real ones"
        );
    }
}
