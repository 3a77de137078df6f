//! Every `quota.*` setting, in one place. Each is documented in the README's settings table.

use pgrx::prelude::*;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};
use std::ffi::{c_char, c_void, CStr, CString};

/// `quota.default_plan`: the plan an unknown subject joins on first consume, refund or
/// bonus. Unset: unknown subjects raise QT404.
pub static DEFAULT_PLAN: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// `quota.clock_override`: a timestamptz that replaces the transaction's `now()` when
/// choosing windows and stamping the ledger. Superuser only; for tests and demos.
pub static CLOCK_OVERRIDE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// `quota.notify_every_consume`: also send a `consumed` event for every consume.
pub static NOTIFY_EVERY_CONSUME: GucSetting<bool> = GucSetting::<bool>::new(false);

/// `quota.tenant`: the tenant this transaction acts for (see `tenancy`). Set it with
/// `SET LOCAL quota.tenant = '...'` or `set_config('quota.tenant', '...', true)`.
pub static TENANT: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// `quota.hot_path`: let the common check and consume bypass SPI (see `hotpath`). Off
/// sends every call through the general path: the answers are the same, only slower.
pub static HOT_PATH: GucSetting<bool> = GucSetting::<bool>::new(true);

/// `quota.subject_cache_size`: entries of the shared subject cache (`subject_cache`),
/// reserved at server start; 0 turns it off.
pub static SUBJECT_CACHE_SIZE: GucSetting<i32> = GucSetting::<i32>::new(131_072);

/// `quota.notify_payload`: what a `quota_events` notification carries. `id` (default):
/// only the outbox row's id, so that listeners, who need no privilege to LISTEN, read the
/// event through row-level security. `full`: the whole JSON event (0.3.0's payload, for
/// compatibility; superuser only, as it shows every tenant's events to every listener).
pub static NOTIFY_PAYLOAD: GucSetting<NotifyPayload> = GucSetting::<NotifyPayload>::new(NotifyPayload::Id);

#[derive(Clone, Copy, PartialEq, Eq, PostgresGucEnum)]
pub enum NotifyPayload {
    #[name = c"id"]
    Id,
    #[name = c"full"]
    Full,
}

/// `quota.max_metadata_bytes`: the largest `metadata` a consume, reserve or commit
/// accepts (its stored size). Superuser-set.
pub static MAX_METADATA_BYTES: GucSetting<i32> = GucSetting::<i32>::new(16_384);

/// `quota.pool_slices`: how many slices a pool's window is split into for its members'
/// draws (docs/pools.md); 0 turns slicing off. Superuser-set.
pub static POOL_SLICES: GucSetting<i32> = GucSetting::<i32>::new(8);

pub fn pool_slices() -> i32 {
    POOL_SLICES.get().max(0)
}

pub fn notify_full_payload() -> bool {
    NOTIFY_PAYLOAD.get() == NotifyPayload::Full
}

pub fn max_metadata_bytes() -> usize {
    MAX_METADATA_BYTES.get().max(0) as usize
}

pub fn subject_cache_size() -> i32 {
    SUBJECT_CACHE_SIZE.get()
}

pub fn hot_path() -> bool {
    HOT_PATH.get()
}

pub fn tenant() -> Option<String> {
    raw_string(&TENANT).map(|s| s.to_string_lossy().into_owned())
}

pub fn notify_every_consume() -> bool {
    NOTIFY_EVERY_CONSUME.get()
}

