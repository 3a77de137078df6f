//! quota.usage_events, the append-only ledger. The row itself is `schema::LedgerRow`,
//! which the hot path appends too.

use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::PgBuiltInOids as T;
use pgrx::spi::SpiClient;

use super::{run, schema::LedgerRow, Stmt};

static APPEND: Stmt = Stmt {
    sql: "INSERT INTO quota.usage_events ({usage_events:insert}) VALUES ({usage_events:values})",
    types: &[
        T::TEXTOID,
        T::TEXTOID,
        T::TEXTOID,
        T::TEXTOID,
        T::TIMESTAMPTZOID,
        T::TEXTOID,
        T::INT8OID,
        T::INT8OID,
        T::TEXTOID,
        T::JSONBOID,
        T::TIMESTAMPTZOID,
        T::TEXTOID,
    ],
};

/// What came through `via` (a pool's member) into the window: its consumes and commits
/// less its refunds, as the ledger holds them (compacted rows do not keep `via`).
static CONTRIBUTION: Stmt = Stmt {
    sql: "SELECT coalesce(sum(quota.used_change(kind, amount)), 0)::int8 FROM quota.usage_events
          WHERE subject = $1 AND metric = $2 AND window_start = $3 AND period = $4 AND via = $5",
    types: &[T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID, T::TEXTOID, T::TEXTOID],
};

pub fn contribution(c: &mut SpiClient<'_>, k: &super::WindowKey<'_>, via: &str) -> i64 {
    let [s, m, start, p] = super::windows::key_args(k);
    super::first::<i64>(run(c, &CONTRIBUTION, &[s, m, start, p, via.into()]), 1).unwrap_or(0)
}

pub fn append(c: &mut SpiClient<'_>, row: &LedgerRow<'_>) {
    let args: Vec<DatumWithOid> = row
        .values()
        .into_iter()
        // SAFETY: each value is of its column's type (`LedgerRow::values` pairs them).
        .map(|(d, oid)| d.map_or(DatumWithOid::null_oid(oid), |d| unsafe { DatumWithOid::new(super::RawDatum(d), oid) }))
        .collect();
    run(c, &APPEND, &args);
}

#[cfg(test)]
mod tests {
    #[test]
    fn append_binds_one_parameter_of_each_described_type() {
        use crate::storage::schema::USAGE_EVENTS;
        let described: Vec<u32> = USAGE_EVENTS.columns[USAGE_EVENTS.generated..].iter().map(|c| c.type_oid.to_u32()).collect();
        let bound: Vec<u32> = super::APPEND.types.iter().map(|t| *t as u32).collect();
        assert_eq!(described, bound);
    }
}
