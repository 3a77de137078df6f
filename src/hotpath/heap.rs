//! Direct table access for the hot path: a primary-key probe, an in-place counter update
//! and a ledger append, through PostgreSQL's table and index access methods instead of
//! SPI and the executor (whose start-up was most of a consume's cost).
//!
//! Only what the executor would do for these tables is done here, so callers must check
//! `updatable`/`insertable` first (`tables` does): plain heap tables, plain btree indexes
//! on columns, no triggers or rules that the executor would fire. Permissions and
//! row-level security are not applied at this level: the caller decides what the session
//! may see (`tenancy`). Functions whose soundness depends on such a precondition are
//! `unsafe fn` and say so under `# Safety`.
//!
//! About 600 lines, on purpose: every call into PostgreSQL's table and index access
//! methods is here. What differs between PostgreSQL's major versions (15, 16, 18) is in
//! one place, the module `major` at the end of this file: the only `#[cfg(feature =
//! "pgNN")]` of the library, including the few differences outside the hot path (table
//! ownership, the local transaction id, the commit log's horizon, attribute access), so
//! that a port touches this one module.

use pgrx::pg_sys::{self, AttrNumber, Datum, Oid, Relation};
use pgrx::FromDatum;

/// A relation opened for the duration of one call; the lock stays until the transaction
/// ends, as the executor keeps it.
pub struct Rel(Relation);

impl Rel {
    pub fn open(oid: Oid, lockmode: pg_sys::LOCKMODE) -> Rel {
        // SAFETY: inside a transaction (every caller serves a SQL function); table_open
        // raises rather than return NULL for a missing relation, an index or a composite
        // type, so what is kept is an open relation, referenced until `drop`.
        Rel(unsafe { pg_sys::table_open(oid, lockmode) })
    }

    /// An ordinary table (not partitioned, a view, foreign...).
    pub fn is_plain_table(&self) -> bool {
        // SAFETY: an open relation's rd_rel is valid while it is open.
        unsafe { (*(*self.0).rd_rel).relkind == pg_sys::RELKIND_RELATION as std::ffi::c_char }
    }

    /// Whether it has a virtual generated column (PostgreSQL 18): its value is computed
    /// when read, so a heap read gives NULL and the hot path must step aside.
    pub fn has_virtual_generated(&self) -> bool {
        // SAFETY: an open relation's descriptor (and its constraints, or NULL) are valid
        // while it is open.
        unsafe { major::has_virtual_generated((*self.0).rd_att) }
    }

    /// Its primary key's index, or InvalidOid (also for a deferrable primary key, as
    /// PostgreSQL 15 and 16 answer).
    pub fn primary_key(&self) -> Oid {
        // SAFETY: an open relation; the index list is built if needed.
        unsafe { major::primary_key_index(self.0) }
    }

    /// The identity sequence of column `att`, or InvalidOid.
    pub fn identity_sequence(&self, att: AttrNumber) -> Oid {
        // SAFETY: a catalog lookup for an open relation (missing_ok).
        unsafe { major::identity_sequence(self.0, att) }
    }

    /// Its storage's number (relfilenode).
    pub fn storage(&self) -> Oid {
        // SAFETY: as above.
        unsafe { major::relfilenumber(self.0) }
    }
}

impl Drop for Rel {
    fn drop(&mut self) {
        // During an error the transaction's abort releases the reference.
        if !std::thread::panicking() {
            // SAFETY: opened by `Rel::open` and not closed since.
            unsafe { pg_sys::table_close(self.0, pg_sys::NoLock as _) }
        }
    }
}

/// A tuple slot for one relation, dropped (and its buffer pin released) with the call.
pub struct Slot(*mut pg_sys::TupleTableSlot);

impl Slot {
    pub fn new(rel: &Rel) -> Slot {
        // SAFETY: a slot for an open relation, in the current memory context.
        Slot(unsafe { pg_sys::table_slot_create(rel.0, std::ptr::null_mut()) })
    }

    /// The attribute's value (None: NULL, or no tuple stored). `att` should be one of
    /// the relation's attribute numbers (1..=natts), as `attnum` returns.
    pub fn datum(&self, att: AttrNumber) -> Option<Datum> {
        // slot_getattr only asserts what these test: a number below 1 would index before
        // tts_values, and an empty heap slot would be deformed from a NULL tuple.
        // SAFETY: a slot made by `Slot::new` is valid until dropped.
        if att < 1 || unsafe { (*self.0).tts_flags } as u32 & pg_sys::TTS_FLAG_EMPTY != 0 {
            return None;
        }
        let mut isnull = false;
        // SAFETY: the slot holds a tuple and `att` is at least 1; slot_getattr raises for
        // an `att` past the descriptor's natts.
        let d = unsafe { pg_sys::slot_getattr(self.0, att as _, &mut isnull) };
        (!isnull).then_some(d)
    }

