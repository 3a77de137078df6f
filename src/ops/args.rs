//! Argument checks shared by the operations (beyond `error`'s pure bounds): names that
//! may already be stored, metadata size, counters that would overflow, item lists.

use pgrx::pg_sys;
use serde_json::Value;

use crate::domain::error::{self, positive_amount, QuotaError, Result};
use crate::domain::limits::{Enforcement, Usage};
use crate::domain::period::Period;
use crate::pg::gucs;
use crate::storage;

/// A name argument within its bound (`error::name`), or one already stored: names
/// stored before the bounds existed keep working.
pub fn known_name<'a>(argument: &'static str, value: &'a str) -> Result<&'a str> {
    match error::name(argument, value) {
        Err(_) if !value.is_empty() && storage::name_is_stored(argument, value) => Ok(value),
        other => other,
    }
}

/// Metadata is stored as given, up to `quota.max_metadata_bytes`.
pub fn metadata_fits(metadata: Option<pg_sys::Datum>) -> Result<()> {
    let Some(datum) = metadata else { return Ok(()) };
    // SAFETY: every caller passes the `metadata` jsonb argument of the SQL call in progress
    // (a RawJsonb), a varlena valid for the call; toast_raw_datum_size reads its header,
    // or its TOAST pointer when it is stored out of line or compressed.
    let size = unsafe { pg_sys::toast_raw_datum_size(datum) };
    let max = gucs::max_metadata_bytes();
    if size > max {
        return Err(QuotaError::invalid(
            "metadata",
            format!("{size} bytes"),
            format!("metadata is {size} bytes, more than quota.max_metadata_bytes ({max})"),
            "Store less in metadata (an id that points to your own record, say), or ask a superuser to raise quota.max_metadata_bytes.",
        ));
    }
    Ok(())
}

pub fn overflow(amount: i64) -> QuotaError {
    QuotaError::invalid("amount", amount, "amount would overflow the counter", "Pass a smaller amount.")
}

/// A request that would push a counter past i64::MAX is an argument error, not a refusal.
pub fn fits_counter(usage: Usage, amount: i64) -> Result<()> {
    usage.used.checked_add(amount).map(|_| ()).ok_or_else(|| overflow(amount))
}

/// Sort by metric (the lock order) and reject bad amounts and duplicate metrics.
pub fn validate_items(items: &mut [(String, i64)]) -> Result<()> {
    if items.is_empty() {
        return Err(QuotaError::invalid(
            "amounts",
            "{}",
            "amounts must name at least one metric",
            "Pass an object such as {\"messages\": 1, \"tokens\": 350}.",
        ));
    }
    for (metric, amount) in items.iter() {
        known_name("metric", metric)?;
        positive_amount("amount", *amount)?;
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(())
}

/// Parse `{"messages": 1, "tokens": 350}` into (metric, amount) pairs.
/// `amounts` is the jsonb's text form; numbers that do not fit an i64 are refused, never
/// rounded.
pub fn parse_amounts(text: &str) -> Result<Vec<(String, i64)>> {
    let bad = |why: &str| {
        QuotaError::invalid(
            "amounts",
            text,
            format!("amounts {why}"),
            "Pass a JSON object of metric to positive integer, such as {\"messages\": 1, \"tokens\": 350}.",
        )
    };
    let amounts: Value = serde_json::from_str(text).map_err(|_| bad("values must be integers"))?;
    let obj = amounts.as_object().ok_or_else(|| bad("must be a JSON object"))?;
    obj.iter().map(|(k, v)| v.as_i64().map(|n| (k.clone(), n)).ok_or_else(|| bad("values must be integers"))).collect()
}

pub fn parse_period(period: &str) -> Result<Period> {
    Period::parse(period).map_err(|why| QuotaError::invalid("period", period, why, format!("Use one of: {}.", Period::NAMES)))
}

/// A calendar or first-use period (rate limits are set with quota.set_rate_limit).
pub fn parse_window(period: &str) -> Result<Period> {
    match parse_period(period)? {
        Period::Rate(_) => Err(QuotaError::invalid(
            "period",
            period,
            format!("\"{}\" is a rate", crate::domain::error::quoted(period)),
            "Set a rate limit with quota.set_rate_limit(plan, metric, count, per, burst).",
        )),
        p => Ok(p),
    }
}

pub fn parse_enforcement(enforcement: &str) -> Result<Enforcement> {
    enforcement.parse().map_err(|_| {
        QuotaError::invalid(
            "enforcement",
            enforcement,
            format!("unknown enforcement \"{enforcement}\""),
            format!("Use one of: {}.", Enforcement::NAMES),
        )
    })
}

/// A timestamp argument as an instant: finite, between the years 1 and 9999 (infinity
/// would otherwise read as "never").
pub fn instant(argument: &'static str, t: pgrx::pg_sys::TimestampTz) -> Result<chrono::DateTime<chrono::Utc>> {
    if !crate::pg::clock::in_range(t) {
        return Err(QuotaError::invalid(
            argument,
            "out of range",
            format!("{argument} must be a finite timestamp between the years 1 and 9999"),
            format!("Pass {argument} as a time such as '2027-01-01 00:00+00', or NULL."),
        ));
    }
    Ok(crate::pg::clock::from_pg(t))
}
