//! Quotas on application tables: `quota.enforce_on_insert` attaches a row trigger that
//! consumes quota for every inserted row, in the inserting transaction, so no client,
//! ORM, batch job or COPY can get around it. Optionally a DELETE gives the usage back.
//!
//! The trigger is BEFORE INSERT FOR EACH ROW: a refused row raises QT429/QT413 and the
//! whole statement (multi-row INSERT or COPY) fails, so nothing is inserted or counted.
//! All metrics of a table are consumed per row in one all-or-nothing call.

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::{Spi, SpiClient};
use std::ffi::CStr;

use crate::engine::{self, ConsumeRequest};
use crate::ereport::{raise, OrRaise};
use crate::error::{non_empty, required, QuotaError};

type QResult<T> = crate::error::Result<T>;
use crate::store::{self, Stmt};
use crate::tokens::Encoding;

/// A `regclass` argument ('public.messages' resolves to the table's oid).
pub struct RegClass(pg_sys::Oid);

impl FromDatum for RegClass {
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _: pg_sys::Oid) -> Option<Self> {
        if is_null {
            None
        } else {
            Some(RegClass(pg_sys::Oid::from(datum.value() as u32)))
        }
    }
}
impl IntoDatum for RegClass {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(pg_sys::Datum::from(self.0))
    }
    fn type_oid() -> pg_sys::Oid {
        pg_sys::REGCLASSOID
    }
}
unsafe impl<'fcx> pgrx::callconv::ArgAbi<'fcx> for RegClass {
    unsafe fn unbox_arg_unchecked(arg: pgrx::callconv::Arg<'_, 'fcx>) -> Self {
        unsafe { arg.unbox_arg_using_from_datum().expect("argument is not null") }
    }
}
pgrx::impl_sql_translatable!(RegClass, "regclass");

/// One metric enforced on a table.
struct Rule {
    metric: String,
    subject_column: String,
    amount: i64,
    amount_column: Option<String>,
    tokens_of: Option<String>,
    encoding: Encoding,
    refund_on_delete: bool,
}

static RULES: Stmt = Stmt {
    sql: "SELECT metric, subject_column, amount, amount_column, tokens_of, encoding, refund_on_delete
          FROM quota.enforcements WHERE table_name = $1 ORDER BY metric",
    types: &[pg_sys::PgBuiltInOids::OIDOID],
};

fn rules(c: &mut SpiClient<'_>, table: pg_sys::Oid) -> Vec<Rule> {
    store::run(c, &RULES, &[table.into()])
        .map(|row| {
            let get = |i| row.get::<String>(i).ok().flatten();
            Rule {
                metric: get(1).unwrap_or_default(),
                subject_column: get(2).unwrap_or_default(),
                amount: row.get::<i64>(3).ok().flatten().unwrap_or(1),
                amount_column: get(4),
                tokens_of: get(5),
                // The CHECK constraint keeps the name valid.
                encoding: Encoding::parse(&get(6).unwrap_or_default()).unwrap_or(Encoding::Cl100kBase),
                refund_on_delete: row.get::<bool>(7).ok().flatten().unwrap_or(false),
            }
        })
        .collect()
}

/// The row a trigger fired for, with its descriptor.
struct Row {
    tuple: *mut pg_sys::HeapTupleData,
    desc: pg_sys::TupleDesc,
}

impl Row {
    fn of(trigger: &PgTrigger<'_>) -> Row {
        let data = trigger.trigger_data();
        // SAFETY: a row trigger always has its tuple and relation.
        Row { tuple: data.tg_trigtuple, desc: unsafe { (*data.tg_relation).rd_att } }
    }

    /// A column rendered as text by its type's output function, so that any type can hold
    /// the subject (text, integer, uuid, inet...). `None` for NULL or a dropped column.
    fn text(&self, column: &str) -> Option<String> {
        let name = std::ffi::CString::new(column).ok()?;
        unsafe {
            let n = pg_sys::SPI_fnumber(self.desc, name.as_ptr());
            if n <= 0 {
                return None;
            }
            let value = pg_sys::SPI_getvalue(self.tuple, self.desc, n);
            if value.is_null() {
                return None;
            }
            let text = CStr::from_ptr(value).to_string_lossy().into_owned();
            pg_sys::pfree(value.cast());
            Some(text)
        }
    }
}