    /// The attribute's value as `T`.
    ///
    /// # Safety
    /// The attribute's type must be `T`'s (as `attnum` checks when resolving).
    pub unsafe fn get<T: FromDatum>(&self, att: AttrNumber) -> Option<T> {
        let d = self.datum(att)?;
        // SAFETY: the caller guarantees the type; the datum is not NULL.
        unsafe { T::from_datum(d, false) }
    }

    pub fn tid(&self) -> pg_sys::ItemPointerData {
        // SAFETY: a slot made by `Slot::new` is valid until dropped.
        unsafe { (*self.0).tts_tid }
    }

    /// Fill this (empty) slot as a virtual tuple: `values` by attribute number, every
    /// other attribute copied from `from`, or NULL without it.
    ///
    /// # Safety
    /// `from` is a slot of the same relation holding a tuple, each value's type is its
    /// attribute's and each attribute number is in 1..=natts. By-reference values copied
    /// from `from` point into its tuple: `from` must keep it (stay alive and unchanged)
    /// until this slot is written or filled again.
    pub unsafe fn store(&self, from: Option<&Slot>, values: &[(AttrNumber, Option<Datum>)]) {
        // SAFETY: the caller's guarantees; the arrays have natts entries (a slot's
        // descriptor is its relation's).
        unsafe {
            let slot = self.0;
            pg_sys::ExecClearTuple(slot);
            let natts = (*(*slot).tts_tupleDescriptor).natts as usize;
            let vals = std::slice::from_raw_parts_mut((*slot).tts_values, natts);
            let nulls = std::slice::from_raw_parts_mut((*slot).tts_isnull, natts);
            match from {
                Some(src) => {
                    pg_sys::slot_getallattrs(src.0);
                    vals.copy_from_slice(std::slice::from_raw_parts((*src.0).tts_values, natts));
                    nulls.copy_from_slice(std::slice::from_raw_parts((*src.0).tts_isnull, natts));
                }
                None => {
                    vals.fill(Datum::from(0usize));
                    nulls.fill(true);
                }
            }
            for (att, value) in values {
                let i = (*att - 1) as usize;
                vals[i] = value.unwrap_or(Datum::from(0usize));
                nulls[i] = value.is_none();
            }
            pg_sys::ExecStoreVirtualTuple(slot);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            // SAFETY: made by `Slot::new` and not dropped since.
            unsafe { pg_sys::ExecDropSingleTupleTableSlot(self.0) }
        }
    }
}

/// Look `keys` up in the unique index `index` of `rel` (equality on its leading columns,
/// with `procs` the equality functions) and load the visible row into `slot`.
/// Returns the TID the index entry holds (the root of the row's HOT chain).
///
/// # Safety
/// `index` is a btree index of `rel` whose leading columns have the types of `keys`, each
/// key's function is the equality of that type, at most `MAX_KEYS` keys, `slot` is `rel`'s and
/// `snapshot` is valid for the call: registered or active, or `GetLatestSnapshot`'s,
/// taken just before (no other snapshot is taken during the probe). SAFETY of the body:
/// it only hands these guarantees on to `scan`.
pub unsafe fn probe(rel: &Rel, index: Oid, snapshot: pg_sys::Snapshot, keys: &[(Datum, u32)], slot: &Slot) -> Option<pg_sys::ItemPointerData> {
    let mut found = None;
    // SAFETY: the caller's guarantees.
    unsafe {
        scan(rel, index, snapshot, keys, slot, |tid| {
            found = Some(tid);
            false
        })
    };
    found
}

/// The most key columns a probe or scan takes (pool_slices' primary key has five).
pub const MAX_KEYS: usize = 5;

