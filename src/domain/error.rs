//! Every error a caller can cause: its SQLSTATE, message, JSON DETAIL and HINT.
//!
//! Pure Rust, so the payloads are checked by plain `cargo test`. `ereport.rs` turns a
//! `QuotaError` into a PostgreSQL ERROR. XX000 is never used here: it is reserved for bugs.

use serde_json::{json, Value};

use crate::domain::decision::{iso, Decision};

/// SQLSTATE of a hard-limit refusal (think HTTP 429).
pub const QUOTA_EXCEEDED: &str = "QT429";
/// SQLSTATE of a request over the per-request cap (think HTTP 413).
pub const OVER_REQUEST_CAP: &str = "QT413";
/// SQLSTATE of an unknown subject when no default plan is set (think HTTP 404).
pub const UNKNOWN_SUBJECT: &str = "QT404";
/// SQLSTATE of a call for a tenant that is paused on this node: being moved to another
/// node, or moved (think HTTP 503; `domain::pause`).
pub const TENANT_PAUSED: &str = "QT503";
/// invalid_parameter_value
pub const INVALID_ARGUMENT: &str = "22023";
/// null_value_not_allowed
pub const NULL_ARGUMENT: &str = "22004";
/// object_not_in_prerequisite_state
pub const NOT_AVAILABLE: &str = "55000";
/// insufficient_privilege
pub const FORBIDDEN: &str = "42501";
/// serialization_failure: retry the transaction
pub const CONFLICT: &str = "40001";
/// restrict_violation: UPDATE, DELETE or TRUNCATE on the append-only ledger (raised by
/// the ledger's trigger, sql/ledger.sql)
pub const LEDGER_APPEND_ONLY: &str = "23001";
/// unique_violation: a tenant move whose subject ids (or tenant, or global bonus
/// references) already exist on the target node (raised by sql/move.sql)
pub const MOVE_CLASH: &str = "23505";
/// data_corrupted: a value stored in one of quota's own tables cannot be decoded (a
/// period name the code does not know, a NULL in a column it needs). Never a default.
pub const DATA_CORRUPTED: &str = "XX001";

/// Every SQLSTATE this project raises itself. The README's error table lists each one,
/// and a test holds the two together.
pub const OWN_SQLSTATES: &[&str] = &[
    QUOTA_EXCEEDED,
    OVER_REQUEST_CAP,
    UNKNOWN_SUBJECT,
    TENANT_PAUSED,
    INVALID_ARGUMENT,
    NULL_ARGUMENT,
    NOT_AVAILABLE,
    FORBIDDEN,
    CONFLICT,
    LEDGER_APPEND_ONLY,
    MOVE_CLASH,
    DATA_CORRUPTED,
];

/// PostgreSQL's own SQLSTATEs that a caller can get from quota functions: malformed input
/// of an argument's type (22P02: an IP address, a uuid, jsonb), a number out of its
/// type's range (22003), a write in a read-only transaction (25006), lock_timeout
/// (55P03), deadlock (40P01), statement_timeout or cancel (57014). Listed in the README.
pub const POSTGRES_SQLSTATES: &[&str] = &["22P02", "22003", "25006", "55P03", "40P01", "57014"];

