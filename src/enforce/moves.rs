//! Rows that an UPDATE moves to another partition: the BEFORE UPDATE trigger marks them,
//! so that the DELETE and INSERT that follow neither refund nor charge.

use super::*;

thread_local! {
    /// The row a BEFORE UPDATE trigger of a partitioned table last saw (see `moved`).
    pub(super) static UPDATING: Cell<Option<Updating>> = const { Cell::new(None) };
}

// Rows that an UPDATE moves to another partition -------------------------------------------
// PostgreSQL moves a row as a DELETE from its partition followed by an INSERT into the
// new one: BEFORE UPDATE fires on the old partition, then (after the old row is deleted
// and marked as moved) BEFORE INSERT on the new one, and AFTER DELETE at the end of the
// statement. Neither may charge or refund. The old row version carries the mark
// (`t_ctid` set to "moved partitions"), which no other deletion sets.

/// The row version a BEFORE UPDATE trigger of a partitioned table saw last.
#[derive(Clone, Copy)]
pub(super) struct Updating {
    pub(super) root: pg_sys::Oid,
    pub(super) partition: pg_sys::Oid,
    pub(super) tid: pg_sys::ItemPointerData,
    /// The local id of the transaction that saw it: a row seen by an earlier transaction
    /// of this backend is never taken for this one's.
    pub(super) lxid: pg_sys::LocalTransactionId,
}

pub(super) fn local_transaction() -> pg_sys::LocalTransactionId {
    crate::hotpath::heap::major::local_transaction_id()
}

/// Does this INSERT into a partition of `root` put back the row the last BEFORE UPDATE
/// saw, which this transaction just deleted from its old partition to move it?
pub(super) fn moved(root: pg_sys::Oid) -> bool {
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
        if (*form).relkind != pg_sys::RELKIND_RELATION as std::ffi::c_char || (*form).relam != pg_sys::HEAP_TABLE_AM_OID {
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
pub(super) fn moved_away(tuple: *mut pg_sys::HeapTupleData) -> bool {
    // SAFETY: an AFTER DELETE trigger's old tuple is the stored version, header included.
    unsafe { !tuple.is_null() && !(*tuple).t_data.is_null() && indicates_moved(&(*(*tuple).t_data).t_ctid) }
}

/// PostgreSQL's `ItemPointerIndicatesMovedPartitions`.
pub(super) fn indicates_moved(tid: &pg_sys::ItemPointerData) -> bool {
    tid.ip_blkid.bi_hi == 0xFFFF && tid.ip_blkid.bi_lo == 0xFFFF && tid.ip_posid == MOVED_PARTITIONS_OFFSET
}

/// PostgreSQL's `MovedPartitionsOffsetNumber`.
pub(super) const MOVED_PARTITIONS_OFFSET: u16 = 0xfffd;
