//! Running Rust code in a subtransaction, as PL/pgSQL's exception blocks do.

use pgrx::pg_sys;

/// Run `f` in a subtransaction: its effects are kept when it succeeds, rolled back (and
/// the error's message returned) when it fails.
/// Run `f` in a subtransaction that is kept when it answers true and rolled back when
/// it answers false (or raises: the error goes on). Rolling back releases the row locks
/// its statements took, such as the lock an UPDATE keeps on a row whose newest version
/// no longer matched its WHERE.
pub fn keep_if(f: impl FnOnce() -> bool) -> bool {
    // SAFETY: reads two process globals.
    let (context, owner) = unsafe { (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner) };
    // SAFETY: inside a transaction; the subtransaction begun here is released or rolled
    // back below on the normal path. An error in `f` propagates as PostgreSQL's ERROR, whose
    // abort unwinds the subtransaction with the rest of the transaction.
    unsafe { pg_sys::BeginInternalSubTransaction(std::ptr::null()) };
    let keep = f();
    // SAFETY: the subtransaction begun above is the current one; the memory context and
    // resource owner are restored as `run` restores them.
    unsafe {
        if keep {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
    }
    keep
}

pub fn run<R>(f: impl FnOnce() -> R) -> std::result::Result<R, String> {
    // SAFETY: the standard internal-subtransaction protocol (as PL/pgSQL's exception
    // blocks): begin, then release or roll back, restoring the memory context and
    // resource owner of the caller.
    let (context, owner) = unsafe { (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner) };
    // SAFETY: inside a transaction (every caller is a SQL function); a NULL name is allowed.
    unsafe { pg_sys::BeginInternalSubTransaction(std::ptr::null()) };
    // SAFETY: restores the two globals saved above, both still valid in the parent.
    let restore = move || unsafe {
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
    };
    pgrx::PgTryBuilder::new(std::panic::AssertUnwindSafe(|| {
        let r = f();
        // SAFETY: `f` returned normally inside the subtransaction begun above.
        unsafe { pg_sys::ReleaseCurrentSubTransaction() };
        restore();
        Ok(r)
    }))
    .catch_others(|e| {
        // SAFETY: the error was caught (and its state flushed by pgrx) inside the
        // subtransaction begun above, which is still the current one.
        unsafe { pg_sys::RollbackAndReleaseCurrentSubTransaction() };
        restore();
        Err(match e {
            pgrx::pg_sys::panic::CaughtError::PostgresError(r) | pgrx::pg_sys::panic::CaughtError::ErrorReport(r) => r.message().to_string(),
            pgrx::pg_sys::panic::CaughtError::RustPanic { ereport, .. } => ereport.message().to_string(),
        })
    })
    .execute()
}
