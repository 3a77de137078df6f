//! `quota.stats`: running totals per metric in shared memory, for dashboards and scrapers
//! (the seeds' `quota_consumed_total` and `quota_exceeded_total`). Over 500 lines: the
//! slot table, its allocation and the transaction callbacks that feed it are one locking
//! protocol, kept in one file; the recent refusals and prepared transactions are apart.
//!
//! Why shared memory: a refusal raises QT429 and the caller's transaction usually rolls
//! back, so no table could ever record it. The totals live in one fixed table of slots,
//! keyed by database and metric, set up at server start; this needs `quota_ext` in
//! `shared_preload_libraries`. Without it, recording does nothing and reading
//! `quota.stats` raises 55000 with a hint.
//!
//! What counts when:
//! - refusals (`exceeded`, QT429 and QT413, also `quota_try_*` answers with allowed =
//!   false) and checks count at once, whatever the transaction does next;
//! - consumed units, consumes, soft overages, refunds and bonuses count when the
//!   transaction commits: they are kept per subtransaction in backend memory, dropped on
//!   (sub)transaction abort and added to shared memory at commit, so they match the ledger.
//! - a transaction that is PREPAREd (two-phase commit) leaves its totals in a shared table
//!   of prepared totals, keyed by its transaction id. Whoever reads the totals next folds
//!   in those whose transaction committed (COMMIT PREPARED, in any session) and drops
//!   those that rolled back (ROLLBACK PREPARED), as the commit log says. Only when that
//!   table (`PREPARED_SLOTS` entries) is full do a prepared transaction's totals count at
//!   PREPARE.
//!
//! Slots: `SLOTS - OVERFLOW_SLOTS` are shared by every database's metrics; when they are
//! taken, each database's further metrics share one row named `(other)`, from a region of
//! `OVERFLOW_SLOTS` reserved for those rows, so that one database's many metrics never
//! make another database's vanish.
//!
//! The totals restart at zero when the server restarts (like pg_stat_statements), or
//! with `quota.stats_reset()`.

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};
use std::cell::RefCell;

use crate::domain::decision::Decision;
use crate::domain::limits::Reason;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::Relaxed};

mod prepared;
mod recent;

use prepared::*;
pub use recent::*;

/// How many (database, metric) pairs are tracked, overflow rows included.
pub const SLOTS: usize = 512;
/// Slots reserved for the `(other)` rows, one per database that ran out of slots.
pub const OVERFLOW_SLOTS: usize = 64;
/// Slots that metrics take first.
const NAMED_SLOTS: usize = SLOTS - OVERFLOW_SLOTS;
/// Prepared transactions' totals waiting for COMMIT or ROLLBACK PREPARED (per metric).
pub const PREPARED_SLOTS: usize = 256;
/// Names (metrics; subjects and tenants of recent refusals) are kept up to this many
/// bytes, the longest name quota_ext accepts (longer ones, stored before the bounds, are
/// cut at a char boundary, and a cut tenant is shown to administrators only).
pub const NAME_BYTES: usize = crate::domain::error::MAX_NAME_BYTES;
const OTHER: &str = "(other)";

/// The totals of one metric.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub consumed: i64,
    pub consumes: i64,
    pub exceeded: i64,
    pub soft_overages: i64,
    pub checks: i64,
    pub refunded: i64,
    pub bonuses: i64,
}

impl Totals {
    fn add(&mut self, o: &Totals) {
        self.consumed = self.consumed.saturating_add(o.consumed);
        self.consumes += o.consumes;
        self.exceeded += o.exceeded;
        self.soft_overages += o.soft_overages;
        self.checks += o.checks;
        self.refunded = self.refunded.saturating_add(o.refunded);
        self.bonuses += o.bonuses;
    }
}

/// A metric name cut to `NAME_BYTES` on a char boundary.
pub fn slot_name(metric: &str) -> &str {
    let mut cut = metric.len().min(NAME_BYTES);
    while !metric.is_char_boundary(cut) {
        cut -= 1;
    }
    &metric[..cut]
}

struct MetricSlot {
    /// 0: free. Set once, under the exclusive lock, and never cleared (reset zeroes totals).
    database: AtomicI64,
    len: AtomicI64,
    name: [std::sync::atomic::AtomicU8; NAME_BYTES],
    totals: [AtomicI64; 7],
}

