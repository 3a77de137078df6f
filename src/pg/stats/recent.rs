//! The most recent refusals, in shared memory, for `quota.recent_refusals`.

use super::*;

/// How many refusals the ring keeps (all databases together).
pub const RECENT_SIZE: usize = 1024;

/// A text value of up to `NAME_BYTES`; `len < 0` is NULL.
#[derive(Clone, Copy)]
pub(super) struct Name {
    pub(super) len: i16,
    /// The text was longer than NAME_BYTES and is kept cut.
    pub(super) cut: bool,
    pub(super) bytes: [u8; NAME_BYTES],
}

impl Name {
    pub(super) fn of(text: Option<&str>) -> Name {
        let mut n = Name { len: -1, cut: false, bytes: [0; NAME_BYTES] };
        if let Some(full) = text {
            let t = slot_name(full);
            n.bytes[..t.len()].copy_from_slice(t.as_bytes());
            n.len = t.len() as i16;
            n.cut = t.len() < full.len();
        }
        n
    }
    pub(super) fn get(&self) -> Option<String> {
        (self.len >= 0).then(|| String::from_utf8_lossy(&self.bytes[..self.len as usize]).into_owned())
    }
}

#[derive(Clone, Copy)]
pub(super) struct Refusal {
    pub(super) at: pg_sys::TimestampTz,
    pub(super) database: i64,
    pub(super) subject: Name,
    pub(super) tenant: Name,
    pub(super) metric: Name,
    pub(super) requested: i64,
    pub(super) used: i64,
    pub(super) limit: i64,
    pub(super) over_cap: bool,
}

#[derive(Clone, Copy)]
pub struct Recent {
    pub(super) next: usize,
    pub(super) filled: usize,
    pub(super) entries: [Refusal; RECENT_SIZE],
}

impl Default for Recent {
    fn default() -> Self {
        let empty = Refusal {
            at: 0,
            database: 0,
            subject: Name::of(None),
            tenant: Name::of(None),
            metric: Name::of(None),
            requested: 0,
            used: 0,
            limit: 0,
            over_cap: false,
        };
        Recent { next: 0, filled: 0, entries: [empty; RECENT_SIZE] }
    }
}

// SAFETY: plain integers and byte arrays (Copy), no pointers, which would mean nothing
// in another process, and nothing to drop; read and written only under its PgLwLock.
unsafe impl PGRXSharedMemory for Recent {}

/// One recorded refusal, as `quota.recent_refusals()` returns it.
pub struct RefusalRow {
    pub at: pg_sys::TimestampTz,
    pub subject: String,
    pub tenant: Option<String>,
    /// The tenant's name was longer than what is kept: only administrators see the row.
    pub tenant_cut: bool,
    pub metric: String,
    pub requested: i64,
    pub used: i64,
    pub limit: i64,
    pub reason: &'static str,
}

/// This database's recent refusals, newest first; None when not preloaded.
pub fn recent() -> Option<Vec<RefusalRow>> {
    if !active() {
        return None;
    }
    let db = database();
    let ring = RECENT.share();
    let newest = ring.next % RECENT_SIZE;
    let rows = (1..=ring.filled)
        .map(|back| &ring.entries[(newest + RECENT_SIZE - back) % RECENT_SIZE])
        .filter(|e| e.database == db)
        .map(|e| RefusalRow {
            at: e.at,
            subject: e.subject.get().unwrap_or_default(),
            tenant: e.tenant.get(),
            tenant_cut: e.tenant.cut,
            metric: e.metric.get().unwrap_or_default(),
            requested: e.requested,
            used: e.used,
            limit: e.limit,
            reason: if e.over_cap { Reason::PerRequestCapExceeded.as_str() } else { Reason::QuotaExceeded.as_str() },
        })
        .collect();
    Some(rows)
}
