//! Subjects' rows shared by every backend: the hot path (`hotpath`) finds a subject's
//! plan, tenant, cycle anchor and zone here instead of probing `quota.subjects`.
//!
//! A table in shared memory, reserved at server start (`shared_preload_libraries`), of
//! `quota.subject_cache_size` entries of 232 bytes, four per bucket. Each entry is a
//! seqlock: a writer makes its sequence number odd while it writes; a reader copies the
//! entry and keeps the copy only if the number was even and unchanged. Nobody waits: a
//! busy entry is a miss. Rows too long for an entry (`DATA` bytes of subject, plan,
//! tenant and zone together) are simply not cached.
//!
//! Freshness. Every entry carries the generation that was current before its row was
//! read, and only entries of the current generation are used. A transaction that
//! changed `quota.subjects` (UPDATE, DELETE, TRUNCATE: statement trigger
//! `quota.config_changed`, sql/hotpath.sql) advances the generation once its commit is
//! visible (`XACT_EVENT_COMMIT`), so every call that starts afterwards reads the table
//! again. A row read with a snapshot older than that commit was stamped with an older
//! generation, so it is never used. The changing transaction itself neither reads nor
//! fills the cache (it must see its own changes), and it cannot be prepared for
//! two-phase commit: its commit would happen later, elsewhere, without the advance.
//! Entries also carry the database and the table's storage (relfilenode), so that
//! databases, a table dropped and created again (DROP / CREATE EXTENSION), and a table
//! rewritten (ALTER TABLE ... TYPE) never share entries. A transaction that wrote
//! subjects itself (even an INSERT) reads them and caches nothing (`hotpath`); a
//! standby, where the trigger never fires, does not use this cache.

use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;
use std::cell::Cell;
use std::sync::atomic::{fence, AtomicPtr, AtomicU64, Ordering::*};

use crate::domain::error::QuotaError;
use crate::domain::schedule::Carry;
pub use crate::storage::schema::{PlanChange, SubjectRow};

/// Bytes of subject, plan, tenant and zone an entry holds.
const DATA: usize = 120;
const WORDS: usize = DATA / 8;
const WAYS: usize = 4;
/// Window rows whose TIDs an entry remembers (by metric and period: a metric's windows
/// take adjacent slots).
const HINTS: usize = 4;

/// One cached row: [generation, storage | db << 32, anchor, lengths] and the bytes; then,
/// outside the seqlock, hints: [window start, TID | metric tag << 48] of window rows.
#[repr(C)]
struct Entry {
    seq: AtomicU64,
    generation: AtomicU64,
    owner: AtomicU64,
    anchor: AtomicU64,
    lengths: AtomicU64,
    /// A scheduled plan change's instant (when `lengths` says there is one).
    next_at: AtomicU64,
    data: [AtomicU64; WORDS],
    hints: [[AtomicU64; 2]; HINTS],
}

/// Where a subject's entry is, for its window hints.
#[derive(Clone, Copy)]
pub struct Place(usize);

#[repr(C, align(64))]
struct Header {
    /// Starts at 1; an entry of generation 0 is empty.
    generation: AtomicU64,
    entries: u64,
}

static BASE: AtomicPtr<Header> = AtomicPtr::new(std::ptr::null_mut());
static mut PREV_REQUEST: pg_sys::shmem_request_hook_type = None;
static mut PREV_STARTUP: pg_sys::shmem_startup_hook_type = None;

thread_local! {
    /// This transaction changed quota.subjects: it bypasses the cache and, at commit,
    /// advances the generation.
    static CHANGED: Cell<bool> = const { Cell::new(false) };
    /// Rotates the victim among a full bucket's entries.
    static VICTIM: Cell<usize> = const { Cell::new(0) };
}

fn entries_wanted() -> usize {
    (crate::pg::gucs::subject_cache_size().max(0) as usize) / WAYS * WAYS
}

fn bytes_wanted() -> usize {
    std::mem::size_of::<Header>() + entries_wanted() * std::mem::size_of::<Entry>()
}

/// Called from `_PG_init`: reserve the table when loaded by `shared_preload_libraries`.
pub fn init() {
    // SAFETY: _PG_init runs once per process, on its only thread, before any hook can be
    // called, so nothing reads the hook variables or PREV_* while they are set; the
    // previous hooks are kept and chained. The callbacks stay valid for the life of the
    // process (the library is never unloaded).
    unsafe {
        if !pg_sys::process_shared_preload_libraries_in_progress {
            return;
        }
        PREV_REQUEST = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(request);
        PREV_STARTUP = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(startup);
        pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut());
    }
}

