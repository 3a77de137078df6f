//! The contract between the two write paths: one description of each state table that
//! both read and write (column names, types and key order), and one decoder and encoder
//! per row.
//!
//! - The general path's statements (`storage`) name their columns through
//!   `{subjects}`-style placeholders that `expand` fills from these descriptions, so they
//!   select exactly these columns in this order.
//! - The hot path (`hotpath::tables`) resolves each described column to its attribute
//!   number, checks its type and the primary key's column order, and steps aside if any
//!   differs.
//! - Both decode rows with the functions below (`subject`, `limit`, `usage`) and build
//!   ledger rows with `LedgerRow::values`. A stored value that does not decode is
//!   `QuotaError::Corrupt` (XX001) on both paths, never a default.

use chrono_tz::Tz;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::{FromDatum, IntoDatum};

use crate::domain::error::{QuotaError, Result};
use crate::domain::limits::{Enforcement, Limit, Source, Usage};
use crate::domain::period::{self, Period};
use crate::domain::schedule::Carry;
use crate::pg::installed::{self, LIMITS_V2, POOLS};

/// One column: its name and type, and the version that added it (a database created
/// before has no such column: `expand` leaves it out there, see `Version`).
pub struct Column {
    pub name: &'static std::ffi::CStr,
    pub type_oid: Oid,
    pub since: installed::Version,
}

/// One state table of schema quota.
pub struct StateTable {
    pub name: &'static std::ffi::CStr,
    /// Every column either path reads or writes; the primary key's columns first, in
    /// the key's order.
    pub columns: &'static [Column],
    /// How many leading columns form the primary key (0: the key is not used to find rows).
    pub key: usize,
    /// How many leading columns the table fills itself on the general path (an identity).
    pub generated: usize,
}

const fn col(name: &'static std::ffi::CStr, type_oid: Oid) -> Column {
    Column { name, type_oid, since: (0, 1, 0) }
}

/// A column that `since` added.
const fn added(since: installed::Version, name: &'static std::ffi::CStr, type_oid: Oid) -> Column {
    Column { name, type_oid, since }
}

const TEXT: Oid = pg_sys::TEXTOID;
const INT8: Oid = pg_sys::INT8OID;
const INT4: Oid = pg_sys::INT4OID;
const TSTZ: Oid = pg_sys::TIMESTAMPTZOID;
const JSONB: Oid = pg_sys::JSONBOID;
const INT4ARRAY: Oid = pg_sys::INT4ARRAYOID;

pub static SUBJECTS: StateTable = StateTable {
    name: c"subjects",
    columns: &[
        col(c"subject", TEXT),
        col(c"plan", TEXT),
        col(c"tenant", TEXT),
        col(c"cycle_anchor", TSTZ),
        col(c"time_zone", TEXT),
        added(LIMITS_V2, c"next_plan", TEXT),
        added(LIMITS_V2, c"next_plan_at", TSTZ),
        added(LIMITS_V2, c"carry", TEXT),
        // The pool the subject draws from too (0.8.0).
        added(POOLS, c"pool", TEXT),
    ],
    key: 1,
    generated: 0,
};
/// Column positions of `SUBJECTS`.
pub mod subjects {
    pub const PLAN: usize = 1;
    pub const TENANT: usize = 2;
    pub const CYCLE_ANCHOR: usize = 3;
    pub const TIME_ZONE: usize = 4;
    pub const NEXT_PLAN: usize = 5;
    pub const NEXT_PLAN_AT: usize = 6;
    pub const CARRY: usize = 7;
    pub const POOL: usize = 8;
}

