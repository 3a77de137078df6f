//! quota.idempotency_keys, and the lock that serialises one key's calls.

use chrono::{DateTime, Utc};
use pgrx::pg_sys::{self, PgBuiltInOids as T};
use pgrx::spi::SpiClient;

use super::{run, ts, Stmt};

static FIND_KEY: Stmt = Stmt {
    sql: "SELECT operation, response::text FROM quota.idempotency_keys WHERE subject = $1 AND idempotency_key = $2",
    types: &[T::TEXTOID, T::TEXTOID],
};
static SAVE_KEY: Stmt = Stmt {
    sql: "INSERT INTO quota.idempotency_keys (subject, idempotency_key, operation, response, created_at)
          VALUES ($1, $2, $3, $4::jsonb, $5)",
    types: &[T::TEXTOID, T::TEXTOID, T::TEXTOID, T::TEXTOID, T::TIMESTAMPTZOID],
};

/// The lock tag's fourth field for idempotency keys. SQL's advisory-lock functions only
/// make tags with 1 (one bigint key) or 2 (two integer keys) there, so no role can take,
/// and so block, these locks from SQL.
const KEY_LOCK_SPACE: u16 = 7274;

/// Serialise calls that use the same idempotency key (until the transaction ends): an
/// exclusive transaction-level lock in the advisory lock method, keyed by this database
/// and 64 bits of the SHA-256 of subject and key. A collision would only make two keys
/// wait for each other; with a cryptographic hash nobody can make one on purpose.
pub fn lock_key(_c: &mut SpiClient<'_>, subject: &str, key: &str) {
    use sha2::Digest;
    let digest = sha2::Sha256::new().chain_update(subject.as_bytes()).chain_update([0u8]).chain_update(key.as_bytes()).finalize();
    let hash = u64::from_le_bytes(digest[..8].try_into().expect("a SHA-256 digest has 32 bytes"));
    let tag = pg_sys::LOCKTAG {
        // SAFETY: reads the backend's database id.
        locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        locktag_field2: (hash >> 32) as u32,
        locktag_field3: hash as u32,
        locktag_field4: KEY_LOCK_SPACE,
        locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
        locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
    };
    // SAFETY: a transaction-scoped (not session) lock that waits; the lock manager
    // releases it at the end of the transaction, or raises on deadlock or lock_timeout.
    unsafe {
        pg_sys::LockAcquire(&tag, pg_sys::ExclusiveLock as pg_sys::LOCKMODE, false, false);
    }
}

/// The operation and stored response of an earlier call with this key, if any.
pub fn find_key(c: &mut SpiClient<'_>, subject: &str, key: &str) -> Option<(String, String)> {
    let table = run(c, &FIND_KEY, &[subject.into(), key.into()]);
    if table.is_empty() {
        return None;
    }
    let row = table.first();
    Some((row.get(1).ok().flatten()?, row.get(2).ok().flatten()?))
}

pub fn save_key(c: &mut SpiClient<'_>, subject: &str, key: &str, operation: &str, response: &str, at: DateTime<Utc>) {
    run(c, &SAVE_KEY, &[subject.into(), key.into(), operation.into(), response.into(), ts(at)]);
}
