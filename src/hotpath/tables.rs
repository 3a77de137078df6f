//! The hot path's view of the state tables: each described table (`storage::schema`)
//! resolved to its OID, storage, primary-key index and attribute numbers, and the
//! eligibility checks that decide whether the hot path may read or write them.
//!
//! A table that differs from its description, or that the executor would treat in a way
//! the hot path does not (a rule, a CHECK constraint, a generated column, an index that
//! is not a plain immediate btree on columns, a trigger...), makes the hot path step
//! aside: the general path serves every call. Stepping aside is visible: each backend
//! writes one LOG line naming the table and the failed check, and
//! `quota.hot_path_status()` reports it. The resolution is kept per backend until a
//! relcache invalidation of one of the tables (`cache::forget`).

use pgrx::pg_sys::{self, AttrNumber, Oid};
use std::cell::RefCell;
use std::rc::Rc;

use super::cache;
use super::heap::{self, Rel};
use crate::storage::schema::{self, COUNTERS, LEDGER_ID, PLAN_LIMITS, POOL_SLICES, SUBJECTS, SUBJECT_OVERRIDES, USAGE_EVENTS};

/// A table, its primary-key index and the attribute number of each described column
/// (`att[i]` for `schema` column `i`).
#[derive(Clone)]
pub struct Resolved {
    pub oid: Oid,
    /// Its storage (relfilenode): a rewrite (ALTER TABLE ... TYPE, VACUUM FULL) changes it.
    pub node: Oid,
    pub pkey: Oid,
    pub att: Vec<AttrNumber>,
}

/// The tables of schema quota as this backend last resolved them.
#[derive(Clone)]
pub struct Tables {
    pub subjects: Resolved,
    pub limits: Resolved,
    pub counters: Resolved,
    pub ledger: Resolved,
    pub overrides: Resolved,
    /// Pools' slices (0.8.0): drawn from here if `slice_writes` allows.
    pub slices: Resolved,
    pub slices_indexes: Vec<Oid>,
    pub slice_writes: Result<(), Aside>,
    /// `quota.subjects_pool_idx` (subjects by pool), for whether a pool is shared; invalid
    /// if it is missing or not on `pool`.
    pub pool_index: Oid,
    pub ledger_seq: Oid,
    pub counters_indexes: Vec<Oid>,
    pub ledger_indexes: Vec<Oid>,
    /// Counter updates and ledger appends may be done here; else why not.
    pub writes: Result<(), Aside>,
}

impl Tables {
    pub fn oids(&self) -> [Oid; 6] {
        [self.subjects.oid, self.limits.oid, self.counters.oid, self.ledger.oid, self.overrides.oid, self.slices.oid]
    }
}

/// Why the hot path steps aside: the table and the check that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Aside {
    pub table: String,
    pub check: &'static str,
}

fn aside(table: &schema::StateTable, check: &'static str) -> Aside {
    Aside { table: table.qualified(), check }
}

thread_local! {
    static TABLES: RefCell<Option<Rc<Tables>>> = const { RefCell::new(None) };
    /// The last stepping aside this backend logged.
    static LOGGED: RefCell<Option<Aside>> = const { RefCell::new(None) };
}

/// Forget the resolution (a relcache invalidation of one of the tables, or of unknown
/// ones). Returns whether `relid` may be one of them.
pub fn forget(relid: Oid) -> bool {
    TABLES.with(|t| {
        let mut t = t.borrow_mut();
        let ours = t.as_ref().is_none_or(|t| relid == pg_sys::InvalidOid || t.oids().contains(&relid));
        if ours {
            *t = None;
        }
        ours
    })
}

/// The tables, resolved (and kept) if needed; Err: step aside, and why.
pub fn tables() -> Result<Rc<Tables>, Aside> {
    if let Some(t) = TABLES.with(|t| t.borrow().clone()) {
        return Ok(t);
    }
    let generation = cache::register();
    let t = Rc::new(resolve().inspect_err(said)?);
    if let Err(why) = &t.writes {
        said(why);
    }
    // An invalidation processed while resolving (a trigger or index created meanwhile,
    // say) may not be reflected: use the answer for this call only.
    if cache::unchanged_since(generation) {
        TABLES.with(|c| *c.borrow_mut() = Some(t.clone()));
    }
    Ok(t)
}