#[pg_guard]
// SAFETY: installed as shmem_request_hook by `init`; PostgreSQL calls it with no
// arguments, once, in the postmaster (see the body).
unsafe extern "C-unwind" fn request() {
    // SAFETY: PostgreSQL calls the request hook once, in the postmaster, after every
    // preloaded library's _PG_init (so PREV_REQUEST is no longer written); it is the one
    // place where PostgreSQL 15 accepts RequestAddinShmemSpace.
    unsafe {
        if let Some(prev) = PREV_REQUEST {
            prev();
        }
        if entries_wanted() > 0 {
            pg_sys::RequestAddinShmemSpace(bytes_wanted());
        }
    }
}

#[pg_guard]
// SAFETY: installed as shmem_startup_hook by `init`; PostgreSQL calls it with no
// arguments once shared memory exists (see the body).
unsafe extern "C-unwind" fn startup() {
    // SAFETY: PostgreSQL calls the startup hook once shared memory exists (in the
    // postmaster; again in each child under EXEC_BACKEND), after `request` reserved
    // `bytes_wanted()`, the same size now (the setting is PGC_POSTMASTER).
    // AddinShmemInitLock (see below) serialises ShmemInitStruct with other libraries, and
    // ShmemInitStruct raises rather than return NULL when the space is missing. A new area
    // is zeroed (valid atomics: empty entries) before its header is set, and published in
    // BASE (Release) only then.
    unsafe {
        if let Some(prev) = PREV_STARTUP {
            prev();
        }
        let entries = entries_wanted();
        if entries == 0 {
            return;
        }
        let lock = &raw mut (*pg_sys::MainLWLockArray.add(ADDIN_SHMEM_INIT_LOCK)).lock;
        pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let mut found = false;
        let base = pg_sys::ShmemInitStruct(c"quota_ext subject cache".as_ptr(), bytes_wanted(), &mut found).cast::<Header>();
        if !found {
            // Zeroed entries are empty (generation 0).
            std::ptr::write_bytes(base.cast::<u8>(), 0, bytes_wanted());
            (*base).generation.store(1, Relaxed);
            (*base).entries = entries as u64;
        }
        BASE.store(base, Release);
        pg_sys::LWLockRelease(lock);
    }
}

// The index of `AddinShmemInitLock` in `MainLWLockArray`, per major (`heap::major`,
// where each major's header gives it). It serialises `ShmemInitStruct` of add-ins at
// start-up, as C extensions take it.
use super::heap::major::ADDIN_SHMEM_INIT_LOCK;

fn table() -> Option<(&'static Header, &'static [Entry])> {
    let base = BASE.load(Acquire);
    if base.is_null() {
        return None;
    }
    // SAFETY: BASE is set once at start-up (in the postmaster, inherited by every backend)
    // to an area of shared memory that stays mapped for the life of the process, holding
    // the header and `entries` entries after it. ShmemInitStruct aligns it on a cache
    // line (128 bytes), enough for Header's 64 and Entry's 8. Header's non-atomic
    // `entries` is written only before BASE is published; everything else is atomics.
    unsafe {
        let header = &*base;
        let entries = std::slice::from_raw_parts(base.add(1).cast::<Entry>(), header.entries as usize);
        Some((header, entries))
    }
}

/// The generation to stamp rows read from now on; `None` when the cache is not in use
/// (not preloaded, size 0, or this transaction changed quota.subjects). Read it before
/// taking the snapshot the rows are read with.
#[derive(Clone, Copy)]
pub struct Generation(u64);

pub fn generation() -> Option<Generation> {
    if CHANGED.with(|c| c.get()) {
        return None;
    }
    let (header, _) = table()?;
    Some(Generation(header.generation.load(Acquire)))
}