pub struct TotalsTable {
    slots: [MetricSlot; SLOTS],
}

impl Default for TotalsTable {
    fn default() -> Self {
        TotalsTable {
            slots: std::array::from_fn(|_| MetricSlot {
                database: AtomicI64::new(0),
                len: AtomicI64::new(0),
                name: std::array::from_fn(|_| Default::default()),
                totals: Default::default(),
            }),
        }
    }
}

// SAFETY: only atomics (in arrays), no pointers, which would mean nothing in another
// process, and nothing to drop. Backends holding the lock in share mode add to the
// totals concurrently, which the atomics allow; slots are claimed and cleared under the
// exclusive lock.
unsafe impl PGRXSharedMemory for TotalsTable {}

impl MetricSlot {
    fn is(&self, database: i64, name: &str) -> bool {
        self.database.load(Relaxed) == database
            && self.len.load(Relaxed) == name.len() as i64
            && name.bytes().zip(&self.name).all(|(b, s)| s.load(Relaxed) == b)
    }
    fn name(&self) -> String {
        let len = self.len.load(Relaxed) as usize;
        let bytes: Vec<u8> = self.name[..len].iter().map(|b| b.load(Relaxed)).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
    fn add(&self, t: &Totals) {
        let parts = [t.consumed, t.consumes, t.exceeded, t.soft_overages, t.checks, t.refunded, t.bonuses];
        for (cell, v) in self.totals.iter().zip(parts) {
            if v != 0 {
                cell.fetch_add(v, Relaxed);
            }
        }
    }
    /// Take a free slot for (database, name); the caller holds the exclusive lock.
    fn claim(&self, database: i64, name: &str) {
        for (cell, b) in self.name.iter().zip(name.bytes()) {
            cell.store(b, Relaxed);
        }
        self.len.store(name.len() as i64, Relaxed);
        self.database.store(database, Relaxed);
    }
    fn read(&self) -> Totals {
        let v: Vec<i64> = self.totals.iter().map(|c| c.load(Relaxed)).collect();
        Totals { consumed: v[0], consumes: v[1], exceeded: v[2], soft_overages: v[3], checks: v[4], refunded: v[5], bonuses: v[6] }
    }
}

// The locks' names name their shared-memory areas and LWLock tranches, which must not
// clash: each is used once, and carries the library's name (as does the subject cache's
// area, "quota_ext subject cache") to stay apart from other libraries'. Each lock is set
// up by pg_shmem_init! in `init` (preload only), and `active()` gates every use.
// SAFETY: "quota_ext_stats" names this lock only (see above).
static TABLE: PgLwLock<TotalsTable> = unsafe { PgLwLock::new(c"quota_ext_stats") };
// SAFETY: "quota_ext_refusals" names this lock only (see above).
static RECENT: PgLwLock<Recent> = unsafe { PgLwLock::new(c"quota_ext_refusals") };
// SAFETY: "quota_ext_prepared_stats" names this lock only (see above).
static PREPARED: PgLwLock<Prepared> = unsafe { PgLwLock::new(c"quota_ext_prepared_stats") };
/// Set in the postmaster when preloaded; backends inherit it.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Called from `_PG_init`: reserve the table when loaded by `shared_preload_libraries`.
#[allow(unexpected_cfgs)] // pg_shmem_init! tests every PostgreSQL version's feature
pub fn init() {
    // SAFETY: reads a process-global flag PostgreSQL sets around loading
    // shared_preload_libraries; _PG_init runs on the process's only thread.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        pg_shmem_init!(TABLE);
        pg_shmem_init!(RECENT);
        pg_shmem_init!(PREPARED);
        ACTIVE.store(true, Relaxed);
        // SAFETY: registered once, in the postmaster, and inherited by every backend; the
        // callbacks (#[pg_guard]) stay valid for the life of the process.
        unsafe {
            pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut());
            pg_sys::RegisterSubXactCallback(Some(on_subxact), std::ptr::null_mut());
        }
    }
}

pub fn active() -> bool {
    ACTIVE.load(Relaxed)
}