pub static PLAN_LIMITS: StateTable = StateTable {
    name: c"plan_limits",
    columns: &[
        col(c"plan", TEXT),
        col(c"metric", TEXT),
        col(c"period", TEXT),
        col(c"limit_value", INT8),
        col(c"enforcement", TEXT),
        col(c"per_request_max", INT8),
        col(c"alert_thresholds", INT4ARRAY),
        added(LIMITS_V2, c"burst", INT8),
    ],
    key: 3,
    generated: 0,
};
/// Column positions of `PLAN_LIMITS`.
pub mod plan_limits {
    pub const METRIC: usize = 1;
    pub const PERIOD: usize = 2;
    pub const LIMIT_VALUE: usize = 3;
    pub const ENFORCEMENT: usize = 4;
    pub const PER_REQUEST_MAX: usize = 5;
    pub const ALERT_THRESHOLDS: usize = 6;
    pub const BURST: usize = 7;
}

pub static COUNTERS: StateTable = StateTable {
    name: c"counters",
    columns: &[
        col(c"subject", TEXT),
        col(c"metric", TEXT),
        added(LIMITS_V2, c"period", TEXT),
        col(c"window_start", TSTZ),
        col(c"used", INT8),
        col(c"bonus", INT8),
        col(c"reserved", INT8),
        col(c"alerted", INT4),
        // A window's close; a rate limit's theoretical arrival time (its state).
        col(c"window_end", TSTZ),
    ],
    key: 4,
    generated: 0,
};
/// Column positions of `COUNTERS`.
pub mod counters {
    pub const USED: usize = 4;
    pub const BONUS: usize = 5;
    pub const RESERVED: usize = 6;
    pub const ALERTED: usize = 7;
    pub const WINDOW_END: usize = 8;
}

/// The ledger. Any column not described here must be nullable without a default (the
/// hot path leaves it NULL, as the general path's INSERT does).
pub static USAGE_EVENTS: StateTable = StateTable {
    name: c"usage_events",
    columns: &[
        col(c"id", INT8),
        col(c"subject", TEXT),
        col(c"tenant", TEXT),
        col(c"metric", TEXT),
        added(LIMITS_V2, c"period", TEXT),
        col(c"window_start", TSTZ),
        col(c"kind", TEXT),
        col(c"amount", INT8),
        col(c"overage", INT8),
        col(c"idempotency_key", TEXT),
        col(c"metadata", JSONB),
        col(c"created_at", TSTZ),
        // At a pool's level: the pool's member the call came through (0.8.0).
        added(POOLS, c"via", TEXT),
    ],
    key: 0,
    generated: 1,
};
/// Column position of the ledger's identity.
pub const LEDGER_ID: usize = 0;

/// Subjects' own limits (0.7.0). The hot path only asks whether a subject has any for a
/// metric (and then steps aside); the general path reads them (`storage::overrides`).
pub static SUBJECT_OVERRIDES: StateTable =
    StateTable { name: c"subject_overrides", columns: &[col(c"subject", TEXT), col(c"metric", TEXT), col(c"period", TEXT)], key: 3, generated: 0 };

/// A pool window's slices (0.8.0): the hot path draws from one (`hotpath::pools`), the
/// general path refills and gathers them (`storage::slices`).
pub static POOL_SLICES: StateTable = StateTable {
    name: c"pool_slices",
    columns: &[
        added(POOLS, c"subject", TEXT),
        added(POOLS, c"metric", TEXT),
        added(POOLS, c"period", TEXT),
        added(POOLS, c"window_start", TSTZ),
        added(POOLS, c"slice", INT4),
        added(POOLS, c"granted", INT8),
        added(POOLS, c"used", INT8),
    ],
    key: 5,
    generated: 0,
};
/// Column positions of `POOL_SLICES`.
pub mod pool_slices {
    pub const SLICE: usize = 4;
    pub const GRANTED: usize = 5;
    pub const USED: usize = 6;
}

pub static TABLES: [&StateTable; 4] = [&SUBJECTS, &PLAN_LIMITS, &COUNTERS, &USAGE_EVENTS];

