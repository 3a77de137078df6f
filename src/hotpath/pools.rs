//! The hot path for members of pools (0.8.0): the member's windows, then each pool's
//! (level by level), every counter row locked, then one slice of each sliced pool window
//! drawn from (`domain::pools`). What the general path does for these (`ops::pool`), in
//! the same lock order: counter rows level by level, then slices. Anything else steps
//! aside: a slice that is missing or too small (the general path refills it from the
//! pool, or gathers the slices back), a pool whose limit no longer covers what it handed
//! out, a pool window without a row, overrides, first-use windows, a chain that is not
//! as `set_pool` keeps it.

use chrono::{DateTime, Utc};
use pgrx::pg_sys::{self, Datum};
use pgrx::IntoDatum;

use super::cache::Cache;
use super::heap::{self, Rel, Slot, Updated};
use super::status::note;
use super::subject_cache::HintKey;
use super::tables::Tables;
use super::{append, find_window, hot_periods, limits_of, overridden, state_of, subject_of, window_keys, window_of, write_usage};
use super::{Found, FoundWindow, RowRef, Write, Written};
use crate::domain::error::QuotaError;
use crate::domain::limits::Usage;
use crate::domain::pools::{self, MAX_LEVELS};
use crate::domain::tenancy::Scope;
use crate::pg::gucs;
use crate::storage::schema::{self, pool_slices, POOL_SLICES};
use crate::storage::Subject;

/// The slice row a consume draws from: which metric, its key and the row.
pub(super) struct SliceRef {
    item: usize,
    keys: [(Datum, u32); 5],
    row: Slot,
}

/// Add every pool's windows on each metric to `found` (level by level), the counter
/// rows of those not drawn in slices to `rows`; returns the slice rows to draw from.
/// None: step aside.
#[allow(clippy::too_many_arguments)]
pub(super) fn find(
    t: &Tables,
    rel: &Rel,
    snapshot: pg_sys::Snapshot,
    cache: Cache,
    member: &Subject,
    scope: &Scope,
    metrics: &[&str],
    now: DateTime<Utc>,
    found: &mut [Found],
    rows: &mut Vec<RowRef>,
) -> Option<Vec<SliceRef>> {
    let mut chain: Vec<(Subject, Option<super::subject_cache::Place>)> = Vec::new();
    let mut next = member.pool.clone();
    while let Some(id) = next {
        if chain.len() + 1 >= MAX_LEVELS || id == member.id || chain.iter().any(|(p, _)| p.id == id) {
            note(format_args!("hot path: the chain of pools is not as quota.set_pool keeps it"));
            return None;
        }
        let (p, place) = subject_of(t, snapshot, cache, &id, scope)?;
        next = p.pool.clone();
        chain.push((p, place));
    }
    let slices_setting = gucs::pool_slices();
    if slices_setting > 0 && t.slice_writes.is_err() {
        return None;
    }
    let slices_rel = Rel::open(t.slices.oid, pg_sys::AccessShareLock as _);
    let mut slices = Vec::new();
    for (i, (p, place)) in chain.iter().enumerate() {
        let level = i + 1;
        let shared = slices_setting > 0 && shared(t, snapshot, &p.id)?;
        for (item, metric) in metrics.iter().enumerate() {
            let limits = limits_of(t, snapshot, cache, &p.plan, metric)?;
            // An override may limit a metric the pool's plan does not: the general path's.
            if overridden(t, snapshot, &p.id, metric) {
                return None;
            }
            if limits.is_empty() {
                continue; // a pool that does not limit the metric is skipped
            }
            if !hot_periods(&limits) {
                return None;
            }
            for (rank, limit) in limits.into_iter().enumerate() {
                let window = window_of(p, &limit, now);
                let keys = window_keys(&p.id, metric, limit.period.as_str(), &window);
                let hint = HintKey { metric, period: limit.period.as_str(), rank, start: keys[3].0.value() as i64 };
                let row = Slot::new(rel);
                if !find_window(t, rel, snapshot, *place, hint, &keys, &row) {
                    return None;
                }
                let index = found[item].windows.len();
                if !pools::sliced(level, &limit, slices_setting, shared) {
                    // A pool window whose slices still hold allowance (or with holds) is the
                    // general path's: it gathers them before locking the row. Seen here
                    // before any lock is taken.
                    if state_of(t, &row)?.0.reserved > 0 {
                        note(format_args!("hot path: a pool's window holds reservations or slices"));
                        return None;
                    }
                    rows.push(RowRef { item, window: index, keys, row });
                    found[item].windows.push(FoundWindow { limit, window, usage: Usage::default(), tat: None, level, slice: None });
                    continue;
                }
                // Drawn from a slice: the pool's usage as read (slices counted), if its
                // limit still covers what it handed out; and this session's slice.
                let (counter, _) = state_of(t, &row)?;
                if !pools::covers(counter, &limit) {
                    note(format_args!("hot path: a pool's limit no longer covers its slices"));
                    return None;
                }
                let slice = pools::slice_of(heap::major::backend_number(), slices_setting);
                let (usage, slice_row) = read_slices(t, &slices_rel, snapshot, &keys, counter, slice)?;
                let slice_keys = [keys[0], keys[1], keys[2], keys[3], (slice.into_datum()?, pg_sys::F_INT4EQ)];
                slices.push(SliceRef { item, keys: slice_keys, row: slice_row });
                found[item].windows.push(FoundWindow { limit, window, usage, tat: None, level, slice: Some(slice) });
            }
        }
    }
    let pools: Vec<Subject> = chain.into_iter().map(|(p, _)| p).collect();
    found.iter_mut().for_each(|f| f.pools = pools.clone());
    Some(slices)
}