/// Every visible row whose leading index columns equal `keys` (a prefix of a unique
/// index), in index order: `each` is called with the row in `slot` and its index entry's
/// TID, and returns whether to go on.
///
/// # Safety
/// As for `probe` (SAFETY): `index` is a btree index of `rel` whose leading columns have
/// the types of `keys`, each key's function is that type's equality, at most `MAX_KEYS`
/// keys (the scan-key array's size; more find nothing), `slot` is `rel`'s, and `snapshot`
/// stays valid for the scan.
pub unsafe fn scan(
    rel: &Rel,
    index: Oid,
    snapshot: pg_sys::Snapshot,
    keys: &[(Datum, u32)],
    slot: &Slot,
    mut each: impl FnMut(pg_sys::ItemPointerData) -> bool,
) {
    if keys.len() > MAX_KEYS {
        return;
    }
    // SAFETY: the caller's guarantees; the scan is begun and ended here.
    unsafe {
        let idx = pg_sys::index_open(index, pg_sys::AccessShareLock as _);
        let mut sk: [pg_sys::ScanKeyData; MAX_KEYS] = std::mem::zeroed();
        for (i, (value, proc_)) in keys.iter().enumerate() {
            pg_sys::ScanKeyInit(&mut sk[i], (i + 1) as _, pg_sys::BTEqualStrategyNumber as _, Oid::from(*proc_), *value);
            // Compare as the index orders (its collation), not as ScanKeyInit's default C.
            sk[i].sk_collation = *(*idx).rd_indcollation.add(i);
        }
        let scan = major::index_beginscan(rel.0, idx, snapshot, keys.len() as _);
        pg_sys::index_rescan(scan, sk.as_mut_ptr(), keys.len() as _, std::ptr::null_mut(), 0);
        // index_getnext_slot, keeping the TID of the index entry: fetching replaces
        // xs_heaptid with the TID of the version found in the HOT chain.
        let mut entry = None;
        loop {
            if !(*scan).xs_heap_continue {
                let tid = pg_sys::index_getnext_tid(scan, pg_sys::ScanDirection::ForwardScanDirection);
                if tid.is_null() {
                    break;
                }
                entry = Some(*tid);
            }
            if pg_sys::index_fetch_heap(scan, slot.0) && !each(entry.expect("a heap fetch follows an index entry")) {
                break;
            }
        }
        pg_sys::index_endscan(scan);
        pg_sys::index_close(idx, pg_sys::NoLock as _);
    }
}

/// Load into `slot` the version visible to `snapshot` of the row whose HOT chain starts
/// at `root`, as an index scan does with the TID of an index entry. False when nothing
/// visible is there (any TID may be passed: one past the end or pointing at nothing is
/// just not found).
///
/// # Safety
/// `slot` is `rel`'s and `snapshot` is valid for the call (as for `probe`).
pub unsafe fn fetch(rel: &Rel, root: pg_sys::ItemPointerData, snapshot: pg_sys::Snapshot, slot: &Slot) -> bool {
    // SAFETY: the block is checked against the relation's size first, and the fetch
    // checks the line pointer; the caller guarantees the rest.
    unsafe {
        let block = (root.ip_blkid.bi_hi as u32) << 16 | root.ip_blkid.bi_lo as u32;
        if block >= pg_sys::RelationGetNumberOfBlocksInFork(rel.0, pg_sys::ForkNumber::MAIN_FORKNUM) {
            return false;
        }
        let scan = pg_sys::table_index_fetch_begin(rel.0);
        let (mut tid, mut call_again, mut all_dead) = (root, false, false);
        let found = pg_sys::table_index_fetch_tuple(scan, &mut tid, snapshot, slot.0, &mut call_again, &mut all_dead);
        pg_sys::table_index_fetch_end(scan);
        found
    }
}

/// Whether this transaction (any level still open) inserted, updated or deleted rows of
/// the table, as its statistics counters record; true when they are off (unknown).
pub fn written_here(oid: Oid) -> bool {
    // SAFETY: reads the transaction state and an open relation's statistics pointers.
    unsafe {
        if pg_sys::GetTopTransactionIdIfAny() == pg_sys::InvalidTransactionId {
            return false; // no write without a transaction id
        }
        let rel = Rel::open(oid, pg_sys::AccessShareLock as _);
        let r = &*rel.0;
        !r.pgstat_enabled || (!r.pgstat_info.is_null() && !(*r.pgstat_info).trans.is_null())
    }
}

/// Whether the row in `slot` has these values (`procs` the equality functions), as a
/// probe with the same keys would require.
///
/// # Safety
/// Each key's function is the equality of its attribute's type.
pub unsafe fn matches(slot: &Slot, atts: &[AttrNumber], keys: &[(Datum, u32)]) -> bool {
    atts.iter().zip(keys).all(|(att, (value, proc_))| {
        slot.datum(*att).is_some_and(|d| {
            // SAFETY: the caller's guarantee (each function is its attribute's type's
            // equality); both datums are of that type and not NULL.
            let equal = unsafe { pg_sys::OidFunctionCall2Coll(Oid::from(*proc_), pg_sys::DEFAULT_COLLATION_OID, d, *value) };
            equal.value() != 0
        })
    })
}

/// The OIDs of a relation's indexes (callers keep them; a relcache invalidation of the
/// relation tells them to ask again).
pub fn index_oids(rel: &Rel) -> Vec<Oid> {
    // SAFETY: RelationGetIndexList returns a fresh list (or NIL) that is freed here.
    unsafe {
        let list = pg_sys::RelationGetIndexList(rel.0);
        if list.is_null() {
            return Vec::new();
        }
        let oids = (0..(*list).length as usize).map(|i| (*(*list).elements.add(i)).oid_value).collect();
        pg_sys::list_free(list);
        oids
    }
}

