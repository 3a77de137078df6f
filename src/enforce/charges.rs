//! What each trigger event does: charge an inserted row, refund a deleted one, follow a
//! row whose key changes, forget a truncated table's charges (quota.row_charges).

use super::*;

// Row charges ----------------------------------------------------------------------------
// What each row's insert was charged (subject, window, amount per metric and period: one
// charge per window of the metric), keyed by the table's partition root and the row's
// primary key: a DELETE refunds exactly that, to that subject, whatever the row holds by
// then. The period's parameter is the last (before limits v2 there is none).

pub(super) static RECORD_CHARGE: Stmt = Stmt {
    sql: "INSERT INTO quota.row_charges AS r (table_name, row_key, metric, subject, window_start, amount, charged_at{v2:, period})
          VALUES ($1, $2, $3, $4, $5, $6, $7{v2:, $8})
          ON CONFLICT (table_name, row_key, metric{v2:, period}) DO NOTHING
          RETURNING true",
    types: &[
        pg_sys::PgBuiltInOids::OIDOID,
        pg_sys::PgBuiltInOids::TEXTOID,
        pg_sys::PgBuiltInOids::TEXTOID,
        pg_sys::PgBuiltInOids::TEXTOID,
        pg_sys::PgBuiltInOids::TIMESTAMPTZOID,
        pg_sys::PgBuiltInOids::INT8OID,
        pg_sys::PgBuiltInOids::TIMESTAMPTZOID,
        pg_sys::PgBuiltInOids::TEXTOID,
    ],
};
pub(super) static TAKE_CHARGES: Stmt = Stmt {
    sql: "DELETE FROM quota.row_charges WHERE table_name = $1 AND row_key = $2
          RETURNING metric, subject, window_start, amount, {v2:period}{v1:''::text}",
    types: &[pg_sys::PgBuiltInOids::OIDOID, pg_sys::PgBuiltInOids::TEXTOID],
};
/// Replace a charge left by a row that is gone without a DELETE (a partition truncated,
/// detached or dropped): see `on_insert`.
pub(super) static REPLACE_CHARGE: Stmt = Stmt {
    sql: "UPDATE quota.row_charges SET subject = $4, window_start = $5, amount = $6, charged_at = $7
          WHERE table_name = $1 AND row_key = $2 AND metric = $3{v2: AND period = $8}",
    types: &[
        pg_sys::PgBuiltInOids::OIDOID,
        pg_sys::PgBuiltInOids::TEXTOID,
        pg_sys::PgBuiltInOids::TEXTOID,
        pg_sys::PgBuiltInOids::TEXTOID,
        pg_sys::PgBuiltInOids::TIMESTAMPTZOID,
        pg_sys::PgBuiltInOids::INT8OID,
        pg_sys::PgBuiltInOids::TIMESTAMPTZOID,
        pg_sys::PgBuiltInOids::TEXTOID,
    ],
};
pub(super) static FORGET_CHARGES: Stmt = Stmt { sql: "DELETE FROM quota.row_charges WHERE table_name = $1", types: &[pg_sys::PgBuiltInOids::OIDOID] };
pub(super) static REKEY_CHARGES: Stmt = Stmt {
    sql: "UPDATE quota.row_charges SET row_key = $3 WHERE table_name = $1 AND row_key = $2",
    types: &[pg_sys::PgBuiltInOids::OIDOID, pg_sys::PgBuiltInOids::TEXTOID, pg_sys::PgBuiltInOids::TEXTOID],
};

