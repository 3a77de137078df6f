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
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::CStr;
use std::rc::Rc;

use crate::engine::{self, ConsumeRequest};
use crate::ereport::{raise, OrRaise};
use crate::error::{non_empty, required, QuotaError};
use crate::installed;
use crate::store::{self, Stmt};
use crate::tokens::Encoding;

type QResult<T> = crate::error::Result<T>;

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

/// A column of the enforced table, kept by number so that a rename is followed. `name`
/// is its current name at the partition root (None: dropped), `stored` the name it had
/// when the quota was set (for messages).
#[derive(Clone, Debug)]
struct Column {
    name: Option<String>,
    stored: String,
}

/// What one row costs under one quota.
#[derive(Clone, Debug)]
enum Cost {
    Constant(i64),
    Column(Column),
    Tokens(Column, Encoding),
}

/// One metric enforced on a table.
#[derive(Clone, Debug)]
struct Rule {
    /// The table the quota was set on (for messages).
    table: String,
    metric: String,
    subject: Column,
    cost: Cost,
    refund_on_delete: bool,
}

/// Every quota of one table (a partition root or a plain table), as the triggers need it.
#[derive(Debug, Default)]
struct TableRules {
    root: pg_sys::Oid,
    /// The root's name, quoted as regclass output does.
    root_name: String,
    rules: Vec<Rule>,
    partitioned: bool,
    /// Current names of the primary key's columns, which identify a row's charge.
    key: Option<Vec<String>>,
}

impl TableRules {
    fn refunds(&self) -> bool {
        self.rules.iter().any(|r| r.refund_on_delete)
    }
}

/// The rules of a table at 0.4.0 and later: columns by number (renames followed).
static RULES: Stmt = Stmt {
    sql: "SELECT e.metric, e.amount, e.encoding, e.refund_on_delete, e.subject_column, e.amount_column, e.tokens_of,
                 sa.attname::text, aa.attname::text, ta.attname::text
          FROM quota.enforcements e
          LEFT JOIN pg_catalog.pg_attribute sa ON sa.attrelid = e.table_name AND sa.attnum = e.subject_attnum AND NOT sa.attisdropped
          LEFT JOIN pg_catalog.pg_attribute aa ON aa.attrelid = e.table_name AND aa.attnum = e.amount_attnum AND NOT aa.attisdropped
          LEFT JOIN pg_catalog.pg_attribute ta ON ta.attrelid = e.table_name AND ta.attnum = e.tokens_attnum AND NOT ta.attisdropped
          WHERE e.table_name = $1 ORDER BY e.metric",
    types: &[pg_sys::PgBuiltInOids::OIDOID],
};
/// The rules of a table before 0.4.0: columns by name.
static RULES_BY_NAME: Stmt = Stmt {
    sql: "SELECT e.metric, e.amount, e.encoding, e.refund_on_delete, e.subject_column, e.amount_column, e.tokens_of,
                 sa.attname::text, aa.attname::text, ta.attname::text
          FROM quota.enforcements e
          LEFT JOIN pg_catalog.pg_attribute sa ON sa.attrelid = e.table_name AND sa.attname = e.subject_column AND NOT sa.attisdropped
          LEFT JOIN pg_catalog.pg_attribute aa ON aa.attrelid = e.table_name AND aa.attname = e.amount_column AND NOT aa.attisdropped
          LEFT JOIN pg_catalog.pg_attribute ta ON ta.attrelid = e.table_name AND ta.attname = e.tokens_of AND NOT ta.attisdropped
          WHERE e.table_name = $1 ORDER BY e.metric",
    types: &[pg_sys::PgBuiltInOids::OIDOID],
};
static TABLE_FACTS: Stmt = Stmt {
    sql: "SELECT c.relkind::text, c.oid::regclass::text,
                 (SELECT pg_catalog.array_agg(a.attname::text ORDER BY pg_catalog.array_position(i.indkey::int2[], a.attnum))
                  FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                  WHERE i.indrelid = c.oid AND i.indisprimary)
          FROM pg_catalog.pg_class c WHERE c.oid = $1",
    types: &[pg_sys::PgBuiltInOids::OIDOID],
};
static PARTITION_ROOT: Stmt = Stmt {
    sql: "SELECT coalesce(pg_catalog.pg_partition_root($1), $1::regclass)::oid",
    types: &[pg_sys::PgBuiltInOids::OIDOID],
};