/// Add index entries for the tuple in `slot` (just inserted, or updated without HOT) to
/// every index of `rel` (`indexes`, from `index_oids`), as the executor does.
///
/// # Safety
/// `indexes` are `rel`'s plain btree indexes on columns (no expressions or predicates:
/// `updatable`/`insertable`) and `slot` holds the tuple just written to `rel`.
unsafe fn insert_index_entries(rel: &Rel, slot: &Slot, indexes: &[Oid]) {
    // SAFETY: the caller's guarantees; each index is opened and closed here.
    unsafe {
        for &oid in indexes {
            let idx = pg_sys::index_open(oid, pg_sys::RowExclusiveLock as _);
            let info = pg_sys::BuildIndexInfo(idx);
            let n = (*info).ii_NumIndexAttrs as usize;
            let mut values = [Datum::from(0usize); pg_sys::INDEX_MAX_KEYS as usize];
            let mut nulls = [false; pg_sys::INDEX_MAX_KEYS as usize];
            for i in 0..n {
                values[i] = pg_sys::slot_getattr(slot.0, (*info).ii_IndexAttrNumbers[i] as _, &mut nulls[i]);
            }
            let check =
                if (*(*idx).rd_index).indisunique { pg_sys::IndexUniqueCheck::UNIQUE_CHECK_YES } else { pg_sys::IndexUniqueCheck::UNIQUE_CHECK_NO };
            let mut tid = slot.tid();
            pg_sys::index_insert(idx, values.as_mut_ptr(), nulls.as_mut_ptr(), &mut tid, rel.0, check, false, info);
            pg_sys::index_close(idx, pg_sys::NoLock as _);
        }
    }
}

/// Append the tuple in `slot` to `rel`, with its index entries.
///
/// # Safety
/// `rel` is open with RowExclusiveLock and `insertable`, `slot` is `rel`'s with every
/// value of its attribute's type, and `indexes` are all of `rel`'s indexes.
pub unsafe fn insert(rel: &Rel, slot: &Slot, indexes: &[Oid]) {
    // SAFETY: the caller's guarantees.
    unsafe {
        pg_sys::table_tuple_insert(rel.0, slot.0, pg_sys::GetCurrentCommandId(true), 0, std::ptr::null_mut());
        insert_index_entries(rel, slot, indexes);
    }
}

/// How an update attempt ended.
pub enum Updated {
    Done,
    /// Another transaction changed the row since it was read: `latest` now holds its
    /// newest version, locked by this transaction, to decide again.
    Moved,
    /// The row is gone (or otherwise not updatable here): take the general path.
    Gone,
}

/// Replace the row `old` was read from by the tuple in `new`. READ COMMITTED only: a
/// concurrent change makes this lock the newest version into `latest` (as UPDATE's
/// EvalPlanQual would) rather than fail.
///
/// # Safety
/// `rel` is open with RowExclusiveLock and `updatable`, the slots are `rel`'s, `old`
/// holds a row read from it, `new` has every value of its attribute's type, the key
/// columns unchanged, and `indexes` are all of `rel`'s indexes; READ COMMITTED.
pub unsafe fn update(rel: &Rel, old: &Slot, new: &Slot, latest: &Slot, indexes: &[Oid]) -> Updated {
    // SAFETY: the caller's guarantees.
    unsafe {
        let cid = pg_sys::GetCurrentCommandId(true);
        let mut otid = old.tid();
        let mut tmfd: pg_sys::TM_FailureData = std::mem::zeroed();
        let mut lockmode = pg_sys::LockTupleMode::LockTupleNoKeyExclusive;
        let snapshot = pg_sys::GetActiveSnapshot();
        let (result, update_indexes) = major::table_tuple_update(rel.0, &mut otid, new.0, cid, snapshot, &mut tmfd, &mut lockmode);
        match result {
            pg_sys::TM_Result::TM_Ok => {
                if update_indexes {
                    insert_index_entries(rel, new, indexes);
                }
                Updated::Done
            }
            pg_sys::TM_Result::TM_Updated => {
                let locked = pg_sys::table_tuple_lock(
                    rel.0,
                    &mut otid,
                    snapshot,
                    latest.0,
                    cid,
                    pg_sys::LockTupleMode::LockTupleNoKeyExclusive,
                    pg_sys::LockWaitPolicy::LockWaitBlock,
                    pg_sys::TUPLE_LOCK_FLAG_FIND_LAST_VERSION as u8,
                    &mut tmfd,
                );
                if locked == pg_sys::TM_Result::TM_Ok {
                    Updated::Moved
                } else {
                    Updated::Gone
                }
            }
            _ => Updated::Gone,
        }
    }
}