fn database() -> i64 {
    // SAFETY: reads a backend-local global, set when the backend connected to its
    // database, before any SQL function runs.
    unsafe { pg_sys::MyDatabaseId.to_u32() as i64 }
}

/// Add to a metric's slot of this database, claiming a free one the first time, or else
/// to the database's `(other)` row.
fn add(metric: &str, t: &Totals) {
    add_for(database(), metric, t)
}

fn add_for(db: i64, metric: &str, t: &Totals) {
    let name = slot_name(metric);
    let start = bucket(db, name) % NAMED_SLOTS;
    {
        let table = TABLE.share();
        if let Some(slot) = probe(&table.slots[..NAMED_SLOTS], db, name, start) {
            return slot.add(t);
        }
    }
    let table = TABLE.exclusive();
    let named = &table.slots[..NAMED_SLOTS];
    if let Some(slot) = probe(named, db, name, start) {
        return slot.add(t);
    }
    if let Some(slot) = (0..NAMED_SLOTS).map(|i| &named[(start + i) % NAMED_SLOTS]).find(|s| s.database.load(Relaxed) == 0) {
        slot.claim(db, name);
        return slot.add(t);
    }
    // The named slots are taken: this database's own overflow row.
    let overflow = &table.slots[NAMED_SLOTS..];
    let other = overflow.iter().find(|s| s.is(db, OTHER)).or_else(|| {
        let free = overflow.iter().find(|s| s.database.load(Relaxed) == 0)?;
        free.claim(db, OTHER);
        Some(free)
    });
    match other {
        Some(slot) => slot.add(t),
        None => {
            // More than OVERFLOW_SLOTS databases overflowing at once: say so, once per
            // backend, after releasing the lock (a WARNING may wait on the client).
            drop(table);
            warn_full();
        }
    }
}

fn warn_full() {
    thread_local! { static WARNED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) }; }
    if !WARNED.with(|w| w.replace(true)) {
        pgrx::warning!("quota.stats is full: {SLOTS} slots taken by metrics of this cluster's databases; totals of further metrics are not kept until the server restarts");
    }
}

fn probe<'t>(slots: &'t [MetricSlot], db: i64, name: &str, start: usize) -> Option<&'t MetricSlot> {
    for i in 0..slots.len() {
        let slot = &slots[(start + i) % slots.len()];
        if slot.database.load(Relaxed) == 0 {
            return None;
        }
        if slot.is(db, name) {
            return Some(slot);
        }
    }
    None
}

/// FNV-1a over the database and the name: the first slot to try.
pub fn bucket(db: i64, name: &str) -> usize {
    (crate::hotpath::subject_cache::fnv1a([&db.to_le_bytes()[..], name.as_bytes()]) % SLOTS as u64) as usize
}

// What this transaction will add at commit ------------------------------------------------

thread_local! {
    /// (subtransaction, metric, totals) not yet committed.
    static PENDING: RefCell<Vec<(pg_sys::SubTransactionId, String, Totals)>> = const { RefCell::new(Vec::new()) };
}

fn pend(metric: &str, t: Totals) {
    if !active() {
        return;
    }
    make_room(metric);
    // SAFETY: reads the current transaction state's subtransaction id; every caller runs
    // inside a transaction (an operation of a SQL function).
    let sub = unsafe { pg_sys::GetCurrentSubTransactionId() };
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        match p.iter_mut().find(|(s, m, _)| *s == sub && m == metric) {
            Some((_, _, totals)) => totals.add(&t),
            None => p.push((sub, metric.to_string(), t)),
        }
    });
}

fn now(metric: &str, t: Totals) {
    if active() {
        make_room(metric);
        add(metric, &t);
    }
}

thread_local! {
    /// Metrics this backend has seen a slot (or room for one) for: checked once each.
    static ROOM_SEEN: RefCell<std::collections::HashSet<String>> = RefCell::new(std::collections::HashSet::new());
}