/// Whether the pool has two members or more (`domain::pools::sliced`), from the subjects'
/// index on `pool`. None: that index is missing or changed (step aside).
fn shared(t: &Tables, snapshot: pg_sys::Snapshot, pool: &str) -> Option<bool> {
    if t.pool_index == pg_sys::InvalidOid {
        note(format_args!("hot path: quota.subjects_pool_idx is missing or changed"));
        return None;
    }
    let rel = Rel::open(t.subjects.oid, pg_sys::AccessShareLock as _);
    let slot = Slot::new(&rel);
    let mut members = 0;
    // SAFETY: `pool_index` is an index of quota.subjects on (pool text), as `tables`
    // checked; `slot` is the subjects' and `snapshot` the call's.
    unsafe {
        heap::scan(&rel, t.pool_index, snapshot, &[(super::text(pool), pg_sys::F_TEXTEQ)], &slot, |_| {
            members += 1;
            members < 2
        })
    };
    Some(members >= 2)
}

/// The pool window's usage with its slices counted, and this session's slice row (None:
/// it has none yet, the general path grants it one).
fn read_slices(t: &Tables, rel: &Rel, snapshot: pg_sys::Snapshot, keys: &[(Datum, u32); 4], counter: Usage, slice: i32) -> Option<(Usage, Slot)> {
    let slot = Slot::new(rel);
    let (mut used, mut granted, mut mine) = (0i64, 0i64, None);
    let a = &t.slices.att;
    // SAFETY: pool_slices' primary key is (subject text, metric text, period text,
    // window_start timestamptz, slice int4), as `tables` checked, and `keys` are its first
    // four columns; `slot` is the table's and `snapshot` the call's. Each column is read
    // as its described type.
    unsafe {
        heap::scan(rel, t.slices.pkey, snapshot, keys, &slot, |root| {
            let (s, g, u) = (slot.get::<i32>(a[pool_slices::SLICE]), slot.get::<i64>(a[pool_slices::GRANTED]), slot.get::<i64>(a[pool_slices::USED]));
            used = used.saturating_add(u.unwrap_or(0));
            granted = granted.saturating_add(g.unwrap_or(0));
            if s == Some(slice) {
                mine = Some(root);
            }
            true
        })
    };
    let row = Slot::new(rel);
    // SAFETY: `mine` is the root of the slice row's HOT chain, from its index entry; `row`
    // is the table's and `snapshot` the call's.
    if !unsafe { heap::fetch(rel, mine?, snapshot, &row) } {
        return None;
    }
    Some((pools::with_slices(counter, used, granted), row))
}

/// The slice's `used` after drawing `amount` from the slice row in `row`, if it holds that
/// much (`used + amount <= granted`).
fn drawn_from(t: &Tables, row: &Slot, amount: i64) -> Option<i64> {
    let a = &t.slices.att;
    // SAFETY: `row` holds a pool_slices row; granted and used are int8, as described.
    let (granted, used) = unsafe { (row.get::<i64>(a[pool_slices::GRANTED])?, row.get::<i64>(a[pool_slices::USED])?) };
    used.checked_add(amount).filter(|after| *after <= granted)
}

