//! Totals of PREPAREd transactions: parked by transaction id at PREPARE, and folded
//! into the totals once the commit log shows the transaction committed.

use super::*;

#[derive(Clone, Copy)]
pub(super) struct Parked {
    /// 0: free.
    pub(super) xid: u32,
    pub(super) database: i64,
    pub(super) metric: Name,
    pub(super) totals: Totals,
}

#[derive(Clone, Copy)]
pub struct Prepared {
    pub(super) entries: [Parked; PREPARED_SLOTS],
}

impl Default for Prepared {
    fn default() -> Self {
        Prepared { entries: [Parked { xid: 0, database: 0, metric: Name::of(None), totals: Totals::default() }; PREPARED_SLOTS] }
    }
}

// SAFETY: plain integers and byte arrays (Copy), no pointers, which would mean nothing
// in another process, and nothing to drop; read and written only under its PgLwLock.
unsafe impl PGRXSharedMemory for Prepared {}

/// Park a prepared transaction's totals of one metric; false when the table is full (the
/// totals then count at PREPARE, as a commit).
pub(super) fn park(xid: pg_sys::TransactionId, metric: &str, t: &Totals) -> bool {
    let mut table = PREPARED.exclusive();
    let Some(free) = table.entries.iter_mut().find(|e| e.xid == 0) else { return false };
    *free = Parked { xid: u32::from(xid), database: database(), metric: Name::of(Some(metric)), totals: *t };
    true
}

/// Fold in the parked totals whose transaction has ended: committed ones count, rolled
/// back (or lost in a crash) ones are dropped, prepared ones wait. The commit log is read
/// without holding the table's lock; an entry is then taken only if it is still the same.
pub(super) fn settle_prepared() {
    let parked: Vec<(usize, u32)> = {
        let table = PREPARED.share();
        table.entries.iter().enumerate().filter(|(_, e)| e.xid != 0).map(|(i, e)| (i, e.xid)).collect()
    };
    if parked.is_empty() {
        return;
    }
    let ended: Vec<(usize, u32, bool)> = parked
        .into_iter()
        .filter_map(|(i, raw)| {
            let xid = pg_sys::TransactionId::from(raw);
            // SAFETY: the commit log's horizon (`oldest_clog_xid`: ShmemVariableCache, or
            // TransamVariables from 17) is in shared memory set up at server start;
            // the commit-log and proc-array lookups take a transaction id assigned in this
            // cluster (parked at PREPARE). Ids older than the kept commit log count as
            // rolled back. oldestClogXid is read without XactTruncationLock: a truncation
            // right after the test makes TransactionIdDidCommit raise an ERROR (it cannot
            // read the removed segment), not read freed memory.
            unsafe {
                if pg_sys::TransactionIdPrecedes(xid, crate::hotpath::heap::major::oldest_clog_xid()) {
                    Some((i, raw, false))
                } else if pg_sys::TransactionIdIsInProgress(xid) {
                    None
                } else {
                    Some((i, raw, pg_sys::TransactionIdDidCommit(xid)))
                }
            }
        })
        .collect();
    let mut done = Vec::new();
    {
        let mut table = PREPARED.exclusive();
        for (i, raw, committed) in ended {
            let e = &mut table.entries[i];
            if e.xid != raw {
                continue; // settled by another backend meanwhile
            }
            if committed {
                done.push((e.database, e.metric.get().unwrap_or_default(), e.totals));
            }
            e.xid = 0;
        }
    }
    for (db, metric, t) in done {
        add_for(db, &metric, &t);
    }
}
