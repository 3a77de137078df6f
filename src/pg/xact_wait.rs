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
    // In a subtransaction rolled back either way: that also undoes the lock_timeout set
    // inside it, and a lock timeout (55P03) ends the wait without ending the call.
    super::subtransaction::undone(PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE, || {
        // SAFETY: inside a transaction; both strings are NUL-terminated and outlive the
        // call (a local setting, undone with the subtransaction); `vxid` is a plain value.
        unsafe {
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
        }
    })
    .is_some()
}

#[cfg(test)]
mod tests {
    #[test]
    fn vxids_parse_as_pg_locks_shows_them() {
        assert!(super::parse_vxid("3/45").is_some());
        assert!(super::parse_vxid("3").is_none() && super::parse_vxid("a/1").is_none() && super::parse_vxid("1/-2").is_none());
    }
}
