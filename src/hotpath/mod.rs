//! The hot path: the common `quota_check` and `quota_consume` (one metric, a stored
//! subject, a window row that exists, READ COMMITTED) done with primary-key probes and
//! direct heap writes (`heap`), without SPI, the planner or the executor.
//!
//! Everything else returns `None` and the engine takes the general path, which handles
//! every case exactly: unknown subjects and metrics, new windows, refusals, idempotency
//! keys, other isolation levels, read-only transactions, tables that have gained
//! triggers or unusual indexes. The engine decides; this module only reads and writes.
//!
//! Semantics match the general path's statements: reads use the snapshot a volatile
//! function's statement would get, and a counter changed concurrently is re-read at its
//! newest version under a row lock and decided again (UPDATE's EvalPlanQual).
//!
//! Under READ COMMITTED, subjects' rows and plan limits are cached. Subjects live in the
//! shared-memory cache (`subject_cache`) when quota_ext is preloaded, else in backend
//! memory (`Config`) like plan limits. Every statement that changes `quota.subjects`
//! (UPDATE, DELETE, TRUNCATE) or `quota.plan_limits` sends a relcache invalidation at
//! COMMIT (trigger `quota.config_changed`, sql/hotpath.sql), and each call first takes
//! the pending invalidations, so a change committed before a call starts is seen by it,
//! as a new statement's snapshot would. Entries are loaded with the latest snapshot and
//! kept only if no invalidation arrived meanwhile. The shared cache has its own rule,
//! with the same effect (see `subject_cache`); it also remembers where each subject's
//! window rows are, so that a warm call descends no index at all.

use chrono::{DateTime, Utc};
use pgrx::pg_sys::{self, AttrNumber, Datum, Oid};
use pgrx::IntoDatum;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::clock;
use crate::error::QuotaError;
use heap::{Rel, Slot, Updated};
use crate::limits::{Limit, Usage};
use crate::period::{self, Window};
use crate::store::Subject;
use subject_cache::{Generation, Place, SubjectRow};
use crate::tenancy::Scope;

/// A table, its primary-key index and the attribute numbers of the columns used here
/// (the key columns first, in index order).
#[derive(Clone)]
struct Table {
    oid: Oid,
    /// Its storage (relfilenode): a rewrite (ALTER TABLE ... TYPE, VACUUM FULL) changes it.
    node: Oid,
    pkey: Oid,
    att: Vec<AttrNumber>,
}

/// The tables of schema quota, resolved once per backend and forgotten whenever one of
/// them changes (relcache invalidation: DDL, new triggers or indexes, DROP EXTENSION).
#[derive(Clone)]
struct Tables {
    subjects: Table,
    limits: Table,
    counters: Table,
    ledger: Table,
    ledger_seq: Oid,
    counters_indexes: Vec<Oid>,
    ledger_indexes: Vec<Oid>,
    /// Counter updates and ledger appends may be done here (see `heap::eligibility`).
    writable: bool,
}

const TEXT: u32 = pg_sys::TEXTOID.to_u32();
const INT8: u32 = pg_sys::INT8OID.to_u32();
const INT4: u32 = pg_sys::INT4OID.to_u32();
const TSTZ: u32 = pg_sys::TIMESTAMPTZOID.to_u32();
const JSONB: u32 = pg_sys::JSONBOID.to_u32();
const INT4ARRAY: u32 = pg_sys::INT4ARRAYOID.to_u32();

// Column positions in `Table::att`.
const S_PLAN: usize = 1;
const S_TENANT: usize = 2;
const S_ANCHOR: usize = 3;
const S_ZONE: usize = 4;
const L_PERIOD: usize = 2;
const L_LIMIT: usize = 3;
const L_ENFORCEMENT: usize = 4;
const L_PER_REQUEST: usize = 5;
const L_ALERTS: usize = 6;
const C_USED: usize = 3;
const C_BONUS: usize = 4;
const C_RESERVED: usize = 5;
const C_ALERTED: usize = 6;