fn load_rules(c: &mut SpiClient<'_>, root: pg_sys::Oid) -> TableRules {
    let by_number = installed::at_least(installed::ROW_CHARGES);
    let rules: Vec<Rule> = store::run(c, if by_number { &RULES } else { &RULES_BY_NAME }, &[root.into()])
        .map(|row| {
            let text = |i| row.get::<String>(i).ok().flatten();
            let column = |stored: Option<String>, current: Option<String>| Column { name: current, stored: stored.unwrap_or_default() };
            let cost = match (text(6), text(7)) {
                (Some(stored), _) => Cost::Column(column(Some(stored), text(9))),
                (None, Some(stored)) => Cost::Tokens(
                    column(Some(stored), text(10)),
                    // The CHECK constraint keeps the name valid.
                    Encoding::parse(&text(3).unwrap_or_default()).unwrap_or(Encoding::Cl100kBase),
                ),
                (None, None) => Cost::Constant(row.get::<i64>(2).ok().flatten().unwrap_or(1)),
            };
            Rule {
                table: String::new(),
                metric: text(1).unwrap_or_default(),
                subject: column(text(5), text(8)),
                cost,
                refund_on_delete: row.get::<bool>(4).ok().flatten().unwrap_or(false),
            }
        })
        .collect();
    let facts = store::run(c, &TABLE_FACTS, &[root.into()]);
    let row = facts.first();
    let name = row.get::<String>(2).ok().flatten().unwrap_or_default();
    let rules = rules.into_iter().map(|r| Rule { table: name.clone(), ..r }).collect();
    TableRules {
        root,
        root_name: name.clone(),
        partitioned: row.get::<String>(1).ok().flatten().as_deref() == Some("p"),
        key: row.get::<Vec<String>>(3).ok().flatten(),
        rules,
    }
}

thread_local! {
    /// Rules by the table a trigger fired on. Forgotten at every relcache invalidation:
    /// DDL on the tables (renames, drops, partitions) and the statement trigger on
    /// quota.enforcements (sql/hotpath.sql) send one.
    static CACHE: RefCell<HashMap<pg_sys::Oid, Rc<TableRules>>> = RefCell::new(HashMap::new());
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
    static GENERATION: Cell<u64> = const { Cell::new(0) };
    /// The row a BEFORE UPDATE trigger of a partitioned table last saw (see `moved`).
    static UPDATING: Cell<Option<Updating>> = const { Cell::new(None) };
}

/// Bound on cached tables per backend; the cache starts over when full.
const MAX_CACHED_TABLES: usize = 1024;

// SAFETY: called by PostgreSQL's invalidation machinery with plain values; it only
// touches this backend's thread-local caches, never the catalog, and cannot fail.
unsafe extern "C-unwind" fn forget_rules(_arg: pg_sys::Datum, _relid: pg_sys::Oid) {
    GENERATION.with(|g| g.set(g.get().wrapping_add(1)));
    CACHE.with(|c| c.borrow_mut().clear());
}

/// The rules of the table a trigger fired on: those of its partition root, and (before
/// 0.4.0 a quota could be set on a partition itself) the partition's own, for metrics
/// the root does not limit. Cached per firing table. Databases before 0.4.0 have no
/// invalidating trigger on quota.enforcements: their rules are read for every row, as
/// they were.
fn rules_for(c: &mut SpiClient<'_>, table: pg_sys::Oid) -> Rc<TableRules> {
    if !REGISTERED.with(|r| r.replace(true)) {
        // SAFETY: plain callback registration; the callback only clears caches.
        unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(forget_rules), pg_sys::Datum::from(0usize)) };
    }
    let cacheable = installed::at_least(installed::ROW_CHARGES);
    if let Some(rules) = CACHE.with(|m| m.borrow().get(&table).cloned()).filter(|_| cacheable) {
        return rules;
    }
    let generation = GENERATION.with(|g| g.get());
    let root = store::run(c, &PARTITION_ROOT, &[table.into()]).first().get::<pg_sys::Oid>(1).ok().flatten().unwrap_or(table);
    let mut rules = load_rules(c, root);
    if root != table {
        let own = load_rules(c, table);
        for rule in own.rules {
            if !rules.rules.iter().any(|r| r.metric == rule.metric) {
                rules.rules.push(rule);
            }
        }
    }
    let rules = Rc::new(rules);
    if cacheable && GENERATION.with(|g| g.get()) == generation {
        CACHE.with(|m| {
            let mut m = m.borrow_mut();
            if m.len() >= MAX_CACHED_TABLES {
                m.clear();
            }
            m.insert(table, rules.clone());
        });
    }
    rules
}