pub fn init() {
    GucRegistry::define_bool_guc(
        c"quota.notify_every_consume",
        c"Send a consumed event for every consume.",
        c"Off: events are sent for thresholds, soft overages, bonuses, resets and reservations only. On: every consume also sends a consumed event (and writes an outbox row).",
        &NOTIFY_EVERY_CONSUME,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"quota.hot_path",
        c"Serve the common quota_check and quota_consume by direct index and heap access.",
        c"On (default): a check or single-metric consume of a stored subject whose window row exists skips SPI and the executor. Off: every call takes the general path, with the same answers. A switch for comparisons and diagnosis.",
        &HOT_PATH,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"quota.notify_payload",
        c"What a quota_events notification carries: id (the outbox row's id) or full (the JSON event).",
        c"id: listeners read the event from quota.events, under row-level security (LISTEN needs no privilege, so a full payload would show every tenant's events to any role that can connect). full: the 0.3.0 payload, for compatibility; events too long for a notification then send their id.",
        &NOTIFY_PAYLOAD,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"quota.max_metadata_bytes",
        c"Largest metadata (jsonb, stored size in bytes) a consume, reserve or commit accepts.",
        c"Larger metadata is refused with SQLSTATE 22023. Keeps one call from writing megabytes into the ledger.",
        &MAX_METADATA_BYTES,
        0,
        1 << 30,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"quota.pool_slices",
        c"Slices a pool's window is split into, so that members in separate sessions draw from it at once (0: off).",
        c"A member's consume draws from one slice of each window of a shared pool (two members or more; the pool's allowance, handed out in parts) instead of locking the pool's one counter row; a slice that runs dry is refilled from the pool, and all slices are gathered back before a refusal, so answers stay exact. 0: every consume locks the pool's counter row (the comparison the benchmark makes). See docs/pools.md.",
        &POOL_SLICES,
        0,
        64,
        GucContext::Suset,
        GucFlags::default(),
    );
    // PostgreSQL accepts PGC_POSTMASTER settings only while preloading (FATAL otherwise).
    // SAFETY: reads a process-global flag PostgreSQL sets around loading
    // shared_preload_libraries; _PG_init runs on the process's only thread.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        define_subject_cache_size();
    }
    GucRegistry::define_string_guc(
        c"quota.tenant",
        c"Tenant this session acts for; scopes every quota function and table.",
        c"Set per transaction with SET LOCAL. When set, quota functions and the tables' row-level security show only this tenant's subjects. When unset, members of quota_admin see every subject and other roles only subjects without a tenant.",
        &TENANT,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"quota.default_plan",
        c"Plan that unknown subjects join automatically.",
        c"When set, quota_consume, quota_refund and apply_bonus create an unknown subject on this plan, and quota_check and quota_status evaluate it without writing. When unset, an unknown subject raises SQLSTATE QT404.",
        &DEFAULT_PLAN,
        GucContext::Suset,
        GucFlags::default(),
    );
    // SAFETY: the only hook is `check_clock_override`, a #[pg_guard] function, so a Rust
    // panic in it becomes a PostgreSQL ERROR instead of unwinding through PostgreSQL.
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"quota.clock_override",
            c"Timestamp that replaces now() for quota windows (tests and demos).",
            c"A timestamptz literal. Empty or unset means the transaction start time. Only superusers can set or read it.",
            &CLOCK_OVERRIDE,
            GucContext::Suset,
            GucFlags::SUPERUSER_ONLY,
            Some(check_clock_override),
            None,
            None,
        );
    }
    // SAFETY: a NUL-terminated static string, called from _PG_init as PostgreSQL expects
    // (after this library's settings are defined).
    unsafe { pg_sys::MarkGUCPrefixReserved(c"quota".as_ptr()) };
}

fn define_subject_cache_size() {
    GucRegistry::define_int_guc(
        c"quota.subject_cache_size",
        c"Subjects whose rows the hot path keeps in shared memory (232 bytes each).",
        c"Reserved at server start when quota_ext is in shared_preload_libraries: the hot path then finds a subject's plan, tenant, cycle anchor and zone there instead of reading quota.subjects. Size it above the number of active subjects. 0 turns the cache off.",
        &SUBJECT_CACHE_SIZE,
        0,
        16 * 1024 * 1024,
        GucContext::Postmaster,
        GucFlags::default(),
    );
}

/// The current value of a string setting, copied (None when unset or empty). A copy,
/// because PostgreSQL frees the value when the setting next changes, which can happen
/// within a statement (`set_config()`, a function's `SET` clause, a rollback to a
/// savepoint).
pub fn raw_string(setting: &'static GucSetting<Option<CString>>) -> Option<CString> {
    // SAFETY: `as_ptr` points at the setting's variable, the `char *` that PostgreSQL's
    // GUC machinery stores the current value in (registered by `init`); this backend's
    // only thread reads it.
    let ptr = unsafe { *setting.as_ptr() };
    if ptr.is_null() {
        return None;
    }
    // SAFETY: a non-NULL value is a NUL-terminated string owned by the GUC machinery,
    // valid until the setting changes; it is copied here, before anything can change it.
    let s = unsafe { CStr::from_ptr(ptr) };
    (!s.is_empty()).then(|| s.to_owned())
}

pub fn default_plan() -> Option<String> {
    raw_string(&DEFAULT_PLAN).map(|s| s.to_string_lossy().into_owned())
}

/// Refuse a value that is not a timestamptz at SET time, with PostgreSQL's own parser.
#[pg_guard]
// SAFETY: registered as the check hook of quota.clock_override; PostgreSQL calls it with a
// valid pointer to the proposed value (see the body), and `extra` is never used.
unsafe extern "C-unwind" fn check_clock_override(newval: *mut *mut c_char, _extra: *mut *mut c_void, _source: pg_sys::GucSource::Type) -> bool {
    // SAFETY: PostgreSQL passes a valid pointer to the proposed value, for the call.
    let value = unsafe { *newval };
    // SAFETY: a non-NULL proposed value is a NUL-terminated string, so its first byte
    // can be read.
    if value.is_null() || unsafe { *value } == 0 {
        return true;
    }
    // SAFETY: as above: non-NULL and NUL-terminated, alive for the call.
    let text = unsafe { CStr::from_ptr(value) };
    if crate::pg::clock::parse_timestamptz(text).is_some_and(crate::pg::clock::in_range) {
        true
    } else {
        // SAFETY: how a check hook reports (PostgreSQL's GUC_check_errdetail): the code,
        // and a detail string that PostgreSQL reads right after the hook returns; pstrdup
        // copies the static text into the current memory context, which outlives that.
        unsafe {
            pg_sys::GUC_check_errcode(pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE as i32);
            pg_sys::GUC_check_errdetail_string = pg_sys::pstrdup(
                c"quota.clock_override must be a timestamptz between the years 1 and 9999, such as '2026-03-08 01:59:00-05', or empty to use now()."
                    .as_ptr(),
            );
        }
        false
    }
}
