//! quota.bonus_rules and quota.bonus_grants.

use chrono::{DateTime, NaiveDate, Utc};
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::PgBuiltInOids as T;
use pgrx::spi::SpiClient;

use super::{corrupt, first, needed, run, ts, Stmt};
use crate::domain::bonus::{BonusRule, ReferenceScope};
use crate::domain::error::Result;
use crate::domain::period::Window;
use crate::pg::clock;

static FIND_RULE: Stmt = Stmt {
    sql: "SELECT amount, reference_scope FROM quota.bonus_rules WHERE plan = $1 AND metric = $2 AND kind = $3",
    types: &[T::TEXTOID, T::TEXTOID, T::TEXTOID],
};
static UPSERT_RULE: Stmt = Stmt {
    sql: "INSERT INTO quota.bonus_rules (plan, metric, kind, amount, reference_scope) VALUES ($1, $2, $3, $4, $5)
          ON CONFLICT (plan, metric, kind) DO UPDATE SET amount = EXCLUDED.amount, reference_scope = EXCLUDED.reference_scope",
    types: &[T::TEXTOID, T::TEXTOID, T::TEXTOID, T::INT8OID, T::TEXTOID],
};
static COUNT_GRANTS: Stmt =
    Stmt { sql: "SELECT count(*)::int4 FROM quota.bonus_grants WHERE subject = $1 AND local_day = $2", types: &[T::TEXTOID, T::DATEOID] };
static INSERT_GRANT: Stmt = Stmt {
    sql: "INSERT INTO quota.bonus_grants
              (subject, metric, kind, reference, reference_scope, amount, window_start, local_day, granted_at)
          VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
          ON CONFLICT DO NOTHING
          RETURNING id",
    types: &[T::TEXTOID, T::TEXTOID, T::TEXTOID, T::TEXTOID, T::TEXTOID, T::INT8OID, T::TIMESTAMPTZOID, T::DATEOID, T::TIMESTAMPTZOID],
};

pub fn rule(c: &mut SpiClient<'_>, plan: &str, metric: &str, kind: &str) -> Result<Option<BonusRule>> {
    let Some(row) = run(c, &FIND_RULE, &[plan.into(), metric.into(), kind.into()]).next() else { return Ok(None) };
    let scope: String = needed(&row, 2, "quota.bonus_rules", "reference_scope")?;
    let scope = ReferenceScope::parse(&scope).ok_or_else(|| corrupt("quota.bonus_rules", "reference_scope", &scope))?;
    Ok(Some(BonusRule { amount: needed(&row, 1, "quota.bonus_rules", "amount")?, scope }))
}

pub fn upsert_rule(c: &mut SpiClient<'_>, plan: &str, metric: &str, kind: &str, rule: BonusRule) {
    run(c, &UPSERT_RULE, &[plan.into(), metric.into(), kind.into(), rule.amount.into(), rule.scope.as_str().into()]);
}

fn pg_date(d: NaiveDate) -> DatumWithOid<'static> {
    use chrono::Datelike;
    // Dates in the zone database's range are valid PostgreSQL dates.
    pgrx::datum::Date::new(d.year(), d.month() as u8, d.day() as u8).expect("valid calendar date").into()
}

pub fn grants_on(c: &mut SpiClient<'_>, subject: &str, day: NaiveDate) -> i32 {
    first::<i32>(run(c, &COUNT_GRANTS, &[subject.into(), pg_date(day)]), 1).unwrap_or(0)
}

pub struct Grant<'a> {
    pub subject: &'a str,
    pub metric: &'a str,
    pub kind: &'a str,
    pub reference: Option<&'a str>,
    pub rule: BonusRule,
    pub window: &'a Window,
    pub day: NaiveDate,
    pub at: DateTime<Utc>,
}

/// Record a grant; false when its reference was already used in its scope (the unique
/// indexes decide, so two sessions racing on one payment id cannot both win).
pub fn insert_grant(c: &mut SpiClient<'_>, g: &Grant<'_>) -> bool {
    let table = run(
        c,
        &INSERT_GRANT,
        &[
            g.subject.into(),
            g.metric.into(),
            g.kind.into(),
            g.reference.into(),
            g.rule.scope.as_str().into(),
            g.rule.amount.into(),
            clock::window_key(g.window.start).into(),
            pg_date(g.day),
            ts(g.at),
        ],
    );
    !table.is_empty()
}