/// The consume of a member: lock every counter row (level by level), then every slice it
/// draws from (stepping aside if one is short), decide, write the counters, the slices
/// and the ledger rows (a pool's naming the member). Ok(None): the general path.
#[allow(clippy::too_many_arguments)]
pub(super) fn consume(
    t: &Tables,
    rel: &Rel,
    id: &str,
    items: &[(String, i64)],
    metadata: Option<Datum>,
    now: DateTime<Utc>,
    mut found: Vec<Found>,
    mut rows: Vec<RowRef>,
    mut slices: Vec<SliceRef>,
    decide: impl Fn(&[Found]) -> Option<Vec<Write>>,
) -> Result<Option<Vec<Written>>, QuotaError> {
    // A slice that, as read, cannot hold the amount: the general path refills it. Checked
    // before any lock is taken, so that stepping aside holds no slice.
    if slices.iter().any(|s| drawn_from(t, &s.row, items[s.item].1).is_none()) {
        note(format_args!("hot path: a pool's slice is short"));
        return Ok(None);
    }
    let key_atts = &t.counters.att[..schema::COUNTERS.key];
    for r in rows.iter_mut() {
        let newest = Slot::new(rel);
        // SAFETY: both slots are the counters' and `r.row` holds the row just found; READ
        // COMMITTED (`writing`).
        if !unsafe { heap::lock(rel, &r.row, &newest) } {
            return Ok(None);
        }
        // SAFETY: `newest` holds the version just locked; the key functions are the
        // equalities of the key columns' types, as `tables` checked.
        if !unsafe { heap::matches(&newest, key_atts, &r.keys) } {
            return Ok(None);
        }
        r.row = newest;
        let Some((u, tat)) = state_of(t, &r.row) else { return Ok(None) };
        found[r.item].windows[r.window].usage = u;
        found[r.item].windows[r.window].tat = tat;
    }
    let slices_rel = Rel::open(t.slices.oid, pg_sys::RowExclusiveLock as _);
    let slice_key_atts = &t.slices.att[..POOL_SLICES.key];
    let mut drawn = Vec::with_capacity(slices.len());
    for s in slices.iter_mut() {
        let newest = Slot::new(&slices_rel);
        // SAFETY: both slots are pool_slices' and `s.row` holds the row just found.
        if !unsafe { heap::lock(&slices_rel, &s.row, &newest) && heap::matches(&newest, slice_key_atts, &s.keys) } {
            return Ok(None);
        }
        s.row = newest;
        let Some(used) = drawn_from(t, &s.row, items[s.item].1) else {
            note(format_args!("hot path: a pool's slice is short"));
            return Ok(None);
        };
        drawn.push(used);
    }
    let Some(plans) = decide(&found) else { return Ok(None) };
    for r in &rows {
        let new = Slot::new(rel);
        write_usage(t, &new, &r.row, plans[r.item].after[r.window], plans[r.item].tat[r.window]);
        // SAFETY: the counters are `updatable` (`writing`), `r.row` was read and locked
        // from them, and only non-key columns changed.
        if !matches!(unsafe { heap::update(rel, &r.row, &new, &Slot::new(rel), &t.counters_indexes) }, Updated::Done) {
            return Err(QuotaError::Conflict { subject: id.to_string(), metric: items[r.item].0.clone() });
        }
    }
    for (s, used) in slices.iter().zip(drawn) {
        let new = Slot::new(&slices_rel);
        // SAFETY: pool_slices is `updatable` (`find` checked slice_writes), `s.row` was
        // read and locked from it, used is int8 and only it changes.
        let done = unsafe {
            new.store(Some(&s.row), &[(t.slices.att[pool_slices::USED], Some(Datum::from(used)))]);
            heap::update(&slices_rel, &s.row, &new, &Slot::new(&slices_rel), &t.slices_indexes)
        };
        if !matches!(done, Updated::Done) {
            return Err(QuotaError::Conflict { subject: id.to_string(), metric: items[s.item].0.clone() });
        }
    }
    let ledger = Rel::open(t.ledger.oid, pg_sys::RowExclusiveLock as _);
    for (item, f) in found.iter().enumerate() {
        let (metric, amount) = &items[item];
        for (w, overage) in plans[item].overage.iter().enumerate() {
            append(t, &ledger, f, w, metric, *amount, *overage, metadata, now);
        }
    }
    Ok(Some(found.into_iter().zip(plans).map(|(f, p)| (f, p.after)).collect()))
}