const SUBJECTS: &[(&std::ffi::CStr, u32)] =
    &[(c"subject", TEXT), (c"plan", TEXT), (c"tenant", TEXT), (c"cycle_anchor", TSTZ), (c"time_zone", TEXT)];
const LIMITS: &[(&std::ffi::CStr, u32)] = &[
    (c"plan", TEXT),
    (c"metric", TEXT),
    (c"period", TEXT),
    (c"limit_value", INT8),
    (c"enforcement", TEXT),
    (c"per_request_max", INT8),
    (c"alert_thresholds", INT4ARRAY),
];
const COUNTERS: &[(&std::ffi::CStr, u32)] = &[
    (c"subject", TEXT),
    (c"metric", TEXT),
    (c"window_start", TSTZ),
    (c"used", INT8),
    (c"bonus", INT8),
    (c"reserved", INT8),
    (c"alerted", INT4),
];
/// Every column of the ledger this path fills (any other must be nullable, no default).
const LEDGER: &[(&std::ffi::CStr, u32)] = &[
    (c"id", INT8),
    (c"subject", TEXT),
    (c"tenant", TEXT),
    (c"metric", TEXT),
    (c"window_start", TSTZ),
    (c"kind", TEXT),
    (c"amount", INT8),
    (c"overage", INT8),
    (c"metadata", JSONB),
    (c"created_at", TSTZ),
];
const E_ID: usize = 0;
const E_SUBJECT: usize = 1;
const E_TENANT: usize = 2;
const E_METRIC: usize = 3;
const E_WINDOW: usize = 4;
const E_KIND: usize = 5;
const E_AMOUNT: usize = 6;
const E_OVERAGE: usize = 7;
const E_METADATA: usize = 8;
const E_CREATED: usize = 9;

/// Subjects' rows and plan limits as last read (READ COMMITTED only).
#[derive(Default)]
struct Config {
    subjects: HashMap<String, SubjectRow>,
    /// (plan, metric) -> its limit, or None when the plan has no limit on the metric.
    limits: HashMap<(String, String), Option<Limit>>,
}

/// Bound on cached subjects per backend (about 1 MB); the cache starts over when full.
const MAX_SUBJECTS: usize = 10_000;
/// Bound on cached plan limits per backend; the cache starts over when full.
const MAX_LIMITS: usize = 4_096;

