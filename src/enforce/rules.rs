//! A table's quotas: read from quota.enforcements (by the partition root), cached per
//! firing table until a relcache invalidation.

use super::*;
use crate::pg::invalidation;

/// The rules of a table at 0.4.0 and later: columns by number (renames followed).
pub(super) static RULES: Stmt = Stmt {
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
pub(super) static RULES_BY_NAME: Stmt = Stmt {
    sql: "SELECT e.metric, e.amount, e.encoding, e.refund_on_delete, e.subject_column, e.amount_column, e.tokens_of,
                 sa.attname::text, aa.attname::text, ta.attname::text
          FROM quota.enforcements e
          LEFT JOIN pg_catalog.pg_attribute sa ON sa.attrelid = e.table_name AND sa.attname = e.subject_column AND NOT sa.attisdropped
          LEFT JOIN pg_catalog.pg_attribute aa ON aa.attrelid = e.table_name AND aa.attname = e.amount_column AND NOT aa.attisdropped
          LEFT JOIN pg_catalog.pg_attribute ta ON ta.attrelid = e.table_name AND ta.attname = e.tokens_of AND NOT ta.attisdropped
          WHERE e.table_name = $1 ORDER BY e.metric",
    types: &[pg_sys::PgBuiltInOids::OIDOID],
};
pub(super) static TABLE_FACTS: Stmt = Stmt {
    sql: "SELECT c.relkind::text, c.oid::regclass::text,
                 (SELECT pg_catalog.array_agg(a.attname::text ORDER BY pg_catalog.array_position(i.indkey::int2[], a.attnum))
                  FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                  WHERE i.indrelid = c.oid AND i.indisprimary)
          FROM pg_catalog.pg_class c WHERE c.oid = $1",
    types: &[pg_sys::PgBuiltInOids::OIDOID],
};
pub(super) static PARTITION_ROOT: Stmt =
    Stmt { sql: "SELECT coalesce(pg_catalog.pg_partition_root($1), $1::regclass)::oid", types: &[pg_sys::PgBuiltInOids::OIDOID] };

pub(super) fn load_rules(c: &mut SpiClient<'_>, root: pg_sys::Oid) -> TableRules {
    let by_number = installed::at_least(installed::ROW_CHARGES);
    let rules: Vec<Rule> = storage::run(c, if by_number { &RULES } else { &RULES_BY_NAME }, &[root.into()])
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
    let facts = storage::run(c, &TABLE_FACTS, &[root.into()]);
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
}

/// Bound on cached tables per backend; the cache starts over when full.
pub(super) const MAX_CACHED_TABLES: usize = 1024;

fn forget_rules(_relid: pg_sys::Oid) {
    CACHE.with(|c| c.borrow_mut().clear());
}

/// The rules of the table a trigger fired on: those of its partition root, and (before
/// 0.4.0 a quota could be set on a partition itself) the partition's own, for metrics
/// the root does not limit. Cached per firing table. Databases before 0.4.0 have no
/// invalidating trigger on quota.enforcements: their rules are read for every row, as
/// they were.
pub(super) fn rules_for(c: &mut SpiClient<'_>, table: pg_sys::Oid) -> Rc<TableRules> {
    let generation = invalidation::listen(forget_rules);
    let cacheable = installed::at_least(installed::ROW_CHARGES);
    if let Some(rules) = CACHE.with(|m| m.borrow().get(&table).cloned()).filter(|_| cacheable) {
        return rules;
    }
    let root = storage::run(c, &PARTITION_ROOT, &[table.into()]).first().get::<pg_sys::Oid>(1).ok().flatten().unwrap_or(table);
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
    if cacheable && invalidation::unchanged_since(generation) {
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
