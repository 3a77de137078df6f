//! The general path's storage: every SQL statement an operation runs, prepared once per
//! backend and kept (SPI keep-plan), with every value bound as a parameter. One file per
//! table or concept; `schema` describes the tables both paths share.
//!
//! Functions here take an open SPI connection and do exactly one statement each; the
//! operations decide the order (and so the lock order). SPI failures other than
//! PostgreSQL errors cannot happen with these fixed statements, so they are bugs.
//!
//! Snapshots. An operation opens its connection with `volatile` or `stable`:
//! - `volatile` (consume, refund, admin...): each statement takes a new snapshot that
//!   sees this transaction's earlier changes, as a volatile SQL function's statements do;
//! - `stable` (check, status): each statement reads with the calling statement's
//!   snapshot, as a STABLE function's statements do, so `SELECT quota_consume(..),
//!   quota_check(..)` answers the check as of before that statement, on both paths.

use chrono::{DateTime, Utc};
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::{self, PgBuiltInOids as T};
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiCursor, SpiTupleTable};
use pgrx::PgOid;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use crate::pg::clock;

pub mod bonuses;
pub mod events;
pub mod keys;
pub mod ledger;
pub mod overrides;
pub mod pauses;
pub mod plans;
pub mod reservations;
pub mod schema;
pub mod slices;
pub mod subjects;
pub mod throttles;
pub mod windows;

pub use bonuses::*;
pub use events::*;
pub use keys::*;
pub use ledger::*;
pub use overrides::*;
pub use plans::*;
pub use reservations::*;
pub use subjects::*;
pub use throttles::*;
pub use windows::*;

/// A jsonb argument passed through untouched (metadata is stored exactly as given).
pub struct RawJsonb(pub pg_sys::Datum);

impl FromDatum for RawJsonb {
    // SAFETY: the datum is kept as it is, not read through; its users read it within the
    // call that received it (see the ArgAbi impl below).
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _: pg_sys::Oid) -> Option<Self> {
        if is_null {
            None
        } else {
            Some(RawJsonb(datum))
        }
    }
}
impl IntoDatum for RawJsonb {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(self.0)
    }
    fn type_oid() -> pg_sys::Oid {
        pg_sys::JSONBOID
    }
}
// SAFETY: unboxing keeps the jsonb argument's datum as it is, without reading through it;
// everything that reads it later (jsonb_out, toast_raw_datum_size, the inserts that store
// it) runs within the same call, while the argument is valid.
unsafe impl<'fcx> pgrx::callconv::ArgAbi<'fcx> for RawJsonb {
    // SAFETY: pgrx's wrapper calls this with this function's jsonb argument, for a
    // non-NULL one only; the datum is kept, not read.
    unsafe fn unbox_arg_unchecked(arg: pgrx::callconv::Arg<'_, 'fcx>) -> Self {
        // SAFETY: the caller (pgrx's wrapper) passes a jsonb argument, and calls this only
        // for a non-NULL one (Option<RawJsonb> arguments test for NULL first).
        unsafe { arg.unbox_arg_using_from_datum().expect("strict argument is not null") }
    }
}
pgrx::impl_sql_translatable!(RawJsonb, "jsonb");

/// A value of any type passed through as it is, for statements whose parameter types
/// are only known at run time (the caller gives each one's type oid).
pub struct RawDatum(pub pg_sys::Datum);

impl IntoDatum for RawDatum {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(self.0)
    }
    fn type_oid() -> pg_sys::Oid {
        pg_sys::InvalidOid
    }
}

/// A statement: its text (with `schema` placeholders such as `{subjects}`) and its
/// parameter types.
pub struct Stmt {
    pub sql: &'static str,
    pub types: &'static [T],
}

thread_local! {
    /// Each statement's plan, once per backend: as pgrx prepares it for `volatile`
    /// connections, and as a raw SPI plan for `stable` reads (each made on first use).
    /// Keyed by the statement and the form `schema::expand` gave it (the installed version).
    static PLANS: RefCell<HashMap<(*const Stmt, crate::pg::installed::Version), Rc<OwnedPreparedStatement>>> = RefCell::new(HashMap::new());
    static RAW_PLANS: RefCell<HashMap<(*const Stmt, crate::pg::installed::Version), pg_sys::SPIPlanPtr>> = RefCell::new(HashMap::new());
    static STABLE: Cell<bool> = const { Cell::new(false) };
    /// The cursors of a `stable` connection's reads, kept until the connection ends
    /// (their results borrow them).
    // Boxed so that each cursor stays where it is while the Vec grows: `read` keeps a raw
    // pointer into the box to fetch the result it returns.
    #[allow(clippy::vec_box)]
    static CURSORS: RefCell<Vec<Box<SpiCursor<'static>>>> = const { RefCell::new(Vec::new()) };
}

