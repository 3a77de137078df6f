//! The hot path: the common `quota_check` and `quota_consume` (a stored subject, window
//! rows that exist, READ COMMITTED, no idempotency key) done with primary-key probes and
//! direct heap writes (`heap`), without SPI, the planner or the executor.
//!
//! Everything else returns `None` and the operation takes the general path, which
//! handles every case exactly: unknown subjects and metrics, new windows, refusals,
//! idempotency keys, other isolation levels, read-only transactions, tables that fail an
//! eligibility check (`tables`). The operations (`ops::check`, `ops::consume`) decide;
//! this module only reads and writes.
//!
//! One contract with the general path: both read and write the state tables through
//! their descriptions in `storage::schema`, decode rows with the same functions and
//! build ledger rows with the same encoder. A randomized differential test (the
//! reliability suite) and one test per eligibility check hold the two together.
//!
//! Semantics match the general path's statements: a check reads with the calling
//! statement's snapshot; a consume with the snapshot a volatile function's statement
//! would get, and a counter changed concurrently is re-read at its newest version under
//! a row lock and decided again (UPDATE's EvalPlanQual). Subjects' rows and plan limits
//! come from caches under READ COMMITTED (`cache`, `subject_cache`).

use chrono::{DateTime, Utc};
use pgrx::pg_sys::{self, Datum};
use pgrx::IntoDatum;
use std::rc::Rc;

pub mod cache;
pub mod heap;
mod pools;
pub mod status;
pub mod subject_cache;
pub mod tables;

use crate::domain::error::QuotaError;
use crate::domain::limits::{Limit, Usage};
use crate::domain::period::{Period, Window};
use crate::domain::tenancy::Scope;
use crate::pg::clock;
use crate::storage::schema::{self, counters, LedgerKind, LedgerRow, SubjectRow};
use crate::storage::Subject;
use cache::{remembered, Cache, MAX_LIMITS, MAX_SUBJECTS};
use heap::{Rel, Slot, Updated};
use status::note;
pub use status::{served, Path};
use subject_cache::{HintKey, Place};
use tables::{Resolved, Tables};

/// What the probes found for one metric: the subject, and each of its plan's limits on
/// the metric (in period order) with its current window and usage.
pub struct Found {
    pub subject: Subject,
    /// Its pools, nearest first (0.8.0): a window at level `n > 0` is `pools[n - 1]`'s.
    pub pools: Vec<Subject>,
    /// The subject's windows, then its pools' (level by level).
    pub windows: Vec<FoundWindow>,
}

impl Found {
    /// Whose window `w` is.
    pub fn owner(&self, w: &FoundWindow) -> &Subject {
        self.at_level(w.level)
    }

    /// The subject at `level` (0: the subject, `n`: its `n`th pool).
    pub fn at_level(&self, level: usize) -> &Subject {
        if level == 0 {
            &self.subject
        } else {
            &self.pools[level - 1]
        }
    }
}

/// One limit of the metric, its current window and the window's usage (zero when it has
/// no row yet).
#[derive(Clone)]
pub struct FoundWindow {
    pub limit: Limit,
    pub window: Window,
    pub usage: Usage,
    /// A rate limit's state, its row's window_end (the theoretical arrival time).
    pub tat: Option<DateTime<Utc>>,
    /// Whose window: 0 the subject's own, `n` its `n`th pool's.
    pub level: usize,
    /// A pool window drawn from in slices: the slice this call draws from (its usage is
    /// then the pool's, slices counted, as read; the slice decides, `pools`).
    pub slice: Option<i32>,
}

/// What the operation decided for a consume of one metric: per window (in the order
/// found), the usage afterwards, the part of the amount over that limit, and a rate
/// limit's new state.
pub struct Write {
    pub after: Vec<Usage>,
    pub overage: Vec<i64>,
    pub tat: Vec<Option<DateTime<Utc>>>,
}

/// A heap row of a described table, read through the table's resolved attributes.
struct SlotRow<'a> {
    slot: &'a Slot,
    table: &'a Resolved,
}

impl schema::Row for SlotRow<'_> {
    fn get<T: pgrx::FromDatum + IntoDatum>(&self, col: usize) -> Option<T> {
        // SAFETY: `tables` resolved each described column with its described type, and
        // `schema` decodes each column as that type.
        unsafe { self.slot.get(self.table.att[col]) }
    }
}

