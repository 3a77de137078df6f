//! Running Rust code in a subtransaction, as PL/pgSQL's exception blocks do.

use pgrx::pg_sys;

/// Run `f` in a subtransaction that is kept when it answers true and rolled back when
/// it answers false (or raises: the error goes on). Rolling back releases the row locks
/// its statements took, such as the lock an UPDATE keeps on a row whose newest version
/// no longer matched its WHERE.
pub fn keep_if(f: impl FnOnce() -> bool) -> bool {
    // An error in `f` propagates as PostgreSQL's ERROR, whose abort unwinds the
    // subtransaction with the rest of the transaction.
    let restore = begin();
    let keep = f();
    // SAFETY: the subtransaction begun above is the current one.
    unsafe {
        if keep {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
    }
    restore();
    keep
}

/// Begin a subtransaction (the standard internal-subtransaction protocol, as PL/pgSQL's
/// exception blocks). The answer restores the caller's memory context and resource
/// owner: call it once the subtransaction is released or rolled back.
fn begin() -> impl Fn() {
    // SAFETY: reads two process globals.
    let (context, owner) = unsafe { (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner) };
    // SAFETY: inside a transaction (every caller is a SQL function); a NULL name is allowed.
    unsafe { pg_sys::BeginInternalSubTransaction(std::ptr::null()) };
    // SAFETY: restores the two globals saved above, both still valid in the parent.
    move || unsafe {
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
    }
}

/// Run `f` in a subtransaction that is always rolled back, so that what it set for
/// itself (a local setting such as lock_timeout) ends with it: `Some` of its answer, or
/// `None` when it raised `caught`. Any other error goes on, to the caller's transaction.
pub fn undone<R>(caught: pgrx::PgSqlErrorCode, f: impl FnOnce() -> R) -> Option<R> {
    let restore = begin();
    pgrx::PgTryBuilder::new(std::panic::AssertUnwindSafe(|| {
        let r = f();
        // SAFETY: `f` returned normally inside the subtransaction begun above.
        unsafe { pg_sys::RollbackAndReleaseCurrentSubTransaction() };
        restore();
        Some(r)
    }))
    .catch_when(caught, |_| {
        // SAFETY: the error was caught (and its state flushed by pgrx) inside the
        // subtransaction begun above, which is still the current one.
        unsafe { pg_sys::RollbackAndReleaseCurrentSubTransaction() };
        restore();
        None
    })
    .execute()
}

/// Run `f` in a subtransaction: its effects are kept when it succeeds, rolled back (and
/// the error's message returned) when it fails.
pub fn run<R>(f: impl FnOnce() -> R) -> std::result::Result<R, String> {
    let restore = begin();
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
