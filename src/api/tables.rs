//! Quotas on application tables: the trigger function behind every enforced table,
//! `enforce_on_insert`, `enforce_off`, and `count_tokens` (what a token quota charges).
//! The logic is in `enforce`.

use pgrx::prelude::*;

use crate::domain::error::required;
use crate::enforce;
use crate::pg::ereport::{raise, OrRaise};

/// A `regclass` argument ('public.messages' resolves to the table's oid).
pub struct RegClass(pg_sys::Oid);

impl FromDatum for RegClass {
    // SAFETY: a regclass datum is an Oid by value; only its integer is read, never
    // dereferenced, so any datum PostgreSQL passes is sound to convert.
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
// SAFETY: a regclass is an Oid passed by value (the SQL type this one translates to,
// below): unboxing reads the datum's integer and never dereferences it, whatever it holds.
unsafe impl<'fcx> pgrx::callconv::ArgAbi<'fcx> for RegClass {
    // SAFETY: pgrx's wrapper calls this with this function's regclass argument, for a
    // non-NULL one only; `from_polymorphic_datum` above reads it by value.
    unsafe fn unbox_arg_unchecked(arg: pgrx::callconv::Arg<'_, 'fcx>) -> Self {
        // SAFETY: the caller (pgrx's wrapper) passes a regclass argument; it calls this
        // only for a non-NULL one (Option<RegClass> arguments test for NULL first).
        unsafe { arg.unbox_arg_using_from_datum().expect("argument is not null") }
    }
}
pgrx::impl_sql_translatable!(RegClass, "regclass");

#[pg_trigger]
fn enforce_trigger<'a>(trigger: &'a PgTrigger<'a>) -> std::result::Result<Option<PgHeapTuple<'a, impl pgrx::WhoAllocated>>, PgHeapTupleError> {
    if let Err(e) = enforce::fire(trigger) {
        raise(e);
    }
    Ok(trigger.new())
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
    enforce::config::enforce(
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
    enforce::config::off(required("table_name", table_name).or_raise().0, required("metric", metric).or_raise()).or_raise()
}

/// How many tokens `content` costs in `encoding` (cl100k_base, o200k_base, or chars).
#[pg_extern(immutable, strict, parallel_safe)]
fn count_tokens(content: &str, encoding: default!(&str, "'cl100k_base'")) -> i32 {
    let n = crate::domain::tokens::count_tokens(content, encoding).or_raise();
    i32::try_from(n).unwrap_or(i32::MAX)
}
