//! Tenant pauses (0.9.0, scale-out): pause a tenant on this node for a move, wait until
//! nothing more for it can commit, resume it. The logic is in `ops::pause`.

use pgrx::prelude::*;

use crate::domain::error::required;
use crate::ops;
use crate::pg::ereport::OrRaise;

/// Pause `tenant` on this node: every quota call acting for it fails with QT503 from the
/// commit on. `node`: where it is going (or went); `moved`: it has moved (state 'moved',
/// else 'moving'). Replaces an earlier pause of the tenant.
#[pg_extern(volatile, parallel_unsafe)]
fn pause_tenant(tenant: Option<&str>, node: default!(Option<&str>, "NULL"), moved: default!(Option<bool>, false)) {
    ops::pause::pause_tenant(required("tenant", tenant).or_raise(), node, required("moved", moved).or_raise()).or_raise()
}

/// Remove `tenant`'s pause; whether it was paused.
#[pg_extern(volatile, parallel_unsafe)]
fn resume_tenant(tenant: Option<&str>) -> bool {
    ops::pause::resume_tenant(required("tenant", tenant).or_raise()).or_raise()
}

/// Called in a new transaction after `pause_tenant` committed: wait until every other
/// transaction of this database that started before it looked (after the pause's commit)
/// has ended, and every prepared one. Returns how many it waited for; 55P03 after
/// `timeout`.
#[pg_extern(volatile, parallel_unsafe)]
fn await_tenant_quiet(tenant: Option<&str>, timeout: default!(Option<pgrx::datum::Interval>, "'30 seconds'")) -> i32 {
    ops::pause::await_quiet(required("tenant", tenant).or_raise(), &required("timeout", timeout).or_raise()).or_raise()
}
