// In-backend tests (#[pg_test]): each runs in its own rolled-back transaction, so they
// cover single-session behaviour. Concurrency is tested with real connections
// (tests/concurrency) and the isolation tester (tests/isolation).
use pgrx::prelude::*;

fn setup_free_plan() {
    Spi::run("SET quota.clock_override = '2026-11-23 12:00:00+00'").unwrap();
    Spi::run("SELECT quota.set_limit('FREE', 'messages', 'day', 5)").unwrap();
    Spi::run("SELECT quota.assign_plan('u1', 'FREE')").unwrap();
}

#[pg_test]
fn consume_counts_and_ledger_matches() {
    setup_free_plan();
    for _ in 0..5 {
        Spi::run("SELECT quota.quota_consume('u1', 'messages')").unwrap();
    }
    let used = Spi::get_one::<i64>("SELECT used FROM quota.counters WHERE subject = 'u1'").unwrap();
    assert_eq!(used, Some(5));
    let ledger = Spi::get_one::<i64>("SELECT sum(amount)::int8 FROM quota.usage_events WHERE subject = 'u1' AND kind = 'consume'").unwrap();
    assert_eq!(ledger, Some(5));
    let allowed = Spi::get_one::<bool>("SELECT (quota.quota_try_consume('u1', 'messages')).allowed").unwrap();
    assert_eq!(allowed, Some(false));
}

#[pg_test(error = "quota exceeded: subject \"u1\" has 0 of 5 messages left this day, 1 requested")]
fn sixth_message_is_refused() {
    setup_free_plan();
    for _ in 0..6 {
        Spi::run("SELECT quota.quota_consume('u1', 'messages')").unwrap();
    }
}

#[pg_test]
fn new_day_opens_a_new_window() {
    setup_free_plan();
    for _ in 0..5 {
        Spi::run("SELECT quota.quota_consume('u1', 'messages')").unwrap();
    }
    Spi::run("SET quota.clock_override = '2026-11-24 00:00:00+00'").unwrap();
    let d = Spi::get_two::<i64, i64>("SELECT used, remaining FROM quota.quota_consume('u1', 'messages')").unwrap();
    assert_eq!(d, (Some(1), Some(4)));
}

#[pg_test]
fn ledger_is_append_only() {
    setup_free_plan();
    Spi::run("SELECT quota.quota_consume('u1', 'messages')").unwrap();
    let r = std::panic::catch_unwind(|| Spi::run("UPDATE quota.usage_events SET amount = 0"));
    assert!(r.is_err() || r.unwrap().is_err(), "UPDATE on the ledger must fail");
}

/// The shared subject cache takes `AddinShmemInitLock` by its index in `MainLWLockArray`
/// (`heap::major::ADDIN_SHMEM_INIT_LOCK`, read from each major's headers): the server
/// names that lock AddinShmemInit.
#[pg_test]
fn addin_shmem_init_lock_index_is_this_majors() {
    let index = crate::hotpath::heap::major::ADDIN_SHMEM_INIT_LOCK;
    // SAFETY: GetLWLockIdentifier returns a static name for an individual LWLock's id.
    let name = unsafe { std::ffi::CStr::from_ptr(pgrx::pg_sys::GetLWLockIdentifier(pgrx::pg_sys::PG_WAIT_LWLOCK, index as u16)) };
    assert_eq!(name.to_str().unwrap(), "AddinShmemInit");
}

/// checks, consumes, and "table: failed check" if the hot path steps aside.
fn hot_path_aside() -> (Option<bool>, Option<bool>, Option<String>) {
    Spi::get_three::<bool, bool, String>("SELECT checks, consumes, table_name || ': ' || failed_check FROM quota.hot_path_status()").unwrap()
}

/// A consume takes the hot path on this major (the port keeps it on).
#[pg_test]
fn hot_path_serves_a_consume() {
    setup_free_plan();
    Spi::run("SELECT quota.quota_consume('u1', 'messages')").unwrap();
    let before = Spi::get_one::<i64>("SELECT hot_calls FROM quota.hot_path_status()").unwrap().unwrap();
    let used = Spi::get_one::<i64>("SELECT used FROM quota.quota_consume('u1', 'messages')").unwrap();
    assert_eq!(used, Some(2));
    let after = Spi::get_one::<i64>("SELECT hot_calls FROM quota.hot_path_status()").unwrap().unwrap();
    assert_eq!(after, before + 1, "the second consume takes the hot path");
    assert_eq!(hot_path_aside(), (Some(true), Some(true), None));
}

/// PostgreSQL 18's virtual generated columns are computed when read: a heap read gives
/// NULL, so the hot path steps aside for a table with one, whether it reads or writes it.
#[cfg(feature = "pg18")]
#[pg_test]
fn virtual_generated_column_steps_aside() {
    setup_free_plan();
    Spi::run("SELECT quota.quota_consume('u1', 'messages')").unwrap();
    Spi::run("ALTER TABLE quota.counters ADD COLUMN elig_twice bigint GENERATED ALWAYS AS (used * 2) VIRTUAL").unwrap();
    let used = Spi::get_one::<i64>("SELECT used FROM quota.quota_consume('u1', 'messages')").unwrap();
    assert_eq!(used, Some(2));
    let (_, consumes, aside) = hot_path_aside();
    assert_eq!((consumes, aside.as_deref()), (Some(false), Some("quota.counters: generated column")));
    let twice = Spi::get_one::<i64>("SELECT elig_twice FROM quota.counters WHERE subject = 'u1'").unwrap();
    assert_eq!(twice, Some(4));
}