/// One LOG line per backend for each new reason to step aside.
pub fn said(why: &Aside) {
    let new = LOGGED.with(|l| l.borrow().as_ref() != Some(why));
    if new {
        pgrx::log!(
            "quota_ext: hot path steps aside: table {} fails the check \"{}\"; the general path serves quota_check and quota_consume",
            why.table,
            why.check
        );
        LOGGED.with(|l| *l.borrow_mut() = Some(why.clone()));
    }
}

fn table(nsp: Oid, desc: &'static schema::StateTable) -> Result<Resolved, Aside> {
    // SAFETY: catalog lookups by name and OID inside a transaction; the relation and its
    // primary-key index are opened and closed here (locks kept until the transaction ends).
    unsafe {
        let oid = pg_sys::get_relname_relid(desc.name.as_ptr(), nsp);
        if oid == pg_sys::InvalidOid {
            return Err(aside(desc, "missing table"));
        }
        let att = desc
            .columns
            .iter()
            .map(|c| heap::attnum(oid, c.name, c.type_oid))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| aside(desc, "column changed"))?;
        let rel = Rel::open(oid, pg_sys::AccessShareLock as _);
        if !rel.is_plain_table() {
            return Err(aside(desc, "not a plain table"));
        }
        if rel.has_virtual_generated() {
            return Err(aside(desc, "generated column"));
        }
        let pkey = rel.primary_key();
        if desc.key > 0 && (pkey == pg_sys::InvalidOid || !heap::index_keys_are(pkey, &att[..desc.key])) {
            return Err(aside(desc, "primary key changed"));
        }
        Ok(Resolved { oid, node: rel.storage(), pkey, att })
    }
}

fn resolve() -> Result<Tables, Aside> {
    // SAFETY: a catalog lookup by name inside a transaction.
    let nsp = unsafe { pg_sys::get_namespace_oid(c"quota".as_ptr(), true) };
    if nsp == pg_sys::InvalidOid {
        return Err(aside(&SUBJECTS, "missing table"));
    }
    let (subjects, limits, counters, ledger, overrides) =
        (table(nsp, &SUBJECTS)?, table(nsp, &PLAN_LIMITS)?, table(nsp, &COUNTERS)?, table(nsp, &USAGE_EVENTS)?, table(nsp, &SUBJECT_OVERRIDES)?);
    let slices = table(nsp, &POOL_SLICES)?;
    let slices_rel = Rel::open(slices.oid, pg_sys::AccessShareLock as _);
    // Pool members' draws only: a slice table the hot path may not update sends them to
    // the general path, and nothing else.
    let slice_writes = heap::updatable(&slices_rel).map_err(|check| aside(&POOL_SLICES, check));
    // SAFETY: a catalog lookup by name inside a transaction.
    let pool_index = unsafe { pg_sys::get_relname_relid(c"subjects_pool_idx".as_ptr(), nsp) };
    let pool_index = if pool_index != pg_sys::InvalidOid
        && heap::index_oids(&Rel::open(subjects.oid, pg_sys::AccessShareLock as _)).contains(&pool_index)
        && heap::index_keys_are(pool_index, &[subjects.att[schema::subjects::POOL]])
    {
        pool_index
    } else {
        pg_sys::InvalidOid
    };
    let (counters_rel, ledger_rel) = (Rel::open(counters.oid, pg_sys::AccessShareLock as _), Rel::open(ledger.oid, pg_sys::AccessShareLock as _));
    let ledger_seq = ledger_rel.identity_sequence(ledger.att[LEDGER_ID]);
    let writes = (|| {
        heap::updatable(&counters_rel).map_err(|check| aside(&COUNTERS, check))?;
        heap::insertable(&ledger_rel).map_err(|check| aside(&USAGE_EVENTS, check))?;
        if ledger_seq == pg_sys::InvalidOid {
            return Err(aside(&USAGE_EVENTS, "no identity sequence"));
        }
        if !heap::others_default_to_null(&ledger_rel, &ledger.att) {
            return Err(aside(&USAGE_EVENTS, "column with a default or NOT NULL"));
        }
        Ok(())
    })();
    Ok(Tables {
        counters_indexes: heap::index_oids(&counters_rel),
        ledger_indexes: heap::index_oids(&ledger_rel),
        subjects,
        limits,
        counters,
        ledger,
        overrides,
        slices_indexes: heap::index_oids(&slices_rel),
        slices,
        slice_writes,
        pool_index,
        ledger_seq,
        writes,
    })
}
