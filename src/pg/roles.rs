//! The session's role as quota_ext sees it: whether it administers quotas, and which
//! tenants it is bound to (`quota.tenant_bindings`, see `tenancy`).
//!
//! Both answers are cached per backend, because every quota call and every row that a
//! row-level security policy filters asks for them. The cache is forgotten when bindings
//! change (a relcache invalidation of `quota.tenant_bindings`, sent at COMMIT by its
//! statement trigger `quota.config_changed`) or when roles or memberships change
//! (`pg_authid` and `pg_auth_members` syscache invalidations). Bindings store role
//! names, so they survive dump and restore; a name without a role binds nobody.

use super::invalidation;
use pgrx::pg_sys::{self, Oid};
use pgrx::spi::Spi;
use std::cell::RefCell;
use std::rc::Rc;

/// What the session's role may do.
#[derive(Clone, Debug, Default)]
pub struct SessionRole {
    /// A superuser or a member of `quota_admin`: never restricted to tenants.
    pub admin: bool,
    /// The union of the tenants bound to the roles this role is a member of; `None`
    /// when none of them is bound.
    pub tenants: Option<Vec<String>>,
}

/// One binding: a role by name (so that it survives dump and restore), the role's oid
/// and this cluster's system identifier when it was bound (so that it follows a rename,
/// in this cluster only), and the tenant.
pub struct Binding {
    role_name: String,
    role_oid: Option<Oid>,
    role_cluster: Option<String>,
    tenant: String,
}

impl Binding {
    /// The bound roles: the one of that name, and (in the cluster where it was bound) the
    /// one of that oid, if it still exists under another name. Both: a rename followed by
    /// a new role of the old name leaves neither of them free (fail closed).
    fn roles(&self) -> Vec<Oid> {
        let mut out = Vec::with_capacity(2);
        if let Ok(name) = std::ffi::CString::new(self.role_name.as_str()) {
            // SAFETY: a catalog lookup by name.
            let by_name = unsafe { pg_sys::get_role_oid(name.as_ptr(), true) };
            if by_name != pg_sys::InvalidOid {
                out.push(by_name);
            }
        }
        let here = self.role_cluster.as_deref() == Some(this_cluster().as_str());
        if let Some(oid) = self.role_oid.filter(|oid| here && !out.contains(oid)) {
            if super::catalog::has_row(pg_sys::SysCacheIdentifier::AUTHOID, oid) {
                out.push(oid);
            }
        }
        out
    }
}

/// This cluster's system identifier, as stored with a binding's role oid.
pub fn this_cluster() -> String {
    // SAFETY: reads the control file's identifier, fixed for the cluster's life.
    unsafe { pg_sys::GetSystemIdentifier() }.to_string()
}

/// Every binding.
type Bindings = Rc<Vec<Binding>>;

/// The answer for one (session user, current role) pair.
type SessionAnswer = ((Oid, Oid), Rc<SessionRole>);

thread_local! {
    /// Every binding, as last read.
    static BINDINGS: RefCell<Option<Bindings>> = const { RefCell::new(None) };
    /// The answer for one (session user, current role) pair.
    static SESSION: RefCell<Option<SessionAnswer>> = const { RefCell::new(None) };
}

// The bindings table's oid is not kept: any relcache invalidation forgets the bindings,
// which are rare and cost one small read to reload.
fn bindings_changed(_relid: Oid) {
    BINDINGS.with(|b| *b.borrow_mut() = None);
    SESSION.with(|s| *s.borrow_mut() = None);
}

fn roles_changed() {
    SESSION.with(|s| *s.borrow_mut() = None);
}

/// Follow invalidations; returns the current generation.
fn register() -> u64 {
    invalidation::listen(bindings_changed);
    invalidation::listen_roles(roles_changed)
}

