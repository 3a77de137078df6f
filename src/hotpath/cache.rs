//! The hot path's per-backend caches of subjects' rows and plan limits, and the rule that
//! keeps them fresh.
//!
//! Under READ COMMITTED, subjects' rows and plan limits are cached. Subjects live in the
//! shared-memory cache (`subject_cache`) when quota_ext is preloaded, else here, like
//! plan limits. Every statement that changes `quota.subjects` (UPDATE, DELETE, TRUNCATE)
//! or `quota.plan_limits` sends a relcache invalidation at COMMIT (trigger
//! `quota.config_changed`, sql/hotpath.sql), and each call first takes the pending
//! invalidations, so a change committed before a call starts is seen by it, as a new
//! statement's snapshot would. Entries are loaded with the latest snapshot and kept only
//! if no invalidation arrived meanwhile (`pg::invalidation`).

use pgrx::pg_sys::{self, Oid};
use std::cell::RefCell;
use std::collections::HashMap;

use super::subject_cache::{self, Generation};
use super::tables::{self, Tables};
use crate::domain::limits::Limit;
use crate::pg::invalidation;
use crate::storage::schema::SubjectRow;

/// Subjects' rows and plan limits as last read (READ COMMITTED only).
#[derive(Default)]
pub struct Config {
    pub subjects: HashMap<String, SubjectRow>,
    /// (plan, metric) -> its limits, in period order (at least one). Only limits that
    /// exist are kept: a metric the plan does not limit is an error on the general path,
    /// and caching every misspelling would let callers fill memory.
    pub limits: HashMap<(String, String), Vec<Limit>>,
}

/// Bound on cached subjects per backend (about 1 MB); the cache starts over when full.
pub const MAX_SUBJECTS: usize = 10_000;
/// Bound on cached plan limits per backend; the cache starts over when full.
pub const MAX_LIMITS: usize = 4_096;

thread_local! {
    static CONFIG: RefCell<Option<Config>> = const { RefCell::new(None) };
}

/// A relcache invalidation: forget the tables if it may concern them, and then the
/// cached rows too. Without resolved tables (a call that resolved them while
/// invalidations arrived keeps them for itself only, but may still have filled CONFIG)
/// it is unknown whether `relid` is one of ours: forget the cached rows too. Keeping them
/// once let a limit lowered right after ALTER EXTENSION UPDATE go unseen.
fn forget(relid: Oid) {
    if tables::forget(relid) {
        CONFIG.with(|c| *c.borrow_mut() = None);
    }
}

/// Start following invalidations (once per backend); returns the current generation.
pub fn register() -> u64 {
    invalidation::listen(forget)
}

/// No invalidation arrived since `generation` was read.
pub fn unchanged_since(generation: u64) -> bool {
    invalidation::unchanged_since(generation)
}

/// A value from `Config`, or `load`ed and (if no invalidation arrived meanwhile) kept.
pub fn remembered<T: Clone>(get: impl Fn(&Config) -> Option<T>, load: impl FnOnce() -> Option<T>, keep: impl FnOnce(&mut Config, &T)) -> Option<T> {
    if let Some(v) = CONFIG.with(|c| c.borrow().as_ref().and_then(&get)) {
        return Some(v);
    }
    let generation = register();
    let v = load()?;
    if unchanged_since(generation) {
        CONFIG.with(|c| keep(c.borrow_mut().get_or_insert_with(Config::default), &v));
    }
    Some(v)
}

/// Where a call may find subjects' rows and plan limits.
#[derive(Clone, Copy)]
pub enum Cache {
    /// Not READ COMMITTED: read everything with the statement's snapshot.
    None,
    /// Subjects and limits in this backend's `Config`.
    Local,
    /// Subjects in `subject_cache` (shared memory), limits in `Config`.
    Shared(Generation),
}

impl Cache {
    /// READ COMMITTED (where caches may serve): take pending invalidations first, and
    /// read the shared cache's generation before any snapshot that may fill it.
    pub fn for_this_call() -> Cache {
        // In parallel mode (a parallel plan, or force_parallel_mode) PostgreSQL refuses a
        // latest snapshot, which filling a cache reads with: use the statement's.
        // SAFETY: reads the transaction's isolation level and parallel state.
        if unsafe { pg_sys::XactIsoLevel > pg_sys::XACT_READ_COMMITTED as i32 || pg_sys::IsInParallelMode() } {
            return Cache::None;
        }
        invalidation::accept();
        // A standby replays changes without firing the trigger that advances the shared
        // cache's generation; the relcache invalidations that the local caches follow
        // are replayed, though.
        // SAFETY: reads shared recovery state.
        if unsafe { pg_sys::RecoveryInProgress() } {
            return Cache::Local;
        }
        subject_cache::generation().map_or(Cache::Local, Cache::Shared)
    }

    /// Rows this transaction wrote (an INSERT fires no invalidation) are read, not cached.
    pub fn for_tables(self, t: &Tables) -> Cache {
        if !matches!(self, Cache::None) && super::heap::written_here(t.subjects.oid) {
            Cache::None
        } else {
            self
        }
    }
}
