//! Running as the owner of schema quota, with search_path pinned.
//!
//! `quota_check`, `quota_consume` and `quota_try_consume` (the C-language forms) are
//! SECURITY INVOKER: their hot path (`hotpath`) reads and writes through the access
//! methods, which check no privileges (the caller's EXECUTE right on the function is the
//! gate), so it pays nothing for a role switch. Their general path runs SQL through SPI,
//! and wraps it in `as_owner`, which does what a SECURITY DEFINER function with
//! `SET search_path = pg_catalog, quota, pg_temp` does (see sql/security.sql).
//!
//! On an error nothing needs undoing here: the (sub)transaction's abort restores the
//! role and the settings, as it does for SECURITY DEFINER functions.

use pgrx::pg_sys;

/// Run `f` as the owner of schema quota with search_path `pg_catalog, quota, pg_temp`.
pub fn as_owner<R>(f: impl FnOnce() -> R) -> R {
    let Some(owner) = owner() else {
        // Without the schema nothing can run anyway; let SPI report it as the caller.
        return f();
    };
    // SAFETY: inside a transaction (every caller serves a SQL function), as PostgreSQL's
    // own SECURITY DEFINER call handler does it: save the user and security context,
    // switch, open a GUC nest level and SAVE the setting in it; afterwards close the
    // level and restore what was saved. If `f` unwinds (an ERROR, a panic) the restore
    // below is skipped, which is sound only because the unwinding ends in a
    // (sub)transaction abort, which restores the user, security context and settings of
    // its start: no caller catches it without one (`subtransaction::run` rolls back;
    // `clock::parse_timestamptz` catches only timestamptz_in's errors).
    unsafe {
        let (mut user, mut context) = (pg_sys::InvalidOid, 0);
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        pg_sys::SetUserIdAndSecContext(owner, context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32);
        let nest = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            c"pg_catalog, quota, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        let result = f();
        pg_sys::AtEOXact_GUC(true, nest);
        pg_sys::SetUserIdAndSecContext(user, context);
        result
    }
}

/// Run `f` as the owner of schema quota, leaving search_path as it is: for statements that
/// name every table, function and operator with its schema (`OPERATOR(pg_catalog.+)`), so
/// that no search_path can change what they mean, even when they are planned (once per
/// backend) under a caller's. Cheaper than `as_owner`, which opens a GUC nest level.
pub fn as_owner_qualified<R>(f: impl FnOnce() -> R) -> R {
    let Some(owner) = owner() else {
        return f();
    };
    // SAFETY: as in `as_owner`, without the setting: the role and security context are
    // restored afterwards, or by the (sub)transaction abort that ends any unwinding.
    unsafe {
        let (mut user, mut context) = (pg_sys::InvalidOid, 0);
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        pg_sys::SetUserIdAndSecContext(owner, context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32);
        let result = f();
        pg_sys::SetUserIdAndSecContext(user, context);
        result
    }
}

/// The owner of schema quota (the role that created the extension).
fn owner() -> Option<pg_sys::Oid> {
    // SAFETY: catalog lookups inside a transaction: by name (missing_ok, InvalidOid when
    // there is no schema quota), then a syscache tuple by oid, whose data (a
    // pg_namespace row, read through GETSTRUCT) is read before the tuple is released.
    unsafe {
        let nsp = pg_sys::get_namespace_oid(c"quota".as_ptr(), true);
        if nsp == pg_sys::InvalidOid {
            return None;
        }
        let tuple = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::NAMESPACEOID as _, pg_sys::Datum::from(nsp));
        if tuple.is_null() {
            return None;
        }
        let owner = (*(pg_sys::GETSTRUCT(tuple) as pg_sys::Form_pg_namespace)).nspowner;
        pg_sys::ReleaseSysCache(tuple);
        Some(owner)
    }
}