thread_local! {
    static TABLES: RefCell<Option<Rc<Tables>>> = const { RefCell::new(None) };
    static CONFIG: RefCell<Option<Config>> = const { RefCell::new(None) };
    static CALLBACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Relcache invalidations seen: a resolution that saw one happen is not kept.
    static GENERATION: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

unsafe extern "C-unwind" fn forget(_arg: Datum, relid: Oid) {
    GENERATION.with(|g| g.set(g.get().wrapping_add(1)));
    TABLES.with(|t| {
        let mut t = t.borrow_mut();
        // Without resolved tables (a call that resolved them while invalidations arrived
        // keeps them for itself only, but may still have filled CONFIG) it is unknown
        // whether `relid` is one of ours: forget the cached rows too. Keeping them here
        // once let a limit lowered right after ALTER EXTENSION UPDATE go unseen.
        let ours = t.as_ref().is_none_or(|t| {
            [t.subjects.oid, t.limits.oid, t.counters.oid, t.ledger.oid].contains(&relid) || relid == pg_sys::InvalidOid
        });
        if ours {
            *t = None;
            CONFIG.with(|c| *c.borrow_mut() = None);
        }
    });
}

fn table(nsp: Oid, name: &std::ffi::CStr, cols: &[(&std::ffi::CStr, u32)], keys: usize) -> Option<Table> {
    unsafe {
        let oid = pg_sys::get_relname_relid(name.as_ptr(), nsp);
        if oid == pg_sys::InvalidOid {
            return None;
        }
        let att = cols.iter().map(|(n, t)| heap::attnum(oid, n, Oid::from(*t))).collect::<Option<Vec<_>>>()?;
        let rel = Rel::open(oid, pg_sys::AccessShareLock as _);
        let pkey = pg_sys::RelationGetPrimaryKeyIndex(rel.0);
        if keys > 0 {
            if pkey == pg_sys::InvalidOid {
                return None;
            }
            let idx = pg_sys::index_open(pkey, pg_sys::AccessShareLock as _);
            let index = (*idx).rd_index;
            let matches = (*index).indnkeyatts as usize == keys
                && (0..keys).all(|i| *(*index).indkey.values.as_ptr().add(i) == att[i]);
            pg_sys::index_close(idx, pg_sys::NoLock as _);
            if !matches {
                return None;
            }
        }
        let node = (*rel.0).rd_node.relNode;
        Some(Table { oid, node, pkey, att })
    }
}

fn resolve() -> Option<Tables> {
    unsafe {
        let nsp = pg_sys::get_namespace_oid(c"quota".as_ptr(), true);
        if nsp == pg_sys::InvalidOid {
            return None;
        }
        let ledger = table(nsp, c"usage_events", LEDGER, 0)?;
        let ledger_seq = pg_sys::getIdentitySequence(ledger.oid, ledger.att[E_ID], true);
        let counters = table(nsp, c"counters", COUNTERS, 3)?;
        let (counters_rel, ledger_rel) =
            (Rel::open(counters.oid, pg_sys::AccessShareLock as _), Rel::open(ledger.oid, pg_sys::AccessShareLock as _));
        let writable = ledger_seq != pg_sys::InvalidOid
            && ledger_fillable(&ledger)
            && heap::eligibility(&counters_rel).update
            && heap::eligibility(&ledger_rel).insert;
        Some(Tables {
            subjects: table(nsp, c"subjects", SUBJECTS, 1)?,
            limits: table(nsp, c"plan_limits", LIMITS, 2)?,
            counters_indexes: heap::index_oids(&counters_rel),
            ledger_indexes: heap::index_oids(&ledger_rel),
            counters,
            ledger,
            ledger_seq,
            writable,
        })
    }
}

/// Every ledger column this path does not fill is nullable and has no default.
fn ledger_fillable(ledger: &Table) -> bool {
    unsafe {
        let rel = Rel::open(ledger.oid, pg_sys::AccessShareLock as _);
        let desc = (*rel.0).rd_att;
        (0..(*desc).natts as usize).all(|i| {
            let a = &*(*desc).attrs.as_ptr().add(i);
            a.attisdropped || ledger.att.contains(&a.attnum) || (!a.attnotnull && !a.atthasdef)
        })
    }
}

fn tables() -> Option<Rc<Tables>> {
    if !crate::gucs::hot_path() {
        return None;
    }
    // Only a database at this library's version has every invalidation trigger that the
    // caches rely on (`installed`); older ones take the general path until updated.
    if !crate::installed::is_current() {
        thread_local! { static SAID: std::cell::Cell<bool> = const { std::cell::Cell::new(false) }; }
        if !SAID.with(|s| s.replace(true)) {
            pgrx::log!("quota_ext: this database's extension is older than the library: quotas are served by the general path until ALTER EXTENSION quota_ext UPDATE");
        }
        return None;
    }
    if let Some(t) = TABLES.with(|t| t.borrow().clone()) {
        return Some(t);
    }
    if !CALLBACK.with(|c| c.replace(true)) {
        unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(forget), Datum::from(0usize)) };
    }
    let generation = GENERATION.with(|g| g.get());
    let t = Rc::new(resolve()?);
    // An invalidation processed while resolving (a trigger or index created meanwhile,
    // say) may not be reflected: use the answer for this call only.
    if GENERATION.with(|g| g.get()) == generation {
        TABLES.with(|c| *c.borrow_mut() = Some(t.clone()));
    }
    Some(t)
}

/// What a probe found: the subject, its limit on the metric, the current window and the
/// window's usage (zero when it has no row yet).
pub struct Found {
    pub subject: Subject,
    pub limit: Limit,
    pub window: Window,
    pub usage: Usage,
}

/// Where a call may find subjects' rows and plan limits.
#[derive(Clone, Copy)]
enum Cache {
    /// Not READ COMMITTED: read everything with the statement's snapshot.
    None,
    /// Subjects and limits in this backend's `Config`.
    Local,
    /// Subjects in `subject_cache` (shared memory), limits in `Config`.
    Shared(Generation),
}

