//! `quota.enforce_on_insert` and `quota.enforce_off`: validate, store the rule, and keep
//! the table's triggers matching its rules.

use super::*;

// Configuration ------------------------------------------------------------------------

/// What a column is, from the catalog: its type category ('N' numeric, 'S' string...),
/// its number, and whether it is generated ('s' stored, 'v' virtual from PostgreSQL 18,
/// '' not).
pub(super) static COLUMN: Stmt = Stmt {
    sql: "SELECT t.typcategory::text, a.attnum, a.attgenerated::text FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
          WHERE a.attrelid = $1 AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
    types: &[pg_sys::PgBuiltInOids::OIDOID, pg_sys::PgBuiltInOids::TEXTOID],
};
pub(super) static RELKIND: Stmt = Stmt {
    sql: "SELECT relkind::text, oid::regclass::text, relispartition FROM pg_catalog.pg_class WHERE oid = $1",
    types: &[pg_sys::PgBuiltInOids::OIDOID],
};
pub(super) static HAS_PRIMARY_KEY: Stmt =
    Stmt { sql: "SELECT 1 FROM pg_catalog.pg_index WHERE indrelid = $1 AND indisprimary", types: &[pg_sys::PgBuiltInOids::OIDOID] };
/// The primary key's generated columns (NULL in a BEFORE INSERT trigger: no key to refund by).
pub(super) static GENERATED_KEY_COLUMN: Stmt = Stmt {
    sql: "SELECT a.attname::text FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
          WHERE i.indrelid = $1 AND i.indisprimary AND a.attgenerated <> '' ORDER BY a.attnum LIMIT 1",
    types: &[pg_sys::PgBuiltInOids::OIDOID],
};
pub(super) static UPSERT_RULE: Stmt = Stmt {
    sql: "INSERT INTO quota.enforcements AS e (table_name, metric, subject_column, amount, amount_column, tokens_of, encoding,
              refund_on_delete, subject_attnum, amount_attnum, tokens_attnum)
          VALUES ($1::regclass, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
          ON CONFLICT (table_name, metric) DO UPDATE SET subject_column = EXCLUDED.subject_column, amount = EXCLUDED.amount,
              amount_column = EXCLUDED.amount_column, tokens_of = EXCLUDED.tokens_of, encoding = EXCLUDED.encoding,
              refund_on_delete = EXCLUDED.refund_on_delete, subject_attnum = EXCLUDED.subject_attnum,
              amount_attnum = EXCLUDED.amount_attnum, tokens_attnum = EXCLUDED.tokens_attnum",
    types: &[
        pg_sys::PgBuiltInOids::OIDOID,
        pg_sys::PgBuiltInOids::TEXTOID,
        pg_sys::PgBuiltInOids::TEXTOID,
        pg_sys::PgBuiltInOids::INT8OID,
        pg_sys::PgBuiltInOids::TEXTOID,
        pg_sys::PgBuiltInOids::TEXTOID,
        pg_sys::PgBuiltInOids::TEXTOID,
        pg_sys::PgBuiltInOids::BOOLOID,
        pg_sys::PgBuiltInOids::INT2OID,
        pg_sys::PgBuiltInOids::INT2OID,
        pg_sys::PgBuiltInOids::INT2OID,
    ],
};
/// Before 0.4.0 quotas named their columns only (that version's semantics).
pub(super) static UPSERT_RULE_BY_NAME: Stmt = Stmt {
    sql: "INSERT INTO quota.enforcements AS e (table_name, metric, subject_column, amount, amount_column, tokens_of, encoding, refund_on_delete)
          VALUES ($1::regclass, $2, $3, $4, $5, $6, $7, $8)
          ON CONFLICT (table_name, metric) DO UPDATE SET subject_column = EXCLUDED.subject_column, amount = EXCLUDED.amount,
              amount_column = EXCLUDED.amount_column, tokens_of = EXCLUDED.tokens_of, encoding = EXCLUDED.encoding,
              refund_on_delete = EXCLUDED.refund_on_delete",
    types: &[
        pg_sys::PgBuiltInOids::OIDOID,
        pg_sys::PgBuiltInOids::TEXTOID,
        pg_sys::PgBuiltInOids::TEXTOID,
        pg_sys::PgBuiltInOids::INT8OID,
        pg_sys::PgBuiltInOids::TEXTOID,
        pg_sys::PgBuiltInOids::TEXTOID,
        pg_sys::PgBuiltInOids::TEXTOID,
        pg_sys::PgBuiltInOids::BOOLOID,
    ],
};
pub(super) static TABLE_STATE_BY_NAME: Stmt = Stmt {
    sql: "SELECT count(*)::int4, count(*) FILTER (WHERE refund_on_delete)::int4, count(DISTINCT subject_column)::int4
          FROM quota.enforcements WHERE table_name = $1::regclass",
    types: &[pg_sys::PgBuiltInOids::OIDOID],
};
pub(super) static RULE_EXISTS: Stmt = Stmt {
    sql: "SELECT 1 FROM quota.enforcements WHERE table_name = $1::regclass AND metric = $2",
    types: &[pg_sys::PgBuiltInOids::OIDOID, pg_sys::PgBuiltInOids::TEXTOID],
};
pub(super) static DELETE_RULE: Stmt = Stmt {
    sql: "DELETE FROM quota.enforcements WHERE table_name = $1::regclass AND metric = $2 RETURNING true",
    types: &[pg_sys::PgBuiltInOids::OIDOID, pg_sys::PgBuiltInOids::TEXTOID],
};
pub(super) static HAS_TRIGGER: Stmt = Stmt {
    sql: "SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = $1 AND tgname = $2",
    types: &[pg_sys::PgBuiltInOids::OIDOID, pg_sys::PgBuiltInOids::TEXTOID],
};
pub(super) static TABLE_STATE: Stmt = Stmt {
    sql: "SELECT count(*)::int4, count(*) FILTER (WHERE refund_on_delete)::int4, count(DISTINCT subject_attnum)::int4
          FROM quota.enforcements WHERE table_name = $1::regclass",
    types: &[pg_sys::PgBuiltInOids::OIDOID],
};