/// Lock the row in `row` for update, as `SELECT ... FOR NO KEY UPDATE` does under READ
/// COMMITTED: if another transaction changed it since it was read, wait for it and lock
/// its newest version. `locked` then holds the locked version. False when it is gone.
///
/// # Safety
/// Both slots are `rel`'s and `row` holds a row read from it; READ COMMITTED.
pub unsafe fn lock(rel: &Rel, row: &Slot, locked: &Slot) -> bool {
    // SAFETY: the caller's guarantees.
    unsafe {
        let mut tid = row.tid();
        let mut tmfd: pg_sys::TM_FailureData = std::mem::zeroed();
        pg_sys::table_tuple_lock(
            rel.0,
            &mut tid,
            pg_sys::GetActiveSnapshot(),
            locked.0,
            pg_sys::GetCurrentCommandId(true),
            pg_sys::LockTupleMode::LockTupleNoKeyExclusive,
            pg_sys::LockWaitPolicy::LockWaitBlock,
            pg_sys::TUPLE_LOCK_FLAG_FIND_LAST_VERSION as u8,
            &mut tmfd,
        ) == pg_sys::TM_Result::TM_Ok
    }
}

/// Why the executor would do more for `rel` than these functions, for any write (the
/// name of the failed check), or Ok.
fn plain(rel: &Rel) -> Result<(), &'static str> {
    // SAFETY: an open relation's descriptor, rules and constraints are valid while it is
    // open; each index is opened and closed here.
    unsafe {
        let r = rel.0;
        if !rel.is_plain_table() {
            return Err("not a plain table");
        }
        if !(*r).rd_rules.is_null() {
            return Err("rule");
        }
        let constr = (*(*r).rd_att).constr;
        if !constr.is_null() && (*constr).num_check > 0 {
            return Err("check constraint");
        }
        if !constr.is_null() && (*constr).has_generated_stored {
            return Err("generated column");
        }
        if rel.has_virtual_generated() {
            return Err("generated column");
        }
        for oid in index_oids(rel) {
            let idx = pg_sys::index_open(oid, pg_sys::AccessShareLock as _);
            let info = pg_sys::BuildIndexInfo(idx);
            let why = if (*(*idx).rd_rel).relam != pg_sys::BTREE_AM_OID {
                Some("not a btree index")
            } else if !(*info).ii_Expressions.is_null() {
                Some("expression index")
            } else if !(*info).ii_Predicate.is_null() {
                Some("partial index")
            } else if !(*info).ii_ExclusionOps.is_null() {
                Some("exclusion constraint")
            } else if !(*(*idx).rd_index).indimmediate {
                Some("deferrable unique constraint")
            } else if !(*(*idx).rd_index).indisready {
                Some("index not ready")
            } else {
                None
            };
            pg_sys::index_close(idx, pg_sys::NoLock as _);
            if let Some(why) = why {
                return Err(why);
            }
        }
        Ok(())
    }
}

fn triggers(rel: &Rel) -> &[pg_sys::Trigger] {
    // SAFETY: an open relation's trigger descriptor (or NULL) holds numtriggers entries;
    // it stays valid while the relation is open and no invalidation rebuilds it, and the
    // callers only scan the slice at once, calling nothing that could process one.
    unsafe {
        let desc = (*rel.0).trigdesc;
        if desc.is_null() {
            &[]
        } else {
            std::slice::from_raw_parts((*desc).triggers, (*desc).numtriggers as usize)
        }
    }
}

const TRIGGER_INSERT: i16 = 1 << 2;
const TRIGGER_UPDATE: i16 = 1 << 4;

/// May rows of `rel` be inserted here (see the module comment)?
pub fn insertable(rel: &Rel) -> Result<(), &'static str> {
    plain(rel)?;
    if triggers(rel).iter().any(|t| t.tgtype & TRIGGER_INSERT != 0) {
        return Err("trigger");
    }
    Ok(())
}

/// May rows of `rel` be updated here? Foreign-key triggers are allowed, on the
/// referencing side (a check) and on the referenced side (quota.pool_slices references
/// the counters): both only act when the key columns change, and the hot path never
/// changes them.
pub fn updatable(rel: &Rel) -> Result<(), &'static str> {
    plain(rel)?;
    let foreign_key = [
        pg_sys::F_RI_FKEY_CHECK_UPD,
        pg_sys::F_RI_FKEY_CASCADE_UPD,
        pg_sys::F_RI_FKEY_NOACTION_UPD,
        pg_sys::F_RI_FKEY_RESTRICT_UPD,
        pg_sys::F_RI_FKEY_SETNULL_UPD,
        pg_sys::F_RI_FKEY_SETDEFAULT_UPD,
    ];
    if triggers(rel).iter().any(|t| t.tgtype & TRIGGER_UPDATE != 0 && !foreign_key.iter().any(|f| t.tgfoid == Oid::from(*f))) {
        return Err("trigger");
    }
    Ok(())
}