impl Cache {
    /// Rows this transaction wrote (an INSERT fires no invalidation) are read, not cached.
    fn for_tables(self, t: &Tables) -> Cache {
        if !matches!(self, Cache::None) && heap::written_here(t.subjects.oid) {
            Cache::None
        } else {
            self
        }
    }
}

/// The subject, if it is stored and in scope, and where its shared-cache entry is. Cached
/// (see the module comment), or else read with `snapshot`.
fn subject_of(t: &Tables, snapshot: pg_sys::Snapshot, cache: Cache, id: &str, scope: &Scope) -> Option<(Subject, Option<Place>)> {
    let (row, place) = match cache {
        Cache::None => (read_subject_with(t, snapshot, id)?, None),
        Cache::Local => (
            remembered(|c| c.subjects.get(id).cloned(), || read_subject(t, id), |c, r| {
                if c.subjects.len() >= MAX_SUBJECTS {
                    c.subjects.clear();
                }
                c.subjects.insert(id.to_string(), r.clone());
            })?,
            None,
        ),
        Cache::Shared(g) => match subject_cache::get(g, t.subjects.node, id) {
            Some((row, place)) => {
                note(format_args!("hot path: subject from the shared cache"));
                (row, Some(place))
            }
            None => {
                let row = read_subject(t, id)?;
                let place = subject_cache::put(g, t.subjects.node, id, &row);
                (row, place)
            }
        },
    };
    if !scope.admits(row.tenant.as_deref()) {
        return None;
    }
    let subject = Subject { id: id.to_string(), plan: row.plan, tenant: row.tenant, anchor: clock::from_pg(row.anchor), tz: row.tz, stored: true };
    Some((subject, place))
}

/// The limit of `plan` on `metric`, if it has one: cached, or else read with `snapshot`.
fn limit_of(t: &Tables, snapshot: pg_sys::Snapshot, cache: Cache, plan: &str, metric: &str) -> Option<Limit> {
    if let Cache::None = cache {
        return read_limit(t, snapshot, plan, metric);
    }
    let key = (plan.to_string(), metric.to_string());
    // Only limits that exist are kept: a metric the plan does not limit is an error on
    // the general path, and caching every misspelling would let callers fill memory.
    remembered(|c| c.limits.get(&key).cloned(), || Some(read_limit(t, latest(), plan, metric)), |c, l| {
        if l.is_none() {
            return;
        }
        if c.limits.len() >= MAX_LIMITS {
            c.limits.clear();
        }
        c.limits.insert(key.clone(), l.clone());
    })?
}

/// `SET client_min_messages = debug2` shows what the hot path did.
pub fn note(what: std::fmt::Arguments) {
    if unsafe { pg_sys::message_level_is_interesting(pg_sys::DEBUG2 as _) } {
        pgrx::debug2!("{what}");
    }
}

/// A value from `Config`, or `load`ed and (if no invalidation arrived meanwhile) kept.
fn remembered<T: Clone>(get: impl Fn(&Config) -> Option<T>, load: impl FnOnce() -> Option<T>, keep: impl FnOnce(&mut Config, &T)) -> Option<T> {
    if let Some(v) = CONFIG.with(|c| c.borrow().as_ref().and_then(&get)) {
        return Some(v);
    }
    let generation = GENERATION.with(|g| g.get());
    let v = load()?;
    if GENERATION.with(|g| g.get()) == generation {
        CONFIG.with(|c| keep(c.borrow_mut().get_or_insert_with(Config::default), &v));
    }
    Some(v)
}

fn latest() -> pg_sys::Snapshot {
    unsafe { pg_sys::GetLatestSnapshot() }
}

fn read_subject(t: &Tables, id: &str) -> Option<SubjectRow> {
    read_subject_with(t, latest(), id)
}

