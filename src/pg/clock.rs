//! The quota clock: the transaction's start time, or `quota.clock_override` when set.

use chrono::{DateTime, Utc};
use pgrx::prelude::*;
use std::cell::RefCell;
use std::ffi::{CStr, CString};

use crate::pg::gucs;

/// Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01).
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

thread_local! {
    /// The last override string and its parsed value, so it is parsed once per change.
    static PARSED: RefCell<Option<(CString, i64)>> = const { RefCell::new(None) };
}

/// The moment that picks windows and stamps the ledger, as a PostgreSQL timestamp.
pub fn now_pg() -> pg_sys::TimestampTz {
    match gucs::raw_string(&gucs::CLOCK_OVERRIDE) {
        // SAFETY: reads the backend's transaction start time, a plain global (set at
        // transaction start; every caller runs inside a transaction).
        None => unsafe { pg_sys::GetCurrentTransactionStartTimestamp() },
        Some(text) => PARSED.with(|cache| {
            let mut cache = cache.borrow_mut();
            if let Some((s, v)) = cache.as_ref() {
                if *s == text {
                    return *v;
                }
            }
            // The check hook already accepted this string, so it parses.
            // SAFETY: as above.
            let v = parse_timestamptz(&text).unwrap_or_else(|| unsafe { pg_sys::GetCurrentTransactionStartTimestamp() });
            *cache = Some((text, v));
            v
        }),
    }
}

pub fn now() -> DateTime<Utc> {
    from_pg(now_pg())
}

/// Parse with PostgreSQL's own timestamptz input function; `None` if it refuses.
pub fn parse_timestamptz(text: &CStr) -> Option<pg_sys::TimestampTz> {
    // SAFETY: timestamptz_in gets the arguments of a type input function: a
    // NUL-terminated cstring, a type oid (unused by it) and typmod -1. Its ERRORs (bad
    // input, out of range) are caught and discarded without a subtransaction, which is
    // sound because it takes no locks, buffers or other resources to release: it only
    // pallocs, and pgrx restores the memory context and flushes the error state.
    PgTryBuilder::new(|| unsafe {
        let d = pgrx::direct_function_call::<TimestampWithTimeZone>(
            pg_sys::timestamptz_in,
            &[text.into_datum(), pg_sys::InvalidOid.into_datum(), (-1i32).into_datum()],
        );
        d.filter(|t| t.is_finite()).map(|t| t.into_inner())
    })
    .catch_others(|_| None)
    .execute()
}

/// The instants quota windows can be computed for: years 1 to 9999. The period math
/// (a month or a billing cycle after the last one) needs room that PostgreSQL's last
/// representable years do not leave, so the clock and cycle anchors stay in this range.
pub const FIRST: pg_sys::TimestampTz = -63_082_281_600_000_000; // 0001-01-01 00:00:00+00
pub const LAST: pg_sys::TimestampTz = 252_455_615_999_999_999; // 9999-12-31 23:59:59.999999+00

pub fn in_range(ts: pg_sys::TimestampTz) -> bool {
    (FIRST..=LAST).contains(&ts)
}

pub fn from_pg(ts: pg_sys::TimestampTz) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(ts.saturating_add(PG_EPOCH_OFFSET_US)).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

pub fn to_pg(t: DateTime<Utc>) -> pg_sys::TimestampTz {
    t.timestamp_micros() - PG_EPOCH_OFFSET_US
}

pub fn to_pg_tz(t: DateTime<Utc>) -> TimestampWithTimeZone {
    // Finite instants within chrono's range are always valid timestamptz values.
    TimestampWithTimeZone::try_from(to_pg(t)).unwrap_or_else(|_| TimestampWithTimeZone::positive_infinity())
}

/// Window starts are stored with '-infinity' for lifetime windows.
/// A window_start as stored back: '-infinity' is None.
pub fn window_start(key: TimestampWithTimeZone) -> Option<DateTime<Utc>> {
    (!key.is_neg_infinity()).then(|| from_pg(key.into_inner()))
}

pub fn window_key(start: Option<DateTime<Utc>>) -> TimestampWithTimeZone {
    match start {
        Some(t) => to_pg_tz(t),
        None => TimestampWithTimeZone::negative_infinity(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_bounds_are_the_first_and_last_instants_of_years_1_and_9999() {
        assert_eq!(from_pg(FIRST).to_rfc3339(), "0001-01-01T00:00:00+00:00");
        assert_eq!(from_pg(LAST).format("%Y-%m-%d %H:%M:%S%.6f").to_string(), "9999-12-31 23:59:59.999999");
        assert!(in_range(0) && !in_range(LAST + 1) && !in_range(FIRST - 1));
    }
}
