//! Quotas on application tables: `quota.enforce_on_insert` attaches a row trigger that
//! consumes quota for every inserted row, in the inserting transaction, so no client,
//! ORM, batch job or COPY can get around it. Optionally a DELETE gives the usage back.
//!
//! The trigger is BEFORE INSERT FOR EACH ROW: a refused row raises QT429/QT413 and the
//! whole statement (multi-row INSERT or COPY) fails, so nothing is inserted or counted.
//! All metrics of a table are consumed per row in one all-or-nothing call.

//!
//! Files: `rules` (a table's quotas, read and cached), `row` (a row's subject, amount
//! and key), `charges` (what each trigger event does, and the row charges that refunds
//! give back), `moves` (rows an UPDATE moves between partitions), `config`
//! (`enforce_on_insert` / `enforce_off`). The SQL functions are in `api::tables`.

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::{Spi, SpiClient};

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::CStr;
use std::rc::Rc;

use crate::domain::error::{non_empty, QuotaError};
use crate::domain::tokens::Encoding;
use crate::ops::{self, ConsumeRequest};
use crate::pg::installed;
use crate::storage::{self, Stmt};

type QResult<T> = crate::domain::error::Result<T>;

mod charges;
pub mod config;
mod moves;
mod row;
mod rules;

use charges::*;
use moves::*;
use row::*;
use rules::*;

/// A column of the enforced table, kept by number so that a rename is followed. `name`
/// is its current name at the partition root (None: dropped), `stored` the name it had
/// when the quota was set (for messages).
#[derive(Clone, Debug)]
struct Column {
    name: Option<String>,
    stored: String,
}

/// What one row costs under one quota.
#[derive(Clone, Debug)]
enum Cost {
    Constant(i64),
    Column(Column),
    Tokens(Column, Encoding),
}

/// One metric enforced on a table.
#[derive(Clone, Debug)]
struct Rule {
    /// The table the quota was set on (for messages).
    table: String,
    metric: String,
    subject: Column,
    cost: Cost,
    refund_on_delete: bool,
}

/// Every quota of one table (a partition root or a plain table), as the triggers need it.
#[derive(Debug, Default)]
struct TableRules {
    root: pg_sys::Oid,
    /// The root's name, quoted as regclass output does.
    root_name: String,
    rules: Vec<Rule>,
    partitioned: bool,
    /// Current names of the primary key's columns, which identify a row's charge.
    key: Option<Vec<String>>,
}

impl TableRules {
    fn refunds(&self) -> bool {
        self.rules.iter().any(|r| r.refund_on_delete)
    }
}

/// What the trigger does for one event on an enforced table.
pub fn fire(trigger: &PgTrigger<'_>) -> QResult<()> {
    let table = trigger.relid().unwrap_or(pg_sys::InvalidOid);
    let event = trigger.event();
    // quota.enforce_on_insert attaches row triggers (and a statement trigger for
    // TRUNCATE); attached by hand as a statement trigger for a row event it would have no
    // row to read.
    if !event.fired_for_row() && !event.fired_by_truncate() {
        return Err(QuotaError::NotAvailable {
            feature: "quota.enforce_trigger",
            message: format!(
                "quota.enforce_trigger must fire FOR EACH ROW on INSERT, UPDATE and DELETE (trigger \"{}\")",
                crate::domain::error::quoted(trigger.name().unwrap_or_default())
            ),
            hint: "Drop this trigger: quota.enforce_on_insert creates the triggers a quota needs.".into(),
        });
    }
    if event.fired_by_insert() {
        on_insert(trigger, table)
    } else if event.fired_by_delete() {
        on_delete(trigger, table)
    } else if event.fired_by_update() {
        on_update(trigger, table)
    } else if event.fired_by_truncate() {
        on_truncate(table)
    } else {
        Ok(())
    }
}