/// The tables, unless the hot path is off or steps aside.
fn usable() -> Option<Rc<Tables>> {
    if !crate::pg::gucs::hot_path() {
        return None;
    }
    // Only a database at this library's version has every invalidation trigger that the
    // caches rely on (`installed`); older ones take the general path until updated.
    if !crate::pg::installed::is_current() {
        tables::said(&status::older_extension());
        return None;
    }
    tables::tables().ok()
}

/// The subject, if it is stored and in scope, and where its shared-cache entry is.
/// Cached, or else read with `snapshot`. None also when its row does not decode: the
/// general path then raises the error.
fn subject_of(t: &Tables, snapshot: pg_sys::Snapshot, cache: Cache, id: &str, scope: &Scope) -> Option<(Subject, Option<Place>)> {
    let (row, place) = match cache {
        Cache::None => (read_subject(t, snapshot, id)?, None),
        Cache::Local => (
            remembered(
                |c| c.subjects.get(id).cloned(),
                || read_subject(t, latest(), id),
                |c, r| {
                    if c.subjects.len() >= MAX_SUBJECTS {
                        c.subjects.clear();
                    }
                    c.subjects.insert(id.to_string(), r.clone());
                },
            )?,
            None,
        ),
        Cache::Shared(g) => match subject_cache::get(g, t.subjects.node, id) {
            Some((row, place)) => {
                note(format_args!("hot path: subject from the shared cache"));
                (row, Some(place))
            }
            None => {
                let row = read_subject(t, latest(), id)?;
                let place = subject_cache::put(g, t.subjects.node, id, &row);
                (row, place)
            }
        },
    };
    if !scope.admits(row.tenant.as_deref()) {
        return None;
    }
    // A tenant's pause (0.9.0) is the general path's to raise (QT503); one this backend
    // has not looked up since the pauses last changed is the general path's to read. The
    // caller took pending invalidations first (`Cache::for_this_call`), so a pause
    // committed before this call is known here (`storage::pauses`).
    if let Some(t) = row.tenant.as_deref() {
        if !matches!(crate::storage::pauses::cached(t), Some(None)) {
            note(format_args!("hot path: the subject's tenant is paused, or its pause not yet read"));
            return None;
        }
    }
    // A scheduled plan change whose instant has come is the general path's to store.
    if row.next.as_ref().is_some_and(|n| n.at <= clock::to_pg(clock::now())) {
        note(format_args!("hot path: a scheduled plan change is due"));
        return None;
    }
    Some((Subject::stored(id, row), place))
}

/// The limits of `plan` on `metric`, in period order (empty if it has none): cached, or
/// else read with `snapshot` (all of them under that one snapshot, never a mix). None: a
/// row that does not decode (the general path raises the error).
fn limits_of(t: &Tables, snapshot: pg_sys::Snapshot, cache: Cache, plan: &str, metric: &str) -> Option<Vec<Limit>> {
    if let Cache::None = cache {
        return read_limits(t, snapshot, plan, metric);
    }
    let key = (plan.to_string(), metric.to_string());
    remembered(
        |c| c.limits.get(&key).cloned(),
        || read_limits(t, latest(), plan, metric),
        |c, l| {
            if c.limits.len() >= MAX_LIMITS {
                c.limits.clear();
            }
            c.limits.insert(key.clone(), l.clone());
        },
    )
}

fn latest() -> pg_sys::Snapshot {
    // SAFETY: inside a transaction. The result is PostgreSQL's static latest snapshot, not
    // registered: valid until the next GetLatestSnapshot, and the one probe that uses it
    // (at once) takes no snapshot. The rows it sees cannot be pruned meanwhile: the
    // statement's active snapshot holds this backend's xmin back. (In parallel mode
    // GetLatestSnapshot raises an ERROR instead.)
    unsafe { pg_sys::GetLatestSnapshot() }
}

fn text(s: &str) -> Datum {
    s.into_datum().expect("text datum")
}

fn read_subject(t: &Tables, snapshot: pg_sys::Snapshot, id: &str) -> Option<SubjectRow> {
    let rel = Rel::open(t.subjects.oid, pg_sys::AccessShareLock as _);
    let slot = Slot::new(&rel);
    // SAFETY: the subjects' primary key is (subject text), as `tables` checked; `slot` is
    // the subjects' and `snapshot` the active one or `latest()`'s.
    unsafe { heap::probe(&rel, t.subjects.pkey, snapshot, &[(text(id), pg_sys::F_TEXTEQ)], &slot)? };
    schema::subject(&SlotRow { slot: &slot, table: &t.subjects }).ok()
}

