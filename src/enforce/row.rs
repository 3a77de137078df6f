//! The row a trigger fired for: its subject, amount and key, by column number.

use super::*;

/// The row a trigger fired for, with its descriptor.
pub(super) struct Row {
    pub(super) tuple: *mut pg_sys::HeapTupleData,
    desc: pg_sys::TupleDesc,
}

impl Row {
    pub(super) fn old(trigger: &PgTrigger<'_>) -> Row {
        let data = trigger.trigger_data();
        // SAFETY: PostgreSQL sets tg_relation, open for the whole trigger call, for every
        // trigger; its rd_att is valid while it is open. (tg_trigtuple is only copied
        // here; it is non-NULL in the row-level triggers `config::sync_triggers` creates,
        // which `text` and `value` rely on.)
        Row { tuple: data.tg_trigtuple, desc: unsafe { (*data.tg_relation).rd_att } }
    }

    /// The new row of an UPDATE.
    pub(super) fn new(trigger: &PgTrigger<'_>) -> Row {
        let data = trigger.trigger_data();
        // SAFETY: as in `old`; tg_newtuple is set for a row-level UPDATE trigger.
        Row { tuple: data.tg_newtuple, desc: unsafe { (*data.tg_relation).rd_att } }
    }

    /// The attribute number of a column of this row, by the root's name (a partition's
    /// columns have the same names, maybe at other numbers); None if there is none.
    pub(super) fn attnum(&self, column: &str) -> Option<i32> {
        let name = std::ffi::CString::new(column).ok()?;
        // SAFETY: the descriptor belongs to the firing trigger's relation.
        let n = unsafe { pg_sys::SPI_fnumber(self.desc, name.as_ptr()) };
        (n > 0).then_some(n)
    }

    /// Is the column generated in this row's relation? A BEFORE trigger sees NULL (or
    /// what the INSERT supplied, on a partition whose column is generated where the root's
    /// is not) instead of its value, computed after the trigger.
    pub(super) fn generated(&self, column: &str) -> bool {
        let Some(n) = self.attnum(column) else { return false };
        // SAFETY: the descriptor belongs to the firing trigger's relation and `n` is one of
        // its attributes (SPI_fnumber found it, > 0).
        unsafe { (*crate::hotpath::heap::major::attr(self.desc, n as usize - 1)).attgenerated != 0 }
    }

    /// A column rendered as text by its type's output function, so that any type can hold
    /// the subject (text, integer, uuid, inet...). `None` for NULL.
    pub(super) fn text(&self, column: &str) -> Option<String> {
        let n = self.attnum(column)?;
        // SAFETY: the tuple (non-NULL in a row-level trigger) and the descriptor belong to
        // the firing trigger, `n` is one of its attributes (SPI_fnumber found it, > 0), and
        // SPI_getvalue returns NULL or a palloc'd NUL-terminated string, copied and freed.
        unsafe {
            let value = pg_sys::SPI_getvalue(self.tuple, self.desc, n);
            if value.is_null() {
                return None;
            }
            let text = CStr::from_ptr(value).to_string_lossy().into_owned();
            pg_sys::pfree(value.cast());
            Some(text)
        }
    }

    /// A column's value and what its type is (oid, by value, length); None when the
    /// column is missing or NULL.
    pub(super) fn value(&self, column: &str) -> Option<(pg_sys::Datum, pg_sys::Oid, bool, i16)> {
        let n = self.attnum(column)?;
        // SAFETY: as in `text`; `n` is in 1..=natts, so attrs[n - 1] is its attribute.
        unsafe {
            let mut isnull = false;
            let datum = pg_sys::SPI_getbinval(self.tuple, self.desc, n, &mut isnull);
            let attr = &*crate::hotpath::heap::major::attr(self.desc, n as usize - 1);
            (!isnull).then_some((datum, attr.atttypid, attr.attbyval, attr.attlen))
        }
    }