/// Before a metric's first total in this backend (inside a transaction, where the
/// catalog can be read): if it has no slot and the named slots are all taken, forget the
/// slots of databases that no longer exist (`reclaim`).
fn make_room(metric: &str) {
    if ROOM_SEEN.with(|r| r.borrow().contains(metric)) {
        return;
    }
    let db = database();
    let name = slot_name(metric);
    let has_room = {
        let table = TABLE.share();
        let named = &table.slots[..NAMED_SLOTS];
        probe(named, db, name, bucket(db, name) % NAMED_SLOTS).is_some() || named.iter().any(|s| s.database.load(Relaxed) == 0)
    };
    if !has_room {
        reclaim();
    }
    ROOM_SEEN.with(|r| {
        let mut r = r.borrow_mut();
        if r.len() >= 1024 {
            r.clear();
        }
        r.insert(metric.to_string());
    });
}

/// Forget the totals of dropped databases and repack the named slots with the rest.
/// The catalog is read first, without the lock; a database dropped meanwhile keeps its
/// slots until the next time.
fn reclaim() {
    let databases: Vec<i64> = {
        let table = TABLE.share();
        let mut dbs: Vec<i64> = table.slots.iter().map(|s| s.database.load(Relaxed)).filter(|d| *d != 0).collect();
        dbs.sort_unstable();
        dbs.dedup();
        dbs
    };
    let dead: Vec<i64> = databases.into_iter().filter(|db| !database_exists(*db)).collect();
    if dead.is_empty() {
        return;
    }
    let table = TABLE.exclusive();
    let live: Vec<(i64, String, Totals)> = table.slots[..NAMED_SLOTS]
        .iter()
        .filter(|s| s.database.load(Relaxed) != 0 && !dead.contains(&s.database.load(Relaxed)))
        .map(|s| (s.database.load(Relaxed), s.name(), s.read()))
        .collect();
    for s in table.slots.iter().filter(|s| s.database.load(Relaxed) != 0) {
        let db = s.database.load(Relaxed);
        // The named region is rebuilt below; overflow rows are kept unless dead.
        if dead.contains(&db) || std::ptr::from_ref(s) < std::ptr::from_ref(&table.slots[NAMED_SLOTS]) {
            s.database.store(0, Relaxed);
            s.len.store(0, Relaxed);
            s.totals.iter().for_each(|c| c.store(0, Relaxed));
        }
    }
    let named = &table.slots[..NAMED_SLOTS];
    for (db, name, totals) in live {
        let start = bucket(db, &name) % NAMED_SLOTS;
        if let Some(slot) = (0..NAMED_SLOTS).map(|i| &named[(start + i) % NAMED_SLOTS]).find(|s| s.database.load(Relaxed) == 0) {
            slot.claim(db, &name);
            slot.add(&totals);
        }
    }
}

fn database_exists(db: i64) -> bool {
    crate::pg::catalog::has_row(pg_sys::SysCacheIdentifier::DATABASEOID, pg_sys::Oid::from(db as u32))
}

#[pg_guard]
// SAFETY: registered by `init` with a NULL argument, never read; PostgreSQL calls it in
// this backend at each transaction event; it touches this backend's pending totals and,
// under their locks, the shared tables.
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_COMMIT | pg_sys::XactEvent::XACT_EVENT_PREPARE => {
            let pending = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
            for (_, metric, t) in pending {
                add(&metric, &t);
            }
        }
        // Still inside the transaction, with its id: park its totals until it is
        // committed or rolled back, by whichever session that is (see the module comment).
        pg_sys::XactEvent::XACT_EVENT_PRE_PREPARE => {
            // SAFETY: reads the current transaction's id; assigns none.
            let xid = unsafe { pg_sys::GetTopTransactionIdIfAny() };
            if xid != pg_sys::InvalidTransactionId {
                PENDING.with(|p| {
                    let mut p = p.borrow_mut();
                    p.retain(|(_, metric, t)| !park(xid, metric, t));
                });
            }
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT => PENDING.with(|p| p.borrow_mut().clear()),
        _ => {}
    }
}

#[pg_guard]
// SAFETY: as `on_xact`, for subtransaction events: the ids are plain values, the
// argument is never read.
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    sub: pg_sys::SubTransactionId,
    parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        if p.is_empty() {
            return;
        }
        match event {
            pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB => p.iter_mut().filter(|e| e.0 == sub).for_each(|e| e.0 = parent),
            pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB => p.retain(|e| e.0 != sub),
            _ => {}
        }
    });
}

// What the operations report ---------------------------------------------------------------------

