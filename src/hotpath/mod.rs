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
pub mod status;
pub mod subject_cache;
pub mod tables;

use crate::domain::error::QuotaError;
use crate::domain::limits::{Limit, Usage};
use crate::domain::period::Window;
use crate::domain::tenancy::Scope;
use crate::pg::clock;
use crate::storage::schema::{self, counters, LedgerKind, LedgerRow, SubjectRow};
use crate::storage::Subject;
use cache::{remembered, Cache, MAX_LIMITS, MAX_SUBJECTS};
use heap::{Rel, Slot, Updated};
use status::note;
pub use status::{served, Path};
use subject_cache::Place;
use tables::{Resolved, Tables};

/// What a probe found: the subject, its limit on the metric, the current window and the
/// window's usage (zero when it has no row yet).
pub struct Found {
    pub subject: Subject,
    pub limit: Limit,
    pub window: Window,
    pub usage: Usage,
}

/// What the operation decided for a consume: the window's usage afterwards and the part
/// of the amount over the limit. `None`: take the general path.
pub struct Write {
    pub after: Usage,
    pub overage: i64,
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
    Some((Subject::stored(id, row), place))
}

/// The limit of `plan` on `metric`, if it has one: cached, or else read with `snapshot`.
fn limit_of(t: &Tables, snapshot: pg_sys::Snapshot, cache: Cache, plan: &str, metric: &str) -> Option<Limit> {
    if let Cache::None = cache {
        return read_limit(t, snapshot, plan, metric);
    }
    let key = (plan.to_string(), metric.to_string());
    remembered(
        |c| c.limits.get(&key).cloned(),
        || read_limit(t, latest(), plan, metric),
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

fn read_limit(t: &Tables, snapshot: pg_sys::Snapshot, plan: &str, metric: &str) -> Option<Limit> {
    let rel = Rel::open(t.limits.oid, pg_sys::AccessShareLock as _);
    let slot = Slot::new(&rel);
    let keys = [(text(plan), pg_sys::F_TEXTEQ), (text(metric), pg_sys::F_TEXTEQ)];
    // SAFETY: plan_limits' primary key is (plan text, metric text), as `tables` checked;
    // `slot` and `snapshot` as in `read_subject`.
    unsafe { heap::probe(&rel, t.limits.pkey, snapshot, &keys, &slot)? };
    schema::limit(&SlotRow { slot: &slot, table: &t.limits }).ok().map(|(_, l)| l)
}

fn window_keys(id: &str, metric: &str, w: &Window) -> [(Datum, u32); 3] {
    let start = clock::window_key(w.start).into_datum().expect("timestamptz datum");
    [(text(id), pg_sys::F_TEXTEQ), (text(metric), pg_sys::F_TEXTEQ), (start, pg_sys::F_TIMESTAMPTZ_EQ)]
}

/// The window's counter row (primary key `keys`, from `window_keys`) into `slot`, if it
/// exists: where the shared cache says it is, or else by the primary key (and the cache
/// then remembers where).
fn find_window(t: &Tables, rel: &Rel, snapshot: pg_sys::Snapshot, place: Option<Place>, metric: &str, keys: &[(Datum, u32); 3], slot: &Slot) -> bool {
    let start = keys[2].0.value() as i64;
    let key_atts = &t.counters.att[..schema::COUNTERS.key];
    if let Some(tid) = place.and_then(|p| subject_cache::hint(p, metric, start)) {
        // SAFETY: `slot` is the counters' and `snapshot` active; the key functions are
        // the equalities of the key columns' types, as `tables` checked.
        if unsafe { heap::fetch(rel, tid, snapshot, slot) && heap::matches(slot, key_atts, keys) } {
            note(format_args!("hot path: window row found where the shared cache remembered it"));
            return true;
        }
    }
    // SAFETY: the counters' primary key is (subject text, metric text, window_start
    // timestamptz), as `tables` checked, and `keys` has those types; `slot` and `snapshot`
    // as above.
    let Some(root) = (unsafe { heap::probe(rel, t.counters.pkey, snapshot, keys, slot) }) else { return false };
    if let Some(p) = place {
        subject_cache::set_hint(p, metric, start, root);
    }
    true
}

fn usage_of(t: &Tables, slot: &Slot) -> Option<Usage> {
    schema::usage(&SlotRow { slot, table: &t.counters }).ok()
}

/// The common check: the state of the subject's window for `metric`, read with the
/// calling statement's snapshot. Writes nothing.
pub fn check(id: &str, metric: &str, now: DateTime<Utc>, scope: &Scope) -> Option<Found> {
    let cache = Cache::for_this_call();
    let t = usable()?;
    let cache = cache.for_tables(&t);
    // SAFETY: a function runs with its statement's snapshot active.
    let snapshot = unsafe { pg_sys::GetActiveSnapshot() };
    let (subject, place) = subject_of(&t, snapshot, cache, id, scope)?;
    let limit = limit_of(&t, snapshot, cache, &subject.plan, metric)?;
    let window = subject.window(limit.period, now);
    let rel = Rel::open(t.counters.oid, pg_sys::AccessShareLock as _);
    let slot = Slot::new(&rel);
    let usage = if find_window(&t, &rel, snapshot, place, metric, &window_keys(id, metric, &window), &slot) {
        usage_of(&t, &slot)?
    } else {
        Usage::default()
    };
    Some(Found { subject, limit, window, usage })
}

/// The new counter values (usage and alerted), over the row in `from`.
fn write_usage(t: &Tables, new: &Slot, from: &Slot, after: Usage) {
    let a = &t.counters.att;
    // SAFETY: both slots are the counters'; used is int8 and alerted int4, as described.
    unsafe { new.store(Some(from), &[(a[counters::USED], Some(Datum::from(after.used))), (a[counters::ALERTED], Some(Datum::from(after.alerted)))]) };
}

/// The common consume: find each window's row, let `decide` judge them all, write the
/// new usage and the ledger rows. Returns, per metric, what was found (usage before)
/// and the usage written; Ok(None): take the general path.
///
/// One metric: the row is updated directly, and `decide` may run again on a newer row
/// version when a concurrent transaction changed it first. Several (`items` in metric
/// order, the lock order): every window row is locked first, as the general path's
/// `SELECT ... FOR UPDATE` does, then decided, and only then is anything written, so a
/// refusal or a missing row leaves nothing written here but row locks, which the
/// general path then takes anyway. Once some rows are written the general path can no
/// longer take over: a row that then cannot be written (not expected: it is locked) is
/// a `Conflict`, and the transaction must be retried.
pub fn consume(
    id: &str,
    items: &[(String, i64)],
    metadata: Option<Datum>,
    now: DateTime<Utc>,
    scope: &Scope,
    decide: impl Fn(&[Found]) -> Option<Vec<Write>>,
) -> Result<Option<Vec<(Found, Usage)>>, QuotaError> {
    let Some((cache, t, _fresh)) = writing() else { return Ok(None) };
    // SAFETY: the snapshot `writing` just pushed.
    let snapshot = unsafe { pg_sys::GetActiveSnapshot() };
    let rel = Rel::open(t.counters.oid, pg_sys::RowExclusiveLock as _);
    if let [(metric, amount)] = items {
        let Some((found, after, overage)) = consume_one(&t, &rel, snapshot, cache, id, metric, scope, now, |f| decide(f))? else { return Ok(None) };
        append(&t, &found, metric, *amount, overage, metadata, now);
        return Ok(Some(vec![(found, after)]));
    }
    let Some((found, rows)) = lock_windows(&t, &rel, snapshot, cache, id, items, now, scope) else { return Ok(None) };
    let Some(plans) = decide(&found) else { return Ok(None) };
    for (((metric, _), row), plan) in items.iter().zip(&rows).zip(&plans) {
        let new = Slot::new(&rel);
        write_usage(&t, &new, row, plan.after);
        // SAFETY: the counters are `updatable` (`writing`), `row` was read and locked
        // from them, and only non-key columns changed.
        if !matches!(unsafe { heap::update(&rel, row, &new, &Slot::new(&rel), &t.counters_indexes) }, Updated::Done) {
            return Err(QuotaError::Conflict { subject: id.to_string(), metric: metric.clone() });
        }
    }
    for (((metric, amount), f), plan) in items.iter().zip(&found).zip(&plans) {
        append(&t, f, metric, *amount, plan.overage, metadata, now);
    }
    Ok(Some(found.into_iter().zip(plans).map(|(f, p)| (f, p.after)).collect()))
}

/// One window: found, decided and updated (re-decided on its newest version when a
/// concurrent transaction changed it first). Returns what was found, the usage written
/// and the overage.
#[allow(clippy::too_many_arguments)]
fn consume_one(
    t: &Tables,
    rel: &Rel,
    snapshot: pg_sys::Snapshot,
    cache: Cache,
    id: &str,
    metric: &str,
    scope: &Scope,
    now: DateTime<Utc>,
    decide: impl Fn(&[Found]) -> Option<Vec<Write>>,
) -> Result<Option<(Found, Usage, i64)>, QuotaError> {
    let Some((subject, place)) = subject_of(t, snapshot, cache, id, scope) else { return Ok(None) };
    let Some(limit) = limit_of(t, snapshot, cache, &subject.plan, metric) else { return Ok(None) };
    let window = subject.window(limit.period, now);
    let keys = window_keys(id, metric, &window);
    let mut read = Slot::new(rel);
    if !find_window(t, rel, snapshot, place, metric, &keys, &read) {
        return Ok(None);
    }
    let new = Slot::new(rel);
    let mut found = Found { subject, limit, window, usage: Usage::default() };
    loop {
        let Some(before) = usage_of(t, &read) else { return Ok(None) };
        found.usage = before;
        let Some(plan) = decide(std::slice::from_ref(&found)).and_then(|mut p| p.pop()) else { return Ok(None) };
        write_usage(t, &new, &read, plan.after);
        let latest = Slot::new(rel);
        // SAFETY: the counters are `updatable` (`writing`), `read` was read from them, and
        // only non-key columns changed.
        match unsafe { heap::update(rel, &read, &new, &latest, &t.counters_indexes) } {
            Updated::Done => return Ok(Some((found, plan.after, plan.overage))),
            // The newest version may carry another key (a subject renamed meanwhile).
            // SAFETY: as in `find_window`.
            Updated::Moved if unsafe { heap::matches(&latest, &t.counters.att[..schema::COUNTERS.key], &keys) } => read = latest,
            Updated::Moved | Updated::Gone => return Ok(None),
        }
    }
}

/// Every window row of `items` found and locked, in order, with what it holds; None if
/// one is missing, out of scope, or gone.
#[allow(clippy::too_many_arguments)]
fn lock_windows(
    t: &Tables,
    rel: &Rel,
    snapshot: pg_sys::Snapshot,
    cache: Cache,
    id: &str,
    items: &[(String, i64)],
    now: DateTime<Utc>,
    scope: &Scope,
) -> Option<(Vec<Found>, Vec<Slot>)> {
    let (subject, place) = subject_of(t, snapshot, cache, id, scope)?;
    let mut found = Vec::with_capacity(items.len());
    let mut rows = Vec::with_capacity(items.len());
    for (metric, _) in items {
        let limit = limit_of(t, snapshot, cache, &subject.plan, metric)?;
        let window = subject.window(limit.period, now);
        let keys = window_keys(id, metric, &window);
        let read = Slot::new(rel);
        let locked = Slot::new(rel);
        if !find_window(t, rel, snapshot, place, metric, &keys, &read) {
            return None;
        }
        // SAFETY: both slots are the counters' and `read` holds the row just found; READ
        // COMMITTED (`writing`).
        if !unsafe { heap::lock(rel, &read, &locked) } {
            return None;
        }
        // The newest version may carry another key (a subject renamed meanwhile).
        // SAFETY: `locked` holds the version just locked; the key functions as in
        // `find_window`.
        if !unsafe { heap::matches(&locked, &t.counters.att[..schema::COUNTERS.key], &keys) } {
            return None;
        }
        found.push(Found { usage: usage_of(t, &locked)?, subject: subject.clone(), limit, window });
        rows.push(locked);
    }
    Some((found, rows))
}

/// Append a consume to the ledger: the same row the general path appends.
fn append(t: &Tables, f: &Found, metric: &str, amount: i64, overage: i64, metadata: Option<Datum>, now: DateTime<Utc>) {
    let row = LedgerRow {
        subject: &f.subject.id,
        tenant: f.subject.tenant.as_deref(),
        metric,
        window_start: f.window.start,
        kind: LedgerKind::Consume,
        amount,
        overage,
        idempotency_key: None,
        metadata,
        created_at: now,
    };
    let ledger = Rel::open(t.ledger.oid, pg_sys::RowExclusiveLock as _);
    let slot = Slot::new(&ledger);
    let e = &t.ledger.att;
    // SAFETY: the ledger's identity sequence, under the owner switch of the caller.
    let id = unsafe { heap::nextval(t.ledger_seq) };
    let mut values = vec![(e[schema::LEDGER_ID], Some(Datum::from(id)))];
    values.extend(row.values().into_iter().enumerate().map(|(i, (v, _))| (e[schema::USAGE_EVENTS.generated + i], v)));
    // SAFETY: the ledger is `insertable` (`writing`), every described column's value is
    // of its type (`LedgerRow::values`), and every other column defaults to NULL.
    unsafe {
        slot.store(None, &values);
        heap::insert(&ledger, &slot, &t.ledger_indexes);
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
