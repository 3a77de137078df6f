//! Idempotency keys: a call with a key that was used before answers what the first call
//! answered, and writes nothing.

use chrono::{DateTime, Utc};
use pgrx::spi::SpiClient;

use crate::domain::decision::Decision;
use crate::domain::error::{QuotaError, Result};
use crate::storage;

/// The stored answer of an earlier call with this key, marked as a replay. The key is
/// locked first (a transaction-scoped lock on subject + key), so a concurrent call with
/// the same key waits here until the first commits or aborts, whatever metrics or
/// windows the two calls touch; in READ COMMITTED it then sees the stored answer.
/// A key reused for another operation or other metrics is 22023.
pub fn replay(c: &mut SpiClient<'_>, subject: &str, key: &str, operation: &str, metrics: &[&str]) -> Result<Option<Vec<Decision>>> {
    storage::lock_key(c, subject, key);
    let Some((op, response)) = storage::find_key(c, subject, key) else {
        return Ok(None);
    };
    if op != operation {
        return Err(reused(subject, key, format!("a {op}")));
    }
    if operation == "reserve" {
        return Ok(Some(Vec::new()));
    }
    let decisions: Vec<Decision> = storage::stored_json("quota.idempotency_keys", "response", &response)?;
    let mut stored: Vec<&str> = decisions.iter().map(|d| d.metric.as_str()).collect();
    let mut asked = metrics.to_vec();
    stored.sort_unstable();
    asked.sort_unstable();
    if stored != asked {
        return Err(reused(subject, key, format!("a request on {}", stored.join(", "))));
    }
    Ok(Some(decisions.into_iter().map(Decision::replayed).collect()))
}

/// The error for a key already used by `what` (another operation or other metrics).
pub fn reused(subject: &str, key: &str, what: String) -> QuotaError {
    QuotaError::invalid(
        "idempotency_key",
        key,
        format!("idempotency key \"{key}\" was already used by {what} for subject \"{subject}\""),
        "Use a distinct idempotency key per request.",
    )
}

/// Remember the answer of the first call with this key.
pub fn save(c: &mut SpiClient<'_>, subject: &str, key: &str, operation: &str, response: &impl serde::Serialize, now: DateTime<Utc>) {
    storage::save_key(c, subject, key, operation, &serde_json::to_string(response).expect("responses serialise"), now);
}