/// What the session may do. Administration follows the current role (`SET ROLE`
/// counts; a SECURITY DEFINER function's owner does not). Bindings follow both the
/// current role and the session user, who logged in: a bound login role cannot shed its
/// binding with `SET ROLE quota_app`, since the session user stays the same.
pub fn session() -> Rc<SessionRole> {
    let generation = register();
    // SAFETY: reads the backend's session user and current outer role.
    let key = unsafe { (pg_sys::GetSessionUserId(), pg_sys::GetOuterUserId()) };
    if let Some(found) = SESSION.with(|s| s.borrow().as_ref().filter(|(k, _)| *k == key).map(|(_, r)| r.clone())) {
        return found;
    }
    let role = Rc::new(compute(key.0, key.1));
    if invalidation::unchanged_since(generation) {
        SESSION.with(|s| *s.borrow_mut() = Some((key, role.clone())));
    }
    role
}

fn compute(session_user: Oid, user: Oid) -> SessionRole {
    // SAFETY: catalog lookups by oid and name; missing roles answer InvalidOid.
    let admin = unsafe {
        pg_sys::superuser_arg(user) || {
            let admin = pg_sys::get_role_oid(c"quota_admin".as_ptr(), true);
            admin != pg_sys::InvalidOid && pg_sys::has_privs_of_role(user, admin)
        }
    };
    if admin {
        return SessionRole { admin, tenants: None };
    }
    let mut tenants: Option<Vec<String>> = None;
    for b in bindings().iter() {
        // A superuser session user is a member of every role but bound by none: what it
        // does through SET ROLE counts as that role.
        let member = b.roles().into_iter().any(|bound| {
            // SAFETY: catalog lookups by role oid inside a transaction; an oid that names
            // no role is simply not a membership.
            unsafe { pg_sys::is_member_of_role(user, bound) || pg_sys::is_member_of_role_nosuper(session_user, bound) }
        });
        let tenant = &b.tenant;
        if member {
            let set = tenants.get_or_insert_with(Vec::new);
            if !set.contains(tenant) {
                set.push(tenant.clone());
            }
        }
    }
    SessionRole { admin, tenants }
}

/// Every binding, read as the extension's owner (application roles cannot read the
/// table). A database whose extension predates bindings has none.
fn bindings() -> Bindings {
    if let Some(b) = BINDINGS.with(|b| b.borrow().clone()) {
        return b;
    }
    let generation = register();
    let rows = if crate::pg::installed::at_least(crate::pg::installed::BINDINGS) {
        crate::pg::privilege::as_owner(|| {
            Spi::connect(|c| {
                c.select("SELECT role_name, tenant, role_oid, role_cluster FROM quota.tenant_bindings", None, &[])
                    .map(|t| {
                        t.filter_map(|row| {
                            Some(Binding {
                                role_name: row.get::<String>(1).ok()??,
                                tenant: row.get::<String>(2).ok()??,
                                role_oid: row.get::<Oid>(3).ok().flatten(),
                                role_cluster: row.get::<String>(4).ok().flatten(),
                            })
                        })
                        .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            })
        })
    } else {
        Vec::new()
    };
    let rows = Rc::new(rows);
    if invalidation::unchanged_since(generation) {
        BINDINGS.with(|b| *b.borrow_mut() = Some(rows.clone()));
    }
    rows
}

/// The calling session's scope. The role is the session's current role (`SET ROLE`),
/// not the owner of the SECURITY DEFINER function that is running.
pub fn scope() -> crate::domain::error::Result<crate::domain::tenancy::Scope> {
    let setting = crate::pg::gucs::tenant();
    let role = session();
    // The binding first: a bound session learns nothing about tenants it may not name
    // (not even whether a long one is stored).
    let scope =
        crate::domain::tenancy::Scope::decide(setting.as_deref(), role.admin, role.tenants.as_deref()).map_err(crate::domain::tenancy::not_bound)?;
    if let Some(t) = setting.as_deref() {
        // A tenant stored before the length bounds keeps working.
        if let Err(too_long) = crate::domain::error::name("quota.tenant", t) {
            if !crate::storage::name_is_stored("quota.tenant", t) {
                return Err(too_long);
            }
        }
    }
    Ok(scope)
}