/// The row a trigger fired for, with its descriptor.
struct Row {
    tuple: *mut pg_sys::HeapTupleData,
    desc: pg_sys::TupleDesc,
}

impl Row {
    fn old(trigger: &PgTrigger<'_>) -> Row {
        let data = trigger.trigger_data();
        // SAFETY: a row trigger always has its tuple and relation.
        Row { tuple: data.tg_trigtuple, desc: unsafe { (*data.tg_relation).rd_att } }
    }

    /// The new row of an UPDATE.
    fn new(trigger: &PgTrigger<'_>) -> Row {
        let data = trigger.trigger_data();
        // SAFETY: an UPDATE row trigger has its new tuple.
        Row { tuple: data.tg_newtuple, desc: unsafe { (*data.tg_relation).rd_att } }
    }

    /// The attribute number of a column of this row, by the root's name (a partition's
    /// columns have the same names, maybe at other numbers); None if there is none.
    fn attnum(&self, column: &str) -> Option<i32> {
        let name = std::ffi::CString::new(column).ok()?;
        // SAFETY: the descriptor belongs to the firing trigger's relation.
        let n = unsafe { pg_sys::SPI_fnumber(self.desc, name.as_ptr()) };
        (n > 0).then_some(n)
    }

    /// A column rendered as text by its type's output function, so that any type can hold
    /// the subject (text, integer, uuid, inet...). `None` for NULL.
    fn text(&self, column: &str) -> Option<String> {
        let n = self.attnum(column)?;
        // SAFETY: the tuple and descriptor belong to the firing trigger and `n` is one of
        // its attributes; SPI_getvalue pallocs the text, which is copied and freed.
        unsafe {
            let value = pg_sys::SPI_getvalue(self.tuple, self.desc, n);
            if value.is_null() {
                return None;
            }
            let text = CStr::from_ptr(value).to_string_lossy().into_owned();
            pg_sys::pfree(value.cast());
            Some(text)
        }
    }

    /// A column's value and what its type is (oid, by value, length); None when the
    /// column is missing or NULL.
    fn value(&self, column: &str) -> Option<(pg_sys::Datum, pg_sys::Oid, bool, i16)> {
        let n = self.attnum(column)?;
        // SAFETY: as in `text`; the attribute `n` exists in the descriptor.
        unsafe {
            let mut isnull = false;
            let datum = pg_sys::SPI_getbinval(self.tuple, self.desc, n, &mut isnull);
            let attr = &*(*self.desc).attrs.as_ptr().add(n as usize - 1);
            (!isnull).then_some((datum, attr.atttypid, attr.attbyval, attr.attlen))
        }
    }

    /// The row's primary key as one text that identifies its charge: the SHA-256 of the
    /// key columns' stored images (their bytes, not their text forms, which depend on
    /// TimeZone, DateStyle, extra_float_digits and the like). None without a primary key.
    fn key(&self, key: Option<&[String]>) -> Option<String> {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        for column in key? {
            let image = self.image(column)?;
            hash.update((image.len() as u64).to_le_bytes());
            hash.update(&image);
        }
        Some(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }

    /// A column's stored bytes (detoasted); None when the column is missing or NULL.
    fn image(&self, column: &str) -> Option<Vec<u8>> {
        let (datum, _, byval, len) = self.value(column)?;
        // SAFETY: the datum is the column's own value, read by its attribute's length and
        // by-value flag; varlena values are detoasted into the current memory context.
        let bytes = unsafe {
            match (byval, len) {
                (true, len) => datum.value().to_le_bytes()[..len.clamp(1, 8) as usize].to_vec(),
                (false, -1) => {
                    let v = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
                    std::slice::from_raw_parts(pgrx::varlena::vardata_any(v).cast::<u8>(), pgrx::varlena::varsize_any_exhdr(v)).to_vec()
                }
                (false, -2) => CStr::from_ptr(datum.cast_mut_ptr()).to_bytes().to_vec(),
                (false, len) => std::slice::from_raw_parts(datum.cast_mut_ptr::<u8>(), len.max(0) as usize).to_vec(),
            }
        };
        Some(bytes)
    }
}

/// A column's current name, or the error that makes the quota fail closed.
fn current<'c>(rule: &Rule, column: &'c Column) -> QResult<&'c str> {
    column.name.as_deref().ok_or_else(|| QuotaError::BrokenRule { table: rule.table.clone(), metric: rule.metric.clone(), column: column.stored.clone() })
}

