//! quota.events, the outbox, and its notification.

use pgrx::pg_sys::PgBuiltInOids as T;
use pgrx::spi::SpiClient;

use super::{run, ts, Stmt};

/// The notification carries the outbox row's id; with `$6` (quota.notify_payload = full,
/// or a database before 0.4.0) the JSON event itself, unless it is too long for a
/// notification (8,000 bytes), which then sends the id too.
static EMIT: Stmt = Stmt {
    sql: "WITH e AS (INSERT INTO quota.events (type, subject, metric, payload, created_at) VALUES ($1, $2, $3, $4::jsonb, $5) RETURNING id)
          SELECT pg_catalog.pg_notify('quota_events',
                     CASE WHEN $6 AND pg_catalog.octet_length($4) < 8000 THEN $4 ELSE e.id::text END)
          FROM e",
    types: &[T::TEXTOID, T::TEXTOID, T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID, T::BOOLOID],
};

/// Record the event in the outbox and notify listeners (delivered at COMMIT).
pub fn emit(c: &mut SpiClient<'_>, e: &crate::domain::events::Event) {
    let payload = e.payload().to_string();
    let full = crate::pg::gucs::notify_full_payload() || !crate::pg::installed::at_least(crate::pg::installed::BINDINGS);
    let args = [e.kind.as_str().into(), e.subject.as_str().into(), e.metric.as_str().into(), payload.as_str().into(), ts(e.occurred_at), full.into()];
    run(c, &EMIT, &args);
}
