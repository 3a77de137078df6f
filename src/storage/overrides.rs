//! quota.subject_overrides: a subject's own limits (`domain::overrides`). The table is
//! 0.7.0's: callers check `installed::OVERRIDES` first.

use chrono::{DateTime, Utc};
use pgrx::pg_sys::PgBuiltInOids as T;
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiTupleTable};

use super::{corrupt, needed, run, ts, Stmt};
use crate::domain::error::Result;
use crate::domain::overrides::{Mode, Override};
use crate::domain::period::Period;
use crate::pg::clock;

static OVERRIDES_OF: Stmt = Stmt {
    sql:
        "SELECT metric, period, mode, value, expires_at FROM quota.subject_overrides WHERE subject = $1 AND metric = $2 ORDER BY period COLLATE \"C\"",
    types: &[T::TEXTOID, T::TEXTOID],
};
static ALL_OVERRIDES: Stmt = Stmt {
    sql: "SELECT metric, period, mode, value, expires_at FROM quota.subject_overrides WHERE subject = $1 ORDER BY metric COLLATE \"C\", period COLLATE \"C\"",
    types: &[T::TEXTOID],
};
static UPSERT_OVERRIDE: Stmt = Stmt {
    sql: "INSERT INTO quota.subject_overrides (subject, metric, period, mode, value, expires_at, created_at)
          VALUES ($1, $2, $3, $4, $5, $6, $7)
          ON CONFLICT (subject, metric, period) DO UPDATE SET
              mode = EXCLUDED.mode, value = EXCLUDED.value, expires_at = EXCLUDED.expires_at, created_at = EXCLUDED.created_at",
    types: &[T::TEXTOID, T::TEXTOID, T::TEXTOID, T::TEXTOID, T::INT8OID, T::TIMESTAMPTZOID, T::TIMESTAMPTZOID],
};
static DELETE_OVERRIDE: Stmt = Stmt {
    sql: "DELETE FROM quota.subject_overrides WHERE subject = $1 AND metric = $2 AND ($3::text IS NULL OR period = $3) RETURNING true",
    types: &[T::TEXTOID, T::TEXTOID, T::TEXTOID],
};

fn overrides_from(table: SpiTupleTable<'_>) -> Result<Vec<(String, Override)>> {
    const TABLE: &str = "quota.subject_overrides";
    table
        .map(|row| {
            let period: String = needed(&row, 2, TABLE, "period")?;
            let mode: String = needed(&row, 3, TABLE, "mode")?;
            let o = Override {
                period: period.parse::<Period>().map_err(|_| corrupt(TABLE, "period", &period))?,
                mode: mode.parse::<Mode>().map_err(|_| corrupt(TABLE, "mode", &mode))?,
                value: needed(&row, 4, TABLE, "value")?,
                expires_at: row.get::<TimestampWithTimeZone>(5).ok().flatten().map(|t| clock::from_pg(t.into_inner())),
            };
            Ok((needed(&row, 1, TABLE, "metric")?, o))
        })
        .collect()
}

/// The subject's overrides of the metric, in period order (expired ones too).
pub fn overrides(c: &mut SpiClient<'_>, subject: &str, metric: &str) -> Result<Vec<Override>> {
    Ok(overrides_from(run(c, &OVERRIDES_OF, &[subject.into(), metric.into()]))?.into_iter().map(|(_, o)| o).collect())
}

/// Every override of the subject: (metric, override), by metric and period.
pub fn all_overrides(c: &mut SpiClient<'_>, subject: &str) -> Result<Vec<(String, Override)>> {
    overrides_from(run(c, &ALL_OVERRIDES, &[subject.into()]))
}

pub fn upsert_override(c: &mut SpiClient<'_>, subject: &str, metric: &str, o: &Override, at: DateTime<Utc>) {
    run(
        c,
        &UPSERT_OVERRIDE,
        &[
            subject.into(),
            metric.into(),
            o.period.as_str().into(),
            o.mode.as_str().into(),
            o.value.into(),
            o.expires_at.map(clock::to_pg_tz).into(),
            ts(at),
        ],
    );
}

/// Remove the subject's override of the metric for `period` (all of the metric's for
/// None); whether there was any.
pub fn delete_override(c: &mut SpiClient<'_>, subject: &str, metric: &str, period: Option<&str>) -> bool {
    !run(c, &DELETE_OVERRIDE, &[subject.into(), metric.into(), period.into()]).is_empty()
}
