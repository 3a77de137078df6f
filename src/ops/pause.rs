//! Tenant pauses (0.9.0, scale-out): `quota.pause_tenant`, `quota.resume_tenant`,
//! `quota.await_tenant_quiet`, and the refusal every quota call acting for a paused tenant
//! gets (`refuse_paused`, QT503).
//!
//! Why pause, then wait (docs/scale-out.md, "Pausing a tenant (node side)"): a move copies
//! a tenant's quota state to another node. Once the pause has committed, every call that
//! starts afterwards sees it and is refused: a transaction that starts after the commit
//! takes its first snapshot after it, and this backend's copy of the pauses follows the
//! invalidation sent at that commit (`storage::pauses`). What remains are transactions
//! that started before the pause committed: a consume in one of them may have read "not
//! paused" and may still commit usage. `await_quiet`, called in a new transaction after
//! the pause committed, waits until every other transaction of this database that started
//! before it looked (a moment after the pause committed: its snapshot sees the pause) has
//! ended, and every prepared transaction. After that
//! nothing more for the tenant can commit on this node, so the mover's copy, taken after
//! the wait, is complete.

use pgrx::spi::Spi;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::domain::error::{self, QuotaError, Result};
use crate::domain::pause::State;
use crate::pg::{installed, roles, xact_wait};
use crate::storage;

/// QT503 when `tenant` (the tenant a call acts for) is paused; untenanted calls never are.
pub fn refuse_paused(tenant: Option<&str>) -> Result<()> {
    let Some(t) = tenant.filter(|t| !t.is_empty()) else { return Ok(()) };
    match storage::pauses::pause_of(t)? {
        Some(p) => Err(QuotaError::Paused(Box::new(p))),
        None => Ok(()),
    }
}

/// An administrator scoped to one tenant (`quota.tenant`) pauses only that tenant, as
/// `assign_plan` assigns only that one; a bound role only its own.
fn in_scope(tenant: &str, operation: &str) -> Result<()> {
    let scope = roles::scope()?;
    if scope.admits(Some(tenant)) {
        return Ok(());
    }
    let t = error::quoted(tenant);
    Err(QuotaError::Forbidden {
        object: format!("tenant {t}"),
        message: format!("this session may not {operation} tenant \"{t}\": its quota.tenant or its role's bindings name another tenant"),
        hint: "Run it as a quota_admin without quota.tenant (RESET quota.tenant), or with quota.tenant set to that tenant.".into(),
    })
}

fn node_name(node: Option<&str>) -> Result<()> {
    match node {
        Some(n) => error::name("node", n).map(|_| ()),
        None => Ok(()),
    }
}

/// Pause `tenant` on this node: state 'moving' (or 'moved'), going to `node`.
pub fn pause_tenant(tenant: &str, node: Option<&str>, moved: bool) -> Result<()> {
    error::name("tenant", tenant)?;
    node_name(node)?;
    installed::requires(installed::PAUSES, "quota.pause_tenant")?;
    in_scope(tenant, "pause")?;
    storage::volatile(|c| {
        storage::pauses::pause_tenant(c, tenant, State::of_moved(moved), node);
        Ok(())
    })
}

/// Remove `tenant`'s pause; whether it was paused.
pub fn resume_tenant(tenant: &str) -> Result<bool> {
    error::name("tenant", tenant)?;
    installed::requires(installed::PAUSES, "quota.resume_tenant")?;
    in_scope(tenant, "resume")?;
    storage::volatile(|c| Ok(storage::pauses::resume_tenant(c, tenant)))
}

/// The longest wait: one hour.
const MAX_TIMEOUT_US: i64 = 3_600_000_000;

fn timeout_of(t: &pgrx::datum::Interval) -> Result<Duration> {
    let us = (t.days() as i64).checked_mul(86_400_000_000).and_then(|d| d.checked_add(t.micros()));
    match us {
        Some(us) if t.months() == 0 && (0..=MAX_TIMEOUT_US).contains(&us) => Ok(Duration::from_micros(us as u64)),
        _ => Err(QuotaError::invalid(
            "timeout",
            format!("{} months {} days {} microseconds", t.months(), t.days(), t.micros()),
            "timeout must be an interval from 0 to 1 hour",
            "Pass how long to wait, such as '30 seconds'.",
        )),
    }
}

/// Other backends of this database whose transaction started no later than `$1`
/// (autovacuum workers, which run no quota call, excepted), with the virtual transaction
/// id they hold; and every prepared transaction of this database (pg_prepared_xacts has no
/// start time: fail closed).
const OPEN_BEFORE_ME: &str = "SELECT a.pid, l.virtualxid FROM pg_catalog.pg_stat_activity a
    LEFT JOIN pg_catalog.pg_locks l ON l.pid = a.pid AND l.locktype = 'virtualxid' AND l.mode = 'ExclusiveLock' AND l.granted
    WHERE a.datid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
      AND a.pid <> pg_catalog.pg_backend_pid()
      AND a.backend_type <> 'autovacuum worker'
      AND a.xact_start <= $1
    ORDER BY a.pid";