/// A column's number, checked to exist with one of the type `categories` (empty: any).
pub(super) fn check_column(c: &mut SpiClient<'_>, table: pg_sys::Oid, argument: &'static str, column: &str, categories: &str) -> QResult<i16> {
    non_empty(argument, column)?;
    let table_name = table_text(c, table);
    let found = storage::run(c, &COLUMN, &[table.into(), column.into()]);
    let found = found.first();
    let (category, attnum) = (found.get::<String>(1).ok().flatten(), found.get::<i16>(2).ok().flatten());
    let generated = found.get::<String>(3).ok().flatten().is_some_and(|g| !g.is_empty());
    match (category, attnum) {
        // The charge runs in a BEFORE INSERT trigger, which sees NULL in a generated
        // column (computed after BEFORE triggers; a virtual one, PostgreSQL 18's default
        // kind, never stored): the row would be charged 0, or refused for a NULL subject.
        // A column cannot become generated later (ALTER TABLE can only drop an expression).
        (Some(_), Some(_)) if generated => Err(QuotaError::invalid(
            argument,
            column,
            format!(
                "column \"{}\" of table {table_name} is a generated column: the quota's trigger runs before it is computed",
                crate::domain::error::quoted(column)
            ),
            "Name a column the INSERT fills, or compute the value in the application and insert it.",
        )),
        (Some(cat), Some(_)) if !categories.is_empty() && !categories.contains(cat.as_str()) => Err(QuotaError::invalid(
            argument,
            column,
            format!("column \"{}\" of table {table_name} has the wrong type for {argument}", crate::domain::error::quoted(column)),
            if argument == "tokens_of" { "Count tokens of a text column." } else { "Use a numeric column for amount_column." },
        )),
        (Some(_), Some(attnum)) => Ok(attnum),
        _ => Err(QuotaError::invalid(
            argument,
            column,
            format!("column \"{}\" does not exist in table {table_name}", crate::domain::error::quoted(column)),
            "Pass the name of one of the table's columns.",
        )),
    }
}

pub(super) fn table_text(c: &mut SpiClient<'_>, table: pg_sys::Oid) -> String {
    storage::run(c, &RELKIND, &[table.into()]).first().get::<String>(2).ok().flatten().unwrap_or_default()
}