impl StateTable {
    pub fn name(&self) -> &'static str {
        self.name.to_str().expect("table names are ASCII")
    }

    /// `quota.<name>`, as errors and logs name it.
    pub fn qualified(&self) -> String {
        format!("quota.{}", self.name())
    }

    /// The columns from `from` on that a database at version `at` has.
    fn present(&self, from: usize, at: installed::Version) -> impl Iterator<Item = (usize, &Column)> {
        self.columns.iter().enumerate().skip(from).filter(move |(_, c)| c.since <= at)
    }
}

fn name_of(c: &Column) -> &'static str {
    c.name.to_str().expect("column names are ASCII")
}

/// Fill a statement's placeholders, for a database whose SQL objects are at version `at`
/// (the installed version; `v2` below: from `installed::LIMITS_V2` on):
/// - `{subjects}`: every described column of the table, in order, for a SELECT list; on
///   an older database a column it lacks reads as a NULL of its type, so positions hold;
/// - `{usage_events:insert}`: the columns an INSERT gives (without the generated ones and
///   those the database lacks), and `{usage_events:values}`: their parameters (`$1, ...`,
///   numbered over every given column, so a lacking column's parameter goes unused);
/// - `{v2:TEXT}` is TEXT on a v2 database and nothing on an older one, `{v1:TEXT}` the
///   reverse; `{v3:TEXT}` and `{pre3:TEXT}` the same for pools; `{v4:TEXT}` is TEXT from
///   tenant pauses on (`installed::PAUSES`) (TEXT holds no brace).
pub fn expand(sql: &str, at: installed::Version) -> String {
    let mut out = versioned(sql, at);
    for t in TABLES {
        let name = t.name();
        let insert = t.present(t.generated, at).map(|(_, c)| name_of(c)).collect::<Vec<_>>().join(", ");
        let values = t.present(t.generated, at).map(|(i, _)| format!("${}", i + 1 - t.generated)).collect::<Vec<_>>().join(", ");
        let select = t
            .columns
            .iter()
            .map(|c| if c.since <= at { name_of(c).to_string() } else { format!("NULL::{} AS {}", type_name(c.type_oid), name_of(c)) })
            .collect::<Vec<_>>()
            .join(", ");
        out = out
            .replace(&format!("{{{name}:insert}}"), &insert)
            .replace(&format!("{{{name}:values}}"), &values)
            .replace(&format!("{{{name}}}"), &select);
    }
    out
}

fn type_name(oid: Oid) -> &'static str {
    match oid {
        TEXT => "text",
        INT8 => "bigint",
        INT4 => "integer",
        TSTZ => "timestamptz",
        JSONB => "jsonb",
        _ => "integer[]",
    }
}