/// Every column of `rel` but `att` is dropped, or nullable without a default (so that
/// leaving it NULL is what an INSERT naming only `att` would do).
pub fn others_default_to_null(rel: &Rel, att: &[AttrNumber]) -> bool {
    // SAFETY: an open relation's tuple descriptor has natts attributes.
    unsafe {
        let desc = (*rel.0).rd_att;
        (0..(*desc).natts as usize).all(|i| {
            let a = &*major::attr(desc, i);
            a.attisdropped || att.contains(&a.attnum) || (!a.attnotnull && !a.atthasdef)
        })
    }
}

/// Whether the index's key columns are exactly `att`, in order.
pub fn index_keys_are(index: Oid, att: &[AttrNumber]) -> bool {
    // SAFETY: the index is opened and closed here; indkey has indnatts entries.
    unsafe {
        let idx = pg_sys::index_open(index, pg_sys::AccessShareLock as _);
        let i = (*idx).rd_index;
        let same = (*i).indnkeyatts as usize == att.len() && att.iter().enumerate().all(|(k, a)| *(*i).indkey.values.as_ptr().add(k) == *a);
        pg_sys::index_close(idx, pg_sys::NoLock as _);
        same
    }
}

/// The attribute number of a column with the given type, if the relation has one.
pub fn attnum(rel: Oid, name: &std::ffi::CStr, type_oid: Oid) -> Option<AttrNumber> {
    // SAFETY: syscache lookups by OID and name.
    unsafe {
        let att = pg_sys::get_attnum(rel, name.as_ptr());
        (att > 0 && pg_sys::get_atttype(rel, att) == type_oid).then_some(att)
    }
}

/// The next value of the sequence, without a permission check.
///
/// # Safety
/// `seq` is a sequence that the current role may use (the extension's own, under the
/// owner switch of the caller): no permission is checked.
pub unsafe fn nextval(seq: Oid) -> i64 {
    // SAFETY: nextval_internal raises for a missing relation or one not a sequence; the
    // guard turns that error into a Rust panic that pgrx re-raises.
    unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| nextval_internal(seq, false)) }
}

// SAFETY: PostgreSQL's `nextval_internal` (commands/sequence.h), which pgrx does not bind,
// declared with its C signature (Oid, bool) -> int64; called only through `nextval`.
unsafe extern "C-unwind" {
    fn nextval_internal(relid: Oid, check_permissions: bool) -> i64;
}

/// Everything that differs between the PostgreSQL majors this crate builds for (the
/// features `pg15`, `pg16` and `pg18`), and the PostgreSQL change behind each. Callers
/// elsewhere in the crate use these functions instead of the differing `pg_sys` items.
pub mod major {
    use pgrx::pg_sys::{self, AttrNumber, Oid, Relation};

    /// The index of `AddinShmemInitLock` in `MainLWLockArray`. The C macro that names it
    /// is not in pgrx's bindings, so the number is read from each major's headers:
    /// `storage/lwlocknames.h` of 15 and 16 (`#define AddinShmemInitLock
    /// (&MainLWLockArray[21].lock)`, generated from `lwlocknames.txt`) and
    /// `storage/lwlocklist.h` of 18 (`PG_LWLOCK(21, AddinShmemInit)`). A test checks it
    /// against the server's own name for the lock (`GetLWLockIdentifier`).
    #[cfg(feature = "pg15")]
    pub const ADDIN_SHMEM_INIT_LOCK: usize = 21;
    #[cfg(feature = "pg16")]
    pub const ADDIN_SHMEM_INIT_LOCK: usize = 21;
    #[cfg(feature = "pg18")]
    pub const ADDIN_SHMEM_INIT_LOCK: usize = 21;

    /// The relation's storage number. 16 renamed `RelFileNode` to `RelFileLocator`
    /// (`rd_node.relNode` became `rd_locator.relNumber`, a `RelFileNumber`, still an Oid).
    ///
    /// # Safety
    /// `rel` is open.
    // SAFETY: unsafe only for its precondition: it reads one field of the open relation
    // the caller passes, the field of this major's RelationData layout.
    pub unsafe fn relfilenumber(rel: Relation) -> Oid {
        // SAFETY: the caller's guarantee.
        unsafe {
            #[cfg(feature = "pg15")]
            return (*rel).rd_node.relNode;
            #[cfg(any(feature = "pg16", feature = "pg18"))]
            return (*rel).rd_locator.relNumber;
        }
    }

