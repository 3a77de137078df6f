//! `quota.throttle`: a GCRA rate limit on any key, with no plan (IP addresses, API keys),
//! with redis-cell's `CL.THROTTLE` semantics (`domain::rate`). The key's one row
//! (`quota.throttles`) is locked and written in the caller's transaction: a call that
//! rolls back is not counted, and one hot key's row stays locked until the caller commits.

use crate::domain::error::{self, positive_amount, QuotaError, Result};
use crate::domain::rate::{Rate, Throttle};
use crate::domain::tenancy::Scope;
use crate::pg::{clock, privilege, roles};
use crate::storage;

pub struct ThrottleRequest<'a> {
    pub key: &'a str,
    pub max_burst: i64,
    pub count: i64,
    pub period: pgrx::datum::Interval,
    pub quantity: i64,
}

/// The longest period: ten years of days (a month has no fixed length: refused).
const MAX_PERIOD_US: i64 = 3660 * 86_400_000_000;

fn period_us(p: &pgrx::datum::Interval) -> Result<i64> {
    let us = (p.days() as i64).checked_mul(86_400_000_000).and_then(|d| d.checked_add(p.micros()));
    match us {
        Some(us) if p.months() == 0 && us > 0 && us <= MAX_PERIOD_US => Ok(us),
        _ => Err(QuotaError::invalid(
            "period",
            format!("{} months {} days {} microseconds", p.months(), p.days(), p.micros()),
            "period must be a positive interval of days, hours, minutes or seconds (no months or years), at most 3660 days",
            "Pass the rate's period, such as '1 minute' or '1 day'.",
        )),
    }
}

pub fn throttle(req: ThrottleRequest<'_>) -> Result<Throttle> {
    error::name("key", req.key)?;
    if req.quantity < 0 {
        return Err(QuotaError::invalid(
            "quantity",
            req.quantity,
            format!("quantity must be at least 0, got {}", req.quantity),
            "Pass how many units this call takes (0 reads the state).",
        ));
    }
    positive_amount("count", req.count)?;
    let period = period_us(&req.period)?;
    let rate = Rate::new(req.max_burst, req.count, period).map_err(|(argument, why)| {
        let value = if argument == "count" { req.count } else { req.max_burst };
        QuotaError::invalid(
            argument,
            value,
            format!("invalid rate: {why}"),
            "Pass max_burst >= 0, count >= 1, at most one per microsecond of the period, and a burst of at most 1000 years of the rate.",
        )
    })?;
    let scope = roles::scope()?;
    if scope == Scope::Nothing {
        return Err(QuotaError::Forbidden {
            object: "quota.throttle".into(),
            message: "this session's role is bound to tenants, and quota.tenant names none of them: its throttle keys have no tenant".into(),
            hint: "Set quota.tenant to a tenant bound to this role first (SET LOCAL quota.tenant = '...').".into(),
        });
    }
    super::pause::refuse_paused(scope.creates_in())?;
    let tenant = scope.creates_in().unwrap_or("").to_string();
    let now = clock::now_pg();
    let overflow = || QuotaError::invalid("quantity", req.quantity, "quantity is too large for this rate", "Pass a smaller quantity.");
    let increment = req.quantity.checked_mul(rate.emission_us()).ok_or_else(overflow)?;
    let decide = |tat: Option<i64>| rate.throttle(now, tat, req.quantity).ok_or_else(overflow);
    privilege::as_owner_qualified(|| {
        storage::volatile(|c| {
            // A read, or a request larger than the whole bucket: nothing to write.
            if req.quantity == 0 || increment > rate.tolerance_us() {
                return decide(storage::read_throttle(c, &tenant, req.key));
            }
            // The common case, admitted, is one statement; a refusal reads the row, which
            // the refused upsert left locked, so it is the state that refused. (Were it
            // gone, the bucket would be full: take again.)
            for _ in 0..3 {
                match storage::take_throttle(c, &tenant, req.key, now, increment, rate.tolerance_us()) {
                    Some(new_tat) => return decide(Some(new_tat - increment)),
                    None => {
                        let answer = decide(storage::read_throttle(c, &tenant, req.key))?;
                        if answer.limited {
                            return Ok(answer);
                        }
                    }
                }
            }
            // The statement and the arithmetic disagreed three times: not expected.
            Err(QuotaError::Conflict { subject: error::quoted(req.key).into_owned(), metric: "throttle".into() })
        })
    })
}

/// Delete the keys whose bucket is full again (maintenance): a row with a past TAT says
/// nothing a missing row does not, so a stream of new keys cannot grow the table without
/// bound. Returns how many were deleted.
pub fn sweep() -> i64 {
    let now = clock::now_pg();
    privilege::as_owner_qualified(|| storage::volatile(|c| storage::sweep_throttles(c, now) as i64))
}
