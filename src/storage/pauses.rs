//! quota.tenant_pauses (0.9.0): the tenants paused on this node, and this backend's copy
//! of them.
//!
//! Every quota call for a tenant asks whether it is paused, so the answer is cached per
//! backend, one entry per tenant asked about (paused or not). Freshness is the rule of the
//! hot path's caches (`hotpath::cache`): a change to the table sends a relcache
//! invalidation at COMMIT (statement trigger `quota.config_changed`, sql/pause.sql); each
//! lookup first takes the pending invalidations, so a pause committed before the call
//! started is seen; an entry is read with the latest snapshot (not the transaction's, which
//! under REPEATABLE READ may predate the pause) after reading the invalidation generation,
//! and kept only if no invalidation arrived meanwhile.
//!
//! Entries are per tenant, not the whole table, because the table has row-level security
//! (a session sees the pauses of the tenants its scope admits), and the extension's owner
//! need not bypass it: callers only ask about tenants their scope admits, and for those
//! the answer does not depend on the scope.

use pgrx::pg_sys::{self, Oid, PgBuiltInOids as T};
use pgrx::spi::{Spi, SpiClient};
use std::cell::RefCell;
use std::collections::HashMap;

use super::{run, Stmt};
use crate::domain::error::Result;
use crate::domain::pause::{Pause, State};
use crate::pg::{installed, invalidation, privilege};

static UPSERT: Stmt = Stmt {
    sql: "INSERT INTO quota.tenant_pauses (tenant, state, node) VALUES ($1, $2, $3)
          ON CONFLICT (tenant) DO UPDATE SET state = EXCLUDED.state, node = EXCLUDED.node, since = pg_catalog.now()",
    types: &[T::TEXTOID, T::TEXTOID, T::TEXTOID],
};
static DELETE: Stmt = Stmt { sql: "DELETE FROM quota.tenant_pauses WHERE tenant = $1 RETURNING 1", types: &[T::TEXTOID] };

/// Pause `tenant` (or change its pause).
pub fn pause_tenant(c: &mut SpiClient<'_>, tenant: &str, state: State, node: Option<&str>) {
    run(c, &UPSERT, &[tenant.into(), state.as_str().into(), node.into()]);
}

/// Remove `tenant`'s pause; whether there was one.
pub fn resume_tenant(c: &mut SpiClient<'_>, tenant: &str) -> bool {
    !run(c, &DELETE, &[tenant.into()]).is_empty()
}

/// At most this many tenants are remembered per backend; the cache starts over when full.
const MAX_TENANTS: usize = 10_000;

struct Known {
    /// quota.tenant_pauses' oid, whose invalidations forget this.
    table: Oid,
    tenants: HashMap<String, Option<Pause>>,
}

thread_local! {
    static KNOWN: RefCell<Option<Known>> = const { RefCell::new(None) };
}

fn forget(relid: Oid) {
    KNOWN.with(|k| {
        let mut k = k.borrow_mut();
        if k.as_ref().is_some_and(|known| relid == pg_sys::InvalidOid || relid == known.table) {
            *k = None;
        }
    });
}

fn table_oid() -> Oid {
    // SAFETY: catalog lookups by name; a missing schema or table answers InvalidOid.
    unsafe {
        let schema = pg_sys::get_namespace_oid(c"quota".as_ptr(), true);
        if schema == pg_sys::InvalidOid {
            return pg_sys::InvalidOid;
        }
        pg_sys::get_relname_relid(c"tenant_pauses".as_ptr(), schema)
    }
}

/// What this backend knows of `tenant` without reading anything: Some(None) not paused,
/// Some(Some(_)) paused, None not known (the hot path then steps aside, and the general
/// path reads it). The caller has taken pending invalidations (`hotpath::cache`).
pub fn cached(tenant: &str) -> Option<Option<Pause>> {
    KNOWN.with(|k| k.borrow().as_ref().and_then(|k| k.tenants.get(tenant).cloned()))
}

/// `tenant`'s pause, if it is paused: from this backend's copy, or read. A database whose
/// extension predates pauses has none.
pub fn pause_of(tenant: &str) -> Result<Option<Pause>> {
    if !installed::at_least(installed::PAUSES) {
        return Ok(None);
    }
    // A pause committed before this call started is seen, as a new statement sees it.
    invalidation::accept();
    let generation = invalidation::listen(forget);
    if let Some(hit) = cached(tenant) {
        return Ok(hit);
    }
    // SAFETY: reads the backend's parallel state.
    let parallel = unsafe { pg_sys::IsInParallelMode() };
    let table = table_oid();
    let found = read(tenant, !parallel)?;
    if !parallel && table != pg_sys::InvalidOid && invalidation::unchanged_since(generation) {
        KNOWN.with(|k| {
            let mut k = k.borrow_mut();
            let known = k.get_or_insert_with(|| Known { table, tenants: HashMap::new() });
            if known.tenants.len() >= MAX_TENANTS {
                known.tenants.clear();
            }
            known.tenants.insert(tenant.to_string(), found.clone());
        });
    }
    Ok(found)
}

/// Read `tenant`'s row as the extension's owner, with the latest snapshot when `latest`
/// (in parallel mode PostgreSQL refuses one: the statement's then, and nothing is kept).
fn read(tenant: &str, latest: bool) -> Result<Option<Pause>> {
    let row = privilege::as_owner(|| {
        Spi::connect(|c| {
            if latest {
                // SAFETY: inside a transaction, not in parallel mode; the snapshot pushed
                // here is popped below, or by the (sub)transaction abort that ends an ERROR.
                unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetLatestSnapshot()) };
            }
            // A read-only SPI statement reads with the active snapshot.
            let row = c
                .select("SELECT state, node FROM quota.tenant_pauses WHERE tenant OPERATOR(pg_catalog.=) $1", Some(1), &[tenant.into()])
                .expect("a fixed read of quota.tenant_pauses")
                .next()
                .map(|r| (r.get::<String>(1).ok().flatten(), r.get::<String>(2).ok().flatten()));
            if latest {
                // SAFETY: pops the snapshot pushed above.
                unsafe { pg_sys::PopActiveSnapshot() };
            }
            row
        })
    });
    let Some((state, node)) = row else { return Ok(None) };
    let state = state.as_deref().and_then(State::parse).ok_or_else(|| super::corrupt("quota.tenant_pauses", "state", state.unwrap_or_default()))?;
    Ok(Some(Pause { tenant: tenant.to_string(), state, node }))
}
