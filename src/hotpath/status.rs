//! What the hot path did in this backend, for `quota.hot_path_status()`: which path
//! served each check and consume, and why the hot path steps aside, if it does.

use std::cell::Cell;

use super::tables::{self, Aside};

thread_local! {
    static HOT: Cell<i64> = const { Cell::new(0) };
    static GENERAL: Cell<i64> = const { Cell::new(0) };
}

/// Which path served a call.
pub enum Path {
    Hot,
    General,
}

/// Count a check or consume (`operation`) served by `path`; with
/// `client_min_messages = debug2` the hot path also says so.
pub fn served(path: Path, operation: &str) {
    let counter = match path {
        Path::Hot => &HOT,
        Path::General => &GENERAL,
    };
    counter.with(|c| c.set(c.get() + 1));
    if let Path::Hot = path {
        note(format_args!("{operation}: served by the hot path"));
    }
}

/// A DEBUG2 note (`SET client_min_messages = debug2` shows what the hot path did),
/// formatted only when someone will see it.
pub fn note(what: std::fmt::Arguments) {
    // SAFETY: reads the backend's message settings.
    if unsafe { pgrx::pg_sys::message_level_is_interesting(pgrx::pg_sys::DEBUG2 as _) } {
        pgrx::debug2!("{what}");
    }
}

/// The reason given when the database's extension is older than the library.
pub fn older_extension() -> Aside {
    Aside { table: "quota".into(), check: "extension older than library" }
}

/// This backend's view of the hot path, resolving the tables now.
pub struct Status {
    pub enabled: bool,
    pub checks: bool,
    pub consumes: bool,
    pub aside: Option<Aside>,
    pub hot_calls: i64,
    pub general_calls: i64,
}

pub fn status() -> Status {
    let enabled = crate::pg::gucs::hot_path();
    crate::pg::invalidation::accept();
    let (checks, consumes, aside) = if !crate::pg::installed::is_current() {
        (false, false, Some(older_extension()))
    } else {
        match tables::tables() {
            Err(why) => (false, false, Some(why)),
            Ok(t) => match &t.writes {
                Ok(()) => (true, true, None),
                Err(why) => (true, false, Some(why.clone())),
            },
        }
    };
    Status {
        enabled,
        checks: enabled && checks,
        consumes: enabled && consumes,
        aside,
        hot_calls: HOT.with(Cell::get),
        general_calls: GENERAL.with(Cell::get),
    }
}