/// What one row costs under one rule: (subject, amount).
fn row_cost(row: &Row, rule: &Rule) -> QResult<(String, i64)> {
    let subject = row.text(current(rule, &rule.subject)?).ok_or(QuotaError::Null { argument: "subject column" })?;
    let amount = match &rule.cost {
        Cost::Constant(n) => *n,
        Cost::Tokens(col, encoding) => row.text(current(rule, col)?).map(|text| encoding.count(&text) as i64).unwrap_or(0),
        Cost::Column(col) => {
            let name = current(rule, col)?;
            match row.text(name) {
                None => 0,
                Some(v) => parse_amount(name, &v)?,
            }
        }
    };
    Ok((subject, amount))
}

/// A numeric column's value as a whole, non-negative amount.
fn parse_amount(column: &str, value: &str) -> QResult<i64> {
    let bad = |why: &str| {
        QuotaError::invalid(
            "amount column",
            value,
            format!("column \"{column}\" {why}: {}", crate::error::quoted(value)),
            "Store a whole, non-negative amount in the column.",
        )
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
    let event = trigger.event();
    let outcome = if event.fired_by_insert() {
        on_insert(trigger, table)
    } else if event.fired_by_delete() {
        on_delete(trigger, table)
    } else if event.fired_by_update() {
        on_update(trigger, table)
    } else if event.fired_by_truncate() {
        on_truncate(table)
    } else {
        Ok(())
    };
    if let Err(e) = outcome {
        raise(e);
    }
    Ok(trigger.new())
}

// Row charges ----------------------------------------------------------------------------
// What each row's insert was charged (subject, window, amount per metric), keyed by the
// table's partition root and the row's primary key: a DELETE refunds exactly that, to
// that subject, whatever the row holds by then.

static RECORD_CHARGE: Stmt = Stmt {
    sql: "INSERT INTO quota.row_charges AS r (table_name, row_key, metric, subject, window_start, amount, charged_at)
          VALUES ($1, $2, $3, $4, $5, $6, $7)
          ON CONFLICT (table_name, row_key, metric) DO NOTHING
          RETURNING true",
    types: &[
        pg_sys::PgBuiltInOids::OIDOID,
        pg_sys::PgBuiltInOids::TEXTOID,
        pg_sys::PgBuiltInOids::TEXTOID,
        pg_sys::PgBuiltInOids::TEXTOID,
        pg_sys::PgBuiltInOids::TIMESTAMPTZOID,
        pg_sys::PgBuiltInOids::INT8OID,
        pg_sys::PgBuiltInOids::TIMESTAMPTZOID,
    ],
};
static TAKE_CHARGES: Stmt = Stmt {
    sql: "DELETE FROM quota.row_charges WHERE table_name = $1 AND row_key = $2
          RETURNING metric, subject, window_start, amount",
    types: &[pg_sys::PgBuiltInOids::OIDOID, pg_sys::PgBuiltInOids::TEXTOID],
};
/// Replace a charge left by a row that is gone without a DELETE (a partition truncated,
/// detached or dropped): see `on_insert`.
static REPLACE_CHARGE: Stmt = Stmt {
    sql: "UPDATE quota.row_charges SET subject = $4, window_start = $5, amount = $6, charged_at = $7
          WHERE table_name = $1 AND row_key = $2 AND metric = $3",
    types: &[
        pg_sys::PgBuiltInOids::OIDOID,
        pg_sys::PgBuiltInOids::TEXTOID,
        pg_sys::PgBuiltInOids::TEXTOID,
        pg_sys::PgBuiltInOids::TEXTOID,
        pg_sys::PgBuiltInOids::TIMESTAMPTZOID,
        pg_sys::PgBuiltInOids::INT8OID,
        pg_sys::PgBuiltInOids::TIMESTAMPTZOID,
    ],
};
static FORGET_CHARGES: Stmt = Stmt {
    sql: "DELETE FROM quota.row_charges WHERE table_name = $1",
    types: &[pg_sys::PgBuiltInOids::OIDOID],
};
static REKEY_CHARGES: Stmt = Stmt {
    sql: "UPDATE quota.row_charges SET row_key = $3 WHERE table_name = $1 AND row_key = $2",
    types: &[pg_sys::PgBuiltInOids::OIDOID, pg_sys::PgBuiltInOids::TEXTOID, pg_sys::PgBuiltInOids::TEXTOID],
};

fn on_insert(trigger: &PgTrigger<'_>, table: pg_sys::Oid) -> QResult<()> {
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
        decisions.extend(engine::consume(ConsumeRequest { subject: &subject, items, idempotency_key: None, metadata: None, no_raise: false })?);
    }
    if decisions.is_empty() {
        return Ok(());
    }
    if !t.refunds() || !installed::at_least(installed::ROW_CHARGES) {
        return Ok(());
    }
    let Some(key) = row.key(t.key.as_deref()) else { return Ok(()) };
    let now = crate::clock::now();
    Spi::connect_mut(|c| {
        for d in decisions.iter().filter(|d| t.rules.iter().any(|r| r.refund_on_delete && r.metric == d.metric)) {
            let args = [
                t.root.into(),
                key.as_str().into(),
                d.metric.as_str().into(),
                d.subject.as_str().into(),
                crate::clock::window_key(d.window_start).into(),
                d.requested.into(),
                crate::clock::to_pg_tz(now).into(),
            ];
            if store::run(c, &RECORD_CHARGE, &args).is_empty() && !row_with_key_exists(c, &t, &row) {
                // The key's charge belongs to no row (it went without a DELETE): this
                // row's charge replaces it. While a row has the key, its first charge
                // stays (an INSERT ... ON CONFLICT that inserts nothing replaces nothing).
                store::run(c, &REPLACE_CHARGE, &args);
            }
        }
    });
    Ok(())
}