fn read_limits(t: &Tables, snapshot: pg_sys::Snapshot, plan: &str, metric: &str) -> Option<Vec<Limit>> {
    let rel = Rel::open(t.limits.oid, pg_sys::AccessShareLock as _);
    let slot = Slot::new(&rel);
    let keys = [(text(plan), pg_sys::F_TEXTEQ), (text(metric), pg_sys::F_TEXTEQ)];
    let mut limits = Vec::new();
    let mut decoded = true;
    // SAFETY: plan_limits' primary key is (plan text, metric text, period text), as
    // `tables` checked, and `keys` are its first two columns; `slot` and `snapshot` as in
    // `read_subject`.
    unsafe {
        heap::scan(&rel, t.limits.pkey, snapshot, &keys, &slot, |_| {
            match schema::limit(&SlotRow { slot: &slot, table: &t.limits }) {
                Ok((_, l)) => limits.push(l),
                Err(_) => decoded = false,
            }
            decoded
        })
    };
    // The index orders periods as text in its collation; the lock order is by name.
    limits.sort_by(|a, b| a.period.as_str().cmp(b.period.as_str()));
    decoded.then_some(limits)
}

/// Calendar limits (day, week, month, billing cycle, lifetime) and rate limits, whose
/// rows the clock alone finds; a first-use window's row is state the general path reads.
fn hot_periods(limits: &[Limit]) -> bool {
    let all = limits.iter().all(|l| !matches!(l.period, Period::FirstUse(_)));
    if !all {
        note(format_args!("hot path: the metric has a window that opens at first use"));
    }
    all
}

/// The window row a limit counts in now: a calendar window, or a rate limit's one row.
fn window_of(subject: &Subject, limit: &Limit, now: DateTime<Utc>) -> Window {
    match limit.period {
        Period::Rate(_) => Window { start: None, end: None },
        p => subject.window(p, now),
    }
}

/// Does the subject have an override of the metric (in force or not)? Its limits are
/// then the general path's to work out (`domain::overrides`).
fn overridden(t: &Tables, snapshot: pg_sys::Snapshot, id: &str, metric: &str) -> bool {
    let rel = Rel::open(t.overrides.oid, pg_sys::AccessShareLock as _);
    let slot = Slot::new(&rel);
    let keys = [(text(id), pg_sys::F_TEXTEQ), (text(metric), pg_sys::F_TEXTEQ)];
    let mut any = false;
    // SAFETY: subject_overrides' primary key is (subject text, metric text, period text),
    // as `tables` checked, and `keys` are its first two columns; `slot` is the table's and
    // `snapshot` the call's.
    unsafe {
        heap::scan(&rel, t.overrides.pkey, snapshot, &keys, &slot, |_| {
            any = true;
            false
        })
    };
    if any {
        note(format_args!("hot path: the subject has an override of the metric"));
    }
    any
}

fn window_keys(id: &str, metric: &str, period: &str, w: &Window) -> [(Datum, u32); 4] {
    let start = clock::window_key(w.start).into_datum().expect("timestamptz datum");
    [(text(id), pg_sys::F_TEXTEQ), (text(metric), pg_sys::F_TEXTEQ), (text(period), pg_sys::F_TEXTEQ), (start, pg_sys::F_TIMESTAMPTZ_EQ)]
}

/// The window's counter row (primary key `keys`, from `window_keys`) into `slot`, if it
/// exists: where the shared cache says it is, or else by the primary key (and the cache
/// then remembers where).
fn find_window(
    t: &Tables,
    rel: &Rel,
    snapshot: pg_sys::Snapshot,
    place: Option<Place>,
    hint: HintKey<'_>,
    keys: &[(Datum, u32); 4],
    slot: &Slot,
) -> bool {
    let key_atts = &t.counters.att[..schema::COUNTERS.key];
    if let Some(tid) = place.and_then(|p| subject_cache::hint(p, hint)) {
        // SAFETY: `slot` is the counters' and `snapshot` active; the key functions are
        // the equalities of the key columns' types, as `tables` checked.
        if unsafe { heap::fetch(rel, tid, snapshot, slot) && heap::matches(slot, key_atts, keys) } {
            note(format_args!("hot path: window row found where the shared cache remembered it"));
            return true;
        }
    }
    // SAFETY: the counters' primary key is (subject text, metric text, period text,
    // window_start timestamptz), as `tables` checked, and `keys` has those types; `slot`
    // and `snapshot` as above.
    let Some(root) = (unsafe { heap::probe(rel, t.counters.pkey, snapshot, keys, slot) }) else { return false };
    if let Some(p) = place {
        subject_cache::set_hint(p, hint, root);
    }
    true
}