    /// The row's primary key as one text that identifies its charge: the SHA-256 of the
    /// key columns' stored images (their bytes, not their text forms, which depend on
    /// TimeZone, DateStyle, extra_float_digits and the like). None without a primary key.
    pub(super) fn key(&self, key: Option<&[String]>) -> Option<String> {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        for column in key? {
            let image = self.image(column)?;
            hash.update((image.len() as u64).to_le_bytes());
            hash.update(&image);
        }
        Some(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }

    /// A column's stored bytes (detoasted); None when the column is missing or NULL.
    pub(super) fn image(&self, column: &str) -> Option<Vec<u8>> {
        let (datum, _, byval, len) = self.value(column)?;
        // SAFETY: the datum is the column's own value, read by its attribute's length and
        // by-value flag; varlena values are detoasted into the current memory context.
        let bytes = unsafe {
            match (byval, len) {
                (true, len) => datum.value().to_le_bytes()[..len.clamp(1, 8) as usize].to_vec(),
                (false, -1) => {
                    let v = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
                    std::slice::from_raw_parts(pgrx::varlena::vardata_any(v).cast::<u8>(), pgrx::varlena::varsize_any_exhdr(v)).to_vec()
                }
                (false, -2) => CStr::from_ptr(datum.cast_mut_ptr()).to_bytes().to_vec(),
                (false, len) => std::slice::from_raw_parts(datum.cast_mut_ptr::<u8>(), len.max(0) as usize).to_vec(),
            }
        };
        Some(bytes)
    }
}

/// A column's current name, checked not to be generated where the row is stored, or the
/// error that makes the quota fail closed. `enforce_on_insert` refuses generated columns,
/// but PostgreSQL 15 attaches a partition whose column is generated where the root's is
/// plain (16 refuses it), and a database before 0.4.0 follows a column by name.
pub(super) fn readable<'c>(row: &Row, rule: &Rule, column: &'c Column) -> QResult<&'c str> {
    let name = current(rule, column)?;
    if row.generated(name) {
        return Err(generated_column(&rule.table, &rule.metric, name));
    }
    Ok(name)
}

/// The error for a generated column a quota reads at trigger time.
pub(super) fn generated_column(table: &str, metric: &str, column: &str) -> QuotaError {
    QuotaError::NotAvailable {
        feature: "quota.enforce_on_insert",
        message: format!(
            "the {metric} quota on table {table} reads column \"{}\", which is a generated column where this row is stored: rows are refused",
            crate::domain::error::quoted(column)
        ),
        hint: "A quota's trigger runs before generated columns are computed. Make the column a plain one in that table or partition \
               (ALTER TABLE ... ALTER COLUMN ... DROP EXPRESSION), or point the quota at a column the INSERT fills (quota.enforce_on_insert)."
            .to_string(),
    }
}

/// A column's current name, or the error that makes the quota fail closed.
pub(super) fn current<'c>(rule: &Rule, column: &'c Column) -> QResult<&'c str> {
    column.name.as_deref().ok_or_else(|| QuotaError::BrokenRule {
        table: rule.table.clone(),
        metric: rule.metric.clone(),
        column: column.stored.clone(),
    })
}

/// What one row costs under one rule: (subject, amount).
pub(super) fn row_cost(row: &Row, rule: &Rule) -> QResult<(String, i64)> {
    let subject = row.text(readable(row, rule, &rule.subject)?).ok_or(QuotaError::Null { argument: "subject column" })?;
    let amount = match &rule.cost {
        Cost::Constant(n) => *n,
        Cost::Tokens(col, encoding) => row.text(readable(row, rule, col)?).map(|text| encoding.count(&text) as i64).unwrap_or(0),
        Cost::Column(col) => {
            let name = readable(row, rule, col)?;
            match row.text(name) {
                None => 0,
                Some(v) => parse_amount(name, &v)?,
            }
        }
    };
    Ok((subject, amount))
}

/// A numeric column's value as a whole, non-negative amount.
pub(super) fn parse_amount(column: &str, value: &str) -> QResult<i64> {
    let bad = |why: &str| {
        QuotaError::invalid(
            "amount column",
            value,
            format!("column \"{column}\" {why}: {}", crate::domain::error::quoted(value)),
            "Store a whole, non-negative amount in the column.",
        )
    };
    let n: i64 = value
        .split_once('.')
        .map_or(value, |(int, frac)| if frac.trim_end_matches('0').is_empty() { int } else { "x" })
        .parse()
        .map_err(|_| bad("is not a whole number"))?;
    if n < 0 {
        return Err(bad("is negative"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    #[test]
    fn amounts_from_numeric_columns() {
        assert_eq!(super::parse_amount("c", "42"), Ok(42));
        assert_eq!(super::parse_amount("c", "42.000"), Ok(42));
        assert_eq!(super::parse_amount("c", "42.5").unwrap_err().sqlstate(), "22023");
        assert_eq!(super::parse_amount("c", "-1").unwrap_err().sqlstate(), "22023");
        assert_eq!(super::parse_amount("c", "NaN").unwrap_err().sqlstate(), "22023");
    }
}
