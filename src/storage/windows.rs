//! quota.counters: one row per subject, metric, period and window (a day window and a
//! month window that both start on the 1st are two rows). The period's parameter is the
//! last, so that a database before limits v2 (one limit per metric, no `period` column)
//! runs the same statements without it (`schema::expand`).

use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::PgBuiltInOids as T;
use pgrx::spi::{SpiClient, SpiTupleTable};

use super::{run, schema, SpiRow, Stmt};
use chrono::{DateTime, Utc};
use pgrx::datum::TimestampWithTimeZone;

use crate::domain::error::Result;
use crate::domain::limits::Usage;
use crate::domain::period::Window;
use crate::pg::clock;

static READ_WINDOW: Stmt = Stmt {
    sql: "SELECT {counters} FROM quota.counters WHERE subject = $1 AND metric = $2 AND window_start = $3{v2: AND period = $4}",
    types: &[T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID, T::TEXTOID],
};
static LOCK_WINDOW: Stmt = Stmt {
    sql: "SELECT {counters} FROM quota.counters WHERE subject = $1 AND metric = $2 AND window_start = $3{v2: AND period = $4} FOR UPDATE",
    types: &[T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID, T::TEXTOID],
};
static CREATE_WINDOW: Stmt = Stmt {
    sql: "INSERT INTO quota.counters (subject, metric, window_start, window_end{v2:, period}) VALUES ($1, $2, $3, $5{v2:, $4})
          ON CONFLICT (subject, metric, {v2:period, }window_start) DO NOTHING RETURNING true",
    types: &[T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID, T::TEXTOID, T::TIMESTAMPTZOID],
};
// $9: a new window_end (a rate limit's theoretical arrival time), NULL to keep it.
static WRITE_WINDOW: Stmt = Stmt {
    sql: "UPDATE quota.counters SET used = $5, bonus = $6, reserved = $7, alerted = $8, window_end = coalesce($9, window_end)
          WHERE subject = $1 AND metric = $2 AND window_start = $3{v2: AND period = $4}",
    types: &[T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID, T::TEXTOID, T::INT8OID, T::INT8OID, T::INT8OID, T::INT4OID, T::TIMESTAMPTZOID],
};
/// The latest window of a first-use limit (its key and its close).
static LAST_WINDOW: Stmt = Stmt {
    sql: "SELECT window_start, window_end FROM quota.counters WHERE subject = $1 AND metric = $2 AND period = $3
          ORDER BY window_start DESC LIMIT 1",
    types: &[T::TEXTOID, T::TEXTOID, T::TEXTOID],
};
/// A first-use window opened by a call that was then refused (nothing in it yet).
static DISCARD_WINDOW: Stmt = Stmt {
    sql: "DELETE FROM quota.counters WHERE subject = $1 AND metric = $2 AND window_start = $3 AND period = $4
          AND used = 0 AND reserved = 0 AND bonus = 0",
    types: &[T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID, T::TEXTOID],
};

/// A row's usage and its window_end.
fn usage_from(table: SpiTupleTable<'_>) -> Result<Option<(Usage, Option<DateTime<Utc>>)>> {
    table
        .into_iter()
        .next()
        .map(|row| {
            let r = SpiRow { row: &row };
            Ok((schema::usage(&r)?, schema::window_end(&r)))
        })
        .transpose()
}

fn from_pg_tz(t: TimestampWithTimeZone) -> DateTime<Utc> {
    clock::from_pg(t.into_inner())
}

/// A window row's key: which subject, metric, window and period (the limit's).
#[derive(Clone, Copy)]
pub struct WindowKey<'a> {
    pub subject: &'a str,
    pub metric: &'a str,
    pub period: &'a str,
    pub window: &'a Window,
}

pub(super) fn key_args<'a>(k: &WindowKey<'a>) -> [DatumWithOid<'a>; 4] {
    [k.subject.into(), k.metric.into(), clock::window_key(k.window.start).into(), k.period.into()]
}

