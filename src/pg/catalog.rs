//! Catalog questions answered from the system caches.

use pgrx::pg_sys;

/// Whether the system cache `cache` has a row for `oid` (a role, a database...).
pub fn has_row(cache: pg_sys::SysCacheIdentifier::Type, oid: pg_sys::Oid) -> bool {
    // SAFETY: a syscache lookup by oid inside a transaction; the tuple, when found, is
    // released at once and never read.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(cache as _, pg_sys::Datum::from(oid));
        if tuple.is_null() {
            return false;
        }
        pg_sys::ReleaseSysCache(tuple);
        true
    }
}
