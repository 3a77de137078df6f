//! Waiting for another backend's transaction to end (`quota.await_tenant_quiet`), as
//! CREATE INDEX CONCURRENTLY waits for older transactions: on the transaction's virtual
//! transaction id lock, which every transaction holds until it ends. The wait is a lock
//! wait, so it shows in pg_locks (`pg_blocking_pids` of the waiting backend names the
//! transaction waited for) and ends the moment that transaction does.

use pgrx::pg_sys;
use pgrx::PgSqlErrorCode;

/// `pg_locks.virtualxid` ("backend/local") as PostgreSQL's id; None if it does not parse.
pub fn parse_vxid(text: &str) -> Option<pg_sys::VirtualTransactionId> {
    let (backend, local) = text.split_once('/')?;
    Some(crate::hotpath::heap::major::virtual_xid(backend.parse().ok()?, local.parse().ok()?))
}

/// Wait until the transaction `vxid` ends, at most `ms` milliseconds (at least 1): true if
/// it ended, false on timeout. Other errors (a cancel, statement_timeout) go on.
pub fn wait(vxid: pg_sys::VirtualTransactionId, ms: u64) -> bool {
    let ms = ms.clamp(1, i32::MAX as u64).to_string();
    let ms = std::ffi::CString::new(ms).expect("digits");
    // SAFETY: the standard internal-subtransaction protocol, as `subtransaction::run`:
    // begin; on success release it, on a lock timeout roll it back (which also undoes the
    // lock_timeout set inside it and ends the lock wait), restoring the caller's memory
    // context and resource owner either way. Any other error leaves the subtransaction to
    // the abort of the enclosing transaction, as an error in a PL/pgSQL block would.
    unsafe {
        let (context, owner) = (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner);
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        let restore = move || {
            pg_sys::MemoryContextSwitchTo(context);
            pg_sys::CurrentResourceOwner = owner;
        };
        pgrx::PgTryBuilder::new(std::panic::AssertUnwindSafe(|| {
            // lock_timeout for this wait only: the subtransaction's end restores it.
            pg_sys::set_config_option(
                c"lock_timeout".as_ptr(),
                ms.as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_LOCAL,
                true,
                0,
                false,
            );
            pg_sys::VirtualXactLock(vxid, true);
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
            restore();
            true
        }))
        .catch_when(PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE, |_| {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
            restore();
            false
        })
        .execute()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn vxids_parse_as_pg_locks_shows_them() {
        assert!(super::parse_vxid("3/45").is_some());
        assert!(super::parse_vxid("3").is_none() && super::parse_vxid("a/1").is_none() && super::parse_vxid("1/-2").is_none());
    }
}
