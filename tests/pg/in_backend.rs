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
