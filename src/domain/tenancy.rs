//! Tenant isolation: which subjects the calling session may see and touch.
//!
//! The app names its tenant per transaction with `SET LOCAL quota.tenant = 'acme'`.
//! - `quota.tenant` set: only that tenant's subjects (and their counters, ledger, holds).
//! - unset, and the session's role is a superuser or a member of `quota_admin`: everything.
//! - unset, any other role: only subjects that have no tenant (single-tenant apps).
//!
//! Tenant bindings (`quota.bind_tenant`, table `quota.tenant_bindings`) tie roles to
//! tenants, for deployments that give each tenant its own role. A session whose role is a
//! member of any bound role (not an admin) may act only for the union of those roles'
//! tenants: naming another tenant in `quota.tenant` is refused with 42501 at the call
//! (not at `SET`), and with no tenant set it sees nothing and creates nothing.
//!
//! Everything outside the scope looks unknown: the same QT404 or "unknown reservation" as
//! an id that does not exist, so nothing about other tenants leaks through errors. The
//! same rule backs the row-level security policies (`quota.tenant_visible`, see
//! `sql/security.sql`), so direct reads of the tables agree with the functions.

use crate::domain::error::{self, QuotaError};

/// The subjects a session may see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every subject (administrators without `quota.tenant`).
    All,
    /// Subjects whose tenant is exactly this (`None`: subjects without a tenant).
    Tenant(Option<String>),
    /// No subject at all: a session bound to tenants that has not named one.
    Nothing,
}

/// Why a session may not act: its role is bound to other tenants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotBound {
    pub tenant: String,
}

impl Scope {
    /// The scope for a `quota.tenant` setting (empty counts as unset), the role's rights
    /// and, for a role bound to tenants (and not an admin), the tenants it may act for.
    pub fn decide(setting: Option<&str>, admin: bool, bound: Option<&[String]>) -> Result<Scope, NotBound> {
        let setting = setting.filter(|t| !t.is_empty());
        match (setting, bound) {
            (_, Some(_)) if admin => Ok(Scope::decide_unbound(setting, admin)),
            (Some(t), Some(tenants)) if tenants.iter().any(|b| b == t) => Ok(Scope::Tenant(Some(t.to_string()))),
            (Some(t), Some(_)) => Err(NotBound { tenant: t.to_string() }),
            (None, Some(_)) => Ok(Scope::Nothing),
            (_, None) => Ok(Scope::decide_unbound(setting, admin)),
        }
    }

    fn decide_unbound(setting: Option<&str>, admin: bool) -> Scope {
        match setting {
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
            Scope::Nothing => false,
        }
    }

    /// May this session create subjects (through `quota.default_plan`)?
    pub fn may_create(&self) -> bool {
        !matches!(self, Scope::Nothing)
    }

    /// The tenant given to subjects this session creates (`quota.default_plan`).
    pub fn creates_in(&self) -> Option<&str> {
        match self {
            Scope::All | Scope::Nothing => None,
            Scope::Tenant(t) => t.as_deref(),
        }
    }

    /// The tenant a session may assign: the requested one must fit the scope.
    pub fn assignable(&self, requested: Option<&str>) -> Result<Option<String>, String> {
        match (self, requested) {
            (Scope::All, r) => Ok(r.map(str::to_string)),
            (Scope::Nothing, _) => Err("this session's role is bound to tenants, and quota.tenant names none of them".into()),
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
            Scope::Nothing => (false, None),
        }
    }
}

/// The 42501 of a bound session that names a tenant it is not bound to.
pub fn not_bound(refusal: NotBound) -> QuotaError {
    let tenant = error::quoted(&refusal.tenant).into_owned();
    QuotaError::Forbidden {
        message: format!("this session's role may not act for tenant \"{tenant}\""),
        hint:
            "Set quota.tenant to a tenant bound to this role (see quota.tenant_bindings), or ask an administrator to bind it with quota.bind_tenant."
                .into(),
        object: format!("tenant {tenant}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_wins_over_admin_rights() {
        assert_eq!(Scope::decide(Some("acme"), true, None), Ok(Scope::Tenant(Some("acme".into()))));
        assert_eq!(Scope::decide(Some("acme"), false, None), Ok(Scope::Tenant(Some("acme".into()))));
    }

    #[test]
    fn unset_means_everything_for_admins_and_untenanted_for_others() {
        assert_eq!(Scope::decide(None, true, None), Ok(Scope::All));
        assert_eq!(Scope::decide(Some(""), true, None), Ok(Scope::All));
        assert_eq!(Scope::decide(None, false, None), Ok(Scope::Tenant(None)));
    }

    #[test]
    fn a_bound_role_acts_only_for_its_tenants() {
        let bound = vec!["acme".to_string(), "initech".to_string()];
        let b = Some(bound.as_slice());
        assert_eq!(Scope::decide(Some("acme"), false, b), Ok(Scope::Tenant(Some("acme".into()))));
        assert_eq!(Scope::decide(Some("initech"), false, b), Ok(Scope::Tenant(Some("initech".into()))));
        assert_eq!(Scope::decide(Some("globex"), false, b), Err(NotBound { tenant: "globex".into() }));
        assert_eq!(Scope::decide(None, false, b), Ok(Scope::Nothing));
        assert_eq!(Scope::decide(Some(""), false, b), Ok(Scope::Nothing));
        // Administrators are never restricted.
        assert_eq!(Scope::decide(Some("globex"), true, b), Ok(Scope::Tenant(Some("globex".into()))));
        assert_eq!(Scope::decide(None, true, b), Ok(Scope::All));
        let e = not_bound(NotBound { tenant: "globex".into() });
        assert_eq!(e.sqlstate(), "42501");
        assert!(e.message().contains("globex"));
    }

    #[test]
    fn nothing_admits_nothing_and_creates_nothing() {
        assert!(!Scope::Nothing.admits(None));
        assert!(!Scope::Nothing.admits(Some("acme")));
        assert!(!Scope::Nothing.may_create());
        assert!(Scope::Nothing.assignable(None).is_err());
        assert!(Scope::Tenant(None).may_create() && Scope::All.may_create());
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