/// A counters row's usage and window_end (a rate limit's state).
fn state_of(t: &Tables, slot: &Slot) -> Option<(Usage, Option<DateTime<Utc>>)> {
    let row = SlotRow { slot, table: &t.counters };
    Some((schema::usage(&row).ok()?, schema::window_end(&row)))
}

/// One window row of a consume or check: which metric (index into the items) and limit
/// (index into that metric's windows), its key, and the row as read.
struct RowRef {
    item: usize,
    window: usize,
    keys: [(Datum, u32); 4],
    row: Slot,
}

/// Every limit of each metric with its current window, and each window's row (None when
/// one is missing: the general path creates it). Rows are in (metric, period) order, the
/// lock order, when `items` are in metric order.
#[allow(clippy::too_many_arguments)]
fn find_all(
    t: &Tables,
    rel: &Rel,
    snapshot: pg_sys::Snapshot,
    cache: Cache,
    subject: &Subject,
    place: Option<Place>,
    metrics: &[&str],
    now: DateTime<Utc>,
) -> Option<(Vec<Found>, Vec<RowRef>)> {
    let mut found = Vec::with_capacity(metrics.len());
    let mut rows = Vec::with_capacity(metrics.len());
    for (item, metric) in metrics.iter().enumerate() {
        let limits = limits_of(t, snapshot, cache, &subject.plan, metric).filter(|l| !l.is_empty())?;
        if !hot_periods(&limits) || overridden(t, snapshot, &subject.id, metric) {
            return None;
        }
        let mut windows = Vec::with_capacity(limits.len());
        for (rank, limit) in limits.into_iter().enumerate() {
            let window = window_of(subject, &limit, now);
            let keys = window_keys(&subject.id, metric, limit.period.as_str(), &window);
            let hint = HintKey { metric, period: limit.period.as_str(), rank, start: keys[3].0.value() as i64 };
            let row = Slot::new(rel);
            if !find_window(t, rel, snapshot, place, hint, &keys, &row) {
                return None;
            }
            rows.push(RowRef { item, window: rank, keys, row });
            windows.push(FoundWindow { limit, window, usage: Usage::default(), tat: None, level: 0, slice: None });
        }
        found.push(Found { subject: subject.clone(), pools: Vec::new(), windows });
    }
    Some((found, rows))
}

/// The common check: the state of the subject's windows for `metric`, read with the
/// calling statement's snapshot. Writes nothing. A window without a row reads as empty.
pub fn check(id: &str, metric: &str, now: DateTime<Utc>, scope: &Scope) -> Option<Found> {
    let cache = Cache::for_this_call();
    let t = usable()?;
    let cache = cache.for_tables(&t);
    // SAFETY: a function runs with its statement's snapshot active.
    let snapshot = unsafe { pg_sys::GetActiveSnapshot() };
    let (subject, place) = subject_of(&t, snapshot, cache, id, scope)?;
    // A member of a pool: its pools' windows are the general path's to read (with their
    // slices and holds).
    if subject.pool.is_some() {
        note(format_args!("hot path: the subject belongs to a pool"));
        return None;
    }
    let limits = limits_of(&t, snapshot, cache, &subject.plan, metric).filter(|l| !l.is_empty())?;
    if !hot_periods(&limits) || overridden(&t, snapshot, id, metric) {
        return None;
    }
    let rel = Rel::open(t.counters.oid, pg_sys::AccessShareLock as _);
    let slot = Slot::new(&rel);
    let mut windows = Vec::with_capacity(limits.len());
    for (rank, limit) in limits.into_iter().enumerate() {
        let window = window_of(&subject, &limit, now);
        let keys = window_keys(id, metric, limit.period.as_str(), &window);
        let hint = HintKey { metric, period: limit.period.as_str(), rank, start: keys[3].0.value() as i64 };
        let (usage, tat) = if find_window(&t, &rel, snapshot, place, hint, &keys, &slot) { state_of(&t, &slot)? } else { (Usage::default(), None) };
        windows.push(FoundWindow { limit, window, usage, tat, level: 0, slice: None });
    }
    Some(Found { subject, pools: Vec::new(), windows })
}

