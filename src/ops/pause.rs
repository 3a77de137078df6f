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
//! paused" and may still commit usage. `await_quiet`, called after the pause committed,
//! waits until every other transaction of this database that started before it saw the
//! pause committed has ended (those whose start is not shown too, and every prepared
//! transaction). After that
//! nothing more for the tenant can commit on this node, so the mover's copy, taken after
//! the wait, is complete.

use pgrx::spi::Spi;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::domain::error::{self, QuotaError, Result};
use crate::domain::pause::State;
use crate::domain::tenancy::Scope;
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

/// The answer for a subject or reservation a call does not find (or may not see) must not
/// be "unknown" (QT404, false, 0) when the session's tenant (`quota.tenant`) is paused: on
/// the node a tenant moved away from, its subjects and holds are gone, and its calls must
/// still be sent to its new node (QT503, issue 19, item 4). Every such answer goes through
/// this first.
pub fn absent(scope: &Scope) -> Result<()> {
    refuse_paused(scope.creates_in())
}

/// `unknown`, or QT503 when the session's tenant is paused (`absent`).
pub fn unknown(scope: &Scope, unknown: QuotaError) -> QuotaError {
    absent(scope).err().unwrap_or(unknown)
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

/// Other backends of this database (autovacuum workers, which run no quota call, excepted)
/// whose transaction started no later than $1, the instant this call saw the pause
/// committed, with the virtual transaction id they hold; and those in a transaction whose
/// start is not shown (`xact_start` is NULL for a backend with track_activities off, but
/// its transaction still holds its virtual transaction id lock): their start is unknown,
/// so they count as older (fail closed; `await_quiet` keeps only the ids its first look
/// found). Every prepared transaction of this database (pg_prepared_xacts has no start
/// time: fail closed) is read by `PREPARED`.
const OPEN_BEFORE_ME: &str = "SELECT a.pid, l.virtualxid, a.xact_start IS NULL FROM pg_catalog.pg_stat_activity a
    LEFT JOIN pg_catalog.pg_locks l ON l.pid = a.pid AND l.locktype = 'virtualxid' AND l.mode = 'ExclusiveLock' AND l.granted
    WHERE a.datid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
      AND a.pid <> pg_catalog.pg_backend_pid()
      AND a.backend_type <> 'autovacuum worker'
      AND (a.xact_start <= $1 OR (a.xact_start IS NULL AND l.virtualxid IS NOT NULL))
    ORDER BY a.pid";
const PREPARED: &str = "SELECT gid FROM pg_catalog.pg_prepared_xacts WHERE database = pg_catalog.current_database() ORDER BY gid";

/// Wait until `tenant` is quiet on this node (see the module's comment); how many
/// transactions it waited for.
pub fn await_quiet(tenant: &str, timeout: &pgrx::datum::Interval) -> Result<i32> {
    error::name("tenant", tenant)?;
    let timeout = timeout_of(timeout)?;
    installed::requires(installed::PAUSES, "quota.await_tenant_quiet")?;
    in_scope(tenant, "wait for")?;
    // Only a pause that has committed counts: one made in this very transaction, also
    // under a savepoint (its row's xmin is then a subtransaction of this one), is not seen
    // by the transactions this call waits for. The clock is read after the row was found:
    // the pause committed before this statement's snapshot, so before that instant, and
    // every transaction that started later sees it. Not this transaction's start (a
    // transaction that began before the pause committed would miss those that started in
    // between) nor this statement's (in READ COMMITTED the pause may commit between the
    // statement's start and its snapshot).
    let found = Spi::connect(|c| {
        c.select(
            "SELECT xmin::text::int8, pg_catalog.clock_timestamp() FROM quota.tenant_pauses WHERE tenant OPERATOR(pg_catalog.=) $1",
            Some(1),
            &[tenant.into()],
        )
        .expect("a fixed read of quota.tenant_pauses")
        .next()
        .and_then(|r| Some((r.get::<i64>(1).ok().flatten()?, r.get::<pgrx::datum::TimestampWithTimeZone>(2).ok().flatten()?)))
    });
    let seen_at = match found {
        // SAFETY: a plain lookup in this backend's transaction state; xmin is an xid.
        Some((xmin, at)) if !unsafe { pgrx::pg_sys::TransactionIdIsCurrentTransactionId((xmin as u32).into()) } => at,
        _ => return Err(QuotaError::NotPaused { tenant: tenant.to_string() }),
    };
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
    let started = Instant::now();
    let mut seen_pids = BTreeSet::new();
    let mut seen_prepared = BTreeSet::new();
    // The transactions without a start time that the first look found: a later one of the
    // same backend (another virtual id) started after that look, so after the pause.
    let mut unstamped: Option<BTreeSet<(i32, String)>> = None;
    loop {
        // pg_stat_activity is read once per transaction unless its snapshot is cleared.
        // SAFETY: inside a transaction; frees this backend's copy of the activity table.
        unsafe { pgrx::pg_sys::pgstat_clear_snapshot() };
        let (open, prepared) = Spi::connect(|c| {
            let open: Vec<(i32, Option<String>, bool)> = c
                .select(OPEN_BEFORE_ME, None, &[seen_at.into()])
                .expect("a fixed read of pg_stat_activity")
                .filter_map(|r| Some((r.get::<i32>(1).ok().flatten()?, r.get::<String>(2).ok().flatten(), r.get::<bool>(3).ok().flatten()?)))
                .collect();
            let prepared: Vec<String> =
                c.select(PREPARED, None, &[]).expect("a fixed read of pg_prepared_xacts").filter_map(|r| r.get::<String>(1).ok().flatten()).collect();
            (open, prepared)
        });
        let first = unstamped.get_or_insert_with(|| open.iter().filter(|(_, _, n)| *n).filter_map(|(pid, v, _)| Some((*pid, v.clone()?))).collect());
        let open: Vec<(i32, Option<String>)> = open
            .into_iter()
            .filter(|(pid, v, unknown_start)| !unknown_start || v.as_ref().is_some_and(|v| first.contains(&(*pid, v.clone()))))
            .map(|(pid, v, _)| (pid, v))
            .collect();
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
