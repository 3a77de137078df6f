//! `quota.maintenance()`: sweep lapsed holds everywhere, one window per subtransaction.

use crate::domain::error::{self, Result};
use crate::pg::clock;
use crate::storage;

use super::window::WindowOp;

/// Sweep lapsed holds everywhere (they also expire lazily on the next access). Safe to
/// run concurrently and from pg_cron. Returns how many holds expired. Each window is
/// swept in a subtransaction: one that fails is logged at WARNING and left for the next
/// run, and the sweep goes on with the rest.
pub fn maintenance() -> Result<i64> {
    let expired = expire_holds()?;
    // Throttle keys whose bucket is full again (0.7.0; not counted in the result), in a
    // subtransaction like each window above: a failure is a WARNING, and the holds stay
    // expired.
    if crate::pg::installed::at_least(crate::pg::installed::THROTTLES) {
        if let Err(why) = crate::pg::subtransaction::run(super::throttle::sweep) {
            pgrx::warning!("quota.maintenance: could not delete full throttle buckets: {why}; left for the next run");
        }
    }
    Ok(expired)
}

fn expire_holds() -> Result<i64> {
    storage::volatile(|c| {
        let now = clock::now();
        let mut expired = 0;
        let mut failed = 0i64;
        loop {
            let batch = storage::lapsed_windows(c, now, 1000, failed);
            if batch.is_empty() {
                return Ok(expired);
            }
            let mut progressed = false;
            for storage::Lapsed { subject, metric, period, window } in batch {
                let swept = crate::pg::subtransaction::run(|| -> Result<usize> {
                    let Some(s) = storage::find_subject(c, &subject)? else { return Ok(0) };
                    // A paused tenant's holds stay as they are (a WARNING, left for a later
                    // run): its state is being copied to another node (`ops::pause`).
                    super::pause::refuse_paused(s.tenant.as_deref())?;
                    let s = s.in_force(now);
                    // A period the plan no longer limits still has its holds expired.
                    let limit = super::reservations::hold_limit(&storage::limits(c, &s.plan, &metric)?, period.as_deref().unwrap_or(""));
                    Ok(WindowOp::of(&s, &metric, &limit, window, now).lock(c)?.1)
                })
                .and_then(|r| r.map_err(|e| e.message()));
                match swept {
                    Ok(n) => {
                        expired += n as i64;
                        progressed |= n > 0;
                    }
                    Err(why) => {
                        failed += 1;
                        pgrx::warning!(
                            "quota.maintenance: could not expire the holds of subject \"{}\" on {}: {why}; left for the next run",
                            error::quoted(&subject),
                            error::quoted(&metric)
                        );
                    }
                }
            }
            if !progressed {
                return Ok(expired);
            }
        }
    })
}
