//! quota.counters: one row per subject, metric, period and window (a day window and a
//! month window that both start on the 1st are two rows). The period's parameter is the
//! last, so that a database before limits v2 (one limit per metric, no `period` column)
//! runs the same statements without it (`schema::expand`).

use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::PgBuiltInOids as T;
use pgrx::spi::{SpiClient, SpiTupleTable};

use super::{run, schema, SpiRow, Stmt};
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
          ON CONFLICT (subject, metric, {v2:period, }window_start) DO NOTHING",
    types: &[T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID, T::TEXTOID, T::TIMESTAMPTZOID],
};
static WRITE_WINDOW: Stmt = Stmt {
    sql: "UPDATE quota.counters SET used = $5, bonus = $6, reserved = $7, alerted = $8
          WHERE subject = $1 AND metric = $2 AND window_start = $3{v2: AND period = $4}",
    types: &[T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID, T::TEXTOID, T::INT8OID, T::INT8OID, T::INT8OID, T::INT4OID],
};

fn usage_from(table: SpiTupleTable<'_>) -> Result<Option<Usage>> {
    table.into_iter().next().map(|row| schema::usage(&SpiRow { row: &row })).transpose()
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

/// The window's usage without locking; zero if the window has no row yet.
pub fn read_window(c: &mut SpiClient<'_>, k: &WindowKey<'_>) -> Result<Usage> {
    Ok(usage_from(run(c, &READ_WINDOW, &key_args(k)))?.unwrap_or_default())
}

/// Lock the window's row (creating it empty if needed) and return its usage. Concurrent
/// callers on the same window queue here; in READ COMMITTED each then sees the latest
/// committed value.
pub fn lock_window(c: &mut SpiClient<'_>, k: &WindowKey<'_>) -> Result<Usage> {
    if let Some(u) = usage_from(run(c, &LOCK_WINDOW, &key_args(k)))? {
        return Ok(u);
    }
    let [s, m, start, p] = key_args(k);
    let end: DatumWithOid = k.window.end.map(clock::to_pg_tz).into();
    run(c, &CREATE_WINDOW, &[s, m, start, p, end]);
    Ok(usage_from(run(c, &LOCK_WINDOW, &key_args(k)))?.expect("window row exists after insert"))
}

pub fn write_window(c: &mut SpiClient<'_>, k: &WindowKey<'_>, u: Usage) {
    let [s, m, start, p] = key_args(k);
    run(c, &WRITE_WINDOW, &[s, m, start, p, u.used.into(), u.bonus.into(), u.reserved.into(), u.alerted.into()]);
}