/// FNV-1a: the bucket of a subject.
pub fn fnv1a<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for part in parts {
        for b in part {
            h ^= *b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    h
}

/// The table's storage (relfilenode) and the database.
fn owner(storage: Oid) -> u64 {
    // SAFETY: reads a backend-local global, set when the backend connected to its
    // database, before any SQL function runs.
    storage.to_u32() as u64 | (unsafe { pg_sys::MyDatabaseId }.to_u32() as u64) << 32
}

/// The first entry of the subject's bucket.
fn bucket(entries: &[Entry], storage: Oid, id: &str) -> usize {
    // SAFETY: as in `owner`.
    let db = unsafe { pg_sys::MyDatabaseId }.to_u32().to_le_bytes();
    let buckets = entries.len() / WAYS;
    (fnv1a([&db[..], &storage.to_u32().to_le_bytes()[..], id.as_bytes()]) % buckets as u64) as usize * WAYS
}

/// Lengths of subject, plan, tenant (with 1 << 32 when there is one), zone, a scheduled
/// next plan (with 1 << 33 when there is one, and 1 << 34 when it carries the percentage)
/// and the pool (with 1 << 35 when there is one).
fn lengths(id: usize, plan: usize, tenant: Option<usize>, zone: usize, next: Option<(usize, bool)>, pool: Option<usize>) -> u64 {
    id as u64
        | (plan as u64) << 8
        | (tenant.unwrap_or(0) as u64) << 16
        | (zone as u64) << 24
        | (tenant.is_some() as u64) << 32
        | (next.is_some() as u64) << 33
        | (next.is_some_and(|(_, percent)| percent) as u64) << 34
        | (pool.is_some() as u64) << 35
        | (next.map_or(0, |(len, _)| len) as u64) << 40
        | (pool.unwrap_or(0) as u64) << 48
}

/// The subject's row, if an entry of generation `g` holds it.
pub fn get(g: Generation, storage: Oid, id: &str) -> Option<(SubjectRow, Place)> {
    let (_, entries) = table()?;
    if entries.is_empty() || id.len() > DATA {
        return None;
    }
    let owner = owner(storage);
    let first = bucket(entries, storage, id);
    (first..first + WAYS).find_map(|i| read(&entries[i], g, owner, id).map(|row| (row, Place(i))))
}

fn read(e: &Entry, g: Generation, owner: u64, id: &str) -> Option<SubjectRow> {
    let seq = e.seq.load(Acquire);
    if seq & 1 == 1 || e.generation.load(Relaxed) != g.0 || e.owner.load(Relaxed) != owner {
        return None;
    }
    let lengths = e.lengths.load(Relaxed);
    let len = |shift: u32| ((lengths >> shift) & 0xff) as usize;
    let (id_len, plan_len, tenant_len, zone_len, next_len, pool_len) = (len(0), len(8), len(16), len(24), len(40), len(48));
    let total = id_len + plan_len + tenant_len + zone_len + next_len + pool_len;
    if id_len != id.len() || total > DATA {
        return None;
    }
    let mut words = [0u64; WORDS];
    for (w, cell) in words.iter_mut().zip(&e.data).take(total.div_ceil(8)) {
        *w = cell.load(Relaxed);
    }
    let anchor = e.anchor.load(Relaxed) as i64;
    let next_at = e.next_at.load(Relaxed) as i64;
    fence(Acquire);
    if e.seq.load(Relaxed) != seq {
        return None;
    }
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).take(total).collect();
    if &bytes[..id_len] != id.as_bytes() {
        return None;
    }
    let text = |from: usize, len: usize| std::str::from_utf8(&bytes[from..from + len]).ok().map(str::to_string);
    let plan = text(id_len, plan_len)?;
    let tenant = if (lengths >> 32) & 1 == 1 { Some(text(id_len + plan_len, tenant_len)?) } else { None };
    let tz = crate::domain::period::parse_zone(&text(id_len + plan_len + tenant_len, zone_len)?)?;
    let next = if (lengths >> 33) & 1 == 1 {
        let carry = if (lengths >> 34) & 1 == 1 { Carry::Percent } else { Carry::Usage };
        Some(PlanChange { plan: text(id_len + plan_len + tenant_len + zone_len, next_len)?, at: next_at, carry })
    } else {
        None
    };
    let pool = if (lengths >> 35) & 1 == 1 { Some(text(total - pool_len, pool_len)?) } else { None };
    Some(SubjectRow { plan, tenant, anchor, tz, next, pool })
}

