//! Raising a `QuotaError` as a PostgreSQL ERROR with its own SQLSTATE.
//!
//! pgrx's `ErrorReport` only carries the SQLSTATEs PostgreSQL itself defines, so QT429,
//! QT413 and QT404 are raised here with PostgreSQL's `errstart`/`errfinish` directly,
//! the way a C extension does. `raise` is the only place in this library that starts an
//! ERROR itself; its SAFETY comment says why each caller is sound.

use pgrx::pg_sys;
use std::ffi::{c_char, c_int, CString};

use crate::domain::error::QuotaError;

extern "C-unwind" {
    fn errstart(elevel: c_int, domain: *const c_char) -> bool;
    fn errfinish(filename: *const c_char, lineno: c_int, funcname: *const c_char);
}
extern "C" {
    fn errcode(sqlerrcode: c_int) -> c_int;
    fn errmsg_internal(fmt: *const c_char, ...) -> c_int;
    fn errdetail_internal(fmt: *const c_char, ...) -> c_int;
    fn errhint(fmt: *const c_char, ...) -> c_int;
}

/// PostgreSQL's MAKE_SQLSTATE for a five-character code.
pub fn make_sqlstate(code: &str) -> c_int {
    let b = code.as_bytes();
    assert_eq!(b.len(), 5, "SQLSTATEs have five characters");
    (0..5).map(|i| (((b[i] as c_int) - ('0' as c_int)) & 0x3F) << (6 * i)).sum()
}

/// The most an error's message, DETAIL or HINT may carry: a last guard, so that no error
/// can write megabytes to the client or the server log (values are quoted short anyway).
const MAX_PART_BYTES: usize = 4096;

fn palloc_cstr(mut s: String) -> *const c_char {
    if s.len() > MAX_PART_BYTES {
        let mut cut = MAX_PART_BYTES;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    let c = CString::new(s.replace('\0', "\\0")).expect("NULs were replaced");
    // SAFETY: pstrdup copies into CurrentMemoryContext, which the error path resets.
    unsafe { pg_sys::pstrdup(c.as_ptr()) }
}

/// Raise `err` as an ERROR. Never returns.
pub fn raise(err: QuotaError) -> ! {
    let code = make_sqlstate(err.sqlstate());
    let message = palloc_cstr(err.message());
    let detail = palloc_cstr(err.detail().to_string());
    let hint = palloc_cstr(err.hint());
    // LOCATION shows the extension and the error's stable code.
    let code_name = palloc_cstr(err.code().to_string());
    drop(err);
    // SAFETY: errfinish(ERROR) longjmps out of this frame into PostgreSQL's error
    // handling, over the Rust frames between here and the nearest PG_TRY (pgrx's guard
    // around the calling `#[pg_extern]`, trigger or hook). No destructor of those frames
    // runs, so nothing they own may need one. That holds for every caller:
    // - `OrRaise::or_raise` in `api/` (every SQL function): the operation has returned and
    //   dropped everything it owned (SPI connections, relations, slots, snapshots); what
    //   is left is the function's arguments, borrowed from PostgreSQL's memory, and values
    //   palloc'd in the current memory context, which the error resets;
    // - `api::tables::enforce_trigger` and `api::monitor::stats_reset`: likewise, after the
    //   work returned its error;
    // - `pg::read_guard::check` (ExecutorStart hook): its only guard (`Reset`) has been
    //   dropped before the call;
    // - `hotpath::subject_cache::on_xact` at PRE_PREPARE: a transaction callback that
    //   owns nothing.
    // The strings were copied into the current memory context above, so the jump leaks
    // no Rust memory (only `err`'s, which was dropped).
    unsafe {
        if errstart(pgrx::PgLogLevel::ERROR as c_int, std::ptr::null()) {
            errcode(code);
            errmsg_internal(c"%s".as_ptr(), message);
            errdetail_internal(c"%s".as_ptr(), detail);
            errhint(c"%s".as_ptr(), hint);
            errfinish(c"quota_ext".as_ptr(), 0, code_name);
        }
    }
    unreachable!("errfinish(ERROR) does not return")
}

/// `result.or_raise()`: the value, or the error raised as a PostgreSQL ERROR.
pub trait OrRaise<T> {
    fn or_raise(self) -> T;
}

impl<T> OrRaise<T> for Result<T, QuotaError> {
    #[inline]
    fn or_raise(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => raise(e),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sqlstate_encoding_matches_postgres() {
        // ERRCODE_INVALID_PARAMETER_VALUE, as PostgreSQL encodes it.
        assert_eq!(super::make_sqlstate("22023"), pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE as i32);
        assert_ne!(super::make_sqlstate("QT429"), super::make_sqlstate("QT413"));
    }
}
