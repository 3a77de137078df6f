//! quota.counters: one row per subject, metric and window.

use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::PgBuiltInOids as T;
use pgrx::spi::{SpiClient, SpiTupleTable};

use super::{run, schema, SpiRow, Stmt};
use crate::domain::error::Result;
use crate::domain::limits::Usage;
use crate::domain::period::Window;
use crate::pg::clock;

static READ_WINDOW: Stmt = Stmt {
    sql: "SELECT {counters} FROM quota.counters WHERE subject = $1 AND metric = $2 AND window_start = $3",
    types: &[T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID],
};
static LOCK_WINDOW: Stmt = Stmt {
    sql: "SELECT {counters} FROM quota.counters WHERE subject = $1 AND metric = $2 AND window_start = $3 FOR UPDATE",
    types: &[T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID],
};
static CREATE_WINDOW: Stmt = Stmt {
    sql: "INSERT INTO quota.counters (subject, metric, window_start, window_end) VALUES ($1, $2, $3, $4)
          ON CONFLICT (subject, metric, window_start) DO NOTHING",
    types: &[T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID, T::TIMESTAMPTZOID],
};
static WRITE_WINDOW: Stmt = Stmt {
    sql: "UPDATE quota.counters SET used = $4, bonus = $5, reserved = $6, alerted = $7
          WHERE subject = $1 AND metric = $2 AND window_start = $3",
    types: &[T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID, T::INT8OID, T::INT8OID, T::INT8OID, T::INT4OID],
};

fn usage_from(table: SpiTupleTable<'_>) -> Result<Option<Usage>> {
    table.into_iter().next().map(|row| schema::usage(&SpiRow { row: &row })).transpose()
}

pub(super) fn key_args<'a>(subject: &'a str, metric: &'a str, w: &Window) -> [DatumWithOid<'a>; 3] {
    [subject.into(), metric.into(), clock::window_key(w.start).into()]
}

/// The window's usage without locking; zero if the window has no row yet.
pub fn read_window(c: &mut SpiClient<'_>, subject: &str, metric: &str, w: &Window) -> Result<Usage> {
    Ok(usage_from(run(c, &READ_WINDOW, &key_args(subject, metric, w)))?.unwrap_or_default())
}

/// Lock the window's row (creating it empty if needed) and return its usage. Concurrent
/// callers on the same window queue here; in READ COMMITTED each then sees the latest
/// committed value.
pub fn lock_window(c: &mut SpiClient<'_>, subject: &str, metric: &str, w: &Window) -> Result<Usage> {
    if let Some(u) = usage_from(run(c, &LOCK_WINDOW, &key_args(subject, metric, w)))? {
        return Ok(u);
    }
    let [s, m, start] = key_args(subject, metric, w);
    let end: DatumWithOid = w.end.map(clock::to_pg_tz).into();
    run(c, &CREATE_WINDOW, &[s, m, start, end]);
    Ok(usage_from(run(c, &LOCK_WINDOW, &key_args(subject, metric, w)))?.expect("window row exists after insert"))
}

pub fn write_window(c: &mut SpiClient<'_>, subject: &str, metric: &str, w: &Window, u: Usage) {
    let [s, m, start] = key_args(subject, metric, w);
    run(c, &WRITE_WINDOW, &[s, m, start, u.used.into(), u.bonus.into(), u.reserved.into(), u.alerted.into()]);
}
