//! Pools (0.8.0): a team's shared quota. A subject belongs to at most one pool, itself a
//! subject; a consume must fit every level of the chain, all or nothing. This module holds
//! the rules that need no server: which memberships are allowed (no cycle, at most
//! `MAX_LEVELS` levels, one tenant), how a level is named in answers and hints, and how
//! much allowance a slice of a hot pool is granted at a refill.

use crate::domain::error::{quoted, QuotaError};
use crate::domain::limits::{Enforcement, Limit, Usage};
use crate::domain::period::Period;

/// A member, its pool, that pool's pool and one more.
pub const MAX_LEVELS: usize = 4;

/// Why a membership is refused (each is SQLSTATE 22023).
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The pool is the member itself, or one of the pool's own pools is the member.
    Cycle,
    /// The chain would have more than `MAX_LEVELS` levels.
    TooDeep { levels: usize },
    /// The pool belongs to another tenant (or the two differ in having one).
    OtherTenant,
}

/// May `member` (with `below` levels of members of its own) join `pool`, whose chain of
/// pools upwards is `above` (the pool first, then its pool...)? Tenants must be equal:
/// an untenanted pool takes only untenanted members.
pub fn may_join(member: &str, member_tenant: Option<&str>, below: usize, above: &[(String, Option<String>)]) -> Result<(), Refusal> {
    if above.iter().any(|(id, _)| id == member) {
        return Err(Refusal::Cycle);
    }
    let levels = below + 1 + above.len();
    if levels > MAX_LEVELS {
        return Err(Refusal::TooDeep { levels });
    }
    match above.first() {
        Some((_, tenant)) if tenant.as_deref() != member_tenant => Err(Refusal::OtherTenant),
        _ => Ok(()),
    }
}

impl Refusal {
    pub fn error(&self, member: &str, pool: &str) -> QuotaError {
        let (m, p) = (quoted(member), quoted(pool));
        let (message, hint) = match self {
            Refusal::Cycle => (
                format!("subject \"{m}\" cannot join pool \"{p}\": \"{p}\" is \"{m}\" or draws from it"),
                "A pool chain must not loop: choose a pool above the subject, or first take the pool out of the subject's chain with quota.set_pool(<pool>, NULL).".to_string(),
            ),
            Refusal::TooDeep { levels } => (
                format!("subject \"{m}\" cannot join pool \"{p}\": the chain would have {levels} levels, at most {MAX_LEVELS} are allowed"),
                "Chains are at most a member, its pool, that pool's pool and one more: join a pool higher up, or flatten the chain.".to_string(),
            ),
            Refusal::OtherTenant => (
                format!("subject \"{m}\" cannot join pool \"{p}\": they belong to different tenants"),
                "A pool takes members of its own tenant only (an untenanted pool, untenanted members): choose a pool of the subject's tenant.".to_string(),
            ),
        };
        QuotaError::invalid("pool", pool, message, hint)
    }
}

/// How much a dry slice is granted when it is refilled for `amount`: an even share of
/// what the pool has left over twice the slices (so that a pool far from its limit is
/// refilled rarely, and one near it hands out little at a time), at least `amount`, at
/// most what is free. None: the pool cannot cover `amount` (gather the slices first).
pub fn grant(free: i64, amount: i64, slices: i32) -> Option<i64> {
    if amount > free {
        return None;
    }
    let share = free / (2 * i64::from(slices.max(1)));
    Some(share.max(amount).min(free))
}

/// Is a pool window at `level` drawn from in slices (`slices` of them)? A shared pool's
/// (level 1 and up, two members or more) calendar window with a hard limit, while slicing
/// is on. A pool of one member is that member's second limit: nothing contends for it.
/// Rate limits, soft limits and first-use windows are decided on the pool's counter row.
pub fn sliced(level: usize, limit: &Limit, slices: i32, shared: bool) -> bool {
    let calendar = !matches!(limit.period, Period::Rate(_) | Period::FirstUse(_));
    level > 0 && shared && slices > 0 && calendar && limit.enforcement == Enforcement::Hard
}

/// A pool window's usage counting its slices (`used`, `granted` summed over them): what
/// they drew is used, what they were granted is no longer held by reservations.
pub fn with_slices(u: Usage, used: i64, granted: i64) -> Usage {
    Usage { used: u.used.saturating_add(used), reserved: (u.reserved - granted).max(0), ..u }
}

/// Does the pool's limit still cover everything it counted and handed out (its counter
/// row's `used + reserved`, slices' grants included)? Not after the limit went down:
/// draws then go through the pool's counter, which gathers the slices back.
pub fn covers(counter: Usage, limit: &Limit) -> bool {
    counter.used.checked_add(counter.reserved).is_some_and(|total| total <= counter.effective_limit(limit))
}