/// Keep the version sections that hold for a database at `at`, drop the others:
/// `{v2:...}` from limits v2 on, `{v1:...}` before it; `{v3:...}` from pools on,
/// `{pre3:...}` before them.
fn versioned(sql: &str, at: installed::Version) -> String {
    const SECTIONS: [&str; 5] = ["{v1:", "{v2:", "{v3:", "{v4:", "{pre3:"];
    let keep = |tag: &str| match tag {
        "{v1:" => at < LIMITS_V2,
        "{v2:" => at >= LIMITS_V2,
        "{v3:" => at >= POOLS,
        "{v4:" => at >= installed::PAUSES,
        _ => at < POOLS,
    };
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at_brace) = rest.find('{') {
        let tail = &rest[at_brace..];
        let Some(tag) = SECTIONS.iter().find(|t| tail.starts_with(**t)) else {
            out.push_str(&rest[..at_brace + 1]);
            rest = &rest[at_brace + 1..];
            continue;
        };
        let body = &tail[tag.len()..];
        let end = body.find('}').expect("a version section is closed");
        out.push_str(&rest[..at_brace]);
        if keep(tag) {
            out.push_str(&body[..end]);
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A row of a described table, as either path holds it (an SPI result row, or a heap
/// tuple with the table's resolved attribute numbers). `col` is a position in the
/// table's description.
pub trait Row {
    fn get<T: FromDatum + IntoDatum>(&self, col: usize) -> Option<T>;
}

/// A subject's row (everything but its id).
#[derive(Clone, Debug, PartialEq)]
pub struct SubjectRow {
    pub plan: String,
    pub tenant: Option<String>,
    /// The cycle anchor, in PostgreSQL's microseconds since 2000-01-01.
    pub anchor: i64,
    pub tz: Tz,
    /// A scheduled plan change not yet stored.
    pub next: Option<PlanChange>,
    /// The pool the subject belongs to (0.8.0).
    pub pool: Option<String>,
}

/// A scheduled plan change (`domain::schedule`): `plan` from `at` (PostgreSQL
/// microseconds) on, with the usage of the window it falls in carried over as `carry`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanChange {
    pub plan: String,
    pub at: i64,
    pub carry: Carry,
}

fn corrupt(table: &StateTable, col: usize, value: impl ToString) -> QuotaError {
    let name = match table.name() {
        "subjects" => "quota.subjects",
        "plan_limits" => "quota.plan_limits",
        "counters" => "quota.counters",
        _ => "quota.usage_events",
    };
    super::corrupt(name, table.columns[col].name.to_str().unwrap_or("?"), value)
}

fn required<T: FromDatum + IntoDatum>(table: &StateTable, row: &impl Row, col: usize) -> Result<T> {
    row.get(col).ok_or_else(|| corrupt(table, col, "NULL"))
}

/// Decode a subjects row.
pub fn subject(row: &impl Row) -> Result<SubjectRow> {
    use subjects::*;
    let t = &SUBJECTS;
    let zone: String = required(t, row, TIME_ZONE)?;
    Ok(SubjectRow {
        plan: required(t, row, PLAN)?,
        tenant: row.get(TENANT),
        anchor: required::<TimestampWithTimeZone>(t, row, CYCLE_ANCHOR)?.into_inner(),
        tz: period::parse_zone(&zone).ok_or_else(|| corrupt(t, TIME_ZONE, &zone))?,
        next: match row.get::<String>(NEXT_PLAN) {
            None => None,
            Some(plan) => {
                let carry: String = required(t, row, CARRY)?;
                Some(PlanChange {
                    plan,
                    at: required::<TimestampWithTimeZone>(t, row, NEXT_PLAN_AT)?.into_inner(),
                    carry: carry.parse::<Carry>().map_err(|_| corrupt(t, CARRY, &carry))?,
                })
            }
        },
        pool: row.get(POOL),
    })
}

/// Decode a plan_limits row: (metric, limit).
pub fn limit(row: &impl Row) -> Result<(String, Limit)> {
    use plan_limits::*;
    let t = &PLAN_LIMITS;
    let period: String = required(t, row, PERIOD)?;
    let enforcement: String = required(t, row, ENFORCEMENT)?;
    let limit = Limit {
        period: period.parse::<Period>().map_err(|_| corrupt(t, PERIOD, &period))?,
        limit_value: required(t, row, LIMIT_VALUE)?,
        enforcement: enforcement.parse::<Enforcement>().map_err(|_| corrupt(t, ENFORCEMENT, &enforcement))?,
        per_request_max: row.get(PER_REQUEST_MAX),
        alerts: alert_thresholds(row)?,
        source: Source::Plan,
        burst: row.get(BURST).unwrap_or(0),
    };
    Ok((required(t, row, METRIC)?, limit))
}

/// The thresholds array: NOT NULL, and no NULL element (the CHECK constraint lets one
/// through, a direct UPDATE can store it).
fn alert_thresholds(row: &impl Row) -> Result<Vec<i32>> {
    let t = &PLAN_LIMITS;
    let values: Vec<Option<i32>> = required(t, row, plan_limits::ALERT_THRESHOLDS)?;
    values.iter().copied().collect::<Option<Vec<i32>>>().ok_or_else(|| {
        let text = values.iter().map(|v| v.map_or("NULL".to_string(), |v| v.to_string())).collect::<Vec<_>>().join(",");
        corrupt(t, plan_limits::ALERT_THRESHOLDS, format!("{{{text}}}"))
    })
}

/// A counters row's window_end (NULL for a lifetime window, or a rate limit never used).
pub fn window_end(row: &impl Row) -> Option<chrono::DateTime<chrono::Utc>> {
    row.get::<TimestampWithTimeZone>(counters::WINDOW_END).map(|t| crate::pg::clock::from_pg(t.into_inner()))
}

/// Decode a counters row's usage.
pub fn usage(row: &impl Row) -> Result<Usage> {
    use counters::*;
    let t = &COUNTERS;
    Ok(Usage {
        used: required(t, row, USED)?,
        bonus: required(t, row, BONUS)?,
        reserved: required(t, row, RESERVED)?,
        alerted: required(t, row, ALERTED)?,
    })
}

/// What a ledger row records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LedgerKind {
    Consume,
    Refund,
    Reset,
    Bonus,
    Reserve,
    Commit,
    Release,
    Expire,
    /// A scheduled plan change that keeps the share used raised the window's usage.
    CarryUp,
    /// ... or lowered it.
    CarryDown,
}

impl LedgerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::Consume => "consume",
            LedgerKind::Refund => "refund",
            LedgerKind::Reset => "reset",
            LedgerKind::Bonus => "bonus",
            LedgerKind::Reserve => "reserve",
            LedgerKind::Commit => "commit",
            LedgerKind::Release => "release",
            LedgerKind::Expire => "expire",
            LedgerKind::CarryUp => "carry_up",
            LedgerKind::CarryDown => "carry_down",
        }
    }
}