/// What one row costs under one rule: (subject, amount).
fn row_cost(row: &Row, rule: &Rule) -> QResult<(String, i64)> {
    let subject = row.text(&rule.subject_column).ok_or(QuotaError::Null { argument: "subject column" })?;
    let amount = if let Some(col) = &rule.tokens_of {
        row.text(col).map(|t| rule.encoding.count(&t) as i64).unwrap_or(0)
    } else if let Some(col) = &rule.amount_column {
        match row.text(col) {
            None => 0,
            Some(v) => parse_amount(col, &v)?,
        }
    } else {
        rule.amount
    };
    Ok((subject, amount))
}

/// A numeric column's value as a whole, non-negative amount.
fn parse_amount(column: &str, value: &str) -> QResult<i64> {
    let bad = |why: &str| {
        QuotaError::invalid("amount column", value, format!("column \"{column}\" {why}: {value}"), "Store a whole, non-negative amount in the column.")
    };
    let n: i64 = value.split_once('.').map_or(value, |(int, frac)| if frac.trim_end_matches('0').is_empty() { int } else { "x" }).parse().map_err(|_| bad("is not a whole number"))?;
    if n < 0 {
        return Err(bad("is negative"));
    }
    Ok(n)
}

/// The trigger function behind every enforced table.
#[pg_trigger]
fn enforce_trigger<'a>(trigger: &'a PgTrigger<'a>) -> std::result::Result<Option<PgHeapTuple<'a, impl pgrx::WhoAllocated>>, PgHeapTupleError> {
    let table = trigger.relid().unwrap_or(pg_sys::InvalidOid);
    let outcome = if trigger.event().fired_by_insert() {
        on_insert(trigger, table)
    } else if trigger.event().fired_by_delete() {
        on_delete(trigger, table)
    } else {
        Ok(())
    };
    if let Err(e) = outcome {
        raise(e);
    }
    Ok(trigger.new())
}

fn on_insert(trigger: &PgTrigger<'_>, table: pg_sys::Oid) -> QResult<()> {
    let row = Row::of(trigger);
    let rules = Spi::connect_mut(|c| rules(c, table));
    let mut subject: Option<String> = None;
    let mut items = Vec::with_capacity(rules.len());
    for rule in &rules {
        let (s, amount) = row_cost(&row, rule)?;
        if amount > 0 {
            items.push((rule.metric.clone(), amount));
        }
        subject.get_or_insert(s);
    }
    let (Some(subject), false) = (subject, items.is_empty()) else { return Ok(()) };
    engine::consume(ConsumeRequest { subject: &subject, items, idempotency_key: None, metadata: None, no_raise: false }).map(|_| ())
}

fn on_delete(trigger: &PgTrigger<'_>, table: pg_sys::Oid) -> QResult<()> {
    let row = Row::of(trigger);
    let rules = Spi::connect_mut(|c| rules(c, table));
    for rule in rules.iter().filter(|r| r.refund_on_delete) {
        let (subject, amount) = row_cost(&row, rule)?;
        if amount == 0 {
            continue;
        }
        match engine::refund(&subject, &rule.metric, amount, None) {
            // Nothing was ever counted for a subject that does not exist.
            Err(QuotaError::UnknownSubject { .. }) => {}
            other => other.map(|_| ())?,
        }
    }
    Ok(())
}

// Configuration ------------------------------------------------------------------------