#[derive(Debug, Clone, PartialEq)]
pub enum QuotaError {
    /// A hard limit would be crossed. Nothing was consumed.
    Exceeded(Box<Decision>),
    /// The request is larger than the limit's per-request cap. Nothing was consumed.
    OverRequestCap(Box<Decision>),
    /// The subject does not exist and `quota.default_plan` is not set.
    UnknownSubject { subject: String },
    /// An argument is out of its domain (unknown name, negative amount, overflow...).
    Invalid { argument: &'static str, value: String, message: String, hint: String },
    /// A required argument is NULL.
    Null { argument: &'static str },
    /// A feature needs server set-up first (shared_preload_libraries).
    NotAvailable { feature: &'static str, message: String, hint: String },
    /// The session's role lacks a right the operation needs on an object.
    Forbidden { object: String, message: String, hint: String },
    /// A quota on a table refers to a column that was dropped: rows are refused until an
    /// administrator fixes or removes the quota (fail closed).
    BrokenRule { table: String, metric: String, column: String },
    /// A window's counter row changed while this call held it locked and was writing it
    /// (not expected: the lock excludes other writers). The transaction must be retried.
    Conflict { subject: String, metric: String },
    /// A stored value of quota's own state cannot be decoded (`storage::schema`). Both
    /// paths raise this instead of guessing a value.
    Corrupt { table: &'static str, column: &'static str, value: String },
    /// The tenant the call acts for is paused on this node (`domain::pause`). Nothing was
    /// done.
    Paused(Box<crate::domain::pause::Pause>),
    /// `quota.await_tenant_quiet` for a tenant that is not paused (55000).
    NotPaused { tenant: String },
    /// `quota.await_tenant_quiet` timed out (55P03): transactions that started before it
    /// are still running (their pids), or prepared transactions are pending (their gids).
    NotQuiet { tenant: String, waited_ms: i64, pids: Vec<i32>, prepared: Vec<String> },
    /// An error of the consume a quota's trigger ran for a row inserted into `table`
    /// (refusals and unknown subjects, see `on_table`): the same SQLSTATE, code and HINT;
    /// the message and DETAIL also name the table and the trigger.
    OnTable { table: String, trigger: String, error: Box<QuotaError> },
}

pub type Result<T> = std::result::Result<T, QuotaError>;

impl QuotaError {
    /// Shorthand for an `Invalid` error. The DETAIL's `value` is the caller's value, cut
    /// to a short prefix when it is longer than any name may be (see `quoted`).
    pub fn invalid(argument: &'static str, value: impl ToString, message: impl Into<String>, hint: impl Into<String>) -> Self {
        let value = value.to_string();
        let short = quoted(&value).into_owned();
        let (mut message, mut hint) = (message.into(), hint.into());
        if short != value {
            // Callers word their message around the value: quote it by its prefix there too.
            message = message.replace(&value, &short);
            hint = hint.replace(&value, &short);
        }
        QuotaError::Invalid { argument, value: short, message, hint }
    }

    /// The error a quota's trigger raises for a row of `table`: a refusal (QT429, QT413)
    /// or an unknown subject (QT404) names the table and the trigger, so that the
    /// application sees which of its inserts was refused. Other errors stay as they are
    /// (those about the table name it already).
    pub fn on_table(self, table: &str, trigger: &str) -> Self {
        match self {
            QuotaError::Exceeded(_) | QuotaError::OverRequestCap(_) | QuotaError::UnknownSubject { .. } => {
                QuotaError::OnTable { table: table.to_string(), trigger: trigger.to_string(), error: Box::new(self) }
            }
            other => other,
        }
    }

    pub fn sqlstate(&self) -> &'static str {
        match self {
            QuotaError::OnTable { error, .. } => error.sqlstate(),
            QuotaError::Exceeded(_) => QUOTA_EXCEEDED,
            QuotaError::OverRequestCap(_) => OVER_REQUEST_CAP,
            QuotaError::UnknownSubject { .. } => UNKNOWN_SUBJECT,
            QuotaError::Invalid { .. } => INVALID_ARGUMENT,
            QuotaError::Null { .. } => NULL_ARGUMENT,
            QuotaError::NotAvailable { .. } => NOT_AVAILABLE,
            QuotaError::Forbidden { .. } => FORBIDDEN,
            QuotaError::Conflict { .. } => CONFLICT,
            QuotaError::BrokenRule { .. } => NOT_AVAILABLE,
            QuotaError::Corrupt { .. } => DATA_CORRUPTED,
            QuotaError::Paused(_) => TENANT_PAUSED,
            QuotaError::NotPaused { .. } => NOT_AVAILABLE,
            QuotaError::NotQuiet { .. } => "55P03",
        }
    }

    /// The short code in the DETAIL, stable for programs.
    pub fn code(&self) -> &'static str {
        match self {
            QuotaError::OnTable { error, .. } => error.code(),
            QuotaError::Exceeded(d) if d.reason == "rate_limited" => "rate_limited",
            QuotaError::Exceeded(_) => "quota_exceeded",
            QuotaError::OverRequestCap(_) => "per_request_cap_exceeded",
            QuotaError::UnknownSubject { .. } => "unknown_subject",
            QuotaError::Invalid { .. } => "invalid_argument",
            QuotaError::Null { .. } => "null_argument",
            QuotaError::Conflict { .. } => "concurrent_change",
            QuotaError::NotAvailable { .. } => "not_available",
            QuotaError::Forbidden { .. } => "forbidden",
            QuotaError::BrokenRule { .. } => "enforcement_broken",
            QuotaError::Corrupt { .. } => "data_corrupted",
            QuotaError::Paused(_) => "tenant_paused",
            QuotaError::NotPaused { .. } => "tenant_not_paused",
            QuotaError::NotQuiet { .. } => "tenant_not_quiet",
        }
    }

    pub fn message(&self) -> String {
        match self {
            QuotaError::OnTable { table, trigger, error } => {
                format!("{} (row inserted into table {table}, trigger \"{}\")", error.message(), quoted(trigger).replace('"', "\"\""))
            }
            QuotaError::Exceeded(d) if d.reason == "rate_limited" => format!(
                "rate limited: subject \"{}\" may take {} more {} now ({} at once, {}), {} requested",
                d.subject, d.remaining, d.metric, d.limit_value, d.period, d.requested
            ),
            QuotaError::Exceeded(d) if d.level > 0 => format!(
                "quota exceeded: pool \"{}\" of subject \"{}\" has {} of {} {} left this {}, {} requested",
                d.subject,
                d.member.as_deref().unwrap_or("?"),
                d.remaining,
                d.effective_limit(),
                d.metric,
                period_noun(&d.period),
                d.requested
            ),
            QuotaError::Exceeded(d) => format!(
                "quota exceeded: subject \"{}\" has {} of {} {} left this {}, {} requested",
                d.subject,
                d.remaining,
                d.effective_limit(),
                d.metric,
                period_noun(&d.period),
                d.requested
            ),
            QuotaError::OverRequestCap(d) => {
                format!("request too large: {} {} requested, at most {} per request", d.requested, d.metric, d.per_request_max.unwrap_or_default())
            }
            QuotaError::UnknownSubject { subject } => format!("unknown quota subject \"{subject}\""),
            QuotaError::Invalid { message, .. } => message.clone(),
            QuotaError::Null { argument } => format!("argument \"{argument}\" must not be NULL"),
            QuotaError::NotAvailable { message, .. } | QuotaError::Forbidden { message, .. } => message.clone(),
            QuotaError::Conflict { subject, metric } => {
                format!("the {metric} counter of subject \"{subject}\" changed while this transaction was writing it")
            }
            QuotaError::BrokenRule { table, metric, column } => {
                format!("the {metric} quota on table {table} uses column {column}, which no longer exists: rows are refused")
            }
            QuotaError::Corrupt { table, column, value } => {
                format!("quota_ext cannot read column {column} of {table}: stored value \"{}\" is not valid", quoted(value))
            }
            QuotaError::Paused(p) => p.message(),
            QuotaError::NotPaused { tenant } => format!("tenant \"{}\" is not paused on this node", quoted(tenant)),
            QuotaError::NotQuiet { tenant, .. } => format!(
                "tenant \"{}\" is not quiet yet: transactions that started before the pause are still open (DETAIL lists them)",
                quoted(tenant)
            ),
        }
    }

    /// One JSON object, so that an application maps the error with a single parse.
    pub fn detail(&self) -> Value {
        match self {
            QuotaError::OnTable { table, trigger, error } => {
                let mut v = error.detail();
                v["table"] = json!(table);
                v["trigger"] = json!(quoted(trigger));
                v
            }
            QuotaError::Exceeded(d) | QuotaError::OverRequestCap(d) => {
                let mut v = json!({
                    "code": self.code(),
                    "subject": d.subject,
                    "metric": d.metric,
                    "limit": d.effective_limit(),
                    "used": d.used,
                    "requested": d.requested,
                    "remaining": d.remaining,
                    "reset_at": iso(d.reset_at),
                    "bonus": d.bonus,
                    "period": d.period,
                    "enforcement": d.enforcement,
                    "reserved": d.reserved,
                    "level": d.level,
                    "refused": d.refused.iter().map(|r| json!({
                        "subject": r.subject, "level": r.level,
                        "period": r.period, "limit": r.limit, "used": r.used, "remaining": r.remaining, "reset_at": iso(r.reset_at),
                    })).collect::<Vec<_>>(),
                });
                if let Some(member) = &d.member {
                    // A pool refused: `subject` is the pool, `member` who asked.
                    v["member"] = json!(member);
                }
                if let QuotaError::OverRequestCap(_) = self {
                    v["per_request_max"] = json!(d.per_request_max);
                }
                if let Some(us) = d.retry_after {
                    // Seconds, as Retry-After wants them (fractional; round up to retry).
                    v["retry_after"] = json!(us as f64 / 1e6);
                }
                v
            }
            QuotaError::UnknownSubject { subject } => json!({"code": self.code(), "subject": subject}),
            QuotaError::Invalid { argument, value, .. } => {
                json!({"code": self.code(), "argument": argument, "value": value})
            }
            QuotaError::Null { argument } => json!({"code": self.code(), "argument": argument}),
            QuotaError::NotAvailable { feature, .. } => json!({"code": self.code(), "feature": feature}),
            QuotaError::Forbidden { object, .. } => json!({"code": self.code(), "object": object}),
            QuotaError::Conflict { subject, metric } => json!({"code": self.code(), "subject": subject, "metric": metric}),
            QuotaError::BrokenRule { table, metric, column } => {
                json!({"code": self.code(), "table": table, "metric": metric, "column": column})
            }
            QuotaError::Corrupt { table, column, value } => {
                json!({"code": self.code(), "table": table, "column": column, "value": quoted(value)})
            }
            QuotaError::Paused(p) => p.detail(),
            QuotaError::NotPaused { tenant } => json!({"code": self.code(), "tenant": quoted(tenant)}),
            QuotaError::NotQuiet { tenant, waited_ms, pids, prepared } => json!({
                "code": self.code(), "tenant": quoted(tenant), "waited_ms": waited_ms,
                "running": pids.len() + prepared.len(), "pids": pids, "prepared": prepared,
            }),
        }
    }

    /// A sentence a person can act on.
    pub fn hint(&self) -> String {
        match self {
            QuotaError::OnTable { error, .. } => error.hint(),
            QuotaError::Exceeded(d) if d.reason == "rate_limited" => match d.retry_after {
                Some(us) => format!(
                    "Retry after {:.3} seconds (retry_after in DETAIL): the {} rate limit lets requests through at its pace.",
                    us as f64 / 1e6,
                    d.period
                ),
                None => format!(
                    "This request is larger than the {} rate limit ever admits at once ({}): split it, or raise the burst with quota.set_rate_limit.",
                    d.period, d.limit_value
                ),
            },
            QuotaError::Exceeded(d) if d.level > 0 => format!(
                "The pool \"{}\" (level {}, shared with its other members) is full, not the subject's own quota: {}. An administrator can raise the pool's limit (quota.assign_plan or quota.set_override on \"{}\") or apply a bonus to the pool (quota.apply_bonus).",
                d.subject,
                d.level,
                match iso(d.reset_at) {
                    Some(at) => format!("its {} limit resets at {at}", d.period),
                    None => "its lifetime limit never resets".to_string(),
                },
                d.subject
            ),
            QuotaError::Exceeded(d) => match iso(d.reset_at) {
                Some(at) => format!(
                    "The {} limit resets at {at}. Retry after that, apply a bonus (quota.apply_bonus) or move the subject to a larger plan (quota.assign_plan).",
                    d.period
                ),
                None => "This lifetime limit never resets. Free usage with quota.quota_refund, apply a bonus (quota.apply_bonus) or move the subject to a larger plan (quota.assign_plan).".to_string(),
            },
            QuotaError::OverRequestCap(d) => format!(
                "Split the request into parts of at most {} {}, or raise per_request_max with quota.set_limit.",
                d.per_request_max.unwrap_or_default(),
                d.metric
            ),
            QuotaError::UnknownSubject { subject } => format!(
                "Create the subject with quota.assign_plan('{}', '<plan>'), or set quota.default_plan so that unknown subjects join a plan automatically. A subject of a tenant is only visible with quota.tenant set to that tenant.",
                subject.replace('\'', "''")
            ),
            QuotaError::Invalid { hint, .. } => hint.clone(),
            QuotaError::Null { argument } => format!("Pass a value for \"{argument}\"."),
            QuotaError::NotAvailable { hint, .. } | QuotaError::Forbidden { hint, .. } => hint.clone(),
            QuotaError::Conflict { .. } => "Retry the transaction: it was aborted, so nothing of it was counted.".to_string(),
            QuotaError::BrokenRule { table, metric, .. } => format!(
                "Point the quota at an existing column with quota.enforce_on_insert('{}', ...), or remove it with quota.enforce_off('{}', '{}').",
                table.replace('\'', "''"),
                table.replace('\'', "''"),
                metric.replace('\'', "''")
            ),
            QuotaError::Corrupt { table, column, .. } => format!(
                "A row of {table} was changed outside quota_ext's functions. Correct {column} (see the table's CHECK constraints) or restore the row from a backup, and compare counters with the ledger (SELECT * FROM quota.ledger_check). If no one changed it, report it as a bug."
            ),
            QuotaError::Paused(p) => p.hint(),
            QuotaError::NotPaused { tenant } => format!(
                "Pause the tenant first and commit (SELECT quota.pause_tenant('{}', <node>)), then call quota.await_tenant_quiet in a new transaction.",
                quoted(tenant).replace('\'', "''")
            ),
            QuotaError::NotQuiet { .. } => "End or wait for the transactions named in DETAIL (pg_stat_activity by pid; COMMIT PREPARED or ROLLBACK PREPARED by gid), then call quota.await_tenant_quiet again, with a longer timeout if they are merely slow. The tenant stays paused meanwhile.".to_string(),
        }
    }
}

fn period_noun(period: &str) -> &str {
    match period {
        "billing_cycle" => "billing cycle",
        other => other,
    }
}

/// Reject NULL for a required argument.
pub fn required<T>(argument: &'static str, value: Option<T>) -> Result<T> {
    value.ok_or(QuotaError::Null { argument })
}

/// Amounts that change state must be at least 1.
pub fn positive_amount(argument: &'static str, amount: i64) -> Result<i64> {
    if amount >= 1 {
        Ok(amount)
    } else {
        Err(QuotaError::invalid(argument, amount, format!("{argument} must be at least 1, got {amount}"), format!("Pass a positive {argument}.")))
    }
}

/// Names (subjects, metrics, plans, kinds) must be non-empty.
pub fn non_empty<'a>(argument: &'static str, value: &'a str) -> Result<&'a str> {
    if value.is_empty() {
        Err(QuotaError::invalid(argument, "", format!("{argument} must not be empty"), format!("Pass a non-empty {argument}.")))
    } else {
        Ok(value)
    }
}

/// The longest subject id or idempotency key, in bytes. Far below what a btree entry
/// (about 2,700 bytes) or a notification (8,000 bytes) can carry.
pub const MAX_ID_BYTES: usize = 512;
/// The longest metric, plan, bonus kind, bonus reference or tenant name, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// How much of an over-long value a message or DETAIL quotes.
pub const QUOTED_BYTES: usize = 32;

/// The longest value each name argument may have (None: not a bounded name).
pub fn max_bytes(argument: &str) -> Option<usize> {
    match argument {
        "subject" | "idempotency_key" | "key" => Some(MAX_ID_BYTES),
        "metric" | "plan" | "kind" | "reference" | "tenant" | "quota.tenant" | "role_name" => Some(MAX_NAME_BYTES),
        _ => None,
    }
}

/// The hint for a metric that is a JSON object: an untyped parameter or string literal
/// (`quota_consume($1, $2)` from a driver) picks the single-metric `text` form, so amounts
/// meant for the jsonb form arrive as a metric name.
pub const JSON_METRIC_HINT: &str = "This metric is a JSON object: amounts for several metrics must be typed jsonb ($2::jsonb, or '...'::jsonb), else the call takes the single-metric form. Or call quota.quota_consume_many(subject, amounts, idempotency_key, metadata), whose amounts are always jsonb.";

/// Whether a metric argument looks like amounts meant for the jsonb forms.
pub fn looks_like_amounts(metric: &str) -> bool {
    let m = metric.trim();
    m.starts_with('{') && m.ends_with('}')
}

/// A name argument: non-empty and within its bound (`max_bytes`). A value already stored
/// is never checked again, so names stored before the bounds existed keep working.
pub fn name<'a>(argument: &'static str, value: &'a str) -> Result<&'a str> {
    non_empty(argument, value)?;
    let max = max_bytes(argument).unwrap_or(MAX_NAME_BYTES);
    if value.len() > max {
        return Err(QuotaError::invalid(
            argument,
            value,
            format!("{argument} is {} bytes long, more than the {max} allowed: \"{}\"", value.len(), quoted(value)),
            if argument == "metric" && looks_like_amounts(value) {
                JSON_METRIC_HINT.to_string()
            } else {
                format!("Pass a {argument} of at most {max} bytes.")
            },
        ));
    }
    Ok(value)
}

/// A caller's value as messages quote it: whole when it is no longer than a bounded name,
/// else its first `QUOTED_BYTES` bytes (cut on a character boundary) and an ellipsis.
pub fn quoted(value: &str) -> std::borrow::Cow<'_, str> {
    if value.len() <= MAX_ID_BYTES {
        return std::borrow::Cow::Borrowed(value);
    }
    let mut cut = QUOTED_BYTES;
    while !value.is_char_boundary(cut) {
        cut -= 1;
    }
    std::borrow::Cow::Owned(format!("{}…", &value[..cut]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::limits::{evaluate, Enforcement, Limit, Source, Usage};
    use crate::domain::period::Period;
    use chrono::{DateTime, Utc};

    fn refused(cap: Option<i64>, requested: i64) -> Decision {
        let limit = Limit {
            period: Period::Day,
            limit_value: 5,
            enforcement: Enforcement::Hard,
            per_request_max: cap,
            alerts: vec![],
            source: Source::Plan,
            burst: 0,
        };
        let usage = Usage::new(5, 2);
        let reset = DateTime::parse_from_rfc3339("2026-11-24T00:00:00Z").unwrap().with_timezone(&Utc);
        Decision::new("user-1", "messages", &limit, usage, requested, Some(reset), &evaluate(&limit, usage, requested), false)
    }

    #[test]
    fn exceeded_payload() {
        let mut d = refused(None, 3);
        let month = crate::domain::decision::RefusedLimit {
            subject: "u".into(),
            level: 0,
            period: "month".into(),
            limit: 100,
            used: 99,
            remaining: 1,
            reset_at: None,
        };
        d.refused = vec![month];
        let e = QuotaError::Exceeded(Box::new(d));
        assert_eq!(e.sqlstate(), "QT429");
        assert_eq!(
            e.detail(),
            json!({"code":"quota_exceeded","subject":"user-1","metric":"messages","limit":7,"used":5,
                   "requested":3,"remaining":2,"reset_at":"2026-11-24T00:00:00Z","bonus":2,
                   "period":"day","enforcement":"hard","reserved":0,"level":0,
                   "refused":[{"subject":"u","level":0,"period":"month","limit":100,"used":99,"remaining":1,"reset_at":null}]})
        );
        assert_eq!(e.message(), "quota exceeded: subject \"user-1\" has 2 of 7 messages left this day, 3 requested");
        assert!(e.hint().contains("2026-11-24T00:00:00Z"), "{}", e.hint());
    }

    #[test]
    fn a_pool_refusal_names_the_pool_and_the_member() {
        let mut d = refused(None, 3);
        (d.subject, d.level, d.member) = ("team-a".into(), 1, Some("user-1".into()));
        let e = QuotaError::Exceeded(Box::new(d));
        assert_eq!(e.sqlstate(), "QT429");
        assert_eq!(
            (e.detail()["subject"].clone(), e.detail()["level"].clone(), e.detail()["member"].clone()),
            (json!("team-a"), json!(1), json!("user-1"))
        );
        assert_eq!(e.message(), "quota exceeded: pool \"team-a\" of subject \"user-1\" has 2 of 7 messages left this day, 3 requested");
        assert!(e.hint().contains("pool \"team-a\"") && e.hint().contains("not the subject's own quota"), "{}", e.hint());
        assert!(QuotaError::Exceeded(Box::new(refused(None, 3))).detail().get("member").is_none(), "only a pool's refusal names a member");
    }

    #[test]
    fn lifetime_hint_says_never_resets() {
        let mut d = refused(None, 3);
        d.reset_at = None;
        let e = QuotaError::Exceeded(Box::new(d));
        assert_eq!(e.detail()["reset_at"], Value::Null);
        assert!(e.hint().contains("never resets"));
    }

    #[test]
    fn over_cap_payload_names_the_cap() {
        let e = QuotaError::OverRequestCap(Box::new(refused(Some(100), 101)));
        assert_eq!(e.sqlstate(), "QT413");
        assert_eq!(e.detail()["per_request_max"], json!(100));
        assert_eq!(e.detail()["code"], json!("per_request_cap_exceeded"));
        assert!(e.hint().contains("at most 100 messages"));
    }

    #[test]
    fn a_trigger_refusal_names_its_table_and_trigger() {
        let plain = QuotaError::Exceeded(Box::new(refused(None, 3)));
        let e = QuotaError::Exceeded(Box::new(refused(None, 3))).on_table("public.messages", "quota_enforce_insert");
        assert_eq!((e.sqlstate(), e.code(), e.hint()), (plain.sqlstate(), plain.code(), plain.hint()));
        assert_eq!(e.message(), format!("{} (row inserted into table public.messages, trigger \"quota_enforce_insert\")", plain.message()));
        let mut detail = plain.detail();
        detail["table"] = json!("public.messages");
        detail["trigger"] = json!("quota_enforce_insert");
        assert_eq!(e.detail(), detail);
        let unknown = QuotaError::UnknownSubject { subject: "u".into() }.on_table("t", "x");
        assert_eq!((unknown.sqlstate(), unknown.detail()["table"].clone()), ("QT404", json!("t")));
        // Errors that are not about the row's quota stay as they are.
        let other = QuotaError::Null { argument: "amount" }.on_table("t", "x");
        assert!(matches!(other, QuotaError::Null { .. }));
    }

    #[test]
    fn a_metric_that_is_json_gets_the_jsonb_hint() {
        assert!(looks_like_amounts(" {\"messages\": 1} ") && !looks_like_amounts("messages") && !looks_like_amounts("{x"));
        let long = format!("{{\"messages\": 1, \"tokens\": 2{}}}", " ".repeat(200));
        let metric = name("metric", &long).unwrap_err();
        assert_eq!((metric.sqlstate(), metric.hint()), ("22023", JSON_METRIC_HINT.to_string()));
        let plan = name("plan", &long).unwrap_err();
        assert_eq!((plan.sqlstate(), plan.hint()), ("22023", "Pass a plan of at most 128 bytes.".to_string()));
    }

    #[test]
    fn conflict_is_a_retryable_serialization_failure() {
        let e = QuotaError::Conflict { subject: "user-1".into(), metric: "tokens".into() };
        assert_eq!(e.sqlstate(), "40001");
        assert_eq!(e.detail(), json!({"code":"concurrent_change","subject":"user-1","metric":"tokens"}));
        assert!(e.message().contains("tokens counter of subject \"user-1\""), "{}", e.message());
        assert!(e.hint().starts_with("Retry the transaction"));
    }

    /// The README's "Errors" table lists exactly the SQLSTATEs of `OWN_SQLSTATES` and
    /// `POSTGRES_SQLSTATES`, and every error here has one of them.
    #[test]
    fn readme_lists_every_sqlstate() {
        let readme = include_str!("../../README.md");
        let table = readme.split("\n## Errors\n").nth(1).expect("README has an Errors section");
        let table = table.split("\n## ").next().unwrap_or_default();
        let mut listed: Vec<&str> =
            table.lines().filter_map(|l| l.strip_prefix("| `")).filter_map(|l| l.split('`').next()).filter(|code| code.len() == 5).collect();
        listed.sort_unstable();
        listed.dedup();
        let mut known: Vec<&str> = OWN_SQLSTATES.iter().chain(POSTGRES_SQLSTATES).copied().collect();
        known.sort_unstable();
        assert_eq!(listed, known, "README's Errors table vs error.rs");
        let d = refused(None, 3);
        let every = [
            QuotaError::Exceeded(Box::new(d.clone())),
            QuotaError::OverRequestCap(Box::new(d)),
            QuotaError::UnknownSubject { subject: "s".into() },
            QuotaError::invalid("a", "v", "m", "h"),
            QuotaError::Null { argument: "a" },
            QuotaError::NotAvailable { feature: "f", message: "m".into(), hint: "h".into() },
            QuotaError::Forbidden { object: "o".into(), message: "m".into(), hint: "h".into() },
            QuotaError::Conflict { subject: "s".into(), metric: "m".into() },
            QuotaError::BrokenRule { table: "t".into(), metric: "m".into(), column: "c".into() },
            QuotaError::Corrupt { table: "quota.plan_limits", column: "period", value: "x".repeat(100) },
            QuotaError::Paused(Box::new(crate::domain::pause::Pause { tenant: "t".into(), state: crate::domain::pause::State::Moved, node: None })),
            QuotaError::NotPaused { tenant: "t".into() },
            QuotaError::NotQuiet { tenant: "t".into(), waited_ms: 1, pids: vec![1], prepared: vec![] },
        ];
        for e in every {
            assert!(OWN_SQLSTATES.contains(&e.sqlstate()) || POSTGRES_SQLSTATES.contains(&e.sqlstate()), "{:?}", e.sqlstate());
            assert_ne!(e.sqlstate(), "XX000");
        }
    }

    #[test]
    fn pause_errors() {
        use crate::domain::pause::{Pause, State};
        let e = QuotaError::Paused(Box::new(Pause { tenant: "acme".into(), state: State::Moving, node: Some("n2".into()) }));
        assert_eq!((e.sqlstate(), e.code()), ("QT503", "tenant_paused"));
        assert_eq!(e.detail()["error"], json!("tenant_paused"));
        let e = QuotaError::NotPaused { tenant: "acme".into() };
        assert_eq!((e.sqlstate(), e.detail()), ("55000", json!({"code":"tenant_not_paused","tenant":"acme"})));
        assert!(e.hint().contains("quota.pause_tenant('acme'"), "{}", e.hint());
        let e = QuotaError::NotQuiet { tenant: "acme".into(), waited_ms: 30000, pids: vec![41, 42], prepared: vec!["g1".into()] };
        assert_eq!(e.sqlstate(), "55P03");
        assert_eq!(e.detail(), json!({"code":"tenant_not_quiet","tenant":"acme","waited_ms":30000,"running":3,"pids":[41,42],"prepared":["g1"]}));
        assert!(e.message().contains("not quiet yet"), "{}", e.message());
    }

    #[test]
    fn a_broken_table_quota_names_its_rule() {
        let e = QuotaError::BrokenRule { table: "public.messages".into(), metric: "tokens".into(), column: "content".into() };
        assert_eq!(e.sqlstate(), "55000");
        assert_eq!(e.detail(), json!({"code":"enforcement_broken","table":"public.messages","metric":"tokens","column":"content"}));
        assert!(e.message().contains("tokens quota on table public.messages"), "{}", e.message());
        assert!(e.hint().contains("quota.enforce_off('public.messages', 'tokens')"), "{}", e.hint());
    }

    #[test]
    fn argument_errors() {
        let e = QuotaError::UnknownSubject { subject: "o'brien".into() };
        assert_eq!((e.sqlstate(), e.detail()), ("QT404", json!({"code":"unknown_subject","subject":"o'brien"})));
        assert!(e.hint().contains("'o''brien'"));
        assert_eq!(required::<i64>("amount", None).unwrap_err().sqlstate(), "22004");
        assert_eq!(positive_amount("amount", 0).unwrap_err().sqlstate(), "22023");
        assert_eq!(positive_amount("amount", -5).unwrap_err().detail()["value"], json!("-5"));
        assert_eq!(positive_amount("amount", 1), Ok(1));
        assert_eq!(non_empty("metric", "").unwrap_err().sqlstate(), "22023");
        let long = "é".repeat(1000);
        match QuotaError::invalid("metric", &long, "m", "h") {
            QuotaError::Invalid { value, .. } => assert!(value.len() <= QUOTED_BYTES + 3),
            _ => unreachable!(),
        }
    }

    #[test]
    fn every_invalid_error_quotes_a_long_value_by_its_prefix() {
        let zone = "z".repeat(1 << 20);
        let e = QuotaError::invalid("time_zone", &zone, format!("unknown time zone \"{zone}\""), format!("Not \"{zone}\"."));
        assert!(e.message().len() < 100 && e.hint().len() < 100 && e.detail().to_string().len() < 150, "{}", e.message().len());
        assert!(e.message().starts_with("unknown time zone \"zzzz"));
    }

    #[test]
    fn names_are_bounded() {
        assert_eq!(name("subject", &"s".repeat(512)).map(str::len), Ok(512));
        assert_eq!(name("subject", &"s".repeat(513)).unwrap_err().sqlstate(), "22023");
        assert_eq!(name("idempotency_key", &"k".repeat(513)).unwrap_err().sqlstate(), "22023");
        assert_eq!(name("metric", &"m".repeat(128)).map(str::len), Ok(128));
        for arg in ["metric", "plan", "kind", "reference", "tenant"] {
            assert_eq!(name(arg, &"m".repeat(129)).unwrap_err().sqlstate(), "22023", "{arg}");
        }
        assert_eq!(name("metric", "").unwrap_err().sqlstate(), "22023");
    }

    #[test]
    fn over_long_values_are_quoted_by_a_short_prefix_everywhere() {
        let huge = "x".repeat(1 << 20);
        let e = name("metric", &huge).unwrap_err();
        assert!(e.message().len() < 200, "{}", e.message().len());
        assert!(e.detail().to_string().len() < 200);
        assert!(e.hint().len() < 200);
        // A bounded name is quoted whole.
        let bounded = "é".repeat(60);
        assert_eq!(quoted(&bounded), bounded.as_str());
        assert_eq!(QuotaError::invalid("metric", &bounded, "m", "h").detail()["value"], json!(bounded));
        // Cut on a character boundary.
        let wide = "é".repeat(1000);
        assert!(quoted(&wide).ends_with('…') && quoted(&wide).len() <= QUOTED_BYTES + 3);
    }
}