/// The new counter values (usage and alerted, and a rate limit's new state), over the row
/// in `from`.
fn write_usage(t: &Tables, new: &Slot, from: &Slot, after: Usage, tat: Option<DateTime<Utc>>) {
    let a = &t.counters.att;
    let mut values = vec![(a[counters::USED], Some(Datum::from(after.used))), (a[counters::ALERTED], Some(Datum::from(after.alerted)))];
    if let Some(tat) = tat {
        values.push((a[counters::WINDOW_END], Some(Datum::from(clock::to_pg(tat)))));
    }
    // SAFETY: both slots are the counters'; used is int8, alerted int4 and window_end
    // timestamptz, as described.
    unsafe { new.store(Some(from), &values) };
}

/// A metric's windows as found (usage before) and the usage written to each.
pub type Written = (Found, Vec<Usage>);

/// The common consume: find every window row of every metric (each limit of a metric has
/// its own), let `decide` judge them all, write the new usage and the ledger rows.
/// Returns, per metric, what was found (usage before) and the usage written per window;
/// Ok(None): take the general path.
///
/// Rows are taken in (metric, period) order, the general path's lock order. Every row
/// but the last is locked first, as the general path's `SELECT ... FOR UPDATE` does;
/// the last is decided and updated directly, and decided again on its newest version
/// when a concurrent transaction changed it first (UPDATE's EvalPlanQual). Only once the
/// last row is written are the locked ones written, so a refusal or a missing row
/// leaves nothing written here but row locks, which the general path then takes anyway.
/// With one metric and one limit this is a single update. A locked row that then cannot
/// be written (not expected: it is locked) is a `Conflict`, and the transaction must be
/// retried.
pub fn consume(
    id: &str,
    items: &[(String, i64)],
    metadata: Option<Datum>,
    now: DateTime<Utc>,
    scope: &Scope,
    decide: impl Fn(&[Found]) -> Option<Vec<Write>>,
) -> Result<Option<Vec<Written>>, QuotaError> {
    let Some((cache, t, _fresh)) = writing() else { return Ok(None) };
    // SAFETY: the snapshot `writing` just pushed.
    let snapshot = unsafe { pg_sys::GetActiveSnapshot() };
    let rel = Rel::open(t.counters.oid, pg_sys::RowExclusiveLock as _);
    let Some((subject, place)) = subject_of(&t, snapshot, cache, id, scope) else { return Ok(None) };
    let metrics: Vec<&str> = items.iter().map(|(m, _)| m.as_str()).collect();
    let Some((mut found, mut rows)) = find_all(&t, &rel, snapshot, cache, &subject, place, &metrics, now) else { return Ok(None) };
    if subject.pool.is_some() {
        // A member of a pool: its pools' windows too, every row locked (`pools`).
        let Some(slices) = pools::find(&t, &rel, snapshot, cache, &subject, scope, &metrics, now, &mut found, &mut rows) else { return Ok(None) };
        return pools::consume(&t, &rel, id, items, metadata, now, found, rows, slices, decide);
    }
    let key_atts = &t.counters.att[..schema::COUNTERS.key];
    let Some((last, locked)) = rows.split_last_mut() else { return Ok(None) };
    for r in locked.iter_mut() {
        let newest = Slot::new(&rel);
        // SAFETY: both slots are the counters' and `r.row` holds the row just found; READ
        // COMMITTED (`writing`).
        if !unsafe { heap::lock(&rel, &r.row, &newest) } {
            return Ok(None);
        }
        // The newest version may carry another key (a subject renamed meanwhile).
        // SAFETY: `newest` holds the version just locked; the key functions as in
        // `find_window`.
        if !unsafe { heap::matches(&newest, key_atts, &r.keys) } {
            return Ok(None);
        }
        r.row = newest;
        let Some((u, tat)) = state_of(&t, &r.row) else { return Ok(None) };
        found[r.item].windows[r.window].usage = u;
        found[r.item].windows[r.window].tat = tat;
    }
    let new = Slot::new(&rel);
    let plans = loop {
        let Some((u, tat)) = state_of(&t, &last.row) else { return Ok(None) };
        found[last.item].windows[last.window].usage = u;
        found[last.item].windows[last.window].tat = tat;
        let Some(plans) = decide(&found) else { return Ok(None) };
        write_usage(&t, &new, &last.row, plans[last.item].after[last.window], plans[last.item].tat[last.window]);
        let newest = Slot::new(&rel);
        // SAFETY: the counters are `updatable` (`writing`), `last.row` was read from them,
        // and only non-key columns changed.
        match unsafe { heap::update(&rel, &last.row, &new, &newest, &t.counters_indexes) } {
            Updated::Done => break plans,
            // SAFETY: as in `find_window`.
            Updated::Moved if unsafe { heap::matches(&newest, key_atts, &last.keys) } => last.row = newest,
            Updated::Moved | Updated::Gone => return Ok(None),
        }
    };
    for r in locked.iter() {
        let new = Slot::new(&rel);
        write_usage(&t, &new, &r.row, plans[r.item].after[r.window], plans[r.item].tat[r.window]);
        // SAFETY: the counters are `updatable` (`writing`), `r.row` was read and locked
        // from them, and only non-key columns changed.
        if !matches!(unsafe { heap::update(&rel, &r.row, &new, &Slot::new(&rel), &t.counters_indexes) }, Updated::Done) {
            return Err(QuotaError::Conflict { subject: id.to_string(), metric: items[r.item].0.clone() });
        }
    }
    let ledger = Rel::open(t.ledger.oid, pg_sys::RowExclusiveLock as _);
    for r in &rows {
        let (metric, amount) = &items[r.item];
        append(&t, &ledger, &found[r.item], r.window, metric, *amount, plans[r.item].overage[r.window], metadata, now);
    }
    Ok(Some(found.into_iter().zip(plans).map(|(f, p)| (f, p.after)).collect()))
}