#[cfg(feature = "pg18")]
#[pg_test]
fn virtual_generated_column_on_a_read_table_steps_aside() {
    setup_free_plan();
    Spi::run("ALTER TABLE quota.subjects ADD COLUMN elig_v text GENERATED ALWAYS AS ('x') VIRTUAL").unwrap();
    let (checks, consumes, aside) = hot_path_aside();
    assert_eq!((checks, consumes, aside.as_deref()), (Some(false), Some(false), Some("quota.subjects: generated column")));
    let used = Spi::get_one::<i64>("SELECT used FROM quota.quota_consume('u1', 'messages')").unwrap();
    assert_eq!(used, Some(1));
}

/// The message of the error `statement` (a PL/pgSQL statement) raises with `condition`,
/// its work rolled back; the test fails if it raises nothing (or anything else).
#[cfg(any(feature = "pg15", feature = "pg18"))] // the tests that use it
fn refusal(statement: &str, condition: &str) -> String {
    Spi::run(&format!(
        "DO $$ BEGIN
             {statement};
             RAISE EXCEPTION 'accepted';
         EXCEPTION WHEN {condition} THEN
             PERFORM set_config('quota_test.refused', SQLERRM, true);
         END $$"
    ))
    .unwrap();
    Spi::get_one::<String>("SELECT current_setting('quota_test.refused')").unwrap().unwrap_or_default()
}

/// 18's default generated column is virtual, never computed for triggers: a table quota
/// naming one would charge NULL (0), so enforce_on_insert refuses it (regress 07_enforce
/// covers stored ones on every major).
#[cfg(feature = "pg18")]
#[pg_test]
fn enforce_refuses_a_virtual_generated_column() {
    setup_free_plan();
    Spi::run("CREATE TABLE gen_virtual (id serial PRIMARY KEY, user_id text, qty int, cost int GENERATED ALWAYS AS (qty * 2))").unwrap();
    let kind = Spi::get_one::<String>("SELECT attgenerated::text FROM pg_attribute WHERE attrelid = 'gen_virtual'::regclass AND attname = 'cost'").unwrap();
    assert_eq!(kind.as_deref(), Some("v"));
    let refused = refusal(
        "PERFORM quota.enforce_on_insert('gen_virtual', subject_column => 'user_id', metric => 'messages', amount_column => 'cost')",
        "invalid_parameter_value",
    );
    assert!(refused.contains("is a generated column"), "{refused}");
    let rules = Spi::get_one::<i64>("SELECT count(*) FROM quota.enforcements").unwrap();
    assert_eq!(rules, Some(0));
}

/// A table quota's trigger refuses a row whose partition computes a column the quota reads:
/// PostgreSQL 15 attaches a partition whose column is generated where the root's is plain,
/// and its BEFORE INSERT trigger sees what the INSERT supplied (or NULL), not the value.
#[cfg(feature = "pg15")]
#[pg_test]
fn enforce_refuses_rows_of_a_partition_with_a_generated_column() {
    setup_free_plan();
    Spi::run("CREATE TABLE gen_parted (id int, user_id text, qty int, cost int) PARTITION BY RANGE (id)").unwrap();
    Spi::run("SELECT quota.enforce_on_insert('gen_parted', subject_column => 'user_id', metric => 'messages', amount_column => 'cost')").unwrap();
    Spi::run("CREATE TABLE gen_part1 (id int, user_id text, qty int, cost int GENERATED ALWAYS AS (qty * 10) STORED)").unwrap();
    Spi::run("ALTER TABLE gen_parted ATTACH PARTITION gen_part1 FOR VALUES FROM (0) TO (100)").unwrap();
    let refused = refusal("INSERT INTO gen_parted (id, user_id, qty) VALUES (1, 'u1', 1)", "object_not_in_prerequisite_state");
    assert!(refused.contains("is a generated column where this row is stored"), "{refused}");
    let used = Spi::get_one::<i64>("SELECT coalesce(sum(used), 0)::bigint FROM quota.counters WHERE subject = 'u1'").unwrap();
    assert_eq!(used, Some(0));
}

/// From 16 on PostgreSQL itself refuses such a partition (so the trigger's check above is
/// for 15, and for a database before 0.4.0 that follows columns by name).
#[cfg(not(feature = "pg15"))]
#[pg_test(error = "column \"cost\" in child table must not be a generated column")]
fn a_partition_cannot_generate_what_its_root_does_not() {
    Spi::run("CREATE TABLE gen_parted (id int, cost int) PARTITION BY RANGE (id)").unwrap();
    Spi::run("CREATE TABLE gen_part1 (id int, cost int GENERATED ALWAYS AS (id * 10) STORED)").unwrap();
    Spi::run("ALTER TABLE gen_parted ATTACH PARTITION gen_part1 FOR VALUES FROM (0) TO (100)").unwrap();
}
