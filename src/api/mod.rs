//! The SQL surface: thin `#[pg_extern]` wrappers that check for NULLs, call the operations (`ops`) and
//! turn its result into a row or an ERROR. No quota logic lives here.
//!
//! Arguments are `Option` (functions are not STRICT) so that a NULL gets SQLSTATE 22004
//! with a clear message instead of a silent NULL result.

use pgrx::prelude::*;
use pgrx::{composite_type, PgTupleDesc};

use crate::domain::decision::Decision;
use crate::domain::error::required;
use crate::ops;
use crate::pg::clock;
use crate::pg::ereport::OrRaise;
use crate::storage::RawJsonb;

pub(crate) type DecisionRow = composite_type!('static, "quota.decision");

/// Build a row of the function's composite result type in one `heap_form_tuple`. The
/// type comes from the call expression through the type cache (no name lookup, no parse);
/// `name` is only used when there is no call expression (direct calls).
pub(crate) fn composite(
    fcinfo: pg_sys::FunctionCallInfo,
    name: &str,
    values: Vec<Option<pg_sys::Datum>>,
) -> PgHeapTuple<'static, pgrx::AllocatedByRust> {
    // SAFETY: `fcinfo` is NULL or the FunctionCallInfo pgrx passed to the calling SQL
    // function, valid for the call, and its flinfo is NULL or valid with it;
    // get_fn_expr_rettype answers InvalidOid when there is no call expression. regtypein
    // gets a NUL-terminated cstring datum (and raises for an unknown name).
    // lookup_rowtype_tupdesc raises unless `oid` is a composite type, and returns its
    // reference-counted descriptor pinned, which PgTupleDesc::from_pg releases on drop
    // (or which is released here once copied: the copy, in the call's memory context,
    // is blessed, which registers it for the record's lifetime, and is not freed).
    unsafe {
        let oid = if fcinfo.is_null() || (*fcinfo).flinfo.is_null() { pg_sys::InvalidOid } else { pg_sys::get_fn_expr_rettype((*fcinfo).flinfo) };
        let oid = if oid == pg_sys::InvalidOid || oid == pg_sys::RECORDOID {
            let cname = std::ffi::CString::new(name).expect("type names have no NUL");
            pgrx::direct_function_call::<pg_sys::Oid>(pg_sys::regtypein, &[cname.as_c_str().into_datum()])
                .expect("the extension's composite types exist")
        } else {
            oid
        };
        let current = pg_sys::lookup_rowtype_tupdesc(oid, -1);
        let mut values = values;
        // A call in FROM whose plan was made before the type gained attributes (a plan
        // cached across ALTER EXTENSION UPDATE: 0.8.0 appended `level`) expects the older
        // row: answer a record of that many attributes, which PostgreSQL checks against
        // the plan, not against the type.
        if let Some(n) = expected_attributes(fcinfo).filter(|n| *n < (*current).natts as usize) {
            let copy = pg_sys::CreateTupleDescCopy(current);
            pg_sys::DecrTupleDescRefCount(current);
            (*copy).natts = n as _;
            (*copy).tdtypeid = pg_sys::RECORDOID;
            (*copy).tdtypmod = -1;
            let desc = PgTupleDesc::from_pg_unchecked(pg_sys::BlessTupleDesc(copy));
            values.truncate(n);
            return PgHeapTuple::from_datums(desc, values).unwrap_or_else(|e| unreachable!("{name}: {e}"));
        }
        let desc = PgTupleDesc::from_pg(current);
        // A database at an older version has fewer attributes (0.8.0 appended `level`):
        // its rows end where its type does.
        values.truncate(desc.len());
        PgHeapTuple::from_datums(desc, values).unwrap_or_else(|e| unreachable!("{name}: {e}"))
    }
}

/// How many attributes the calling plan expects of a composite result, when it says (a
/// call in FROM: its ReturnSetInfo's expected descriptor). `fcinfo` is NULL or the
/// FunctionCallInfo pgrx passed to the calling SQL function, as in `composite`.
fn expected_attributes(fcinfo: pg_sys::FunctionCallInfo) -> Option<usize> {
    // `fcinfo` is NULL or valid for the call (pgrx passes it); its resultinfo is NULL or a
    // Node; a ReturnSetInfo's expectedDesc is NULL or a descriptor the executor set up
    // before calling the function.
    // SAFETY: every pointer is checked for NULL before it is read, and the node's tag
    // before it is taken as a ReturnSetInfo.
    unsafe {
        if fcinfo.is_null() || (*fcinfo).resultinfo.is_null() || (*(*fcinfo).resultinfo).type_ != pg_sys::NodeTag::T_ReturnSetInfo {
            return None;
        }
        let rsi = (*fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo;
        let desc = (*rsi).expectedDesc;
        (!desc.is_null()).then(|| (*desc).natts as usize)
    }
}

pub(crate) fn decision_row(fcinfo: pg_sys::FunctionCallInfo, d: Decision) -> DecisionRow {
    let values = vec![
        d.allowed.into_datum(),
        d.subject.into_datum(),
        d.metric.into_datum(),
        d.period.into_datum(),
        d.used.into_datum(),
        d.limit_value.into_datum(),
        d.bonus.into_datum(),
        d.remaining.into_datum(),
        d.requested.into_datum(),
        d.reset_at.map(clock::to_pg_tz).into_datum(),
        d.enforcement.into_datum(),
        d.reason.into_datum(),
        d.reserved.into_datum(),
        d.level.into_datum(),
    ];
    composite(fcinfo, "quota.decision", values)
}

pub(crate) fn decision_rows(fcinfo: pg_sys::FunctionCallInfo, ds: Vec<Decision>) -> SetOfIterator<'static, DecisionRow> {
    let rows: Vec<DecisionRow> = ds.into_iter().map(|d| decision_row(fcinfo, d)).collect();
    SetOfIterator::new(rows)
}

/// The jsonb amounts, read from its text form (serde's f64 would overflow on 1e400).
pub(crate) fn amounts_of(amounts: Option<RawJsonb>) -> Vec<(String, i64)> {
    let amounts = required("amounts", amounts).or_raise();
    // SAFETY: `amounts.0` is the SQL function's non-NULL jsonb argument (RawJsonb from
    // pgrx's argument unboxing), valid for the call; jsonb_out detoasts it and returns a
    // palloc'd NUL-terminated string, copied into a String before anything can free it.
    let text = unsafe {
        pgrx::direct_function_call::<&std::ffi::CStr>(pg_sys::jsonb_out, &[Some(amounts.0)])
            .expect("jsonb_out returns text")
            .to_string_lossy()
            .into_owned()
    };
    ops::parse_amounts(&text).or_raise()
}

mod admin;
mod hotpath;
mod ledger;
mod monitor;
mod pause;
mod reservations;
mod runtime;
mod tables;
mod throttle;
