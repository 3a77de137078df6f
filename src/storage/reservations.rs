//! quota.reservations: holds against a metric's limits. A hold lies in every window of
//! the metric: one row per (hold, period), sharing the hold's id, so that each window's
//! lock expires its own rows.

use chrono::{DateTime, Utc};
use pgrx::pg_sys::{self, PgBuiltInOids as T};
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiTupleTable};

use super::windows::{key_args, WindowKey};
use super::{first, needed, run, ts, RawJsonb, Stmt};
use crate::domain::error::Result;
use crate::domain::period::Window;
use crate::pg::clock;

#[derive(Clone, Debug)]
pub struct Reservation {
    /// Whose hold it is (a pool's rows name the member in `via`).
    pub subject: String,
    pub metric: String,
    /// Each row of the hold: the member's windows in period order, then its pools'.
    pub windows: Vec<HoldWindow>,
    pub amount: i64,
    pub status: String,
    pub response: Option<String>,
}

/// One row of a hold: whose window (the member's, or one of its pools', 0.8.0), its period
/// ('' before limits v2) and the window.
#[derive(Clone, Debug)]
pub struct HoldWindow {
    pub subject: String,
    pub period: String,
    pub window: Window,
}

static INSERT_RESERVATION: Stmt = Stmt {
    sql: "INSERT INTO quota.reservations (id, subject, metric, window_start, window_end, amount, expires_at, idempotency_key, metadata, created_at{v2:, period}{v3:, via})
          VALUES (coalesce($10, gen_random_uuid()), $1, $2, $3, $4, $5, $7 + $6, $8, $9, $7{v2:, $11}{v3:, $12})
          RETURNING id, expires_at",
    types: &[
        T::TEXTOID,
        T::TEXTOID,
        T::TIMESTAMPTZOID,
        T::TIMESTAMPTZOID,
        T::INT8OID,
        T::INTERVALOID,
        T::TIMESTAMPTZOID,
        T::TEXTOID,
        T::JSONBOID,
        T::UUIDOID,
        T::TEXTOID,
        T::TEXTOID,
    ],
};
static FIND_RESERVATION: Stmt = Stmt {
    sql: "SELECT id, subject, metric, window_start, window_end, amount, status, response::text, {v2:period}{v1:NULL::text},
                 {v3:via}{pre3:NULL::text}
          FROM quota.reservations WHERE id = $1 ORDER BY {v3:via NULLS FIRST, subject COLLATE \"C\", }{v2:period COLLATE \"C\"}{v1:id}",
    types: &[T::UUIDOID],
};
static LOCK_RESERVATION: Stmt = Stmt {
    sql: "SELECT id, subject, metric, window_start, window_end, amount, status, response::text, {v2:period}{v1:NULL::text},
                 {v3:via}{pre3:NULL::text}
          FROM quota.reservations WHERE id = $1 ORDER BY {v3:via NULLS FIRST, subject COLLATE \"C\", }{v2:period COLLATE \"C\"}{v1:id} FOR UPDATE",
    types: &[T::UUIDOID],
};
static SETTLE_RESERVATION: Stmt = Stmt {
    sql: "UPDATE quota.reservations SET status = $2, actual_amount = $3, response = $4::jsonb, settled_at = $5 WHERE id = $1",
    types: &[T::UUIDOID, T::TEXTOID, T::INT8OID, T::TEXTOID, T::TIMESTAMPTZOID],
};
static EXPIRE_HELD: Stmt = Stmt {
    sql: "UPDATE quota.reservations SET status = 'expired', settled_at = $5
          WHERE subject = $1 AND metric = $2 AND window_start = $3{v2: AND period = $6} AND status = 'held' AND expires_at <= $4
          RETURNING id, amount",
    types: &[T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID, T::TIMESTAMPTZOID, T::TIMESTAMPTZOID, T::TEXTOID],
};
static EXPIRED_HELD: Stmt = Stmt {
    sql: "SELECT coalesce(sum(amount), 0)::int8 FROM quota.reservations
          WHERE subject = $1 AND metric = $2 AND window_start = $3{v2: AND period = $5} AND status = 'held' AND expires_at <= $4",
    types: &[T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID, T::TIMESTAMPTZOID, T::TEXTOID],
};
static LAPSED_WINDOWS: Stmt = Stmt {
    // Byte order (COLLATE "C"), as every path locks: maintenance keeps its locks to the end.
    sql: "SELECT DISTINCT subject, metric COLLATE \"C\" AS metric, window_start, window_end,
                 {v2:period COLLATE \"C\" AS period}{v1:NULL::text AS period} FROM quota.reservations
          WHERE status = 'held' AND expires_at <= $1 ORDER BY subject, metric, period, window_start LIMIT $2 OFFSET $3",
    types: &[T::TIMESTAMPTZOID, T::INT8OID, T::INT8OID],
};

pub struct NewReservation<'a> {
    pub key: WindowKey<'a>,
    /// At a pool's level, the member whose hold it is.
    pub via: Option<&'a str>,
    /// The hold's id when this is a further window of it.
    pub id: Option<pgrx::Uuid>,
    pub amount: i64,
    pub ttl: pgrx::datum::Interval,
    pub idempotency_key: Option<&'a str>,
    pub metadata: Option<pg_sys::Datum>,
    pub at: DateTime<Utc>,
}

/// Record a hold; returns its id and expiry.
pub fn insert_reservation(c: &mut SpiClient<'_>, r: &NewReservation<'_>) -> (pgrx::Uuid, DateTime<Utc>) {
    let t = run(
        c,
        &INSERT_RESERVATION,
        &[
            r.key.subject.into(),
            r.key.metric.into(),
            clock::window_key(r.key.window.start).into(),
            r.key.window.end.map(clock::to_pg_tz).into(),
            r.amount.into(),
            r.ttl.into(),
            ts(r.at),
            r.idempotency_key.into(),
            r.metadata.map(RawJsonb).into(),
            r.id.into(),
            r.key.period.into(),
            r.via.into(),
        ],
    );
    let row = t.first();
    let id = row.get::<pgrx::Uuid>(1).ok().flatten().expect("RETURNING id");
    let expires = row.get::<TimestampWithTimeZone>(2).ok().flatten().expect("RETURNING expires_at");
    (id, clock::from_pg(expires.into_inner()))
}

fn window_of(start: TimestampWithTimeZone, end: Option<TimestampWithTimeZone>) -> Window {
    Window {
        start: if start.is_neg_infinity() { None } else { Some(clock::from_pg(start.into_inner())) },
        end: end.map(|t| clock::from_pg(t.into_inner())),
    }
}

/// The hold's rows, one per window (an older database's hold has one, with no period).
fn reservation_from(table: SpiTupleTable<'_>) -> Result<Option<Reservation>> {
    const T: &str = "quota.reservations";
    let mut found: Option<Reservation> = None;
    for row in table {
        let window = window_of(needed(&row, 4, T, "window_start")?, row.get::<TimestampWithTimeZone>(5).ok().flatten());
        let period: String = row.get(9).ok().flatten().unwrap_or_default();
        let subject: String = needed(&row, 2, T, "subject")?;
        let via: Option<String> = row.get(10).ok().flatten();
        let hold = HoldWindow { subject: subject.clone(), period, window };
        match &mut found {
            Some(r) => r.windows.push(hold),
            None => {
                found = Some(Reservation {
                    // Rows are in member-first order: a pool's row names the member.
                    subject: via.unwrap_or(subject),
                    metric: needed(&row, 3, T, "metric")?,
                    windows: vec![hold],
                    amount: needed(&row, 6, T, "amount")?,
                    status: needed(&row, 7, T, "status")?,
                    response: row.get(8).ok().flatten(),
                })
            }
        }
    }
    Ok(found)
}

pub fn find_reservation(c: &mut SpiClient<'_>, id: pgrx::Uuid) -> Result<Option<Reservation>> {
    reservation_from(run(c, &FIND_RESERVATION, &[id.into()]))
}

pub fn lock_reservation(c: &mut SpiClient<'_>, id: pgrx::Uuid) -> Result<Option<Reservation>> {
    reservation_from(run(c, &LOCK_RESERVATION, &[id.into()]))
}

pub fn settle_reservation(c: &mut SpiClient<'_>, id: pgrx::Uuid, status: &str, actual: Option<i64>, response: Option<&str>, at: DateTime<Utc>) {
    run(c, &SETTLE_RESERVATION, &[id.into(), status.into(), actual.into(), response.into(), ts(at)]);
}

/// Mark the window's lapsed holds expired (the caller holds the window lock); returns
/// (id, amount) of each.
pub fn expire_held(c: &mut SpiClient<'_>, k: &WindowKey<'_>, now: DateTime<Utc>) -> Vec<(pgrx::Uuid, i64)> {
    let [s, m, start, p] = key_args(k);
    run(c, &EXPIRE_HELD, &[s, m, start, ts(now), ts(now), p])
        .filter_map(|row| Some((row.get::<pgrx::Uuid>(1).ok().flatten()?, row.get::<i64>(2).ok().flatten()?)))
        .collect()
}

/// How much of the window's `reserved` has lapsed but is not yet marked (read-only paths).
pub fn expired_held(c: &mut SpiClient<'_>, k: &WindowKey<'_>, now: DateTime<Utc>) -> i64 {
    let [s, m, start, p] = key_args(k);
    first::<i64>(run(c, &EXPIRED_HELD, &[s, m, start, ts(now), p]), 1).unwrap_or(0)
}

/// Windows with lapsed holds, at most `limit` of them after skipping `skip` (those a
/// sweep failed on).
pub fn lapsed_windows(c: &mut SpiClient<'_>, now: DateTime<Utc>, limit: i64, skip: i64) -> Vec<Lapsed> {
    run(c, &LAPSED_WINDOWS, &[ts(now), limit.into(), skip.into()])
        .filter_map(|row| {
            let window = window_of(row.get::<TimestampWithTimeZone>(3).ok().flatten()?, row.get::<TimestampWithTimeZone>(4).ok().flatten());
            Some(Lapsed { subject: row.get(1).ok().flatten()?, metric: row.get(2).ok().flatten()?, period: row.get(5).ok().flatten(), window })
        })
        .collect()
}

/// A window with lapsed holds; `period` is None on a database before limits v2.
pub struct Lapsed {
    pub subject: String,
    pub metric: String,
    pub period: Option<String>,
    pub window: Window,
}