/// One ledger row, as both paths append it.
pub struct LedgerRow<'a> {
    pub subject: &'a str,
    pub tenant: Option<&'a str>,
    pub metric: &'a str,
    /// The limit's period: which of the metric's windows this row changes.
    pub period: &'a str,
    pub window_start: Option<chrono::DateTime<chrono::Utc>>,
    pub kind: LedgerKind,
    pub amount: i64,
    pub overage: i64,
    pub idempotency_key: Option<&'a str>,
    pub metadata: Option<Datum>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// At a pool's level, the pool's member the call came through (None at the subject's own).
    pub via: Option<&'a str>,
}

impl LedgerRow<'_> {
    /// The values of every `USAGE_EVENTS` column after the generated ones, in order
    /// (palloc'd in the current memory context).
    pub fn values(&self) -> [(Option<Datum>, Oid); 12] {
        let text = |s: &str| s.into_datum();
        let t = |i: usize| USAGE_EVENTS.columns[i].type_oid;
        [
            (text(self.subject), t(1)),
            (self.tenant.and_then(text), t(2)),
            (text(self.metric), t(3)),
            (text(self.period), t(4)),
            (crate::pg::clock::window_key(self.window_start).into_datum(), t(5)),
            (text(self.kind.as_str()), t(6)),
            (Some(Datum::from(self.amount)), t(7)),
            (Some(Datum::from(self.overage)), t(8)),
            (self.idempotency_key.and_then(text), t(9)),
            (self.metadata, t(10)),
            (Some(Datum::from(crate::pg::clock::to_pg(self.created_at))), t(11)),
            (self.via.and_then(text), t(12)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database at this version, and one before limits v2.
    const NOW: installed::Version = POOLS;
    const OLD: installed::Version = (0, 6, 0);

    #[test]
    fn placeholders_name_the_described_columns_in_order() {
        assert_eq!(
            expand("SELECT {subjects} FROM quota.subjects", NOW),
            "SELECT subject, plan, tenant, cycle_anchor, time_zone, next_plan, next_plan_at, carry, pool FROM quota.subjects"
        );
        assert_eq!(
            expand("SELECT {subjects} FROM quota.subjects", OLD),
            "SELECT subject, plan, tenant, cycle_anchor, time_zone, NULL::text AS next_plan, NULL::timestamptz AS next_plan_at, NULL::text AS carry, NULL::text AS pool FROM quota.subjects"
        );
        assert_eq!(
            expand("SELECT {subjects} FROM quota.subjects", LIMITS_V2),
            "SELECT subject, plan, tenant, cycle_anchor, time_zone, next_plan, next_plan_at, carry, NULL::text AS pool FROM quota.subjects"
        );
        assert_eq!(
            expand("INSERT INTO quota.usage_events ({usage_events:insert}) VALUES ({usage_events:values})", NOW),
            "INSERT INTO quota.usage_events (subject, tenant, metric, period, window_start, kind, amount, overage, idempotency_key, metadata, created_at, via) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        );
        assert_eq!(USAGE_EVENTS.columns.len() - USAGE_EVENTS.generated, 12, "LedgerRow::values gives one value per column");
    }

    #[test]
    fn an_older_database_gets_the_statements_of_its_version() {
        assert_eq!(
            expand("INSERT INTO quota.usage_events ({usage_events:insert}) VALUES ({usage_events:values})", OLD),
            "INSERT INTO quota.usage_events (subject, tenant, metric, window_start, kind, amount, overage, idempotency_key, metadata, created_at) \
             VALUES ($1, $2, $3, $5, $6, $7, $8, $9, $10, $11)",
            "the period's parameter ($4) and the pool's ($12) go unused"
        );
        assert_eq!(
            expand("SELECT {counters} FROM quota.counters WHERE metric = $2{v2: AND period = $3}", OLD),
            "SELECT subject, metric, NULL::text AS period, window_start, used, bonus, reserved, alerted, window_end FROM quota.counters WHERE metric = $2"
        );
        assert_eq!(
            expand("ON CONFLICT (plan, metric{v2:, period}) DO UPDATE SET {v1:period = EXCLUDED.period, }x = 1", NOW),
            "ON CONFLICT (plan, metric, period) DO UPDATE SET x = 1"
        );
        assert_eq!(
            expand("ON CONFLICT (plan, metric{v2:, period}) DO UPDATE SET {v1:period = EXCLUDED.period, }x = 1", OLD),
            "ON CONFLICT (plan, metric) DO UPDATE SET period = EXCLUDED.period, x = 1"
        );
        assert_eq!(expand("SELECT '{verbatim}'", NOW), "SELECT '{verbatim}'", "other braces are left alone");
        assert_eq!(expand("SELECT {v3:via}{pre3:NULL::text}, {v2:period}", NOW), "SELECT via, period");
        assert_eq!(expand("SELECT {v3:via}{pre3:NULL::text}, {v2:period}", LIMITS_V2), "SELECT NULL::text, period");
        assert_eq!(expand("SELECT {v3:via}{pre3:NULL::text}{v1:, 1}", OLD), "SELECT NULL::text, 1");
    }

    #[test]
    fn keys_lead_each_description() {
        assert_eq!(SUBJECTS.columns[0].name, c"subject");
        assert_eq!([PLAN_LIMITS.columns[0].name, PLAN_LIMITS.columns[1].name, PLAN_LIMITS.columns[2].name], [c"plan", c"metric", c"period"]);
        let key: Vec<_> = COUNTERS.columns[..COUNTERS.key].iter().map(|c| c.name).collect();
        assert_eq!(key, [c"subject", c"metric", c"period", c"window_start"]);
        assert_eq!(USAGE_EVENTS.columns[LEDGER_ID].name, c"id");
    }

    struct Fake;
    impl Row for Fake {
        fn get<T: FromDatum + IntoDatum>(&self, _col: usize) -> Option<T> {
            None
        }
    }

    #[test]
    fn a_null_in_a_required_column_is_data_corrupted() {
        let e = usage(&Fake).unwrap_err();
        assert_eq!(e.sqlstate(), "XX001");
        assert_eq!(e.detail()["column"], "used");
    }
}