    /// `index_beginscan` without order-by keys. 18 added an `IndexScanInstrumentation *`
    /// (NULL: no EXPLAIN ANALYZE counters to fill) before `nkeys`.
    ///
    /// # Safety
    /// As `index_beginscan`: `heap` and `index` are open, `snapshot` valid for the scan.
    // SAFETY: unsafe only for its precondition: it forwards to this major's
    // index_beginscan with its argument list (NULL instrumentation on 18, no order-by keys).
    pub unsafe fn index_beginscan(heap: Relation, index: Relation, snapshot: pg_sys::Snapshot, nkeys: i32) -> pg_sys::IndexScanDesc {
        // SAFETY: the caller's guarantees.
        unsafe {
            #[cfg(any(feature = "pg15", feature = "pg16"))]
            return pg_sys::index_beginscan(heap, index, snapshot, nkeys, 0);
            #[cfg(feature = "pg18")]
            return pg_sys::index_beginscan(heap, index, snapshot, std::ptr::null_mut(), nkeys, 0);
        }
    }

    /// `table_tuple_update`, waiting, without a crosscheck snapshot; with whether the new
    /// tuple needs entries in the (btree) indexes. 16 turned the `bool *update_indexes`
    /// into a `TU_UpdateIndexes *` (None, All, or Summarizing: only BRIN-like indexes
    /// need an entry, a HOT update otherwise). The callers allow btree indexes only, so
    /// Summarizing needs no entry, as `ExecInsertIndexTuples(onlySummarizing)` would add
    /// none to a btree.
    ///
    /// # Safety
    /// As `table_tuple_update`.
    // SAFETY: unsafe only for its precondition: it forwards to this major's
    // table_tuple_update with an out-variable of the type that major writes to.
    pub unsafe fn table_tuple_update(
        rel: Relation,
        otid: &mut pg_sys::ItemPointerData,
        slot: *mut pg_sys::TupleTableSlot,
        cid: pg_sys::CommandId,
        snapshot: pg_sys::Snapshot,
        tmfd: &mut pg_sys::TM_FailureData,
        lockmode: &mut pg_sys::LockTupleMode::Type,
    ) -> (pg_sys::TM_Result::Type, bool) {
        // SAFETY: the caller's guarantees.
        unsafe {
            #[cfg(feature = "pg15")]
            {
                let mut update_indexes = false;
                let r = pg_sys::table_tuple_update(rel, otid, slot, cid, snapshot, std::ptr::null_mut(), true, tmfd, lockmode, &mut update_indexes);
                (r, update_indexes)
            }
            #[cfg(any(feature = "pg16", feature = "pg18"))]
            {
                let mut update_indexes = pg_sys::TU_UpdateIndexes::TU_None;
                let r = pg_sys::table_tuple_update(rel, otid, slot, cid, snapshot, std::ptr::null_mut(), true, tmfd, lockmode, &mut update_indexes);
                (r, update_indexes == pg_sys::TU_UpdateIndexes::TU_All)
            }
        }
    }

    /// The `i`th (from 0) attribute of a tuple descriptor. 18 put an array of
    /// `CompactAttribute` in `TupleDescData` (`compact_attrs`) with the full
    /// `FormData_pg_attribute` array after it, reached with `TupleDescAttr` (pgrx binds
    /// the static inline function through its C shim); 15 and 16 have the `attrs` array.
    ///
    /// # Safety
    /// `desc` is a valid descriptor and `i < natts`.
    // SAFETY: unsafe only for its precondition: with a valid descriptor and i < natts the
    // address is inside the descriptor's attribute array on every major.
    pub unsafe fn attr(desc: pg_sys::TupleDesc, i: usize) -> *const pg_sys::FormData_pg_attribute {
        // SAFETY: the caller's guarantees.
        unsafe {
            #[cfg(any(feature = "pg15", feature = "pg16"))]
            return (*desc).attrs.as_ptr().add(i);
            #[cfg(feature = "pg18")]
            return pg_sys::TupleDescAttr(desc, i as _);
        }
    }

    /// Whether a descriptor has a virtual generated column: 18 added them (the default
    /// kind of generated column there) and `TupleConstr.has_generated_virtual`.
    ///
    /// # Safety
    /// `desc` is a valid descriptor.
    // SAFETY: unsafe only for its precondition: it reads the valid descriptor's constr
    // pointer and, when not NULL, one flag of it (18 only).
    pub unsafe fn has_virtual_generated(desc: pg_sys::TupleDesc) -> bool {
        #[cfg(any(feature = "pg15", feature = "pg16"))]
        {
            let _ = desc;
            false
        }
        #[cfg(feature = "pg18")]
        // SAFETY: the caller's guarantee; constr is NULL or valid.
        unsafe {
            let constr = (*desc).constr;
            !constr.is_null() && (*constr).has_generated_virtual
        }
    }

