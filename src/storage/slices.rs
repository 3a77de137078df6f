//! quota.pool_slices: a pool window's allowance handed out in slices (0.8.0, see
//! `sql/pools.sql` and docs/pools.md). A slice's `granted` is counted in the pool
//! counter's `reserved`; its `used` is usage the pool counted. The operations
//! (`ops::pool`) decide the lock order: a draw, refill or gather takes slices before the
//! pool's counter row.

use pgrx::pg_sys::PgBuiltInOids as T;
use pgrx::spi::SpiClient;

use super::windows::{key_args, WindowKey};
use super::{run, Stmt};
use crate::domain::limits::Usage;

/// Draw `$5` from slice `$6` if it holds that much (a slice that does not is left unlocked).
static DRAW: Stmt = Stmt {
    sql: "UPDATE quota.pool_slices SET used = used + $5
          WHERE subject = $1 AND metric = $2 AND window_start = $3 AND period = $4 AND slice = $6 AND used + $5 <= granted
          RETURNING used",
    types: &[T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID, T::TEXTOID, T::INT8OID, T::INT4OID],
};
/// Give back a draw of `$5` from slice `$6` (an answered refusal of another window).
static UNDRAW: Stmt = Stmt {
    sql: "UPDATE quota.pool_slices SET used = used - $5
          WHERE subject = $1 AND metric = $2 AND window_start = $3 AND period = $4 AND slice = $6",
    types: &[T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID, T::TEXTOID, T::INT8OID, T::INT4OID],
};
/// Grant slice `$6` `$7` more and draw `$5` from it (the pool's counter row is locked).
static REFILL: Stmt = Stmt {
    sql: "INSERT INTO quota.pool_slices AS s (subject, metric, window_start, period, slice, granted, used)
          VALUES ($1, $2, $3, $4, $6, $7, $5)
          ON CONFLICT (subject, metric, period, window_start, slice)
          DO UPDATE SET granted = s.granted + EXCLUDED.granted, used = s.used + EXCLUDED.used",
    types: &[T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID, T::TEXTOID, T::INT8OID, T::INT4OID, T::INT8OID],
};
/// Lock slice `$5` of the window (creating it empty), before the pool's counter row.
static LOCK_SLICE: Stmt = Stmt {
    sql: "INSERT INTO quota.pool_slices AS s (subject, metric, window_start, period, slice, granted, used)
          VALUES ($1, $2, $3, $4, $5, 0, 0)
          ON CONFLICT (subject, metric, period, window_start, slice) DO UPDATE SET used = s.used",
    types: &[T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID, T::TEXTOID, T::INT4OID],
};
/// Empty every slice of the window (waiting for the transactions drawing from them):
/// what they held, (sum of used, sum of granted).
static GATHER: Stmt = Stmt {
    sql: "WITH emptied AS (
              UPDATE quota.pool_slices n SET granted = 0, used = 0
              FROM (SELECT slice, granted, used FROM quota.pool_slices
                    WHERE subject = $1 AND metric = $2 AND window_start = $3 AND period = $4 AND granted > 0
                    ORDER BY slice FOR UPDATE) o
              WHERE n.subject = $1 AND n.metric = $2 AND n.window_start = $3 AND n.period = $4 AND n.slice = o.slice
              RETURNING o.granted, o.used)
          SELECT coalesce(sum(used), 0)::int8, coalesce(sum(granted), 0)::int8 FROM emptied",
    types: &[T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID, T::TEXTOID],
};
/// What the window's slices hold: (sum of used, sum of granted).
static HELD: Stmt = Stmt {
    sql: "SELECT coalesce(sum(used), 0)::int8, coalesce(sum(granted), 0)::int8 FROM quota.pool_slices
          WHERE subject = $1 AND metric = $2 AND window_start = $3 AND period = $4",
    types: &[T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID, T::TEXTOID],
};

/// The window's counter row and what its slices hold, in one read (one snapshot).
static COUNTED: Stmt = Stmt {
    sql: "SELECT c.used, c.bonus, c.reserved, c.alerted,
                 (SELECT coalesce(sum(s.used), 0)::int8 FROM quota.pool_slices s
                  WHERE s.subject = c.subject AND s.metric = c.metric AND s.period = c.period AND s.window_start = c.window_start),
                 (SELECT coalesce(sum(s.granted), 0)::int8 FROM quota.pool_slices s
                  WHERE s.subject = c.subject AND s.metric = c.metric AND s.period = c.period AND s.window_start = c.window_start)
          FROM quota.counters c WHERE c.subject = $1 AND c.metric = $2 AND c.window_start = $3 AND c.period = $4",
    types: &[T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID, T::TEXTOID],
};

/// What a window's slices hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held {
    pub used: i64,
    pub granted: i64,
}

fn held_of(table: pgrx::spi::SpiTupleTable<'_>) -> Held {
    let Some(row) = table.into_iter().next() else { return Held::default() };
    Held { used: row.get::<i64>(1).ok().flatten().unwrap_or(0), granted: row.get::<i64>(2).ok().flatten().unwrap_or(0) }
}

/// Draw `amount` from `slice` if it holds that much.
pub fn draw(c: &mut SpiClient<'_>, k: &WindowKey<'_>, slice: i32, amount: i64) -> bool {
    let [s, m, start, p] = key_args(k);
    !run(c, &DRAW, &[s, m, start, p, amount.into(), slice.into()]).is_empty()
}

/// Give back a draw of `amount` from `slice`.
pub fn undraw(c: &mut SpiClient<'_>, k: &WindowKey<'_>, slice: i32, amount: i64) {
    let [s, m, start, p] = key_args(k);
    run(c, &UNDRAW, &[s, m, start, p, amount.into(), slice.into()]);
}

/// Grant `slice` `grant` more from the pool and draw `amount` from it.
pub fn refill(c: &mut SpiClient<'_>, k: &WindowKey<'_>, slice: i32, grant: i64, amount: i64) {
    let [s, m, start, p] = key_args(k);
    run(c, &REFILL, &[s, m, start, p, amount.into(), slice.into(), grant.into()]);
}

/// Lock `slice` (creating it empty; the window's counter row exists).
pub fn lock_slice(c: &mut SpiClient<'_>, k: &WindowKey<'_>, slice: i32) {
    let [s, m, start, p] = key_args(k);
    run(c, &LOCK_SLICE, &[s, m, start, p, slice.into()]);
}

/// Empty every slice of the window, in slice order; what they held.
pub fn gather(c: &mut SpiClient<'_>, k: &WindowKey<'_>) -> Held {
    held_of(run(c, &GATHER, &key_args(k)))
}

/// The window's counter usage and what its slices hold, read at once (None: no row).
pub fn counted(c: &mut SpiClient<'_>, k: &WindowKey<'_>) -> Option<(Usage, Held)> {
    let row = run(c, &COUNTED, &key_args(k)).next()?;
    let n = |i: usize| row.get::<i64>(i).ok().flatten().unwrap_or(0);
    let alerted = row.get::<i32>(4).ok().flatten().unwrap_or(0);
    Some((Usage { used: n(1), bonus: n(2), reserved: n(3), alerted }, Held { used: n(5), granted: n(6) }))
}

/// What the window's slices hold, without locking.
pub fn held(c: &mut SpiClient<'_>, k: &WindowKey<'_>) -> Held {
    held_of(run(c, &HELD, &key_args(k)))
}
