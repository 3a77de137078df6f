//! The ledger's guard and its retention.
//!
//! `quota.usage_events` is append-only: the trigger `refuse_ledger_change` refuses every
//! UPDATE, DELETE and TRUNCATE, whoever runs it. The one exception is
//! `quota.compact_ledger`, which moves old events into `quota.usage_summaries` (one row
//! per subject, metric, window and kind, with sums) and deletes them in the same
//! statement. It opens the guard only for its own statement, with a flag that lives in
//! this backend's Rust memory: no setting or SQL can open it.
//!
//! Provability: for every window, the sums over `usage_summaries` plus the remaining
//! events give the counter exactly as the events alone did (see `quota.ledger_check`).

use pgrx::prelude::*;
use pgrx::spi::Spi;
use std::cell::Cell;

use crate::domain::error::QuotaError;
use crate::pg::clock;
use crate::pg::ereport::OrRaise;
use crate::storage::{self, Stmt};

thread_local! {
    static COMPACTING: Cell<bool> = const { Cell::new(false) };
}

/// Opens the guard while alive; closes it on drop, also when an ERROR unwinds.
struct Compacting;

impl Compacting {
    fn open() -> Compacting {
        COMPACTING.with(|c| c.set(true));
        Compacting
    }
}

impl Drop for Compacting {
    fn drop(&mut self) {
        COMPACTING.with(|c| c.set(false));
    }
}

#[pg_trigger]
fn refuse_ledger_change<'a>(trigger: &'a PgTrigger<'a>) -> std::result::Result<Option<PgHeapTuple<'a, impl pgrx::WhoAllocated>>, PgHeapTupleError> {
    let event = trigger.event();
    let deleting_old_rows = event.fired_by_delete() && COMPACTING.with(|c| c.get());
    if deleting_old_rows {
        return Ok(trigger.old());
    }
    let operation = if event.fired_by_update() {
        "UPDATE"
    } else if event.fired_by_delete() {
        "DELETE"
    } else {
        "TRUNCATE"
    };
    pgrx::pg_sys::panic::ErrorReport::new(
        PgSqlErrorCode::ERRCODE_RESTRICT_VIOLATION,
        format!("quota.usage_events is append-only: {operation} is not allowed"),
        "refuse_ledger_change",
    )
    .set_detail(serde_json::json!({"code": "ledger_append_only", "operation": operation}).to_string())
    .set_hint("Correct usage with quota.quota_refund or quota.quota_reset; they append compensating rows. Old events are removed only by quota.compact_ledger.")
    .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Move every event older than $1 into the summaries and delete it, in one statement. A
/// paused tenant's events stay (a move copies them and compares their digests before it
/// deletes them: docs/scale-out.md, "Pausing a tenant (node side)"); a later run takes
/// them if the tenant is resumed.
static COMPACT: Stmt = Stmt {
    sql: "WITH gone AS (
              DELETE FROM quota.usage_events WHERE created_at < $1
                  {v4:AND NOT EXISTS (SELECT 1 FROM quota.tenant_pauses p WHERE p.tenant = usage_events.tenant)}
              RETURNING subject, tenant, metric, {v2:period}{v1:NULL::text AS period}, window_start, kind, amount, overage, created_at
          ), sums AS (
              SELECT subject, metric, period, window_start, kind, max(tenant) AS tenant, sum(amount)::bigint AS amount,
                     sum(overage)::bigint AS overage, count(*) AS events, min(created_at) AS first_at,
                     max(created_at) AS last_at
              FROM gone GROUP BY subject, metric, period, window_start, kind
          ), merged AS (
              INSERT INTO quota.usage_summaries AS s
                  (subject, tenant, metric, window_start, kind, amount, overage, events, first_at, last_at{v2:, period})
              SELECT subject, tenant, metric, window_start, kind, amount, overage, events, first_at, last_at{v2:, period} FROM sums
              ON CONFLICT (subject, metric, {v2:period, }window_start, kind) DO UPDATE SET
                  tenant = coalesce(EXCLUDED.tenant, s.tenant),
                  amount = s.amount + EXCLUDED.amount,
                  overage = s.overage + EXCLUDED.overage,
                  events = s.events + EXCLUDED.events,
                  first_at = LEAST(s.first_at, EXCLUDED.first_at),
                  last_at = GREATEST(s.last_at, EXCLUDED.last_at)
              RETURNING 1
          )
          SELECT coalesce(sum(events), 0)::bigint FROM sums",
    types: &[pgrx::pg_sys::PgBuiltInOids::TIMESTAMPTZOID],
};

/// Roll ledger events older than `older_than` (measured from the quota clock) up into
/// `quota.usage_summaries` and delete them. Returns how many events were removed.
/// Counters are untouched, and stay equal to summaries + remaining events.
#[pg_extern(volatile, parallel_unsafe)]
fn compact_ledger(older_than: default!(Option<pgrx::datum::Interval>, "'90 days'")) -> i64 {
    let older_than = crate::domain::error::required("older_than", older_than).or_raise();
    if older_than.micros() < 0 || older_than.days() < 0 || older_than.months() < 0 {
        Err::<(), _>(QuotaError::invalid(
            "older_than",
            format!("{older_than}"),
            "older_than must not be negative",
            "Pass how old an event must be to be summarised, such as '90 days'.",
        ))
        .or_raise();
    }
    let cutoff: TimestampWithTimeZone = Spi::get_one_with_args("SELECT $1 - $2", &[clock::to_pg_tz(clock::now()).into(), older_than.into()])
        .unwrap_or_else(|e| unreachable!("cutoff: {e}"))
        .unwrap_or_else(|| unreachable!("cutoff is not null"));
    let _open = Compacting::open();
    Spi::connect_mut(|c| storage::run(c, &COMPACT, &[cutoff.into()]).first().get::<i64>(1).ok().flatten().unwrap_or(0))
}