/// (number of rules, rules that refund on delete, distinct subject columns) for a table.
pub(super) fn table_state(c: &mut SpiClient<'_>, table: pg_sys::Oid) -> (i32, i32, i32) {
    let stmt = if installed::at_least(installed::ROW_CHARGES) { &TABLE_STATE } else { &TABLE_STATE_BY_NAME };
    let t = storage::run(c, stmt, &[table.into()]);
    let row = t.first();
    let get = |i| row.get::<i32>(i).ok().flatten().unwrap_or(0);
    (get(1), get(2), get(3))
}

/// Create or drop the table's triggers to match its rules: BEFORE INSERT charges,
/// AFTER DELETE refunds, and BEFORE UPDATE follows rows whose key changes or that move
/// between partitions. On a partitioned table PostgreSQL clones each trigger to every
/// partition, present and future.
pub(super) fn sync_triggers(c: &mut SpiClient<'_>, table: pg_sys::Oid, partitioned: bool) {
    let name = table_text(c, table); // already quoted by regclass output
    let (rules, refunds, _) = table_state(c, table);
    let wanted = [
        (rules > 0, "quota_enforce_insert", "BEFORE INSERT"),
        (refunds > 0, "quota_enforce_delete", "AFTER DELETE"),
        // Databases before 0.4.0 keep their version's two triggers.
        (rules > 0 && (partitioned || refunds > 0) && installed::at_least(installed::ROW_CHARGES), "quota_enforce_update", "BEFORE UPDATE"),
        (refunds > 0 && installed::at_least(installed::ROW_CHARGES), "quota_enforce_truncate", "AFTER TRUNCATE"),
    ];
    for (wanted, trigger, when) in wanted {
        let exists = !storage::run(c, &HAS_TRIGGER, &[table.into(), trigger.into()]).is_empty();
        let each = if when.ends_with("TRUNCATE") { "STATEMENT" } else { "ROW" };
        let sql = match (wanted, exists) {
            (true, _) => format!("CREATE OR REPLACE TRIGGER {trigger} {when} ON {name} FOR EACH {each} EXECUTE FUNCTION quota.enforce_trigger()"),
            (false, true) => format!("DROP TRIGGER {trigger} ON {name}"),
            (false, false) => continue,
        };
        c.update(sql.as_str(), None, &[]).unwrap_or_else(|e| unreachable!("{sql}: {e}"));
    }
}

/// What the session's role (this function runs as the extension's owner) may do to a
/// table's quotas: what PostgreSQL requires for the same act on the trigger itself.
/// Adding a quota, like CREATE TRIGGER, needs the TRIGGER right; changing or removing
/// one, like ALTER or DROP TRIGGER, needs ownership of the table.
pub(super) fn may_change(c: &mut SpiClient<'_>, table: pg_sys::Oid, replaces: bool) -> QResult<()> {
    // SAFETY: catalog checks by oid for the session's current role.
    let allowed = unsafe {
        let role = pg_sys::GetOuterUserId();
        if replaces {
            crate::hotpath::heap::major::owns_table(table, role)
        } else {
            pg_sys::pg_class_aclcheck(table, role, pg_sys::ACL_TRIGGER as pg_sys::AclMode) == pg_sys::AclResult::ACLCHECK_OK
        }
    };
    if allowed {
        return Ok(());
    }
    let name = table_text(c, table);
    let (message, hint) = if replaces {
        (format!("only the owner of table {name} may change or remove its quotas"), format!("Run this as the owner of {name}."))
    } else {
        (
            format!("permission denied to enforce quotas on table {name}"),
            format!("Run this as the owner of {name}, or GRANT TRIGGER ON {name} to this role."),
        )
    };
    Err(QuotaError::Forbidden { message, hint, object: name })
}