pub(super) fn on_insert(trigger: &PgTrigger<'_>, table: pg_sys::Oid) -> QResult<()> {
    let row = Row::old(trigger);
    let t = Spi::connect_mut(|c| rules_for(c, table));
    // An UPDATE that moves a row to another partition inserts it there: its charge stays.
    if t.partitioned && moved(t.root) {
        return Ok(());
    }
    // Every rule of a table has the same subject column, but a partition's own quotas
    // (set before 0.4.0) may name another: one all-or-nothing consume per subject.
    let mut by_subject: Vec<(String, Vec<(String, i64)>)> = Vec::new();
    for rule in &t.rules {
        let (s, amount) = row_cost(&row, rule)?;
        if amount == 0 {
            continue;
        }
        match by_subject.iter_mut().find(|(subject, _)| *subject == s) {
            Some((_, items)) => items.push((rule.metric.clone(), amount)),
            None => by_subject.push((s, vec![(rule.metric.clone(), amount)])),
        }
    }
    let mut decisions = Vec::new();
    for (subject, items) in by_subject {
        let decided = ops::consume(ConsumeRequest { subject: &subject, items, idempotency_key: None, metadata: None, no_raise: false });
        decisions.extend(decided.map_err(|e| e.on_table(&t.root_name, trigger.name().unwrap_or_default()))?);
    }
    if decisions.is_empty() {
        return Ok(());
    }
    if !t.refunds() || !installed::at_least(installed::ROW_CHARGES) {
        return Ok(());
    }
    // A generated key column is NULL in a BEFORE trigger: the charge would have no key and
    // no DELETE could refund it (enforce_on_insert refuses such a key; a partition may
    // still have one).
    if let Some(column) = t.key.iter().flatten().find(|c| row.generated(c)) {
        let metric = t.rules.iter().find(|r| r.refund_on_delete).map_or("", |r| r.metric.as_str());
        return Err(super::row::generated_column(&t.root_name, metric, column));
    }
    let Some(key) = row.key(t.key.as_deref()) else { return Ok(()) };
    let now = crate::pg::clock::now();
    Spi::connect_mut(|c| {
        let charged = decisions.iter().filter(|d| t.rules.iter().any(|r| r.refund_on_delete && r.metric == d.metric));
        for (d, (period, start)) in charged.flat_map(|d| d.windows.iter().map(move |(p, s)| (d, (p.as_str(), *s)))) {
            let args = [
                t.root.into(),
                key.as_str().into(),
                d.metric.as_str().into(),
                // The subject's own windows (a pool's decision names the pool).
                d.member.as_deref().unwrap_or(&d.subject).into(),
                crate::pg::clock::window_key(start).into(),
                d.requested.into(),
                crate::pg::clock::to_pg_tz(now).into(),
                period.into(),
            ];
            if storage::run(c, &RECORD_CHARGE, &args).is_empty() && !row_with_key_exists(c, &t, &row) {
                // The key's charge belongs to no row (it went without a DELETE): this
                // row's charge replaces it. While a row has the key, its first charge
                // stays (an INSERT ... ON CONFLICT that inserts nothing replaces nothing).
                storage::run(c, &REPLACE_CHARGE, &args);
            }
        }
    });
    Ok(())
}

/// Is there a row (visible now) in the table with this row's primary key?
pub(super) fn row_with_key_exists(c: &mut SpiClient<'_>, t: &TableRules, row: &Row) -> bool {
    let Some(key) = t.key.as_deref() else { return false };
    let mut conditions = Vec::with_capacity(key.len());
    let mut args = Vec::with_capacity(key.len());
    for (i, column) in key.iter().enumerate() {
        let Some((datum, type_oid, _, _)) = row.value(column) else { return false };
        conditions.push(format!("{} OPERATOR(pg_catalog.=) ${}", quote_ident(column), i + 1));
        // SAFETY: the datum comes from the row's own column, of that type.
        args.push(unsafe { pgrx::datum::DatumWithOid::new(storage::RawDatum(datum), type_oid) });
    }
    let sql = format!("SELECT 1 FROM {} WHERE {} LIMIT 1", t.root_name, conditions.join(" AND "));
    // A key type without an equality PostgreSQL can find here: assume the row exists
    // (the first charge stays).
    crate::pg::subtransaction::run(|| c.select(&sql, Some(1), &args).map(|rows| !rows.is_empty()).unwrap_or(true)).unwrap_or(true)
}