/// Append a consume of one window to the ledger: the same row the general path appends.
#[allow(clippy::too_many_arguments)]
fn append(t: &Tables, ledger: &Rel, f: &Found, window: usize, metric: &str, amount: i64, overage: i64, metadata: Option<Datum>, now: DateTime<Utc>) {
    let w = &f.windows[window];
    let owner = f.owner(w);
    let row = LedgerRow {
        subject: &owner.id,
        tenant: owner.tenant.as_deref(),
        metric,
        period: w.limit.period.as_str(),
        window_start: w.window.start,
        kind: LedgerKind::Consume,
        amount,
        overage,
        idempotency_key: None,
        metadata,
        created_at: now,
        // A pool's row names its member the consume came through (one level below).
        via: w.level.checked_sub(1).map(|below| f.at_level(below).id.as_str()),
    };
    let slot = Slot::new(ledger);
    let e = &t.ledger.att;
    // SAFETY: the ledger's identity sequence, under the owner switch of the caller.
    let id = unsafe { heap::nextval(t.ledger_seq) };
    let mut values = vec![(e[schema::LEDGER_ID], Some(Datum::from(id)))];
    values.extend(row.values().into_iter().enumerate().map(|(i, (v, _))| (e[schema::USAGE_EVENTS.generated + i], v)));
    // SAFETY: the ledger is `insertable` (`writing`), every described column's value is
    // of its type (`LedgerRow::values`), and every other column defaults to NULL.
    unsafe {
        slot.store(None, &values);
        heap::insert(ledger, &slot, &t.ledger_indexes);
    }
}

/// What a consume starts with: READ COMMITTED and a writable transaction, the caches,
/// tables this path may write, and, as SPI does for each statement of a volatile
/// function, a new active snapshot that sees this transaction's earlier changes and
/// everything committed so far. None: the general path.
fn writing() -> Option<(Cache, Rc<Tables>, FreshSnapshot)> {
    // SAFETY: reads the transaction's isolation level and read-only flag.
    if unsafe { pg_sys::XactIsoLevel > pg_sys::XACT_READ_COMMITTED as i32 || pg_sys::XactReadOnly } {
        return None;
    }
    let cache = Cache::for_this_call();
    let t = usable().filter(|t| t.writes.is_ok())?;
    Some((cache.for_tables(&t), t, FreshSnapshot::push()))
}

/// A new snapshot (after a command counter increment) as the active one for one call.
struct FreshSnapshot;

impl FreshSnapshot {
    fn push() -> FreshSnapshot {
        // SAFETY: inside a transaction; popped by `drop`.
        unsafe {
            pg_sys::CommandCounterIncrement();
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        }
        FreshSnapshot
    }
}

impl Drop for FreshSnapshot {
    fn drop(&mut self) {
        // During an error the transaction's abort unwinds the snapshot stack.
        if !std::thread::panicking() {
            // SAFETY: pushed by `push`, and everything pushed since has been popped.
            unsafe { pg_sys::PopActiveSnapshot() }
        }
    }
}
