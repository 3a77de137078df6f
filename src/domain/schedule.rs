//! Scheduled plan changes (limits v2): `assign_plan(..., effective_at => ...)` keeps the
//! subject on its plan until that instant; from then on the next plan is in force. No job
//! runs at the boundary: every call computes the plan in force from the stored schedule,
//! and the first call that writes after the instant stores it. Pure Rust, no PostgreSQL.
//!
//! When the change falls inside a window, that window's usage carries over as the caller
//! chose: `Usage` keeps it as it is (a downgrade may leave the subject over its new
//! limit); `Percent` keeps the share of the limit used (goquota's `ApplyTierChange`):
//! `used * new_limit / old_limit`, rounded down.

use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carry {
    Usage,
    Percent,
}

impl Carry {
    pub const NAMES: &'static str = "usage, percent";
    pub fn as_str(self) -> &'static str {
        match self {
            Carry::Usage => "usage",
            Carry::Percent => "percent",
        }
    }
}

impl FromStr for Carry {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "usage" => Ok(Carry::Usage),
            "percent" => Ok(Carry::Percent),
            _ => Err(()),
        }
    }
}

/// A window's usage after a change from a limit of `old` to one of `new` inside it.
pub fn carried(carry: Carry, used: i64, old: i64, new: i64) -> i64 {
    match carry {
        Carry::Usage => used,
        // A window the old plan did not limit (or limited to 0) keeps its usage.
        Carry::Percent if old <= 0 => used,
        Carry::Percent => ((used as i128 * new.max(0) as i128) / old as i128).min(i64::MAX as i128) as i64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_keeps_the_share_rounded_down() {
        assert_eq!(carried(Carry::Percent, 80, 100, 10), 8, "80% of a 10-limit");
        assert_eq!(carried(Carry::Percent, 7, 10, 3), 2, "70% of 3 is 2.1: rounded down");
        assert_eq!(carried(Carry::Percent, 5, 10, 1000), 500, "an upgrade keeps the share too");
        assert_eq!(carried(Carry::Usage, 80, 100, 10), 80);
        assert_eq!(carried(Carry::Percent, 80, 0, 10), 80, "no old limit: kept");
        assert_eq!(carried(Carry::Percent, i64::MAX, 1, i64::MAX), i64::MAX, "no overflow");
        assert_eq!("percent".parse::<Carry>(), Ok(Carry::Percent));
        assert!("all".parse::<Carry>().is_err());
    }
}