/// Run `f` with an SPI connection whose statements each take a new snapshot.
pub fn volatile<R>(f: impl FnOnce(&mut SpiClient<'_>) -> R) -> R {
    connect(false, f)
}

/// Run `f` with an SPI connection whose statements read with the calling statement's
/// snapshot (and may not write: SPI refuses).
pub fn stable<R>(f: impl FnOnce(&mut SpiClient<'_>) -> R) -> R {
    connect(true, f)
}

/// The innermost connection decides how its statements read (a volatile one opened
/// inside a stable one writes as a volatile function's statements do). When it ends, the
/// outer mode comes back and the cursors its reads kept are closed.
fn connect<R>(stable: bool, f: impl FnOnce(&mut SpiClient<'_>) -> R) -> R {
    struct Restore {
        stable: bool,
        cursors: usize,
    }
    impl Drop for Restore {
        fn drop(&mut self) {
            STABLE.with(|s| s.set(self.stable));
            let cursors: Vec<_> = CURSORS.with(|c| c.borrow_mut().drain(self.cursors..).collect());
            for cursor in cursors {
                if std::thread::panicking() {
                    // The transaction's abort drops the portal.
                    std::mem::forget(*cursor);
                }
            }
        }
    }
    let _restore = Restore { stable: STABLE.with(|s| s.replace(stable)), cursors: CURSORS.with(|c| c.borrow().len()) };
    Spi::connect_mut(f)
}

/// Which form of the statements this database takes (see `schema::expand`): its
/// installed version (a database without the extension takes this library's).
fn form() -> crate::pg::installed::Version {
    crate::pg::installed::version().unwrap_or_else(crate::pg::installed::library)
}

fn kept(client: &mut SpiClient<'_>, stmt: &'static Stmt) -> Rc<OwnedPreparedStatement> {
    let key = (stmt as *const Stmt, form());
    if let Some(plan) = PLANS.with(|p| p.borrow().get(&key).cloned()) {
        return plan;
    }
    let sql = schema::expand(stmt.sql, key.1);
    let types: Vec<PgOid> = stmt.types.iter().map(|t| PgOid::BuiltIn(*t)).collect();
    let prepared = client.prepare_mut(sql.as_str(), &types).unwrap_or_else(|e| unreachable!("prepare {sql}: {e}"));
    let plan = Rc::new(prepared.keep());
    PLANS.with(|p| p.borrow_mut().insert(key, plan.clone()));
    plan
}

fn raw(stmt: &'static Stmt) -> pg_sys::SPIPlanPtr {
    let key = (stmt as *const Stmt, form());
    if let Some(plan) = RAW_PLANS.with(|p| p.borrow().get(&key).copied()) {
        return plan;
    }
    let sql = std::ffi::CString::new(schema::expand(stmt.sql, key.1)).expect("statements have no NUL");
    let mut types: Vec<pg_sys::Oid> = stmt.types.iter().map(|t| pg_sys::Oid::from(*t as u32)).collect();
    // SAFETY: inside an SPI connection (every caller holds a client); SPI_prepare raises
    // on a bad statement, and SPI_keepplan moves the plan out of the connection's memory.
    let plan = unsafe {
        let plan = pg_sys::SPI_prepare(sql.as_ptr(), types.len() as _, types.as_mut_ptr());
        assert!(!plan.is_null(), "prepare {sql:?}");
        pg_sys::SPI_keepplan(plan);
        plan
    };
    RAW_PLANS.with(|p| p.borrow_mut().insert(key, plan));
    plan
}

/// Run `stmt` with `args`, preparing and keeping its plan on first use in this backend:
/// with a new snapshot, or in a `stable` connection with the calling statement's.
pub fn run<'c>(client: &mut SpiClient<'c>, stmt: &'static Stmt, args: &[DatumWithOid<'_>]) -> SpiTupleTable<'c> {
    if STABLE.with(|s| s.get()) {
        return read(client, stmt, args);
    }
    let plan = kept(client, stmt);
    client.update(&*plan, None, args).unwrap_or_else(|e| unreachable!("execute {}: {e}", stmt.sql))
}

