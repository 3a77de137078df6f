//! Pools (0.8.0): a member's chain of pools, membership (`set_pool`), and drawing from a
//! hot pool's window in slices. The rules are `domain::pools`; docs/pools.md has the
//! design.
//!
//! Lock order, the same on both paths: every window a call locks, level by level (the
//! member's, then its pool's...), each level's in (metric, period) order; then the pool
//! windows drawn from slices, in the same order. Within one pool window a draw, refill or
//! gather takes slices before the counter row (`acquire`); other changes of a pool window
//! lock its counter row and then gather (`WindowOp::lock`).

use chrono::{DateTime, Utc};
use pgrx::spi::SpiClient;

use super::args::known_name;
use super::subject::Unknown;
use super::window::WindowOp;
use crate::domain::error::{QuotaError, Result};
use crate::domain::limits::{Limit, Usage};
use crate::domain::pools::{self, MAX_LEVELS};
use crate::pg::{gucs, installed};
use crate::storage::{self, slices::Held, Subject};

/// The subject's pools, nearest first (empty when it belongs to none). A writing call
/// (`Unknown::Create`) stores each pool's scheduled plan change that is due, as for any
/// subject. Pools are charged whatever the session's tenant scope: the member's is
/// checked, and a pool shares its member's tenant (`set_pool`).
pub fn chain(c: &mut SpiClient<'_>, member: &Subject, unknown: Unknown, now: DateTime<Utc>) -> Result<Vec<Subject>> {
    let mut pools: Vec<Subject> = Vec::new();
    let mut next = member.pool.clone();
    while let Some(id) = next {
        // set_pool refuses cycles and deep chains; a row changed by hand that makes one is
        // refused here (never followed round and round).
        if pools.len() + 1 >= MAX_LEVELS || id == member.id || pools.iter().any(|p| p.id == id) {
            return Err(storage::corrupt(
                "quota.subjects",
                "pool",
                format!("a chain of pools from \"{}\" that loops or is deeper than {MAX_LEVELS} levels", member.id),
            ));
        }
        let p = storage::find_subject(c, &id)?.ok_or_else(|| storage::corrupt("quota.subjects", "pool", &id))?;
        // A pool of a paused tenant refuses as its member does (QT503): its windows are
        // that tenant's state, being copied to another node (`ops::pause`).
        super::pause::refuse_paused(p.tenant.as_deref())?;
        let p = match unknown {
            Unknown::Create => super::schedule::store_due(c, p, now)?,
            Unknown::Evaluate => p.in_force(now),
        };
        next = p.pool.clone();
        pools.push(p);
    }
    Ok(pools)
}

/// The subject a call came through into `pools[index]` (the level below it): what the
/// ledger's and the holds' `via` name.
pub fn through<'a>(member: &'a Subject, pools: &'a [Subject], index: usize) -> &'a Subject {
    if index == 0 {
        member
    } else {
        &pools[index - 1]
    }
}

/// Every pool's limits on the metric, nearest pool first (empty for a pool that does not
/// limit it: that level is skipped).
pub fn pool_limits(c: &mut SpiClient<'_>, pools: &[Subject], metric: &str, now: DateTime<Utc>) -> Result<Vec<Vec<Limit>>> {
    pools.iter().map(|p| super::subject::subject_limits(c, p, metric, now)).collect()
}

/// Make `subject` a member of `pool` (None: of no pool). Admin only; both must be visible
/// in the session's tenant scope.
pub fn set_pool(subject: &str, pool: Option<&str>) -> Result<()> {
    known_name("subject", subject)?;
    if let Some(p) = pool {
        known_name("pool", p)?;
    }
    installed::requires(installed::POOLS, "quota.set_pool")?;
    // The cycle and depth checks read other subjects' rows after the membership lock:
    // under a transaction snapshot they would read them as they were before it.
    // SAFETY: reads the transaction's isolation level.
    if unsafe { pgrx::pg_sys::XactIsoLevel } > pgrx::pg_sys::XACT_READ_COMMITTED as i32 {
        return Err(QuotaError::NotAvailable {
            feature: "quota.set_pool",
            message: "quota.set_pool needs a READ COMMITTED transaction".to_string(),
            hint: "Call it in its own transaction, or one at READ COMMITTED (the default isolation level).".to_string(),
        });
    }
    let scope = crate::pg::roles::scope()?;
    storage::volatile(|c| {
        storage::lock_membership(c);
        let visible = |s: Option<Subject>, id: &str| {
            s.filter(|s| scope.admits(s.tenant.as_deref()))
                .ok_or_else(|| super::pause::unknown(&scope, QuotaError::UnknownSubject { subject: id.to_string() }))
        };
        let member = visible(storage::lock_subject(c, subject)?, subject)?;
        super::pause::refuse_paused(member.tenant.as_deref())?;
        let Some(pool) = pool else {
            storage::set_pool(c, &member.id, None);
            return Ok(());
        };
        let first = visible(storage::find_subject(c, pool)?, pool)?;
        let mut above = vec![(first.id.clone(), first.tenant.clone())];
        let mut next = first.pool.clone();
        while let Some(id) = next.filter(|_| above.len() <= MAX_LEVELS) {
            let p = storage::find_subject(c, &id)?.ok_or_else(|| storage::corrupt("quota.subjects", "pool", &id))?;
            next = p.pool.clone();
            above.push((p.id, p.tenant));
        }
        let below = storage::levels_below(c, &member.id);
        pools::may_join(&member.id, member.tenant.as_deref(), below, &above).map_err(|r| r.error(&member.id, pool))?;
        storage::set_pool(c, &member.id, Some(&first.id));
        Ok(())
    })
}