/// Is there a row (visible now) in the table with this row's primary key?
fn row_with_key_exists(c: &mut SpiClient<'_>, t: &TableRules, row: &Row) -> bool {
    let Some(key) = t.key.as_deref() else { return false };
    let mut conditions = Vec::with_capacity(key.len());
    let mut args = Vec::with_capacity(key.len());
    for (i, column) in key.iter().enumerate() {
        let Some((datum, type_oid, _, _)) = row.value(column) else { return false };
        conditions.push(format!("{} OPERATOR(pg_catalog.=) ${}", quote_ident(column), i + 1));
        // SAFETY: the datum comes from the row's own column, of that type.
        args.push(unsafe { pgrx::datum::DatumWithOid::new(store::RawDatum(datum), type_oid) });
    }
    let sql = format!("SELECT 1 FROM {} WHERE {} LIMIT 1", t.root_name, conditions.join(" AND "));
    // A key type without an equality PostgreSQL can find here: assume the row exists
    // (the first charge stays).
    crate::pg::subtransaction::run(|| c.select(&sql, Some(1), &args).map(|rows| !rows.is_empty()).unwrap_or(true)).unwrap_or(true)
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn on_delete(trigger: &PgTrigger<'_>, table: pg_sys::Oid) -> QResult<()> {
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
    let charges: Vec<(String, String, Option<TimestampWithTimeZone>, i64)> = Spi::connect_mut(|c| {
        store::run(c, &TAKE_CHARGES, &[t.root.into(), key.as_str().into()])
            .filter_map(|r| {
                Some((r.get::<String>(1).ok()??, r.get::<String>(2).ok()??, r.get::<TimestampWithTimeZone>(3).ok()?, r.get::<i64>(4).ok()??))
            })
            .collect()
    });
    for (metric, subject, start, amount) in charges {
        let start = start.filter(|s| s.is_finite()).map(|s| crate::clock::from_pg(s.into_inner()));
        engine::refund_charge(&subject, &metric, start, amount)?;
    }
    Ok(())
}

/// Before 0.4.0 a DELETE refunded what the row held (that version's semantics, kept until
/// the database is updated).
fn legacy_refund(t: &TableRules, row: &Row) -> QResult<()> {
    for rule in t.rules.iter().filter(|r| r.refund_on_delete) {
        let (subject, amount) = row_cost(row, rule)?;
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

/// TRUNCATE refunds nothing, and the table's rows are gone: so are their charges.
fn on_truncate(table: pg_sys::Oid) -> QResult<()> {
    if installed::at_least(installed::ROW_CHARGES) {
        Spi::connect_mut(|c| {
            let t = rules_for(c, table);
            store::run(c, &FORGET_CHARGES, &[t.root.into()]);
        });
    }
    Ok(())
}

fn on_update(trigger: &PgTrigger<'_>, table: pg_sys::Oid) -> QResult<()> {
    let t = Spi::connect_mut(|c| rules_for(c, table));
    let (old, new) = (Row::old(trigger), Row::new(trigger));
    if t.refunds() && installed::at_least(installed::ROW_CHARGES) {
        if let (Some(before), Some(after)) = (old.key(t.key.as_deref()), new.key(t.key.as_deref())) {
            if before != after {
                Spi::connect_mut(|c| {
                    store::run(c, &REKEY_CHARGES, &[t.root.into(), before.as_str().into(), after.as_str().into()]);
                });
            }
        }
    }
    if t.partitioned {
        // SAFETY: the old tuple of a row trigger carries its own TID.
        let tid = unsafe { (*old.tuple).t_self };
        UPDATING.with(|u| u.set(Some(Updating { root: t.root, partition: table, tid, lxid: local_transaction() })));
    }
    Ok(())
}

// Rows that an UPDATE moves to another partition -------------------------------------------
// PostgreSQL moves a row as a DELETE from its partition followed by an INSERT into the
// new one: BEFORE UPDATE fires on the old partition, then (after the old row is deleted
// and marked as moved) BEFORE INSERT on the new one, and AFTER DELETE at the end of the
// statement. Neither may charge or refund. The old row version carries the mark
// (`t_ctid` set to "moved partitions"), which no other deletion sets.

/// The row version a BEFORE UPDATE trigger of a partitioned table saw last.
#[derive(Clone, Copy)]
struct Updating {
    root: pg_sys::Oid,
    partition: pg_sys::Oid,
    tid: pg_sys::ItemPointerData,
    /// The local id of the transaction that saw it: a row seen by an earlier transaction
    /// of this backend is never taken for this one's.
    lxid: pg_sys::LocalTransactionId,
}

fn local_transaction() -> pg_sys::LocalTransactionId {
    // SAFETY: every backend has its PGPROC.
    unsafe { (*pg_sys::MyProc).lxid }
}

/// Does this INSERT into a partition of `root` put back the row the last BEFORE UPDATE
/// saw, which this transaction just deleted from its old partition to move it?
fn moved(root: pg_sys::Oid) -> bool {
    let Some(u) = UPDATING.with(|u| u.take()) else { return false };
    if u.root != root || u.lxid != local_transaction() {
        return false;
    }
    // SAFETY: the partition is opened only if it still exists (a moving UPDATE holds it
    // locked; a stale one may have been dropped); the fetch pins the buffer and the
    // header is read under a share lock, then all three are released.
    unsafe {
        let rel = pg_sys::try_table_open(u.partition, pg_sys::AccessShareLock as _);
        if rel.is_null() {
            return false;
        }
        // Only a heap table's row versions carry the mark (a foreign or other-AM
        // partition: the move is charged again, the safe side).
        let form = (*rel).rd_rel;
        if (*form).relkind != pg_sys::RELKIND_RELATION as std::ffi::c_char || (*form).relam != pg_sys::Oid::from(pg_sys::HEAP_TABLE_AM_OID) {
            pg_sys::table_close(rel, pg_sys::AccessShareLock as _);
            return false;
        }
        let block = (u.tid.ip_blkid.bi_hi as u32) << 16 | u.tid.ip_blkid.bi_lo as u32;
        if block >= pg_sys::RelationGetNumberOfBlocksInFork(rel, pg_sys::ForkNumber::MAIN_FORKNUM) {
            pg_sys::table_close(rel, pg_sys::AccessShareLock as _);
            return false;
        }
        let mut tuple: pg_sys::HeapTupleData = std::mem::zeroed();
        tuple.t_self = u.tid;
        let mut buffer: pg_sys::Buffer = 0;
        let found = pg_sys::heap_fetch(rel, &raw mut pg_sys::SnapshotAnyData, &mut tuple, &mut buffer, true);
        let mut moved = false;
        if found && buffer != 0 {
            pg_sys::LockBuffer(buffer, pg_sys::BUFFER_LOCK_SHARE as _);
            // The deleting transaction: the update xid of a multixact (a row also locked
            // by others), else the raw xmax.
            let header = tuple.t_data;
            let xmax = if (*header).t_infomask as u32 & pg_sys::HEAP_XMAX_IS_MULTI != 0 {
                pg_sys::HeapTupleGetUpdateXid(header)
            } else {
                (*header).t_choice.t_heap.t_xmax
            };
            moved = indicates_moved(&(*header).t_ctid) && pg_sys::TransactionIdIsCurrentTransactionId(xmax);
            pg_sys::LockBuffer(buffer, pg_sys::BUFFER_LOCK_UNLOCK as _);
        }
        if buffer != 0 {
            pg_sys::ReleaseBuffer(buffer);
        }
        pg_sys::table_close(rel, pg_sys::AccessShareLock as _);
        moved
    }
}

/// Is this deleted row version marked as moved to another partition?
fn moved_away(tuple: *mut pg_sys::HeapTupleData) -> bool {
    // SAFETY: an AFTER DELETE trigger's old tuple is the stored version, header included.
    unsafe { !tuple.is_null() && !(*tuple).t_data.is_null() && indicates_moved(&(*(*tuple).t_data).t_ctid) }
}

/// PostgreSQL's `ItemPointerIndicatesMovedPartitions`.
fn indicates_moved(tid: &pg_sys::ItemPointerData) -> bool {
    tid.ip_blkid.bi_hi == 0xFFFF && tid.ip_blkid.bi_lo == 0xFFFF && tid.ip_posid == MOVED_PARTITIONS_OFFSET
}

/// PostgreSQL's `MovedPartitionsOffsetNumber`.
const MOVED_PARTITIONS_OFFSET: u16 = 0xfffd;

// Configuration ------------------------------------------------------------------------

/// What a column is, from the catalog: its type category ('N' numeric, 'S' string...)
/// and its number.
static COLUMN: Stmt = Stmt {
    sql: "SELECT t.typcategory::text, a.attnum FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
          WHERE a.attrelid = $1 AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
    types: &[pg_sys::PgBuiltInOids::OIDOID, pg_sys::PgBuiltInOids::TEXTOID],
};
static RELKIND: Stmt = Stmt {
    sql: "SELECT relkind::text, oid::regclass::text, relispartition FROM pg_catalog.pg_class WHERE oid = $1",
    types: &[pg_sys::PgBuiltInOids::OIDOID],
};
static HAS_PRIMARY_KEY: Stmt = Stmt {
    sql: "SELECT 1 FROM pg_catalog.pg_index WHERE indrelid = $1 AND indisprimary",
    types: &[pg_sys::PgBuiltInOids::OIDOID],
};
static UPSERT_RULE: Stmt = Stmt {
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
static UPSERT_RULE_BY_NAME: Stmt = Stmt {
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
static TABLE_STATE_BY_NAME: Stmt = Stmt {
    sql: "SELECT count(*)::int4, count(*) FILTER (WHERE refund_on_delete)::int4, count(DISTINCT subject_column)::int4
          FROM quota.enforcements WHERE table_name = $1::regclass",
    types: &[pg_sys::PgBuiltInOids::OIDOID],
};
static RULE_EXISTS: Stmt = Stmt {
    sql: "SELECT 1 FROM quota.enforcements WHERE table_name = $1::regclass AND metric = $2",
    types: &[pg_sys::PgBuiltInOids::OIDOID, pg_sys::PgBuiltInOids::TEXTOID],
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
    sql: "SELECT count(*)::int4, count(*) FILTER (WHERE refund_on_delete)::int4, count(DISTINCT subject_attnum)::int4
          FROM quota.enforcements WHERE table_name = $1::regclass",
    types: &[pg_sys::PgBuiltInOids::OIDOID],
};

/// A column's number, checked to exist with one of the type `categories` (empty: any).
fn check_column(c: &mut SpiClient<'_>, table: pg_sys::Oid, argument: &'static str, column: &str, categories: &str) -> QResult<i16> {
    non_empty(argument, column)?;
    let table_name = table_text(c, table);
    let found = store::run(c, &COLUMN, &[table.into(), column.into()]);
    let found = found.first();
    let (category, attnum) = (found.get::<String>(1).ok().flatten(), found.get::<i16>(2).ok().flatten());
    match (category, attnum) {
        (Some(cat), Some(_)) if !categories.is_empty() && !categories.contains(cat.as_str()) => Err(QuotaError::invalid(
            argument,
            column,
            format!("column \"{}\" of table {table_name} has the wrong type for {argument}", crate::error::quoted(column)),
            if argument == "tokens_of" { "Count tokens of a text column." } else { "Use a numeric column for amount_column." },
        )),
        (Some(_), Some(attnum)) => Ok(attnum),
        _ => Err(QuotaError::invalid(
            argument,
            column,
            format!("column \"{}\" does not exist in table {table_name}", crate::error::quoted(column)),
            "Pass the name of one of the table's columns.",
        )),
    }
}

fn table_text(c: &mut SpiClient<'_>, table: pg_sys::Oid) -> String {
    store::run(c, &RELKIND, &[table.into()]).first().get::<String>(2).ok().flatten().unwrap_or_default()
}

/// (number of rules, rules that refund on delete, distinct subject columns) for a table.
fn table_state(c: &mut SpiClient<'_>, table: pg_sys::Oid) -> (i32, i32, i32) {
    let stmt = if installed::at_least(installed::ROW_CHARGES) { &TABLE_STATE } else { &TABLE_STATE_BY_NAME };
    let t = store::run(c, stmt, &[table.into()]);
    let row = t.first();
    let get = |i| row.get::<i32>(i).ok().flatten().unwrap_or(0);
    (get(1), get(2), get(3))
}

/// Create or drop the table's triggers to match its rules: BEFORE INSERT charges,
/// AFTER DELETE refunds, and BEFORE UPDATE follows rows whose key changes or that move
/// between partitions. On a partitioned table PostgreSQL clones each trigger to every
/// partition, present and future.
fn sync_triggers(c: &mut SpiClient<'_>, table: pg_sys::Oid, partitioned: bool) {
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
        let exists = !store::run(c, &HAS_TRIGGER, &[table.into(), trigger.into()]).is_empty();
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
fn may_change(c: &mut SpiClient<'_>, table: pg_sys::Oid, replaces: bool) -> QResult<()> {
    // SAFETY: catalog checks by oid for the session's current role.
    let allowed = unsafe {
        let role = pg_sys::GetOuterUserId();
        if replaces {
            pg_sys::pg_class_ownercheck(table, role)
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
        (format!("permission denied to enforce quotas on table {name}"), format!("Run this as the owner of {name}, or GRANT TRIGGER ON {name} to this role."))
    };
    Err(QuotaError::Forbidden { message, hint, object: name })
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
    crate::error::name("metric", metric)?;
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
        let facts = store::run(c, &RELKIND, &[table.into()]);
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
        let replaces = !store::run(c, &RULE_EXISTS, &[table.into(), metric.into()]).is_empty();
        may_change(c, table, replaces)?;
        let subject_attnum = check_column(c, table, "subject_column", subject_column, "")?;
        let amount_attnum = amount_column.map(|col| check_column(c, table, "amount_column", col, "N")).transpose()?;
        let tokens_attnum = tokens_of.map(|col| check_column(c, table, "tokens_of", col, "S")).transpose()?;
        if current && refund_on_delete && store::run(c, &HAS_PRIMARY_KEY, &[table.into()]).is_empty() {
            return Err(QuotaError::invalid(
                "refund_on_delete",
                &name,
                format!("refund_on_delete needs a primary key on {name}: it identifies what each row was charged"),
                "Add a primary key to the table, or enforce without refund_on_delete.",
            ));
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
        store::run(c, if current { &UPSERT_RULE } else { &UPSERT_RULE_BY_NAME }, &args);
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

/// Put a quota on a table: every inserted row consumes `metric` for the subject in
/// `subject_column` — `amount` per row, or the value of `amount_column`, or the token
/// count of the text column `tokens_of` in `encoding`. With `refund_on_delete`, deleting a
/// row gives back what its insert was charged. Calling it again for the same table and
/// metric replaces it.
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
/// Returns whether there was one. Only the table's owner may.
#[pg_extern(volatile, parallel_unsafe)]
fn enforce_off(table_name: Option<RegClass>, metric: Option<&str>) -> bool {
    let table = required("table_name", table_name).or_raise().0;
    let metric = required("metric", metric).or_raise();
    Spi::connect_mut(|c| {
        may_change(c, table, true)?;
        let removed = !store::run(c, &DELETE_RULE, &[table.into(), metric.into()]).is_empty();
        let partitioned = store::run(c, &RELKIND, &[table.into()]).first().get::<String>(1).ok().flatten().as_deref() == Some("p");
        sync_triggers(c, table, partitioned);
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