/// A read with the active snapshot, unchanged (SPI's read-only mode, which pgrx only
/// chooses before the transaction has an xid): through a read-only cursor, whose rows
/// are then fetched with pgrx's own cursor API.
fn read<'c>(client: &mut SpiClient<'c>, stmt: &'static Stmt, args: &[DatumWithOid<'_>]) -> SpiTupleTable<'c> {
    let plan = raw(stmt);
    let mut values: Vec<pg_sys::Datum> = args.iter().map(|a| a.datum().map_or(pg_sys::Datum::from(0usize), |d| d.sans_lifetime())).collect();
    let nulls: Vec<std::ffi::c_char> = args.iter().map(|a| if a.datum().is_some() { b' ' } else { b'n' } as std::ffi::c_char).collect();
    // SPI_cursor_open reads a value and a null flag for each of the plan's parameters
    // (pgrx checks the same for the volatile path's prepared statements).
    assert_eq!(args.len(), stmt.types.len(), "arguments of {}", stmt.sql);
    // SAFETY: `plan` is a kept plan of this statement, prepared with `stmt.types`, so
    // `values`/`nulls` hold one entry per parameter (checked above); each value is of its
    // parameter's type (the callers' DatumWithOid), and read_only = true makes SPI use
    // the active snapshot as it is. The portal lives until the cursor below is dropped.
    let name = unsafe {
        let portal = pg_sys::SPI_cursor_open(std::ptr::null(), plan, values.as_mut_ptr(), nulls.as_ptr(), true);
        std::ffi::CStr::from_ptr((*portal).name).to_string_lossy().into_owned()
    };
    let cursor = client.find_cursor(&name).unwrap_or_else(|e| unreachable!("cursor {name}: {e}"));
    // SAFETY: only the lifetime changes. The cursor is kept (boxed, so it does not move)
    // until `stable` returns, after the connection and every result fetched from it are
    // gone, and is then closed. That needs its portal to exist until then: a portal
    // opened in a subtransaction is dropped when that rolls back, so no `stable` may
    // catch an error of a subtransaction begun inside it (none does: the only
    // `subtransaction::run` callers use volatile connections).
    let cursor: Box<SpiCursor<'static>> = Box::new(unsafe { std::mem::transmute::<SpiCursor<'c>, SpiCursor<'static>>(cursor) });
    let cursor: *mut SpiCursor<'static> = CURSORS.with(|c| {
        let mut c = c.borrow_mut();
        c.push(cursor);
        &mut **c.last_mut().expect("just pushed") as *mut _
    });
    // SAFETY: as above: the box outlives the result, and nothing else uses it meanwhile.
    unsafe { (*cursor).fetch(i64::MAX as _) }.unwrap_or_else(|e| unreachable!("fetch {}: {e}", stmt.sql))
}

/// First column of the first row, if any.
fn first<T: FromDatum + IntoDatum>(table: SpiTupleTable<'_>, col: usize) -> Option<T> {
    if table.is_empty() {
        return None;
    }
    table.first().get::<T>(col).unwrap_or_else(|e| unreachable!("column {col}: {e}"))
}

/// A row of an SPI result that selected a described table's columns (`{table}`), in
/// order: description column `i` is SPI column `i + 1`.
pub struct SpiRow<'r, 'c> {
    pub row: &'r pgrx::spi::SpiHeapTupleData<'c>,
}

impl schema::Row for SpiRow<'_, '_> {
    fn get<V: FromDatum + IntoDatum>(&self, col: usize) -> Option<V> {
        self.row.get::<V>(col + 1).ok().flatten()
    }
}

/// A value the extension stored that cannot be read back: XX001, as `schema` decodes.
pub fn corrupt(table: &'static str, column: &'static str, value: impl ToString) -> crate::domain::error::QuotaError {
    crate::domain::error::QuotaError::Corrupt { table, column, value: value.to_string() }
}

/// A JSON answer the extension stored (idempotency keys, settled reservations).
pub fn stored_json<T: serde::de::DeserializeOwned>(table: &'static str, column: &'static str, text: &str) -> crate::domain::error::Result<T> {
    serde_json::from_str(text).map_err(|_| corrupt(table, column, text))
}

/// A column of an SPI row that must not be NULL (1-based, as SPI numbers them).
fn needed<T: FromDatum + IntoDatum>(
    row: &pgrx::spi::SpiHeapTupleData<'_>,
    col: usize,
    table: &'static str,
    column: &'static str,
) -> crate::domain::error::Result<T> {
    row.get::<T>(col).ok().flatten().ok_or_else(|| corrupt(table, column, "NULL"))
}

fn ts(t: DateTime<Utc>) -> DatumWithOid<'static> {
    clock::to_pg_tz(t).into()
}