fn read_subject_with(t: &Tables, snapshot: pg_sys::Snapshot, id: &str) -> Option<SubjectRow> {
    let rel = Rel::open(t.subjects.oid, pg_sys::AccessShareLock as _);
    let slot = Slot::new(&rel);
    if heap::probe(&rel, t.subjects.pkey, snapshot, &[(heap::text(id), pg_sys::F_TEXTEQ)], &slot).is_none() {
        return None;
    }
    let a = &t.subjects.att;
    Some(SubjectRow {
        plan: slot.get(a[S_PLAN])?,
        tenant: slot.get(a[S_TENANT]),
        anchor: slot.i64(a[S_ANCHOR])?,
        tz: period::parse_zone(&slot.get::<String>(a[S_ZONE])?)?,
    })
}

fn read_limit(t: &Tables, snapshot: pg_sys::Snapshot, plan: &str, metric: &str) -> Option<Limit> {
    let rel = Rel::open(t.limits.oid, pg_sys::AccessShareLock as _);
    let slot = Slot::new(&rel);
    let keys = [(heap::text(plan), pg_sys::F_TEXTEQ), (heap::text(metric), pg_sys::F_TEXTEQ)];
    if heap::probe(&rel, t.limits.pkey, snapshot, &keys, &slot).is_none() {
        return None;
    }
    let a = &t.limits.att;
    Some(Limit {
        period: slot.get::<String>(a[L_PERIOD])?.parse().ok()?,
        limit_value: slot.i64(a[L_LIMIT])?,
        enforcement: slot.get::<String>(a[L_ENFORCEMENT])?.parse().ok()?,
        per_request_max: slot.i64(a[L_PER_REQUEST]),
        alerts: slot.get::<Vec<i32>>(a[L_ALERTS]).unwrap_or_default(),
    })
}

/// READ COMMITTED (where caches may serve): take pending invalidations first, and read
/// the shared cache's generation before any snapshot that may fill it.
fn use_cache() -> Cache {
    if unsafe { pg_sys::XactIsoLevel } > pg_sys::XACT_READ_COMMITTED as i32 {
        return Cache::None;
    }
    unsafe { pg_sys::AcceptInvalidationMessages() };
    // A standby replays changes without firing the trigger that advances the shared
    // cache's generation; the relcache invalidations that the local caches follow are
    // replayed, though.
    if unsafe { pg_sys::RecoveryInProgress() } {
        return Cache::Local;
    }
    subject_cache::generation().map_or(Cache::Local, Cache::Shared)
}

fn window_keys(id: &str, metric: &str, w: &Window) -> [(Datum, u32); 3] {
    let start = clock::window_key(w.start).into_datum().expect("timestamptz datum");
    [(heap::text(id), pg_sys::F_TEXTEQ), (heap::text(metric), pg_sys::F_TEXTEQ), (start, pg_sys::F_TIMESTAMPTZ_EQ)]
}

/// The window's counter row (primary key `keys`, from `window_keys`) into `slot`, if it
/// exists: where the shared cache says it is, or else by the primary key (and the cache
/// then remembers where).
fn find_window(t: &Tables, rel: &Rel, snapshot: pg_sys::Snapshot, place: Option<Place>, metric: &str, keys: &[(Datum, u32); 3], slot: &Slot) -> bool {
    let start = keys[2].0.value() as i64;
    if let Some(tid) = place.and_then(|p| subject_cache::hint(p, metric, start)) {
        if heap::fetch(rel, tid, snapshot, slot) && heap::matches(slot, &t.counters.att[..3], keys) {
            note(format_args!("hot path: window row found where the shared cache remembered it"));
            return true;
        }
    }
    let Some(root) = heap::probe(rel, t.counters.pkey, snapshot, keys, slot) else { return false };
    if let Some(p) = place {
        subject_cache::set_hint(p, metric, start, root);
    }
    true
}

fn usage_of(t: &Tables, slot: &Slot) -> Option<Usage> {
    let a = &t.counters.att;
    Some(Usage {
        used: slot.i64(a[C_USED])?,
        bonus: slot.i64(a[C_BONUS])?,
        reserved: slot.i64(a[C_RESERVED])?,
        alerted: slot.datum(a[C_ALERTED])?.value() as i32,
    })
}