/// Which slice this session draws from: spread by its backend number (small and dense,
/// so that up to `slices` sessions each have their own), the same for every call of one
/// backend (so a transaction's draws meet on one slice row).
pub fn slice_of(backend: u32, slices: i32) -> i32 {
    (backend % slices.max(1) as u32) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(ids: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
        ids.iter().map(|(i, t)| (i.to_string(), t.map(str::to_string))).collect()
    }

    #[test]
    fn a_cycle_is_refused() {
        assert_eq!(may_join("a", None, 0, &chain(&[("a", None)])), Err(Refusal::Cycle));
        assert_eq!(may_join("a", None, 1, &chain(&[("b", None), ("a", None)])), Err(Refusal::Cycle));
        assert_eq!(may_join("a", None, 0, &chain(&[("b", None)])), Ok(()));
    }

    #[test]
    fn at_most_four_levels() {
        let three = chain(&[("p1", None), ("p2", None), ("p3", None)]);
        assert_eq!(may_join("m", None, 0, &three), Ok(()), "member + three pools = 4 levels");
        assert_eq!(may_join("m", None, 1, &three), Err(Refusal::TooDeep { levels: 5 }), "a member of m counts too");
        let four = chain(&[("p1", None), ("p2", None), ("p3", None), ("p4", None)]);
        assert_eq!(may_join("m", None, 0, &four), Err(Refusal::TooDeep { levels: 5 }));
        assert_eq!(may_join("m", None, 3, &chain(&[("p", None)])), Err(Refusal::TooDeep { levels: 5 }));
        assert_eq!(may_join("m", None, 2, &chain(&[("p", None)])), Ok(()));
    }

    #[test]
    fn one_tenant_per_pool() {
        assert_eq!(may_join("m", Some("t1"), 0, &chain(&[("p", Some("t2"))])), Err(Refusal::OtherTenant));
        assert_eq!(
            may_join("m", Some("t1"), 0, &chain(&[("p", None)])),
            Err(Refusal::OtherTenant),
            "an untenanted pool takes untenanted members only"
        );
        assert_eq!(may_join("m", None, 0, &chain(&[("p", Some("t1"))])), Err(Refusal::OtherTenant));
        assert_eq!(may_join("m", Some("t1"), 0, &chain(&[("p", Some("t1"))])), Ok(()));
    }

    #[test]
    fn refusals_are_22023_and_quote_a_prefix() {
        let long = "x".repeat(5000);
        let e = Refusal::Cycle.error(&long, "p");
        assert_eq!(e.sqlstate(), "22023");
        assert!(e.message().len() < 400, "{}", e.message());
        assert!(!Refusal::OtherTenant.error("m", "p").hint().is_empty());
    }

    #[test]
    fn grants_cover_the_amount_and_never_exceed_what_is_free() {
        assert_eq!(grant(1600, 1, 8), Some(100));
        assert_eq!(grant(10, 3, 8), Some(3), "near the limit, only the amount");
        assert_eq!(grant(10, 10, 8), Some(10));
        assert_eq!(grant(9, 10, 8), None);
        assert_eq!(grant(0, 0, 8), Some(0));
        assert_eq!(grant(i64::MAX, 1, 0), Some(i64::MAX / 2), "0 slices counts as one");
        for (free, amount, slices) in [(100, 7, 3), (5, 5, 64), (1_000_000, 999_999, 2)] {
            let g = grant(free, amount, slices).unwrap();
            assert!(g >= amount && g <= free);
        }
    }

    #[test]
    fn only_hard_calendar_windows_of_pools_are_sliced() {
        use crate::domain::limits::Source;
        let limit = |period: Period, enforcement| Limit {
            period,
            limit_value: 10,
            enforcement,
            per_request_max: None,
            alerts: vec![],
            source: Source::Plan,
            burst: 0,
        };
        assert!(sliced(1, &limit(Period::Day, Enforcement::Hard), 8, true));
        assert!(sliced(3, &limit(Period::Lifetime, Enforcement::Hard), 8, true));
        assert!(!sliced(1, &limit(Period::Day, Enforcement::Hard), 8, false), "a pool of one member");
        assert!(!sliced(0, &limit(Period::Day, Enforcement::Hard), 8, true), "the member's own window");
        assert!(!sliced(1, &limit(Period::Day, Enforcement::Hard), 0, true), "slicing off");
        assert!(!sliced(1, &limit(Period::Day, Enforcement::Soft), 8, true));
        assert!(!sliced(1, &limit("per 1 minute".parse().unwrap(), Enforcement::Hard), 8, true));
        assert!(!sliced(1, &limit("5 hours".parse().unwrap(), Enforcement::Hard), 8, true));
        let counter = Usage { used: 10, reserved: 80, ..Usage::default() };
        assert!(covers(counter, &Limit { limit_value: 90, ..limit(Period::Day, Enforcement::Hard) }));
        assert!(!covers(counter, &Limit { limit_value: 89, ..limit(Period::Day, Enforcement::Hard) }), "the limit went down");
        assert_eq!(with_slices(counter, 30, 70), Usage { used: 40, reserved: 10, ..counter });
        assert_eq!(with_slices(counter, 0, 100).reserved, 0, "never negative");
    }

    #[test]
    fn a_backend_keeps_its_slice() {
        assert_eq!(slice_of(17, 8), 1);
        assert_eq!(slice_of(17, 8), slice_of(17, 8));
        assert_eq!(slice_of(17, 0), 0);
        assert!((0..1000).all(|p| (0..8).contains(&slice_of(p, 8))));
    }
}