/// What a column is, from the catalog: its type category ('N' numeric, 'S' string...).
static COLUMN: Stmt = Stmt {
    sql: "SELECT t.typcategory::text FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
          WHERE a.attrelid = $1 AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
    types: &[pg_sys::PgBuiltInOids::OIDOID, pg_sys::PgBuiltInOids::TEXTOID],
};
static RELKIND: Stmt = Stmt {
    sql: "SELECT relkind::text, oid::regclass::text FROM pg_catalog.pg_class WHERE oid = $1",
    types: &[pg_sys::PgBuiltInOids::OIDOID],
};
static UPSERT_RULE: Stmt = Stmt {
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
static DELETE_RULE: Stmt = Stmt {
    sql: "DELETE FROM quota.enforcements WHERE table_name = $1::regclass AND metric = $2 RETURNING true",
    types: &[pg_sys::PgBuiltInOids::OIDOID, pg_sys::PgBuiltInOids::TEXTOID],
};
static HAS_TRIGGER: Stmt = Stmt {
    sql: "SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = $1 AND tgname = $2",
    types: &[pg_sys::PgBuiltInOids::OIDOID, pg_sys::PgBuiltInOids::TEXTOID],
};
static TABLE_STATE: Stmt = Stmt {
    sql: "SELECT count(*)::int4, count(*) FILTER (WHERE refund_on_delete)::int4, count(DISTINCT subject_column)::int4
          FROM quota.enforcements WHERE table_name = $1::regclass",
    types: &[pg_sys::PgBuiltInOids::OIDOID],
};

fn check_column(c: &mut SpiClient<'_>, table: pg_sys::Oid, argument: &'static str, column: &str, categories: &str) -> QResult<()> {
    non_empty(argument, column)?;
    let table_name = table_text(c, table);
    let category = store::run(c, &COLUMN, &[table.into(), column.into()]).first().get::<String>(1).ok().flatten();
    match category {
        None => Err(QuotaError::invalid(
            argument,
            column,
            format!("column \"{column}\" does not exist in table {table_name}"),
            "Pass the name of one of the table's columns.",
        )),
        Some(cat) if !categories.is_empty() && !categories.contains(cat.as_str()) => Err(QuotaError::invalid(
            argument,
            column,
            format!("column \"{column}\" of table {table_name} has the wrong type for {argument}"),
            if argument == "tokens_of" { "Count tokens of a text column." } else { "Use a numeric column for amount_column." },
        )),
        Some(_) => Ok(()),
    }
}

fn table_text(c: &mut SpiClient<'_>, table: pg_sys::Oid) -> String {
    store::run(c, &RELKIND, &[table.into()]).first().get::<String>(2).ok().flatten().unwrap_or_default()
}

/// (number of rules, rules that refund on delete, distinct subject columns) for a table.
fn table_state(c: &mut SpiClient<'_>, table: pg_sys::Oid) -> (i32, i32, i32) {
    let t = store::run(c, &TABLE_STATE, &[table.into()]);
    let row = t.first();
    let get = |i| row.get::<i32>(i).ok().flatten().unwrap_or(0);
    (get(1), get(2), get(3))
}

/// Create or drop the table's triggers to match its rules.
fn sync_triggers(c: &mut SpiClient<'_>, table: pg_sys::Oid) {
    let name = table_text(c, table); // already quoted by regclass output
    let (rules, refunds, _) = table_state(c, table);
    for (wanted, trigger, when) in [(rules > 0, "quota_enforce_insert", "BEFORE INSERT"), (refunds > 0, "quota_enforce_delete", "AFTER DELETE")] {
        let exists = !store::run(c, &HAS_TRIGGER, &[table.into(), trigger.into()]).is_empty();
        let sql = match (wanted, exists) {
            (true, _) => format!("CREATE OR REPLACE TRIGGER {trigger} {when} ON {name} FOR EACH ROW EXECUTE FUNCTION quota.enforce_trigger()"),
            (false, true) => format!("DROP TRIGGER {trigger} ON {name}"),
            (false, false) => continue,
        };
        c.update(sql.as_str(), None, &[]).unwrap_or_else(|e| unreachable!("{sql}: {e}"));
    }
}

/// This function runs as the extension's owner, so it checks for the caller (the
/// session's role) what CREATE TRIGGER would: the TRIGGER right on the table.
fn may_trigger(c: &mut SpiClient<'_>, table: pg_sys::Oid) -> QResult<()> {
    let allowed = unsafe {
        pg_sys::pg_class_aclcheck(table, pg_sys::GetOuterUserId(), pg_sys::ACL_TRIGGER as pg_sys::AclMode) == pg_sys::AclResult::ACLCHECK_OK
    };
    if allowed {
        return Ok(());
    }
    let name = table_text(c, table);
    Err(QuotaError::Forbidden {
        message: format!("permission denied to enforce quotas on table {name}"),
        hint: format!("Run this as the owner of {name}, or GRANT TRIGGER ON {name} to this role."),
        object: name,
    })
}

#[allow(clippy::too_many_arguments)]
fn enforce(
    table: pg_sys::Oid,
    subject_column: &str,
    metric: &str,
    amount: i64,
    amount_column: Option<&str>,
    tokens_of: Option<&str>,
    encoding: &str,
    refund_on_delete: bool,
) -> QResult<()> {
    non_empty("metric", metric)?;
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
    Spi::connect_mut(|c| {
        let kind = store::run(c, &RELKIND, &[table.into()]).first().get::<String>(1).ok().flatten();
        if !matches!(kind.as_deref(), Some("r") | Some("p")) {
            let name = table_text(c, table);
            return Err(QuotaError::invalid("table_name", &name, format!("{name} is not a table"), "Pass a regular or partitioned table."));
        }
        may_trigger(c, table)?;
        check_column(c, table, "subject_column", subject_column, "")?;
        if let Some(col) = amount_column {
            check_column(c, table, "amount_column", col, "N")?;
        }
        if let Some(col) = tokens_of {
            check_column(c, table, "tokens_of", col, "S")?;
        }
        store::run(
            c,
            &UPSERT_RULE,
            &[
                table.into(),
                metric.into(),
                subject_column.into(),
                amount.into(),
                amount_column.into(),
                tokens_of.into(),
                encoding.as_str().into(),
                refund_on_delete.into(),
            ],
        );
        if table_state(c, table).2 > 1 {
            return Err(QuotaError::invalid(
                "subject_column",
                subject_column,
                "every quota on a table must use the same subject column",
                "Use the subject column of the table's other quotas, or remove them with quota.enforce_off first.",
            ));
        }
        sync_triggers(c, table);
        Ok(())
    })
}

/// Put a quota on a table: every inserted row consumes `metric` for the subject in
/// `subject_column` — `amount` per row, or the value of `amount_column`, or the token
/// count of the text column `tokens_of` in `encoding`. With `refund_on_delete`, deleting a
/// row gives its usage back. Calling it again for the same table and metric replaces it.
#[pg_extern(volatile, parallel_unsafe)]
#[allow(clippy::too_many_arguments)]
fn enforce_on_insert(
    table_name: Option<RegClass>,
    subject_column: Option<&str>,
    metric: Option<&str>,
    amount: default!(Option<i64>, 1),
    amount_column: default!(Option<&str>, "NULL"),
    tokens_of: default!(Option<&str>, "NULL"),
    encoding: default!(Option<&str>, "'cl100k_base'"),
    refund_on_delete: default!(Option<bool>, false),
) {
    enforce(
        required("table_name", table_name).or_raise().0,
        required("subject_column", subject_column).or_raise(),
        required("metric", metric).or_raise(),
        required("amount", amount).or_raise(),
        amount_column,
        tokens_of,
        required("encoding", encoding).or_raise(),
        required("refund_on_delete", refund_on_delete).or_raise(),
    )
    .or_raise()
}

/// Remove the quota on `metric` from a table; the triggers go when no quota is left.
/// Returns whether there was one.
#[pg_extern(volatile, parallel_unsafe)]
fn enforce_off(table_name: Option<RegClass>, metric: Option<&str>) -> bool {
    let table = required("table_name", table_name).or_raise().0;
    let metric = required("metric", metric).or_raise();
    Spi::connect_mut(|c| {
        may_trigger(c, table)?;
        let removed = store::run(c, &DELETE_RULE, &[table.into(), metric.into()]).len() > 0;
        sync_triggers(c, table);
        Ok(removed)
    })
    .or_raise()
}

/// How many tokens `content` costs in `encoding` (cl100k_base, o200k_base, or chars).
#[pg_extern(immutable, strict, parallel_safe)]
fn count_tokens(content: &str, encoding: default!(&str, "'cl100k_base'")) -> i32 {
    let n = crate::tokens::count_tokens(content, encoding).or_raise();
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    #[test]
    fn amounts_from_numeric_columns() {
        assert_eq!(super::parse_amount("c", "42"), Ok(42));
        assert_eq!(super::parse_amount("c", "42.000"), Ok(42));
        assert_eq!(super::parse_amount("c", "42.5").unwrap_err().sqlstate(), "22023");
        assert_eq!(super::parse_amount("c", "-1").unwrap_err().sqlstate(), "22023");
        assert_eq!(super::parse_amount("c", "NaN").unwrap_err().sqlstate(), "22023");
    }
}
