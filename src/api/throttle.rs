//! `quota.throttle`: a rate limit on any key, with no plan (0.7.0). The logic is in
//! `ops::throttle` and `domain::rate`.

use pgrx::datum::Interval;
use pgrx::prelude::*;

use crate::domain::error::required;
use crate::ops::{self, ThrottleRequest};
use crate::pg::ereport::OrRaise;

fn interval(us: i64) -> Interval {
    Interval::new(0, 0, us).unwrap_or_else(|e| unreachable!("a rate's durations fit an interval: {e:?}"))
}

/// redis-cell's `CL.THROTTLE key max_burst count period quantity`: `limited`, `limit`
/// (`max_burst + 1`), `remaining`, `retry_after` (NULL when admitted, or when the request
/// is larger than the limit; redis-cell's -1) and `reset_after`.
#[pg_extern(volatile, parallel_unsafe)]
// pgrx reads the column names from the name!(...) in the signature: no alias possible.
#[allow(clippy::type_complexity)]
fn throttle(
    key: Option<&str>,
    max_burst: Option<i64>,
    count: Option<i64>,
    period: Option<Interval>,
    quantity: default!(Option<i64>, 1),
) -> TableIterator<
    'static,
    (name!(limited, bool), name!(limit, i64), name!(remaining, i64), name!(retry_after, Option<Interval>), name!(reset_after, Interval)),
> {
    let t = ops::throttle(ThrottleRequest {
        key: required("key", key).or_raise(),
        max_burst: required("max_burst", max_burst).or_raise(),
        count: required("count", count).or_raise(),
        period: required("period", period).or_raise(),
        quantity: required("quantity", quantity).or_raise(),
    })
    .or_raise();
    TableIterator::once((t.limited, t.limit, t.remaining, t.retry_after_us.map(interval), interval(t.reset_after_us)))
}