    /// The relation's primary-key index, InvalidOid without one or with a deferrable one.
    /// 18 lets the relcache keep a deferrable primary key (`rd_ispkdeferrable`) and added
    /// `deferrable_ok` to `RelationGetPrimaryKeyIndex`; false answers what 15 and 16 do.
    ///
    /// # Safety
    /// `rel` is open.
    // SAFETY: unsafe only for its precondition: RelationGetPrimaryKeyIndex on an open
    // relation, with 18's extra argument.
    pub unsafe fn primary_key_index(rel: Relation) -> Oid {
        // SAFETY: the caller's guarantee.
        unsafe {
            #[cfg(any(feature = "pg15", feature = "pg16"))]
            return pg_sys::RelationGetPrimaryKeyIndex(rel);
            #[cfg(feature = "pg18")]
            return pg_sys::RelationGetPrimaryKeyIndex(rel, false);
        }
    }

    /// The identity sequence of a column (missing_ok). 17 made `getIdentitySequence`
    /// take the `Relation` instead of its OID (so that a partition finds its parent's
    /// sequence).
    ///
    /// # Safety
    /// `rel` is open.
    // SAFETY: unsafe only for its precondition: a catalog lookup (missing_ok) for an
    // open relation, passed as the OID or the Relation this major's getIdentitySequence takes.
    pub unsafe fn identity_sequence(rel: Relation, att: AttrNumber) -> Oid {
        // SAFETY: the caller's guarantee.
        unsafe {
            #[cfg(any(feature = "pg15", feature = "pg16"))]
            return pg_sys::getIdentitySequence((*rel).rd_id, att, true);
            #[cfg(feature = "pg18")]
            return pg_sys::getIdentitySequence(rel, att, true);
        }
    }

    /// Whether `role` owns the relation `relid`. 16 replaced the per-class
    /// `pg_class_ownercheck` with `object_ownercheck(classid, ...)`.
    ///
    /// # Safety
    /// Inside a transaction (a syscache lookup; raises for a missing relation).
    // SAFETY: unsafe only for its precondition: a syscache lookup inside a transaction,
    // through the ownership check this major has.
    pub unsafe fn owns_table(relid: Oid, role: Oid) -> bool {
        // SAFETY: the caller's guarantee.
        unsafe {
            #[cfg(feature = "pg15")]
            return pg_sys::pg_class_ownercheck(relid, role);
            #[cfg(any(feature = "pg16", feature = "pg18"))]
            return pg_sys::object_ownercheck(pg_sys::RelationRelationId, relid, role);
        }
    }

    /// This backend's number among the live ones (small and dense: backends take the
    /// lowest free one), to spread sessions over a pool's slices. 17 replaced
    /// `MyBackendId` with `MyProcNumber`.
    pub fn backend_number() -> u32 {
        // SAFETY: a process-global integer PostgreSQL sets when the backend starts.
        unsafe {
            #[cfg(any(feature = "pg15", feature = "pg16"))]
            return pg_sys::MyBackendId.max(0) as u32;
            #[cfg(feature = "pg18")]
            return pg_sys::MyProcNumber.max(0) as u32;
        }
    }

    /// A virtual transaction id, as `pg_locks.virtualxid` shows it ("backend/local"). 17
    /// renamed its `backendId` to `procNumber`.
    pub fn virtual_xid(backend: i32, local: pg_sys::LocalTransactionId) -> pg_sys::VirtualTransactionId {
        #[cfg(any(feature = "pg15", feature = "pg16"))]
        return pg_sys::VirtualTransactionId { backendId: backend, localTransactionId: local };
        #[cfg(feature = "pg18")]
        return pg_sys::VirtualTransactionId { procNumber: backend, localTransactionId: local };
    }

    /// This backend's local transaction id. 17 moved `PGPROC.lxid` into `PGPROC.vxid`
    /// (`vxid.lxid`, beside the proc number).
    pub fn local_transaction_id() -> pg_sys::LocalTransactionId {
        // SAFETY: every backend has its PGPROC.
        unsafe {
            #[cfg(any(feature = "pg15", feature = "pg16"))]
            return (*pg_sys::MyProc).lxid;
            #[cfg(feature = "pg18")]
            return (*pg_sys::MyProc).vxid.lxid;
        }
    }

    /// The oldest transaction id the commit log still holds. 17 renamed
    /// `ShmemVariableCache` (a `VariableCacheData *`) to `TransamVariables`.
    ///
    /// # Safety
    /// In a backend (the variable points at shared memory set up at server start). Read
    /// without XactTruncationLock, as the caller's comment explains.
    // SAFETY: unsafe only for its precondition: one read of a shared-memory struct that
    // exists in every backend, under this major's name for it.
    pub unsafe fn oldest_clog_xid() -> pg_sys::TransactionId {
        // SAFETY: the caller's guarantee.
        unsafe {
            #[cfg(any(feature = "pg15", feature = "pg16"))]
            return (*pg_sys::ShmemVariableCache).oldestClogXid;
            #[cfg(feature = "pg18")]
            return (*pg_sys::TransamVariables).oldestClogXid;
        }
    }
}
