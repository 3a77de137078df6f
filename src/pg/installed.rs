//! The SQL objects a database has: the extension version it was created at or last
//! updated to, which may be older than this library.
//!
//! After a package upgrade the new library serves every database at once, while each
//! database keeps its old objects until `ALTER EXTENSION quota_ext UPDATE`. Such a
//! database is still served, with the semantics of its version:
//! - the hot path (`hotpath`) and its caches serve only a database at this library's
//!   version, whose invalidation triggers are all in place; older ones take the general
//!   path, which reads everything with the statement's snapshot;
//! - code that needs objects a version added checks `at_least` first, and either keeps
//!   the older behaviour or raises 55000 with the hint to update (`requires`).
//!
//! The version is cached per backend and forgotten at every relcache invalidation (DDL,
//! and the statement triggers of `sql/hotpath.sql`). Every upgrade script ends with a
//! statement that fires one (see `sql/quota_ext--0.3.0--0.4.0.sql`), so other backends
//! see the new version from their next call.

use pgrx::pg_sys;
use pgrx::FromDatum;
use std::cell::Cell;

use crate::domain::error::QuotaError;

/// A released version, `major.minor.patch`.
pub type Version = (u32, u32, u32);

/// Tenant bindings (`quota.tenant_bindings`), row charges (`quota.row_charges`), column
/// numbers of enforced tables, and the id-only notification payload.
pub const BINDINGS: Version = (0, 4, 0);
pub const ROW_CHARGES: Version = (0, 4, 0);
/// `quota.throttles` (quota.throttle), swept by maintenance.
pub const THROTTLES: Version = (0, 7, 0);
/// Several limits per metric: `plan_limits` keyed by (plan, metric, period), and the
/// limit's `period` in counters, the ledger, summaries, reservations and row charges.
/// Older databases keep one limit per metric (`storage::schema::expand` gives their
/// statements the older form).
pub const LIMITS_V2: Version = (0, 7, 0);
/// `quota.subject_overrides` (quota.set_override).
pub const OVERRIDES: Version = (0, 7, 0);
/// Pools: `subjects.pool`, `usage_events.via`, `quota.pool_slices`, the decision's level.
pub const POOLS: Version = (0, 8, 0);
/// Tenant pauses (`quota.tenant_pauses`, scale-out).
pub const PAUSES: Version = (0, 9, 0);

thread_local! {
    /// The installed version as last read; `Some(None)`: the extension is not installed.
    static CACHED: Cell<Option<Option<Version>>> = const { Cell::new(None) };
}

fn forget(_relid: pgrx::pg_sys::Oid) {
    CACHED.with(|c| c.set(None));
}

/// This library's version.
pub fn library() -> Version {
    parse(env!("CARGO_PKG_VERSION")).expect("the crate version is major.minor.patch")
}

/// `"0.3.0"` as (0, 3, 0); None for anything else.
pub fn parse(text: &str) -> Option<Version> {
    let mut parts = text.trim().split('.').map(|p| p.parse::<u32>().ok());
    let v = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(v)
}

/// The version installed in this database (None: not installed).
pub fn version() -> Option<Version> {
    if let Some(v) = CACHED.with(|c| c.get()) {
        return v;
    }
    let generation = super::invalidation::listen(forget);
    let text = catalog_version();
    let v = text.as_deref().and_then(parse);
    if super::invalidation::unchanged_since(generation) {
        CACHED.with(|c| c.set(Some(v)));
    }
    v
}

/// `pg_extension.extversion` of quota_ext, read as PostgreSQL reads its catalogs (with the
/// catalog snapshot, which follows committed DDL), not with the calling statement's
/// snapshot: a call whose statement began before an ALTER EXTENSION UPDATE committed, and
/// then waited on its locks, must take the statements of the version now in place, as the
/// tables now are. It reads without SQL, so it assigns no transaction id and works in
/// parallel mode and on a hot standby.
fn catalog_version() -> Option<String> {
    // SAFETY: inside a transaction; pg_extension and its name index are opened, scanned
    // with the catalog snapshot (NULL) and closed here; the key is the name equality on
    // extname with a C string, as PostgreSQL's get_extension_oid does. The tuple and its
    // descriptor are valid until the scan ends, and extversion (text) is copied out
    // before that.
    unsafe {
        let rel = pg_sys::table_open(pg_sys::ExtensionRelationId, pg_sys::AccessShareLock as _);
        let mut key: pg_sys::ScanKeyData = std::mem::zeroed();
        pg_sys::ScanKeyInit(
            &mut key,
            pg_sys::Anum_pg_extension_extname as _,
            pg_sys::BTEqualStrategyNumber as _,
            pg_sys::Oid::from(pg_sys::F_NAMEEQ),
            pg_sys::Datum::from(c"quota_ext".as_ptr()),
        );
        let scan = pg_sys::systable_beginscan(rel, pg_sys::Oid::from(pg_sys::ExtensionNameIndexId), true, std::ptr::null_mut(), 1, &mut key);
        let tuple = pg_sys::systable_getnext(scan);
        let version = (!tuple.is_null())
            .then(|| {
                let mut isnull = false;
                let datum = pg_sys::heap_getattr(tuple, pg_sys::Anum_pg_extension_extversion as _, (*rel).rd_att, &mut isnull);
                (!isnull).then(|| String::from_datum(datum, false)).flatten()
            })
            .flatten();
        pg_sys::systable_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as _);
        version
    }
}

/// Is this database at this library's version (every object and trigger in place)?
pub fn is_current() -> bool {
    version() == Some(library())
}

/// Does this database have what `since` added? (A database at an unknown version, or
/// without the extension, has nothing.)
pub fn at_least(since: Version) -> bool {
    version().is_some_and(|v| v >= since)
}

/// 55000 unless this database has what `since` added: for operations whose state an
/// older version does not have.
pub fn requires(since: Version, operation: &'static str) -> Result<(), QuotaError> {
    if at_least(since) {
        return Ok(());
    }
    let have = version().map_or("none".to_string(), |(a, b, c)| format!("{a}.{b}.{c}"));
    let (a, b, c) = since;
    Err(QuotaError::NotAvailable {
        feature: operation,
        message: format!("{operation} needs quota_ext {a}.{b}.{c} in this database, which is at {have}"),
        hint: "Run ALTER EXTENSION quota_ext UPDATE in this database.".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_order() {
        assert_eq!(parse("0.3.0"), Some((0, 3, 0)));
        assert_eq!(parse("0.10.1"), Some((0, 10, 1)));
        assert!(parse("0.10.1") > parse("0.4.0"));
        assert_eq!(parse("0.3"), None);
        assert_eq!(parse("0.3.0.1"), None);
        assert_eq!(parse("x.y.z"), None);
        assert_eq!(library(), parse(env!("CARGO_PKG_VERSION")).unwrap());
    }
}
