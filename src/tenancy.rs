//! Tenant isolation: which subjects the calling session may see and touch.
//!
//! The app names its tenant per transaction with `SET LOCAL quota.tenant = 'acme'`.
//! - `quota.tenant` set: only that tenant's subjects (and their counters, ledger, holds).
//! - unset, and the session's role is a superuser or a member of `quota_admin`: everything.
//! - unset, any other role: only subjects that have no tenant (single-tenant apps).
//!
//! Everything outside the scope looks unknown: the same QT404 or "unknown reservation" as
//! an id that does not exist, so nothing about other tenants leaks through errors. The
//! same rule backs the row-level security policies (`quota.tenant_visible`, see
//! `sql/security.sql`), so direct reads of the tables agree with the functions.

/// The subjects a session may see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every subject (administrators without `quota.tenant`).
    All,
    /// Subjects whose tenant is exactly this (`None`: subjects without a tenant).
    Tenant(Option<String>),
}

impl Scope {
    /// The scope for a `quota.tenant` setting (empty counts as unset) and the role's rights.
    pub fn decide(setting: Option<&str>, admin: bool) -> Scope {
        match setting.filter(|t| !t.is_empty()) {
            Some(t) => Scope::Tenant(Some(t.to_string())),
            None if admin => Scope::All,
            None => Scope::Tenant(None),
        }
    }

    /// May the session see a subject of this tenant?
    pub fn admits(&self, tenant: Option<&str>) -> bool {
        match self {
            Scope::All => true,
            Scope::Tenant(t) => t.as_deref() == tenant,
        }
    }

    /// The tenant given to subjects this session creates (`quota.default_plan`).
    pub fn creates_in(&self) -> Option<&str> {
        match self {
            Scope::All => None,
            Scope::Tenant(t) => t.as_deref(),
        }
    }

    /// The tenant a session may assign: the requested one must fit the scope.
    pub fn assignable(&self, requested: Option<&str>) -> Result<Option<String>, String> {
        match (self, requested) {
            (Scope::All, r) => Ok(r.map(str::to_string)),
            (Scope::Tenant(mine), None) => Ok(mine.clone()),
            (Scope::Tenant(mine), Some(r)) if mine.as_deref() == Some(r) => Ok(Some(r.to_string())),
            (Scope::Tenant(None), Some(_)) => Err("only a quota_admin (or a session with quota.tenant set) can assign a tenant".into()),
            (Scope::Tenant(Some(mine)), Some(_)) => Err(format!("this session is scoped to tenant \"{mine}\" by quota.tenant")),
        }
    }

    /// Parameters of the one-statement paths: (every subject?, else this tenant).
    pub fn params(&self) -> (bool, Option<&str>) {
        match self {
            Scope::All => (true, None),
            Scope::Tenant(t) => (false, t.as_deref()),
        }
    }
}

/// The calling session's scope. The role is the session's current role (`SET ROLE`),
/// not the owner of the SECURITY DEFINER function that is running.
pub fn current() -> Scope {
    let setting = crate::gucs::tenant();
    if setting.is_some() {
        return Scope::decide(setting.as_deref(), false);
    }
    Scope::decide(None, session_is_admin())
}

fn session_is_admin() -> bool {
    use pgrx::pg_sys;
    unsafe {
        let role = pg_sys::GetOuterUserId();
        if pg_sys::superuser_arg(role) {
            return true;
        }
        let admin = pg_sys::get_role_oid(c"quota_admin".as_ptr(), true);
        admin != pg_sys::InvalidOid && pg_sys::has_privs_of_role(role, admin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_wins_over_admin_rights() {
        assert_eq!(Scope::decide(Some("acme"), true), Scope::Tenant(Some("acme".into())));
        assert_eq!(Scope::decide(Some("acme"), false), Scope::Tenant(Some("acme".into())));
    }

    #[test]
    fn unset_means_everything_for_admins_and_untenanted_for_others() {
        assert_eq!(Scope::decide(None, true), Scope::All);
        assert_eq!(Scope::decide(Some(""), true), Scope::All);
        assert_eq!(Scope::decide(None, false), Scope::Tenant(None));
    }

    #[test]
    fn admits_only_its_tenant() {
        let acme = Scope::Tenant(Some("acme".into()));
        assert!(acme.admits(Some("acme")));
        assert!(!acme.admits(Some("globex")));
        assert!(!acme.admits(None));
        let none = Scope::Tenant(None);
        assert!(none.admits(None));
        assert!(!none.admits(Some("acme")));
        assert!(Scope::All.admits(Some("globex")) && Scope::All.admits(None));
    }

    #[test]
    fn assignable_tenants() {
        let acme = Scope::Tenant(Some("acme".into()));
        assert_eq!(acme.assignable(None), Ok(Some("acme".into())));
        assert_eq!(acme.assignable(Some("acme")), Ok(Some("acme".into())));
        assert!(acme.assignable(Some("globex")).is_err());
        assert!(Scope::Tenant(None).assignable(Some("acme")).is_err());
        assert_eq!(Scope::Tenant(None).assignable(None), Ok(None));
        assert_eq!(Scope::All.assignable(Some("x")), Ok(Some("x".into())));
        assert_eq!(Scope::All.assignable(None), Ok(None));
    }

    #[test]
    fn statement_parameters() {
        assert_eq!(Scope::All.params(), (true, None));
        assert_eq!(Scope::Tenant(Some("a".into())).params(), (false, Some("a")));
        assert_eq!(Scope::Tenant(None).params(), (false, None));
    }
}