/// Keep `row` (read with a snapshot taken after `g` was read) for the subject.
pub fn put(g: Generation, storage: Oid, id: &str, row: &SubjectRow) -> Option<Place> {
    let (header, entries) = table()?;
    let size = id.len()
        + row.plan.len()
        + row.tenant.as_deref().map_or(0, str::len)
        + row.tz.name().len()
        + row.next.as_ref().map_or(0, |n| n.plan.len())
        + row.pool.as_deref().map_or(0, str::len);
    if entries.is_empty() || size > DATA {
        return None;
    }
    let owner = owner(storage);
    let first = bucket(entries, storage, id);
    let bucket = first..first + WAYS;
    if let Some(i) = bucket.clone().find(|i| read(&entries[*i], g, owner, id).is_some()) {
        return Some(Place(i)); // another backend was quicker
    }
    // A free or outdated entry, else the next in turn.
    let current = header.generation.load(Relaxed);
    let i = bucket
        .clone()
        .find(|i| entries[*i].generation.load(Relaxed) != current)
        .unwrap_or_else(|| first + VICTIM.with(|v| v.replace((v.get() + 1) % WAYS)));
    write(&entries[i], g, owner, id, row).then_some(Place(i))
}

/// Fill entry `e` (false: another backend is writing it).
fn write(e: &Entry, g: Generation, owner: u64, id: &str, row: &SubjectRow) -> bool {
    let zone = row.tz.name();
    let tenant = row.tenant.as_deref();
    let next = row.next.as_ref();
    let pool = row.pool.as_deref();
    let parts = [id, &row.plan, tenant.unwrap_or(""), zone, next.map_or("", |n| n.plan.as_str()), pool.unwrap_or("")];
    let seq = e.seq.load(Relaxed);
    if seq & 1 == 1 || e.seq.compare_exchange(seq, seq + 1, Acquire, Relaxed).is_err() {
        return false;
    }
    fence(Release);
    let mut bytes = [0u8; WORDS * 8];
    let mut at = 0;
    for p in parts {
        bytes[at..at + p.len()].copy_from_slice(p.as_bytes());
        at += p.len();
    }
    for (cell, chunk) in e.data.iter().zip(bytes.chunks_exact(8)) {
        cell.store(u64::from_le_bytes(chunk.try_into().expect("8 bytes")), Relaxed);
    }
    e.anchor.store(row.anchor as u64, Relaxed);
    e.lengths.store(
        lengths(
            id.len(),
            row.plan.len(),
            tenant.map(str::len),
            zone.len(),
            next.map(|n| (n.plan.len(), n.carry == Carry::Percent)),
            pool.map(str::len),
        ),
        Relaxed,
    );
    e.next_at.store(next.map_or(0, |n| n.at) as u64, Relaxed);
    e.owner.store(owner, Relaxed);
    e.generation.store(g.0, Relaxed);
    e.hints.iter().for_each(|h| h[1].store(0, Relaxed));
    e.seq.store(seq + 2, Release);
    true
}

// Window hints ------------------------------------------------------------------------
// The TID of the subject's current window row for a metric's limit (metric and period;
// `rank` is the limit's place among the metric's, so that a metric's windows take
// adjacent slots and do not evict each other): the hot path fetches the row
// there instead of descending the primary key, and checks that the row it finds there is
// visible and has the window's key, as a probe would have found it. A hint is only a
// guess (the row may have moved, the entry changed hands): anything else found there,
// or nothing, means a probe.

fn tag(metric: &str, period: &str) -> u64 {
    fnv1a([metric.as_bytes(), &[0], period.as_bytes()]) & 0xffff
}

fn slot(metric: &str, rank: usize) -> usize {
    (fnv1a([metric.as_bytes()]) as usize).wrapping_add(rank) % HINTS
}

/// Which window row a hint is for.
#[derive(Clone, Copy)]
pub struct HintKey<'a> {
    pub metric: &'a str,
    pub period: &'a str,
    /// The limit's place among the metric's limits.
    pub rank: usize,
    /// The window's start (PostgreSQL microseconds).
    pub start: i64,
}

/// A TID and a metric's tag in one word (offset 0, never a real TID, means none).
fn pack(tid: pg_sys::ItemPointerData, tag: u64) -> u64 {
    (tid.ip_blkid.bi_hi as u64) << 16 | tid.ip_blkid.bi_lo as u64 | (tid.ip_posid as u64) << 32 | tag << 48
}

fn unpack(word: u64, tag: u64) -> Option<pg_sys::ItemPointerData> {
    if word >> 48 != tag || (word >> 32) & 0xffff == 0 {
        return None;
    }
    // SAFETY: a zeroed ItemPointerData is a valid (invalid) TID, a plain C struct of
    // integers; its fields are set next.
    let mut tid: pg_sys::ItemPointerData = unsafe { std::mem::zeroed() };
    tid.ip_blkid.bi_hi = (word >> 16) as u16;
    tid.ip_blkid.bi_lo = word as u16;
    tid.ip_posid = (word >> 32) as u16;
    Some(tid)
}

