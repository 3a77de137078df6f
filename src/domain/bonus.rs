//! Bonus rules: which bonus a subject may receive, and why one is refused.
//!
//! Pure Rust. The store supplies the facts (the rule for this plan/metric/kind, the plan's
//! daily cap, how many bonuses the subject already had today); this module decides.
//! Reference uniqueness is enforced by unique indexes in the store, because only the
//! database can make it exact under concurrency; this module says which scope applies.

use serde::Serialize;

/// Where a bonus reference must be unique.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceScope {
    /// Usable once across all subjects (a payment id).
    Global,
    /// Usable once per subject (a questionnaire id, a referred user).
    Subject,
    /// Not checked: the same reference may be used again.
    None,
}

impl ReferenceScope {
    pub const NAMES: &'static str = "global, subject, none";
    pub fn as_str(self) -> &'static str {
        match self {
            ReferenceScope::Global => "global",
            ReferenceScope::Subject => "subject",
            ReferenceScope::None => "none",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "global" => Some(ReferenceScope::Global),
            "subject" => Some(ReferenceScope::Subject),
            "none" => Some(ReferenceScope::None),
            _ => None,
        }
    }
    /// The seeds' rules: a payment id is usable once ever, across all subjects; other
    /// kinds (questionnaire, referral, ...) once per subject.
    pub fn default_for(kind: &str) -> Self {
        if kind == "payment" {
            ReferenceScope::Global
        } else {
            ReferenceScope::Subject
        }
    }
}

/// Why a bonus was not applied (the `reason` of `quota.bonus_result`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No rule for this plan, metric and kind.
    NoRule,
    /// The subject already had the plan's maximum number of bonuses today.
    DailyCapReached,
    /// The reference was already rewarded (globally or for this subject, per the scope).
    ReferenceAlreadyUsed,
    /// The metric has no window a bonus can raise now: only windows that open at first use
    /// and are not open, or rate limits.
    NoOpenWindow,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NoRule => "no_rule",
            Refusal::DailyCapReached => "daily_cap_reached",
            Refusal::ReferenceAlreadyUsed => "reference_already_used",
            Refusal::NoOpenWindow => "no_open_window",
        }
    }
}

/// The `reason` of an applied bonus.
pub const APPLIED: &str = "applied";

/// A rule as stored for a plan, metric and kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BonusRule {
    pub amount: i64,
    pub scope: ReferenceScope,
}

/// Decide from the rule and the daily count, before the reference is claimed.
/// Returns the amount to grant.
pub fn decide(rule: Option<BonusRule>, cap_per_day: Option<i32>, bonuses_today: i32) -> Result<BonusRule, Refusal> {
    let rule = rule.ok_or(Refusal::NoRule)?;
    if let Some(cap) = cap_per_day {
        if bonuses_today >= cap {
            return Err(Refusal::DailyCapReached);
        }
    }
    Ok(rule)
}

/// Whether a rule with this scope needs a reference to be given.
pub fn needs_reference(scope: ReferenceScope) -> bool {
    scope != ReferenceScope::None
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: BonusRule = BonusRule { amount: 5, scope: ReferenceScope::Subject };

    #[test]
    fn seed_scopes() {
        assert_eq!(ReferenceScope::default_for("payment"), ReferenceScope::Global);
        assert_eq!(ReferenceScope::default_for("questionnaire"), ReferenceScope::Subject);
        assert_eq!(ReferenceScope::default_for("referral"), ReferenceScope::Subject);
        assert!(needs_reference(ReferenceScope::Global));
        assert!(!needs_reference(ReferenceScope::None));
        for s in [ReferenceScope::Global, ReferenceScope::Subject, ReferenceScope::None] {
            assert_eq!(ReferenceScope::parse(s.as_str()), Some(s));
        }
        assert_eq!(ReferenceScope::parse("tenant"), None);
    }

    #[test]
    fn unknown_kind_has_no_rule() {
        assert_eq!(decide(None, Some(3), 0), Err(Refusal::NoRule));
        assert_eq!(Refusal::NoRule.as_str(), "no_rule");
    }

    #[test]
    fn daily_cap_of_three() {
        assert_eq!(decide(Some(Q), Some(3), 0), Ok(Q));
        assert_eq!(decide(Some(Q), Some(3), 2), Ok(Q));
        assert_eq!(decide(Some(Q), Some(3), 3), Err(Refusal::DailyCapReached));
        assert_eq!(decide(Some(Q), None, 1000), Ok(Q), "no cap set");
        assert_eq!(decide(Some(Q), Some(0), 0), Err(Refusal::DailyCapReached));
    }
}