pub(super) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub(super) fn on_delete(trigger: &PgTrigger<'_>, table: pg_sys::Oid) -> QResult<()> {
    let row = Row::old(trigger);
    // The row left for another partition (an UPDATE moved it): its charge stays.
    if moved_away(row.tuple) {
        return Ok(());
    }
    let t = Spi::connect_mut(|c| rules_for(c, table));
    if !installed::at_least(installed::ROW_CHARGES) {
        return legacy_refund(&t, &row);
    }
    let Some(key) = row.key(t.key.as_deref()) else { return Ok(()) };
    type Charge = (String, String, Option<TimestampWithTimeZone>, i64, String);
    let charges: Vec<Charge> = Spi::connect_mut(|c| {
        storage::run(c, &TAKE_CHARGES, &[t.root.into(), key.as_str().into()])
            .filter_map(|r| {
                Some((
                    r.get::<String>(1).ok()??,
                    r.get::<String>(2).ok()??,
                    r.get::<TimestampWithTimeZone>(3).ok()?,
                    r.get::<i64>(4).ok()??,
                    r.get::<String>(5).ok()??,
                ))
            })
            .collect()
    });
    for (metric, subject, start, amount, period) in charges {
        let start = start.filter(|s| s.is_finite()).map(|s| crate::pg::clock::from_pg(s.into_inner()));
        ops::refund_charge(&subject, &metric, &period, start, amount)?;
    }
    Ok(())
}

/// Before 0.4.0 a DELETE refunded what the row held (that version's semantics, kept until
/// the database is updated).
pub(super) fn legacy_refund(t: &TableRules, row: &Row) -> QResult<()> {
    for rule in t.rules.iter().filter(|r| r.refund_on_delete) {
        let (subject, amount) = row_cost(row, rule)?;
        if amount == 0 {
            continue;
        }
        match ops::refund(&subject, &rule.metric, amount, None) {
            // Nothing was ever counted for a subject that does not exist.
            Err(QuotaError::UnknownSubject { .. }) => {}
            other => other.map(|_| ())?,
        }
    }
    Ok(())
}

/// TRUNCATE refunds nothing, and the table's rows are gone: so are their charges.
pub(super) fn on_truncate(table: pg_sys::Oid) -> QResult<()> {
    if installed::at_least(installed::ROW_CHARGES) {
        Spi::connect_mut(|c| {
            let t = rules_for(c, table);
            storage::run(c, &FORGET_CHARGES, &[t.root.into()]);
        });
    }
    Ok(())
}

pub(super) fn on_update(trigger: &PgTrigger<'_>, table: pg_sys::Oid) -> QResult<()> {
    let t = Spi::connect_mut(|c| rules_for(c, table));
    let (old, new) = (Row::old(trigger), Row::new(trigger));
    if t.refunds() && installed::at_least(installed::ROW_CHARGES) {
        if let (Some(before), Some(after)) = (old.key(t.key.as_deref()), new.key(t.key.as_deref())) {
            if before != after {
                Spi::connect_mut(|c| {
                    storage::run(c, &REKEY_CHARGES, &[t.root.into(), before.as_str().into(), after.as_str().into()]);
                });
            }
        }
    }
    if t.partitioned {
        // SAFETY: `old.tuple` is tg_trigtuple, the stored row version (with its TID in
        // t_self), which PostgreSQL sets for every row-level UPDATE trigger: the only kind
        // `config::sync_triggers` creates on UPDATE. Fired as a statement-level trigger
        // it would be NULL; nothing here checks that (EXECUTE on the function is revoked
        // from PUBLIC, so only a superuser or the extension's owner could attach it so).
        let tid = unsafe { (*old.tuple).t_self };
        UPDATING.with(|u| u.set(Some(Updating { root: t.root, partition: table, tid, lxid: local_transaction() })));
    }
    Ok(())
}