/// The common check: the state of the subject's window for `metric`, read with the
/// calling statement's snapshot. Writes nothing.
pub fn check(id: &str, metric: &str, now: DateTime<Utc>, scope: &Scope) -> Option<Found> {
    let cache = use_cache();
    let t = tables()?;
    let cache = cache.for_tables(&t);
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

/// What the engine decided for a consume: the window's usage afterwards and the part of
/// the amount over the limit. `None`: take the general path.
pub struct Plan {
    pub after: Usage,
    pub overage: i64,
}

/// The common consume: find the window's row, let `decide` judge its usage, write the
/// new usage and the ledger row. `decide` may run again on a newer row version when a
/// concurrent transaction changed it first. Returns what was found (usage before) and
/// the usage written.
pub fn consume(
    id: &str,
    metric: &str,
    amount: i64,
    metadata: Option<Datum>,
    now: DateTime<Utc>,
    scope: &Scope,
    decide: impl Fn(&Limit, Usage) -> Option<Plan>,
) -> Option<(Found, Usage)> {
    let (cache, t, _snapshot) = writing()?;
    let snapshot = unsafe { pg_sys::GetActiveSnapshot() };
    let (subject, place) = subject_of(&t, snapshot, cache, id, scope)?;
    let limit = limit_of(&t, snapshot, cache, &subject.plan, metric)?;
    let window = subject.window(limit.period, now);
    let keys = window_keys(id, metric, &window);

    let rel = Rel::open(t.counters.oid, pg_sys::RowExclusiveLock as _);
    let mut read = Slot::new(&rel);
    if !find_window(&t, &rel, snapshot, place, metric, &keys, &read) {
        return None;
    }
    let new = Slot::new(&rel);
    let a = &t.counters.att;
    let (before, plan) = loop {
        let before = usage_of(&t, &read)?;
        let plan = decide(&limit, before)?;
        new.store(
            Some(&read),
            &[(a[C_USED], Some(Datum::from(plan.after.used))), (a[C_ALERTED], Some(Datum::from(plan.after.alerted)))],
        );
        let latest = Slot::new(&rel);
        match heap::update(&rel, &read, &new, &latest, &t.counters_indexes) {
            Updated::Done => break (before, plan),
            // The newest version may carry another key (a subject renamed meanwhile).
            Updated::Moved if heap::matches(&latest, &a[..3], &keys) => read = latest,
            Updated::Moved => return None,
            Updated::Gone => return None,
        }
    };

    append(&t, id, subject.tenant.as_deref(), metric, &window, amount, plan.overage, metadata, now);
    Some((Found { subject, limit, window, usage: before }, plan.after))
}

/// The common multi-metric consume (`items` in metric order, the lock order): every
/// window row is locked first, as the general path's `SELECT ... FOR UPDATE` does, then
/// `decide` judges them all at once, and only then is anything written. So a refusal
/// (`decide` answering None) or a missing row leaves nothing written here but row locks,
/// which the general path then takes anyway (`Ok(None)`). Returns, per metric, what was
/// found (usage before) and the usage written. Once some rows are written the general
/// path can no longer take over: a row that then cannot be written (not expected: it is
/// locked) is a `Conflict`, and the transaction must be retried.
pub fn consume_many(
    id: &str,
    items: &[(String, i64)],
    metadata: Option<Datum>,
    now: DateTime<Utc>,
    scope: &Scope,
    decide: impl Fn(&[Found]) -> Option<Vec<Plan>>,
) -> Result<Option<Vec<(Found, Usage)>>, QuotaError> {
    let Some((cache, t, _snapshot)) = writing() else { return Ok(None) };
    let snapshot = unsafe { pg_sys::GetActiveSnapshot() };
    let rel = Rel::open(t.counters.oid, pg_sys::RowExclusiveLock as _);
    let Some((found, rows)) = lock_windows(&t, &rel, snapshot, cache, id, items, now, scope) else { return Ok(None) };
    let Some(plans) = decide(&found) else { return Ok(None) };
    let a = &t.counters.att;
    for (((metric, _), row), plan) in items.iter().zip(&rows).zip(&plans) {
        let new = Slot::new(&rel);
        new.store(Some(row), &[(a[C_USED], Some(Datum::from(plan.after.used))), (a[C_ALERTED], Some(Datum::from(plan.after.alerted)))]);
        if !matches!(heap::update(&rel, row, &new, &Slot::new(&rel), &t.counters_indexes), Updated::Done) {
            return Err(QuotaError::Conflict { subject: id.to_string(), metric: metric.clone() });
        }
    }
    for (((metric, amount), f), plan) in items.iter().zip(&found).zip(&plans) {
        append(&t, id, f.subject.tenant.as_deref(), metric, &f.window, *amount, plan.overage, metadata, now);
    }
    Ok(Some(found.into_iter().zip(plans).map(|(f, p)| (f, p.after)).collect()))
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
        // The newest version may carry another key (a subject renamed meanwhile).
        if !find_window(t, rel, snapshot, place, metric, &keys, &read)
            || !heap::lock(rel, &read, &locked)
            || !heap::matches(&locked, &t.counters.att[..3], &keys)
        {
            return None;
        }
        found.push(Found { usage: usage_of(t, &locked)?, subject: subject.clone(), limit, window });
        rows.push(locked);
    }
    Some((found, rows))
}