/// A consume (or a reservation's commit) of `amount`, `soft_over` if it went past a soft limit.
pub fn consumed(metric: &str, amount: i64, soft_over: bool) {
    pend(metric, Totals { consumed: amount, consumes: 1, soft_overages: soft_over as i64, ..Totals::default() });
}

/// A refusal (QT429 / QT413, raised or answered): counted, and kept in the ring of recent
/// refusals, even if the transaction rolls back.
pub fn refused(d: &Decision, tenant: Option<&str>) {
    if !active() {
        return;
    }
    now(&d.metric, Totals { exceeded: 1, ..Totals::default() });
    let entry = Refusal {
        at: crate::pg::clock::now_pg(),
        database: database(),
        subject: Name::of(Some(&d.subject)),
        tenant: Name::of(tenant),
        metric: Name::of(Some(&d.metric)),
        requested: d.requested,
        used: d.used,
        limit: d.limit_value.saturating_add(d.bonus),
        over_cap: d.reason == Reason::PerRequestCapExceeded.as_str(),
    };
    let mut ring = RECENT.exclusive();
    let at = ring.next % RECENT_SIZE;
    ring.entries[at] = entry;
    ring.next = (ring.next + 1) % (RECENT_SIZE * 2);
    ring.filled = (ring.filled + 1).min(RECENT_SIZE);
}

// The most recent refusals: `recent`.

pub fn checked(metric: &str) {
    now(metric, Totals { checks: 1, ..Totals::default() });
}

pub fn refunded(metric: &str, amount: i64) {
    pend(metric, Totals { refunded: amount, ..Totals::default() });
}

pub fn bonus_applied(metric: &str) {
    pend(metric, Totals { bonuses: 1, ..Totals::default() });
}

// Prepared transactions: `prepared`.

/// Every metric of this database with its totals, by metric name.
pub fn snapshot() -> Option<Vec<(String, Totals)>> {
    if !active() {
        return None;
    }
    settle_prepared();
    let db = database();
    let table = TABLE.share();
    let mut rows: Vec<(String, Totals)> = table.slots.iter().filter(|s| s.database.load(Relaxed) == db).map(|s| (s.name(), s.read())).collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    Some(rows)
}

/// Zero this database's totals (the slots stay claimed). False when not preloaded.
pub fn reset() -> bool {
    if !active() {
        return false;
    }
    let db = database();
    let table = TABLE.exclusive();
    for s in table.slots.iter().filter(|s| s.database.load(Relaxed) == db) {
        s.totals.iter().for_each(|c| c.store(0, Relaxed));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cut_on_char_boundaries() {
        assert_eq!(slot_name("messages"), "messages");
        let long = "é".repeat(70); // 140 bytes
        let cut = slot_name(&long);
        assert!(cut.len() <= NAME_BYTES && cut.len() == 128);
        assert!(long.starts_with(cut));
        let n = Name::of(Some(&long));
        assert!(n.cut && n.get().as_deref() == Some(cut));
        assert!(!Name::of(Some("acme")).cut);
    }

    #[test]
    fn buckets_depend_on_database_and_name() {
        assert!(bucket(1, "messages") < SLOTS);
        assert_ne!(bucket(1, "messages"), bucket(1, "tokens"));
        assert_ne!(bucket(1, "messages"), bucket(2, "messages"));
        assert_eq!(bucket(5, "x"), bucket(5, "x"));
    }

    #[test]
    fn named_buckets_leave_the_overflow_region_free() {
        for db in 1..50 {
            for m in ["a", "b", "messages", "tokens"] {
                assert!(bucket(db, m) % NAMED_SLOTS < NAMED_SLOTS);
            }
        }
        const { assert!(OVERFLOW_SLOTS > 0 && NAMED_SLOTS + OVERFLOW_SLOTS == SLOTS) };
    }

    #[test]
    fn totals_add_up() {
        let mut a = Totals { consumed: 3, consumes: 1, ..Totals::default() };
        a.add(&Totals { consumed: i64::MAX, consumes: 1, exceeded: 2, ..Totals::default() });
        assert_eq!(a, Totals { consumed: i64::MAX, consumes: 2, exceeded: 2, ..Totals::default() });
    }
}