/// The window's usage and window_end without locking; zero and None if the window has no
/// row yet.
pub fn read_window(c: &mut SpiClient<'_>, k: &WindowKey<'_>) -> Result<(Usage, Option<DateTime<Utc>>)> {
    Ok(usage_from(run(c, &READ_WINDOW, &key_args(k)))?.unwrap_or_default())
}

/// Lock the window's row (creating it empty, with `end` as its window_end, if needed) and
/// return its usage, its window_end, and whether this call created it. Concurrent callers
/// on the same window queue here; in READ COMMITTED each then sees the latest committed
/// value.
pub fn lock_window(c: &mut SpiClient<'_>, k: &WindowKey<'_>) -> Result<(Usage, Option<DateTime<Utc>>, bool)> {
    if let Some((u, end)) = usage_from(run(c, &LOCK_WINDOW, &key_args(k)))? {
        return Ok((u, end, false));
    }
    let [s, m, start, p] = key_args(k);
    let end: DatumWithOid = k.window.end.map(clock::to_pg_tz).into();
    let created = !run(c, &CREATE_WINDOW, &[s, m, start, p, end]).is_empty();
    let (u, end) = usage_from(run(c, &LOCK_WINDOW, &key_args(k)))?.expect("window row exists after insert");
    Ok((u, end, created))
}

/// Create the window's row if it does not exist, without locking a row that does (an
/// insert racing another waits for it, as any insert of a key does).
pub fn ensure_window(c: &mut SpiClient<'_>, k: &WindowKey<'_>) {
    let [s, m, start, p] = key_args(k);
    let end: DatumWithOid = k.window.end.map(clock::to_pg_tz).into();
    run(c, &CREATE_WINDOW, &[s, m, start, p, end]);
}

/// Write the window's usage; `end` replaces its window_end (a rate limit's new state).
pub fn write_window(c: &mut SpiClient<'_>, k: &WindowKey<'_>, u: Usage, end: Option<DateTime<Utc>>) {
    let [s, m, start, p] = key_args(k);
    run(c, &WRITE_WINDOW, &[s, m, start, p, u.used.into(), u.bonus.into(), u.reserved.into(), u.alerted.into(), end.map(clock::to_pg_tz).into()]);
}

/// The latest window of a first-use limit: (its key's start, its close), if any.
pub fn last_window(c: &mut SpiClient<'_>, subject: &str, metric: &str, period: &str) -> Option<(TimestampWithTimeZone, Option<DateTime<Utc>>)> {
    let row = run(c, &LAST_WINDOW, &[subject.into(), metric.into(), period.into()]).next()?;
    Some((row.get::<TimestampWithTimeZone>(1).ok().flatten()?, row.get::<TimestampWithTimeZone>(2).ok().flatten().map(from_pg_tz)))
}

/// Delete a first-use window this call opened and a refusal leaves empty.
pub fn discard_window(c: &mut SpiClient<'_>, k: &WindowKey<'_>) {
    run(c, &DISCARD_WINDOW, &key_args(k));
}

/// Every window row of the subject that contains `at` (a scheduled change's instant),
/// locked in (metric, period) order: (metric, period, window).
static WINDOWS_AT: Stmt = Stmt {
    sql: "SELECT metric, {v2:period}{v1:NULL::text}, window_start, window_end FROM quota.counters
          WHERE subject = $1 AND window_start <= $2 AND (window_end IS NULL OR window_end > $2)
          ORDER BY metric COLLATE \"C\", {v2:period COLLATE \"C\", }window_start FOR UPDATE",
    types: &[T::TEXTOID, T::TIMESTAMPTZOID],
};

pub fn windows_at(c: &mut SpiClient<'_>, subject: &str, at: DateTime<Utc>) -> Vec<(String, String, Window)> {
    run(c, &WINDOWS_AT, &[subject.into(), clock::to_pg_tz(at).into()])
        .filter_map(|row| {
            let start = row.get::<TimestampWithTimeZone>(3).ok().flatten()?;
            let window = Window { start: clock::window_start(start), end: row.get::<TimestampWithTimeZone>(4).ok().flatten().map(from_pg_tz) };
            Some((row.get(1).ok().flatten()?, row.get::<String>(2).ok().flatten().unwrap_or_default(), window))
        })
        .collect()
}