/// The remembered TID of the window row `k`.
pub fn hint(at: Place, k: HintKey<'_>) -> Option<pg_sys::ItemPointerData> {
    let (_, entries) = table()?;
    let h = &entries.get(at.0)?.hints[slot(k.metric, k.rank)];
    let (window, word) = (h[0].load(Relaxed), h[1].load(Relaxed));
    if window != k.start as u64 {
        return None;
    }
    unpack(word, tag(k.metric, k.period))
}

/// Remember where the window row `k` is (its root TID).
pub fn set_hint(at: Place, k: HintKey<'_>, tid: pg_sys::ItemPointerData) {
    let Some((_, entries)) = table() else { return };
    let Some(e) = entries.get(at.0) else { return };
    let h = &e.hints[slot(k.metric, k.rank)];
    h[1].store(0, Relaxed);
    h[0].store(k.start as u64, Relaxed);
    h[1].store(pack(tid, tag(k.metric, k.period)), Relaxed);
}

/// From the trigger on quota.subjects: this transaction changed subjects.
pub fn subjects_changed() {
    if table().is_some() {
        CHANGED.with(|c| c.set(true));
    }
}

#[pg_guard]
// SAFETY: registered by `init` with a NULL argument, which is never read; PostgreSQL
// calls it in this backend at each transaction event, and it touches only thread-locals
// and the shared header's atomic generation.
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_PRE_PREPARE if CHANGED.with(|c| c.get()) => {
            crate::pg::ereport::raise(QuotaError::NotAvailable {
                feature: "prepared transactions",
                message: "a transaction that changed quota.subjects cannot be prepared".into(),
                hint: "Change subjects (assign_plan, UPDATE or DELETE on quota.subjects) in a transaction that commits directly, or set quota.subject_cache_size = 0.".into(),
            });
        }
        // The guard also forgets the change (an unchanged commit falls through to `_`).
        XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT if CHANGED.with(|c| c.replace(false)) => {
            if let Some((header, _)) = table() {
                header.generation.fetch_add(1, AcqRel);
            }
        }
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT | XACT_EVENT_PREPARE => CHANGED.with(|c| c.set(false)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn entry() -> Entry {
        // SAFETY: all-zero atomics are valid (an empty entry).
        unsafe { std::mem::zeroed() }
    }

    fn row(plan: &str, tenant: Option<&str>, anchor: i64, zone: chrono_tz::Tz) -> SubjectRow {
        SubjectRow { plan: plan.into(), tenant: tenant.map(str::to_string), anchor, tz: zone, next: None, pool: None }
    }

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a([&b""[..]]), 0xcbf29ce484222325);
        assert_eq!(fnv1a([&b"a"[..]]), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a([&b"foo"[..]]), fnv1a([&b"f"[..], &b"oo"[..]]));
    }

    #[test]
    fn an_entry_answers_only_for_its_subject_owner_and_generation() {
        let e = entry();
        let r = row("pro", Some("acme"), 42, chrono_tz::Asia::Tokyo);
        assert!(read(&e, Generation(1), 7, "u1").is_none(), "empty");
        assert!(write(&e, Generation(3), 7, "u1", &r));
        assert_eq!(read(&e, Generation(3), 7, "u1"), Some(r.clone()));
        assert!(read(&e, Generation(4), 7, "u1").is_none(), "other generation");
        assert!(read(&e, Generation(3), 8, "u1").is_none(), "other database or table");
        assert!(read(&e, Generation(3), 7, "u2").is_none(), "other subject, same length");
        assert!(read(&e, Generation(3), 7, "u10").is_none(), "other subject");
        let none = row("free", None, -1, chrono_tz::UTC);
        assert!(write(&e, Generation(3), 7, "u1", &none));
        assert_eq!(read(&e, Generation(3), 7, "u1"), Some(none), "no tenant is not an empty tenant");
        let empty = row("free", Some(""), -1, chrono_tz::UTC);
        assert!(write(&e, Generation(3), 7, "u1", &empty));
        assert_eq!(read(&e, Generation(3), 7, "u1"), Some(empty));
        // A scheduled plan change travels with the row.
        let scheduled = SubjectRow { next: Some(PlanChange { plan: "team".into(), at: 123_456, carry: Carry::Percent }), ..r.clone() };
        assert!(write(&e, Generation(3), 7, "u1", &scheduled));
        assert_eq!(read(&e, Generation(3), 7, "u1"), Some(scheduled));
        let usage = SubjectRow { next: Some(PlanChange { plan: "t".into(), at: -5, carry: Carry::Usage }), ..r.clone() };
        assert!(write(&e, Generation(3), 7, "u1", &usage));
        assert_eq!(read(&e, Generation(3), 7, "u1"), Some(usage.clone()));
        // So does the pool, after everything else.
        let pooled = SubjectRow { pool: Some("team-1".into()), ..usage };
        assert!(write(&e, Generation(3), 7, "u1", &pooled));
        assert_eq!(read(&e, Generation(3), 7, "u1"), Some(pooled));
        let empty_pool = SubjectRow { pool: Some(String::new()), ..r };
        assert!(write(&e, Generation(3), 7, "u1", &empty_pool));
        assert_eq!(read(&e, Generation(3), 7, "u1"), Some(empty_pool));
    }

    #[test]
    fn a_busy_entry_is_a_miss_and_cannot_be_written() {
        let e = entry();
        assert!(write(&e, Generation(1), 1, "u1", &row("a", None, 0, chrono_tz::UTC)));
        e.seq.fetch_add(1, SeqCst); // a writer in the middle of writing
        assert!(read(&e, Generation(1), 1, "u1").is_none());
        assert!(!write(&e, Generation(1), 1, "u1", &row("b", None, 0, chrono_tz::UTC)));
    }

    #[test]
    fn readers_never_see_a_half_written_entry() {
        // Two writers keep replacing the row with one of two consistent versions; readers
        // must only ever see one of them whole (or miss).
        let e = Arc::new(entry());
        let a = row("plan-a", Some("tenant-a"), 1, chrono_tz::Europe::Paris);
        let b = row("b", None, 2_000_000_000, chrono_tz::America::Argentina::ComodRivadavia);
        assert!(write(&e, Generation(1), 9, "subject-x", &a));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let started = Arc::new(std::sync::Barrier::new(3));
        let writers: Vec<_> = [a.clone(), b.clone()]
            .into_iter()
            .map(|r| {
                let (e, stop, started) = (e.clone(), stop.clone(), started.clone());
                std::thread::spawn(move || {
                    started.wait();
                    while !stop.load(Relaxed) {
                        write(&e, Generation(1), 9, "subject-x", &r);
                        (0..200).for_each(|_| std::hint::spin_loop());
                    }
                })
            })
            .collect();
        started.wait();
        let (mut hits, mut torn, mut reads) = (0, 0, 0u64);
        let until = std::time::Instant::now() + std::time::Duration::from_millis(300);
        while std::time::Instant::now() < until || hits == 0 {
            reads += 1;
            match read(&e, Generation(1), 9, "subject-x") {
                Some(r) if r == a || r == b => hits += 1,
                Some(_) => torn += 1,
                None => {}
            }
            if reads > 50_000_000 {
                break;
            }
        }
        stop.store(true, Relaxed);
        writers.into_iter().for_each(|w| w.join().unwrap());
        assert_eq!(torn, 0);
        assert!(hits > 0, "the readers saw the entry at least once");
    }

    #[test]
    fn tids_round_trip_with_their_metric_tag() {
        // SAFETY: a zeroed ItemPointerData is a valid TID, a plain C struct of integers.
        let mut tid: pg_sys::ItemPointerData = unsafe { std::mem::zeroed() };
        tid.ip_blkid.bi_hi = 3;
        tid.ip_blkid.bi_lo = 0xfffe;
        tid.ip_posid = 17;
        let word = pack(tid, tag("messages", "day"));
        let back = unpack(word, tag("messages", "day")).expect("same tag");
        assert_eq!((back.ip_blkid.bi_hi, back.ip_blkid.bi_lo, back.ip_posid), (3, 0xfffe, 17));
        assert!(unpack(word, tag("messages", "day") ^ 1).is_none(), "another metric's tag");
        assert_ne!(tag("tokens", "day"), tag("tokens", "month"), "a metric's windows have their own tags");
        assert!(unpack(0, 0).is_none(), "an empty hint");
    }

    #[test]
    fn a_metrics_windows_take_adjacent_slots() {
        for metric in ["messages", "tokens", "requests"] {
            let slots: Vec<usize> = (0..HINTS).map(|rank| slot(metric, rank)).collect();
            let mut distinct = slots.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), HINTS, "{metric}: {slots:?}");
        }
    }
}