/// A pool window's usage counting its slices (`domain::pools::with_slices`).
pub fn with_slices(u: Usage, h: Held) -> Usage {
    pools::with_slices(u, h.used, h.granted)
}

/// The slice this session draws from in a window at `level` of `pool` (`shared`: it has
/// two members or more), if members draw from it in slices (`domain::pools::sliced`).
pub fn slice_for(level: usize, limit: &Limit, shared: bool) -> Option<i32> {
    let slices = gucs::pool_slices();
    pools::sliced(level, limit, slices, shared).then(|| pools::slice_of(crate::hotpath::heap::major::backend_number(), slices))
}

/// Whether the pool is shared (two members or more), asked only while slicing is on.
pub fn shared(c: &mut SpiClient<'_>, pool: &Subject) -> bool {
    gucs::pool_slices() > 0 && storage::pool_is_shared(c, &pool.id)
}

/// What acquiring `amount` in a sliced pool window gave.
pub enum Acquired {
    /// Drawn from this session's slice: the window's usage before the draw, as one read
    /// of the counter and its slices sees it (allowed by construction).
    Drawn(Usage),
    /// The slices were gathered back and the pool's counter row is locked: decide on this
    /// usage as for any window (it may refuse).
    Locked(Usage),
}

/// Acquire `amount` in a sliced pool window: draw from this session's slice; if it is dry,
/// refill it from the pool; if the pool has too little left, gather every slice back into
/// the pool and let the caller decide exactly.
///
/// Slices are locked before the pool's counter row (a refill locks its slice first, a
/// gather every slice in order, then the counter), so that a transaction that holds its
/// slice from an earlier draw and needs a refill, and one that gathers, do not wait for
/// each other in opposite orders. Which of the two: the pool as last committed. A window
/// whose counter row does not exist yet gets it first, without a lock (`ensure_window`).
pub fn acquire(c: &mut SpiClient<'_>, w: &WindowOp<'_>, slice: i32, amount: i64) -> Result<Acquired> {
    let key = w.key();
    // In a subtransaction: a draw that waited for another session's and then found the
    // slice short keeps no lock on it (it would be held out of order by what follows).
    if crate::pg::subtransaction::keep_if(|| storage::slices::draw(c, &key, slice, amount)) {
        if let Some(u) = drawn(c, w, amount) {
            return Ok(Acquired::Drawn(u));
        }
        // The pool's limit went down below what it handed out: give the draw back and
        // decide on the whole window.
        storage::slices::undraw(c, &key, slice, amount);
    }
    let counted = storage::slices::counted(c, &key);
    if counted.is_none() {
        storage::ensure_window(c, &key);
    }
    let short = counted.is_some_and(|(u, _)| !pools::covers(u, w.limit) || free(u, w) < amount);
    let mut gathered = Held::default();
    if short {
        gathered = storage::slices::gather(c, &key);
    } else {
        storage::slices::lock_slice(c, &key, slice);
    }
    let (mut u, _, _) = w.lock_with(c, false)?;
    if !short {
        if let Some(grant) = pools::grant(free(u, w), amount, gucs::pool_slices()) {
            storage::slices::refill(c, &key, slice, grant, amount);
            u.reserved += grant;
            w.store(c, u);
            if let Some(u) = drawn(c, w, amount) {
                return Ok(Acquired::Drawn(u));
            }
            storage::slices::undraw(c, &key, slice, amount);
        }
    }
    // Gathered before the counter was locked, and again now for what was granted
    // meanwhile (a refill that committed between the two; usually nothing).
    let again = storage::slices::gather(c, &key);
    for h in [gathered, again] {
        if h.granted > 0 || h.used > 0 {
            u = with_slices(u, h);
            w.store(c, u);
        }
    }
    Ok(Acquired::Locked(u))
}

/// What the pool has neither counted nor handed out.
fn free(u: Usage, w: &WindowOp<'_>) -> i64 {
    u.effective_limit(w.limit).saturating_sub(u.used).saturating_sub(u.reserved)
}

/// After a draw of `amount`: the window's usage before it (one read of the counter and its
/// slices), if the pool's limit still covers everything handed out.
fn drawn(c: &mut SpiClient<'_>, w: &WindowOp<'_>, amount: i64) -> Option<Usage> {
    let (counter, held) = storage::slices::counted(c, &w.key())?;
    pools::covers(counter, w.limit).then(|| {
        let u = with_slices(counter, held);
        Usage { used: u.used - amount, ..u }
    })
}