// The arguments of the SQL function `enforce_on_insert`, one for one.
#[allow(clippy::too_many_arguments)]
pub fn enforce(
    table: pg_sys::Oid,
    subject_column: &str,
    metric: &str,
    amount: i64,
    amount_column: Option<&str>,
    tokens_of: Option<&str>,
    encoding: &str,
    refund_on_delete: bool,
) -> QResult<()> {
    crate::domain::error::name("metric", metric)?;
    let encoding = Encoding::parse(encoding)?;
    if amount < 0 {
        return Err(QuotaError::invalid("amount", amount, "amount must not be negative", "Pass the amount each row consumes (0 or more)."));
    }
    if amount_column.is_some() && tokens_of.is_some() {
        return Err(QuotaError::invalid(
            "tokens_of",
            tokens_of.unwrap_or_default(),
            "pass either amount_column or tokens_of, not both",
            "Enforce each on its own metric.",
        ));
    }
    let current = installed::at_least(installed::ROW_CHARGES);
    Spi::connect_mut(|c| {
        let facts = storage::run(c, &RELKIND, &[table.into()]);
        let facts = facts.first();
        let (kind, name, is_partition) =
            (facts.get::<String>(1).ok().flatten(), facts.get::<String>(2).ok().flatten().unwrap_or_default(), facts.get::<bool>(3).ok().flatten());
        if !matches!(kind.as_deref(), Some("r") | Some("p")) {
            return Err(QuotaError::invalid("table_name", &name, format!("{name} is not a table"), "Pass a regular or partitioned table."));
        }
        if is_partition == Some(true) {
            return Err(QuotaError::invalid(
                "table_name",
                &name,
                format!("{name} is a partition: quotas are set on the partitioned table it belongs to"),
                "Pass the partition root (see pg_partition_root); its quotas cover every partition, and rows inserted straight into a partition too.",
            ));
        }
        let replaces = !storage::run(c, &RULE_EXISTS, &[table.into(), metric.into()]).is_empty();
        may_change(c, table, replaces)?;
        let subject_attnum = check_column(c, table, "subject_column", subject_column, "")?;
        let amount_attnum = amount_column.map(|col| check_column(c, table, "amount_column", col, "N")).transpose()?;
        let tokens_attnum = tokens_of.map(|col| check_column(c, table, "tokens_of", col, "S")).transpose()?;
        if current && refund_on_delete && storage::run(c, &HAS_PRIMARY_KEY, &[table.into()]).is_empty() {
            return Err(QuotaError::invalid(
                "refund_on_delete",
                &name,
                format!("refund_on_delete needs a primary key on {name}: it identifies what each row was charged"),
                "Add a primary key to the table, or enforce without refund_on_delete.",
            ));
        }
        if refund_on_delete {
            if let Some(column) = storage::run(c, &GENERATED_KEY_COLUMN, &[table.into()]).first().get::<String>(1).ok().flatten() {
                return Err(QuotaError::invalid(
                    "refund_on_delete",
                    &name,
                    format!(
                        "refund_on_delete needs a primary key without generated columns on {name}: \"{}\" is computed after the quota's trigger runs",
                        crate::domain::error::quoted(&column)
                    ),
                    "Use a primary key of plain columns (an identity or serial column will do), or enforce without refund_on_delete.",
                ));
            }
        }
        // The columns by name, and (0.4.0 on) by number as well.
        let mut args: Vec<pgrx::datum::DatumWithOid> = vec![
            table.into(),
            metric.into(),
            subject_column.into(),
            amount.into(),
            amount_column.into(),
            tokens_of.into(),
            encoding.as_str().into(),
            refund_on_delete.into(),
        ];
        if current {
            args.extend([subject_attnum.into(), amount_attnum.into(), tokens_attnum.into()]);
        }
        storage::run(c, if current { &UPSERT_RULE } else { &UPSERT_RULE_BY_NAME }, &args);
        if table_state(c, table).2 > 1 {
            return Err(QuotaError::invalid(
                "subject_column",
                subject_column,
                "every quota on a table must use the same subject column",
                "Use the subject column of the table's other quotas, or remove them with quota.enforce_off first.",
            ));
        }
        sync_triggers(c, table, kind.as_deref() == Some("p"));
        Ok(())
    })
}

/// Remove the quota on `metric` from a table; the triggers go when no quota is left.
/// Returns whether there was one. Only the table's owner may.
pub fn off(table: pg_sys::Oid, metric: &str) -> QResult<bool> {
    Spi::connect_mut(|c| {
        may_change(c, table, true)?;
        let removed = !storage::run(c, &DELETE_RULE, &[table.into(), metric.into()]).is_empty();
        let partitioned = storage::run(c, &RELKIND, &[table.into()]).first().get::<String>(1).ok().flatten().as_deref() == Some("p");
        sync_triggers(c, table, partitioned);
        Ok(removed)
    })
}