/// Append a consume to the ledger.
#[allow(clippy::too_many_arguments)]
fn append(t: &Tables, id: &str, tenant: Option<&str>, metric: &str, window: &Window, amount: i64, overage: i64, metadata: Option<Datum>, now: DateTime<Utc>) {
    let ledger = Rel::open(t.ledger.oid, pg_sys::RowExclusiveLock as _);
    let row = Slot::new(&ledger);
    let e = &t.ledger.att;
    row.store(
        None,
        &[
            (e[E_ID], Some(Datum::from(heap::nextval(t.ledger_seq)))),
            (e[E_SUBJECT], Some(heap::text(id))),
            (e[E_TENANT], tenant.map(heap::text)),
            (e[E_METRIC], Some(heap::text(metric))),
            (e[E_WINDOW], clock::window_key(window.start).into_datum()),
            (e[E_KIND], Some(heap::text("consume"))),
            (e[E_AMOUNT], Some(Datum::from(amount))),
            (e[E_OVERAGE], Some(Datum::from(overage))),
            (e[E_METADATA], metadata),
            (e[E_CREATED], Some(Datum::from(clock::to_pg(now)))),
        ],
    );
    heap::insert(&ledger, &row, &t.ledger_indexes);
}

/// What a consume starts with: READ COMMITTED and a writable transaction, the caches,
/// tables this path may write, and, as SPI does for each statement of a volatile
/// function, a new active snapshot that sees this transaction's earlier changes and
/// everything committed so far. None: the general path.
fn writing() -> Option<(Cache, Rc<Tables>, FreshSnapshot)> {
    unsafe {
        if pg_sys::XactIsoLevel > pg_sys::XACT_READ_COMMITTED as i32 || pg_sys::XactReadOnly {
            return None;
        }
    }
    let cache = use_cache();
    let t = tables().filter(|t| t.writable)?;
    Some((cache.for_tables(&t), t, FreshSnapshot::push()))
}

/// A new snapshot (after a command counter increment) as the active one for one call.
struct FreshSnapshot;

impl FreshSnapshot {
    fn push() -> FreshSnapshot {
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
            unsafe { pg_sys::PopActiveSnapshot() }
        }
    }
}

/// Statement trigger on quota.subjects and quota.plan_limits (sql/hotpath.sql): every
/// backend forgets the cached rows once this transaction commits (at once for this one).
#[pgrx::pg_trigger]
fn config_changed<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> std::result::Result<Option<pgrx::heap_tuple::PgHeapTuple<'a, pgrx::AllocatedByPostgres>>, pgrx::heap_tuple::PgHeapTupleError> {
    let rel = trigger.relation().ok();
    if rel.as_ref().is_some_and(|r| r.name() == "subjects") {
        subject_cache::subjects_changed();
    }
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(rel.map(|r| r.oid()).unwrap_or(pg_sys::InvalidOid)) };
    Ok(None)
}

pub mod heap;
pub mod subject_cache;