const PREPARED: &str = "SELECT gid FROM pg_catalog.pg_prepared_xacts WHERE database = pg_catalog.current_database() ORDER BY gid";

/// Wait until `tenant` is quiet on this node (see the module's comment); how many
/// transactions it waited for.
pub fn await_quiet(tenant: &str, timeout: &pgrx::datum::Interval) -> Result<i32> {
    error::name("tenant", tenant)?;
    let timeout = timeout_of(timeout)?;
    installed::requires(installed::PAUSES, "quota.await_tenant_quiet")?;
    in_scope(tenant, "wait for")?;
    // Only a pause that has committed counts: one made in this very transaction is not
    // seen by the transactions this call waits for.
    let committed = Spi::connect(|c| {
        c.select(
            "SELECT (xmin OPERATOR(pg_catalog.=) (pg_catalog.pg_current_xact_id_if_assigned()::text::int8 OPERATOR(pg_catalog.%) 4294967296)::text::xid) IS NOT TRUE
             FROM quota.tenant_pauses WHERE tenant OPERATOR(pg_catalog.=) $1",
            Some(1),
            &[tenant.into()],
        )
        .expect("a fixed read of quota.tenant_pauses")
        .next()
        .and_then(|r| r.get::<bool>(1).ok().flatten())
    });
    if committed != Some(true) {
        return Err(QuotaError::NotPaused { tenant: tenant.to_string() });
    }
    // Other roles' transactions show no xact_start unless this role may read all stats:
    // without that right the wait would see nothing to wait for (fail closed).
    let sees_all = Spi::get_one::<bool>("SELECT pg_catalog.pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')").ok().flatten();
    if sees_all != Some(true) {
        return Err(QuotaError::Forbidden {
            object: "pg_stat_activity".into(),
            message: "quota.await_tenant_quiet cannot see other roles' transactions: the extension's owner is not a member of pg_read_all_stats"
                .into(),
            hint: "GRANT pg_read_all_stats TO the owner of schema quota (or install the extension as a superuser).".into(),
        });
    }
    // The cut: a moment after the pause committed (this call's snapshot sees it, and was
    // taken before this). Not the transaction's start, which may predate the pause when
    // the caller ran BEGIN earlier; a cut later than needed only waits for a few more.
    let cut = Spi::get_one::<pgrx::datum::TimestampWithTimeZone>("SELECT pg_catalog.clock_timestamp()")
        .ok()
        .flatten()
        .expect("clock_timestamp() is never NULL");
    let started = Instant::now();
    let mut seen_pids = BTreeSet::new();
    let mut seen_prepared = BTreeSet::new();
    loop {
        // pg_stat_activity is read once per transaction unless its snapshot is cleared.
        // SAFETY: inside a transaction; frees this backend's copy of the activity table.
        unsafe { pgrx::pg_sys::pgstat_clear_snapshot() };
        let (open, prepared) = Spi::connect(|c| {
            let open: Vec<(i32, Option<String>)> = c
                .select(OPEN_BEFORE_ME, None, &[cut.into()])
                .expect("a fixed read of pg_stat_activity")
                .filter_map(|r| Some((r.get::<i32>(1).ok().flatten()?, r.get::<String>(2).ok().flatten())))
                .collect();
            let prepared: Vec<String> =
                c.select(PREPARED, None, &[]).expect("a fixed read of pg_prepared_xacts").filter_map(|r| r.get::<String>(1).ok().flatten()).collect();
            (open, prepared)
        });
        let pids: Vec<i32> = open.iter().map(|(pid, _)| *pid).collect();
        if pids.is_empty() && prepared.is_empty() {
            return Ok((seen_pids.len() + seen_prepared.len()).try_into().unwrap_or(i32::MAX));
        }
        seen_pids.extend(pids.iter().copied());
        seen_prepared.extend(prepared.iter().cloned());
        if started.elapsed() >= timeout {
            return Err(QuotaError::NotQuiet {
                tenant: tenant.to_string(),
                waited_ms: started.elapsed().as_millis().try_into().unwrap_or(i64::MAX),
                pids,
                prepared: prepared.into_iter().map(|g| error::quoted(&g).into_owned()).collect(),
            });
        }
        // Wait on the first open transaction's lock (it shows in pg_locks, and ends when
        // that transaction does), then look again; prepared transactions hold no virtual
        // id: they are polled.
        let left = timeout.saturating_sub(started.elapsed()).as_millis().try_into().unwrap_or(u64::MAX);
        match open.iter().find_map(|(_, v)| v.as_deref().and_then(xact_wait::parse_vxid)) {
            Some(vxid) => {
                xact_wait::wait(vxid, left);
            }
            None => std::thread::sleep(Duration::from_millis(10).min(Duration::from_millis(left.max(1)))),
        }
        pgrx::check_for_interrupts!();
    }
}
