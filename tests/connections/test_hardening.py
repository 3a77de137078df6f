"""0.4.0 hardening over real connections (psycopg 3: every value is a bound parameter).

One function per test, named after its issue item (a2 partitioned tables, a3 tenant
bindings, a5 bounded input, a6 refund_on_delete refunds what was charged, a7 smaller
findings). Each test has its own database (hard_<test>), so one failing test leaves the
others alone; run_tests catches whatever a test raises and records it as a failure.

Needs the cluster scripts/test.sh starts (shared_preload_libraries = 'quota_ext',
max_prepared_transactions = 10), QUOTA_HOST / QUOTA_PORT pointing at it, and to run as
root on the server's machine (a5_backend_memory_stays_bounded reads /proc/<pid>/status,
a5_server_log_stays_small reads $QUOTA_HOST/server.log, a7_no_rust_backtrace_in_errors
starts its own cluster as the postgres user on port QUOTA_BT_PORT, default 55491).

Run a subset: python3 test_hardening.py a3_ a7_notify
"""
import collections
import json
import os
import re
import subprocess
import sys
import time

import psycopg

from hardening_common import (drop_db, HOST, PORT, Worker, attempt, check, connect, describe, drop_role, expect_error, expect_ok,
                              finish, fresh_db, fresh_roles, one, rows, run_tests, short, used)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN = os.environ.get("QUOTA_RUN", "/tmp/quota_ext")
DAY1 = "2026-06-01 12:00:00+00"
DAY2 = "2026-06-02 12:00:00+00"


def snapshot(conn, tables=None):
    """Every row of every table of schema quota (or of `tables`), as the superuser sees it."""
    out = {}
    names = tables or [r[0] for r in rows(conn, """SELECT c.oid::regclass::text FROM pg_class c
        WHERE c.relnamespace = 'quota'::regnamespace AND c.relkind = 'r' ORDER BY 1""")]
    for name in names:
        out[name] = rows(conn, f"SELECT * FROM {name} t ORDER BY t::text")
    return out


def diff(before, after):
    return [name for name in before if before[name] != after.get(name)]


# ---------------------------------------------------------------------------------------
# Item 2: partitioned tables
# ---------------------------------------------------------------------------------------

def a2_setup(db, refund=False, enforce=True):
    c = fresh_db(db)
    c.execute("SELECT quota.set_limit('FREE', 'messages', 'day', 3)")
    c.execute("SET quota.default_plan = 'FREE'")
    c.execute(f"SET quota.clock_override = '{DAY1}'")  # the rows' `created` dates are in 2026
    c.execute("""CREATE TABLE msgs (id bigserial, user_id text NOT NULL, created date NOT NULL DEFAULT current_date,
                 body text, PRIMARY KEY (id, created)) PARTITION BY RANGE (created)""")
    c.execute("CREATE TABLE msgs_2026 PARTITION OF msgs FOR VALUES FROM ('2026-01-01') TO ('2028-01-01')")
    if enforce:
        expect_ok(c, """SELECT quota.enforce_on_insert('msgs', subject_column => 'user_id', metric => 'messages',
                        refund_on_delete => %s)""", (refund,), f"enforce_on_insert on the partitioned root (refund_on_delete {refund})")
    return c


def insert_msg(c, user, created="2026-06-01", table="msgs"):
    """(error, id) of one inserted row; straight into a partition the id comes from the
    root's sequence."""
    if table == "msgs":
        e, r = attempt(c, "INSERT INTO msgs (user_id, created, body) VALUES (%s, %s, 'hi') RETURNING id", (user, created))
    else:
        e, r = attempt(c, f"INSERT INTO {table} (id, user_id, created, body) VALUES (nextval('msgs_id_seq'), %s, %s, 'hi') RETURNING id",
                       (user, created))
    return e, (r[0][0] if r else None)


def a2_partition_rows_are_metered():
    c = a2_setup("hard_a2_metered")
    errors = [insert_msg(c, "bob")[0] for _ in range(3)]
    check(all(e is None for e in errors), f"3 rows for bob inserted through the root ({[describe(e) for e in errors]})")
    check(used(c, "bob", "messages") == 3, f"bob used = 3 (got {used(c, 'bob', 'messages')})")
    e, _ = insert_msg(c, "bob")
    check(e is not None and e.sqlstate == "QT429", f"the 4th insert is refused with QT429 ({describe(e)})")
    n = one(c, "SELECT count(*) FROM msgs WHERE user_id = 'bob'")
    check(n == 3, f"the refused insert inserted nothing (bob has {n} rows)")
    check(used(c, "bob", "messages") == 3, f"bob used still 3 (got {used(c, 'bob', 'messages')})")


def a2_enforce_on_a_partition_is_refused():
    c = a2_setup("hard_a2_on_partition", enforce=False)
    expect_error(c, "SELECT quota.enforce_on_insert('msgs_2026', subject_column => 'user_id', metric => 'messages')",
                 None, "22023", "enforce_on_insert on a partition")
    n = one(c, "SELECT count(*) FROM quota.enforcements WHERE table_name = 'msgs_2026'::regclass")
    check(n == 0, f"no rule recorded for the partition (got {n})")
    n = one(c, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'msgs_2026'::regclass AND tgname LIKE 'quota%%'")
    check(n == 0, f"no quota trigger on the partition (got {n})")


def a2_partitions_created_or_attached_later_are_metered():
    c = a2_setup("hard_a2_later")
    c.execute("CREATE TABLE msgs_2028 PARTITION OF msgs FOR VALUES FROM ('2028-01-01') TO ('2030-01-01')")
    c.execute("""CREATE TABLE msgs_2024 (id bigint NOT NULL, user_id text NOT NULL, created date NOT NULL, body text,
                 PRIMARY KEY (id, created))""")
    c.execute("ALTER TABLE msgs ATTACH PARTITION msgs_2024 FOR VALUES FROM ('2024-01-01') TO ('2026-01-01')")
    for user, created, part in (("carl", "2028-06-01", "msgs_2028"), ("dina", "2024-06-01", "msgs_2024")):
        errors = [insert_msg(c, user, created)[0] for _ in range(2)]
        check(all(e is None for e in errors), f"2 rows for {user} inserted through the root ({[describe(e) for e in errors]})")
        where = {r[0] for r in rows(c, "SELECT tableoid::regclass::text FROM msgs WHERE user_id = %s", (user,))}
        check(where == {part}, f"{user}'s rows are in {part} (got {where})")
        check(used(c, user, "messages") == 2, f"{user} used = 2 (partition {part}; got {used(c, user, 'messages')})")
        insert_msg(c, user, created)
        e, _ = insert_msg(c, user, created)
        check(e is not None and e.sqlstate == "QT429", f"{user}'s 4th row ({part}) is refused with QT429 ({describe(e)})")


def a2_rows_inserted_straight_into_a_partition_are_metered():
    c = a2_setup("hard_a2_straight")
    e, _ = insert_msg(c, "hal", table="msgs_2026")
    check(e is None, f"a row inserted straight into msgs_2026 ({describe(e)})")
    check(used(c, "hal", "messages") == 1, f"hal used = 1 (got {used(c, 'hal', 'messages')})")
    insert_msg(c, "hal", table="msgs_2026")
    insert_msg(c, "hal", table="msgs_2026")
    e, _ = insert_msg(c, "hal", table="msgs_2026")
    check(e is not None and e.sqlstate == "QT429", f"the 4th row straight into the partition is refused with QT429 ({describe(e)})")
    n = one(c, "SELECT count(*) FROM msgs WHERE user_id = 'hal'")
    check(n == 3, f"hal has 3 rows (got {n})")


def a2_refund_on_delete_through_the_root():
    c = a2_setup("hard_a2_refund", refund=True)
    ids = [insert_msg(c, "erin")[1] for _ in range(2)]
    check(used(c, "erin", "messages") == 2, f"erin used = 2 after 2 inserts (got {used(c, 'erin', 'messages')})")
    c.execute("DELETE FROM msgs WHERE id = %s", (ids[0],))
    check(used(c, "erin", "messages") == 1, f"erin used = 1 after deleting one row through the root (got {used(c, 'erin', 'messages')})")
    c.execute("DELETE FROM msgs WHERE user_id = 'erin'")
    check(used(c, "erin", "messages") == 0, f"erin used = 0 after deleting the other (got {used(c, 'erin', 'messages')})")


def a2_update_moving_a_row_keeps_its_charge():
    c = a2_setup("hard_a2_move", refund=True)
    c.execute("CREATE TABLE msgs_2028 PARTITION OF msgs FOR VALUES FROM ('2028-01-01') TO ('2030-01-01')")
    ids = [insert_msg(c, "fay")[1] for _ in range(3)]
    check(used(c, "fay", "messages") == 3, f"fay used = 3, at her limit (got {used(c, 'fay', 'messages')})")
    ledger = lambda: sorted(rows(c, "SELECT kind, amount FROM quota.usage_events WHERE subject = 'fay' ORDER BY id"))
    before = ledger()
    e, _ = attempt(c, "UPDATE msgs SET created = '2028-06-01' WHERE id = %s", (ids[0],))
    check(e is None, f"an UPDATE moving fay's row to msgs_2028 is not refused at her limit ({describe(e)})")
    part = one(c, "SELECT tableoid::regclass::text FROM msgs WHERE id = %s", (ids[0],))
    check(part == "msgs_2028", f"the row moved to msgs_2028 (it is in {part})")
    check(used(c, "fay", "messages") == 3, f"fay used still 3 after the move (got {used(c, 'fay', 'messages')})")
    check(ledger() == before, f"the move wrote no ledger row (before {before}, after {ledger()})")
    c.execute("UPDATE msgs SET created = '2026-07-01' WHERE id = %s", (ids[1],))  # within msgs_2026: not a move
    check(used(c, "fay", "messages") == 3, f"fay used still 3 after an UPDATE within the partition (got {used(c, 'fay', 'messages')})")
    c.execute("DELETE FROM msgs WHERE id = %s", (ids[0],))
    check(used(c, "fay", "messages") == 2, f"deleting the moved row refunds exactly once: used 2 (got {used(c, 'fay', 'messages')})")
    refunds = [r for r in ledger() if r[0] == "refund"]
    check(refunds == [("refund", 1)], f"one refund of 1 in the ledger (got {refunds})")


def a2_detached_partition_is_not_metered():
    c = a2_setup("hard_a2_detach")
    e, _ = insert_msg(c, "gil", table="msgs_2026")
    check(e is None and used(c, "gil", "messages") == 1,
          f"before DETACH a row straight into msgs_2026 is metered (used {used(c, 'gil', 'messages')}, {describe(e)})")
    c.execute("ALTER TABLE msgs DETACH PARTITION msgs_2026")
    e, _ = insert_msg(c, "gil", table="msgs_2026")
    check(e is None, f"after DETACH an insert into msgs_2026 works ({describe(e)})")
    check(used(c, "gil", "messages") == 1, f"and consumes nothing: gil used still 1 (got {used(c, 'gil', 'messages')})")
    for _ in range(3):
        insert_msg(c, "gil", table="msgs_2026")
    n = one(c, "SELECT count(*) FROM msgs_2026 WHERE user_id = 'gil'")
    check(n == 5, f"the detached table takes rows past the limit (gil has {n} of 5 rows)")


# ---------------------------------------------------------------------------------------
# Item 3: tenant bindings
# ---------------------------------------------------------------------------------------

def bind(c, role, tenant):
    e, _ = attempt(c, "SELECT quota.bind_tenant(%s::text, %s::text)", (role, tenant))
    check(e is None, f"bind_tenant({role}, {tenant}) ({describe(e)})")


def a3_setup(db, extra_roles=()):
    c = fresh_db(db)
    c.execute("SELECT quota.set_limit('FREE', 'messages', 'day', 100000)")
    c.execute("SELECT quota.assign_plan('a1', 'FREE', tenant => 'acme')")
    c.execute("SELECT quota.assign_plan('g1', 'FREE', tenant => 'globex')")
    c.execute("SELECT quota.assign_plan('u1', 'FREE')")  # a subject without a tenant
    fresh_roles(c, ("acme_app", "IN ROLE quota_app"), ("acme_reader", "IN ROLE quota_reader"), *extra_roles)
    bind(c, "acme_app", "acme")
    bind(c, "acme_reader", "acme")
    return c


def a3_bound_role_cannot_act_for_another_tenant():
    db = "hard_a3_act"
    c = a3_setup(db)
    c.execute("SELECT quota.set_alerts('FREE', 'messages', ARRAY[1])")  # 1% of 100000 -> 1000 crosses
    c.execute("SET quota.tenant = 'globex'")
    c.execute("SELECT quota.quota_consume('g1', 'messages', 1000)")
    hold = one(c, "SELECT reservation FROM quota.quota_reserve('g1', 'messages', 2)")
    hold2 = one(c, "SELECT reservation FROM quota.quota_reserve('g1', 'messages', 3)")
    c.execute("RESET quota.tenant")
    last_event = one(c, "SELECT max(id) FROM quota.events")
    check(one(c, "SELECT count(*) FROM quota.events WHERE subject = 'g1' AND acknowledged_at IS NULL") >= 1,
          "globex has a pending event (control)")
    before = snapshot(c)
    app = connect(db, user="acme_app")
    expect_ok(app, "SET quota.tenant = 'globex'", what="acme_app: SET quota.tenant = 'globex'")
    calls = [
        ("quota_consume", "SELECT * FROM quota.quota_consume('g1'::text, 'messages'::text)", None),
        ("quota_consume (jsonb)", "SELECT * FROM quota.quota_consume('g1'::text, '{\"messages\": 1}'::jsonb)", None),
        ("quota_try_consume", "SELECT * FROM quota.quota_try_consume('g1'::text, 'messages'::text)", None),
        ("quota_check", "SELECT * FROM quota.quota_check('g1'::text, 'messages'::text)", None),
        ("quota_status", "SELECT * FROM quota.quota_status('g1'::text)", None),
        ("quota_refund", "SELECT * FROM quota.quota_refund('g1'::text, 'messages'::text, 1)", None),
        ("quota_reserve", "SELECT * FROM quota.quota_reserve('g1'::text, 'messages'::text, 1)", None),
        ("ack_events", "SELECT quota.ack_events(%s)", (last_event,)),
        ("quota_commit", "SELECT * FROM quota.quota_commit(%s::uuid)", (hold,)),
        ("quota_release", "SELECT quota.quota_release(%s::uuid)", (hold2,)),
    ]
    for name, query, params in calls:
        expect_error(app, query, params, "42501", f"acme_app (bound to acme) under quota.tenant = 'globex': {name}")
    after = snapshot(c)
    check(diff(before, after) == [], f"globex's state is unchanged (tables that changed: {diff(before, after)})")
    app.close()


def a3_bound_reader_cannot_read_another_tenant():
    db = "hard_a3_reader"
    c = a3_setup(db)
    for subject in ("a1", "g1", "u1"):
        c.execute("SELECT quota.quota_consume(%s::text, 'messages'::text)", (subject,))
    reader = connect(db, user="acme_reader")
    reader.execute("SET quota.tenant = 'globex'")
    for table in ("quota.usage_events", "quota.subjects", "quota.counters"):
        e, result = attempt(reader, f"SELECT * FROM {table}")
        check(e is not None and e.sqlstate == "42501",
              f"acme_reader under quota.tenant = 'globex': SELECT * FROM {table} is 42501 ({describe(e) if e else f'read {len(result)} rows'})")
    reader.execute("SET quota.tenant = 'acme'")
    for table in ("quota.usage_events", "quota.subjects", "quota.counters"):
        e, result = attempt(reader, f"SELECT DISTINCT subject FROM {table}")
        seen = None if e else {r[0] for r in result}
        check(seen == {"a1"}, f"acme_reader under quota.tenant = 'acme' reads only acme rows of {table} (got {seen or describe(e)})")
    reader.close()


def a3_alter_role_set_does_not_bind():
    db = "hard_a3_alter_role"
    c = a3_setup(db, extra_roles=[("hard_shared_app", "IN ROLE quota_app")])
    c.execute("ALTER ROLE hard_shared_app SET quota.tenant = 'acme'")
    c.execute("SELECT quota.quota_consume('g1'::text, 'messages'::text)")
    shared = connect(db, user="hard_shared_app")
    check(one(shared, "SHOW quota.tenant") == "acme", "the unbound role's session starts with quota.tenant = 'acme'")
    e, _ = attempt(shared, "SELECT quota.quota_consume('a1'::text, 'messages'::text)")
    check(e is None, f"it acts for acme ({describe(e)})")
    expect_ok(shared, "SET quota.tenant = 'globex'", what="the unbound role can SET quota.tenant = 'globex'")
    e, _ = attempt(shared, "SELECT quota.quota_consume('g1'::text, 'messages'::text)")
    check(e is None, f"and act for globex (shared-role model; {describe(e)})")
    check(used(c, "g1", "messages") == 2, f"g1 used = 2 (got {used(c, 'g1', 'messages')})")
    app = connect(db, user="acme_app")
    app.execute("SET quota.tenant = 'globex'")
    expect_error(app, "SELECT quota.quota_consume('g1'::text, 'messages'::text)", None, "42501",
                 "the bound role under quota.tenant = 'globex' cannot consume for g1")
    check(used(c, "g1", "messages") == 2, f"g1 used still 2 (got {used(c, 'g1', 'messages')})")
    shared.close()
    app.close()


def a3_bound_session_without_tenant_sees_nothing():
    db = "hard_a3_no_tenant"
    c = a3_setup(db)
    for subject in ("a1", "g1", "u1"):
        c.execute("SELECT quota.quota_consume(%s::text, 'messages'::text)", (subject,))
    app = connect(db, user="acme_app")
    check(one(app, "SELECT current_setting('quota.tenant', true)") in (None, ""), "acme_app's session has no quota.tenant")
    expect_error(app, "SELECT * FROM quota.quota_check('a1'::text, 'messages'::text)", None, "QT404",
                 "acme_app without quota.tenant: quota_check on acme's a1")
    for table in ("quota.subjects", "quota.counters", "quota.usage_events"):
        e, result = attempt(app, f"SELECT count(*) FROM {table}")
        n = None if e else result[0][0]
        check(n == 0, f"acme_app without quota.tenant sees no row of {table} (got {n if e is None else describe(e)})")
    app.close()
    c.execute("ALTER ROLE acme_app SET quota.default_plan = 'FREE'")
    app = connect(db, user="acme_app")
    check(one(app, "SHOW quota.default_plan") == "FREE", "acme_app's new session has quota.default_plan = 'FREE'")
    expect_error(app, "SELECT * FROM quota.quota_consume('new1'::text, 'messages'::text)", None, ("QT404", "42501"),
                 "acme_app without quota.tenant: consume on a new id")
    check(one(c, "SELECT count(*) FROM quota.subjects WHERE subject = 'new1'") == 0, "no subject new1 was created")
    expect_error(app, "SELECT * FROM quota.quota_consume('u1'::text, 'messages'::text)", None, ("QT404", "42501"),
                 "acme_app without quota.tenant: consume on u1 (no tenant)")
    check(used(c, "u1", "messages") == 1, f"u1 used still 1 (got {used(c, 'u1', 'messages')})")
    app.close()


def a3_bound_session_acts_for_its_tenant():
    db = "hard_a3_own"
    c = a3_setup(db)
    c.execute("ALTER ROLE acme_app SET quota.default_plan = 'FREE'")
    app = connect(db, user="acme_app")
    app.execute("SET quota.tenant = 'acme'")
    e, result = attempt(app, "SELECT used FROM quota.quota_consume('a1'::text, 'messages'::text)")
    check(e is None and result[0][0] == 1, f"acme_app under quota.tenant = 'acme' consumes for a1 (used {result}, {describe(e)})")
    e, result = attempt(app, "SELECT count(*) FROM quota.quota_status('a1'::text)")
    check(e is None and result[0][0] == 1, f"and reads its status ({result}, {describe(e)})")
    e, _ = attempt(app, "SELECT quota.quota_consume('new2'::text, 'messages'::text)")
    check(e is None, f"a consume on a new id creates it through quota.default_plan ({describe(e)})")
    tenant = one(c, "SELECT tenant FROM quota.subjects WHERE subject = 'new2'")
    check(tenant == "acme", f"the new subject's tenant is acme (got {tenant})")
    check(used(c, "a1", "messages") == 1, f"a1 used = 1 (got {used(c, 'a1', 'messages')})")
    app.close()


def a3_hot_path_enforces_binding():
    db = "hard_a3_hot"
    c = a3_setup(db)
    for subject in ("a1", "g1"):  # window rows exist, the shared cache knows both subjects
        c.execute("SELECT quota.quota_consume(%s::text, 'messages'::text)", (subject,))
        c.execute("SELECT quota.quota_check(%s::text, 'messages'::text)", (subject,))
    app = connect(db, user="acme_app")
    app.execute("SET quota.tenant = 'acme'")
    ok = sum(attempt(app, "SELECT quota.quota_consume('a1'::text, 'messages'::text)")[0] is None for _ in range(100))
    check(ok == 100, f"100 warm-up consumes for a1 under acme (got {ok})")
    app.execute("SET quota.tenant = 'globex'")
    for what, query in (("quota_consume", "SELECT quota.quota_consume('g1'::text, 'messages'::text)"),
                        ("quota_check", "SELECT quota.quota_check('g1'::text, 'messages'::text)"),
                        ("quota_consume jsonb", "SELECT quota.quota_consume('g1'::text, '{\"messages\": 1}'::jsonb)")):
        codes = collections.Counter()
        for _ in range(200):
            e, _ = attempt(app, query)
            codes[e.sqlstate if e else "ok"] += 1
        check(codes == {"42501": 200}, f"200 repeated {what} for g1 under globex are all 42501 ({dict(codes)})")
    check(used(c, "g1", "messages") == 1, f"g1 used still 1 (got {used(c, 'g1', 'messages')})")
    app.close()


def a3_admin_is_not_restricted():
    db = "hard_a3_admin"
    c = a3_setup(db, extra_roles=[("hard_boss", "IN ROLE quota_admin")])
    c.execute("GRANT acme_app TO hard_boss")
    boss = connect(db, user="hard_boss")
    check(one(boss, "SELECT pg_has_role('hard_boss', 'acme_app', 'MEMBER')"), "hard_boss is a member of the bound acme_app")
    e, _ = attempt(boss, "SELECT quota.quota_consume('g1'::text, 'messages'::text)")
    check(e is None, f"hard_boss without quota.tenant consumes for globex's g1 ({describe(e)})")
    e, _ = attempt(boss, "SELECT quota.assign_plan('g2'::text, 'FREE', tenant => 'globex')")
    check(e is None, f"hard_boss assigns a globex subject ({describe(e)})")
    boss.execute("SET quota.tenant = 'globex'")
    e, _ = attempt(boss, "SELECT quota.quota_consume('g1'::text, 'messages'::text)")
    check(e is None, f"hard_boss under quota.tenant = 'globex' consumes for g1 ({describe(e)})")
    boss.execute("SET quota.tenant = 'acme'")
    e, _ = attempt(boss, "SELECT quota.quota_consume('a1'::text, 'messages'::text)")
    check(e is None, f"hard_boss under quota.tenant = 'acme' consumes for a1 ({describe(e)})")
    check((used(c, "g1", "messages"), used(c, "a1", "messages")) == (2, 1),
          f"g1 used 2, a1 used 1 (got {used(c, 'g1', 'messages')}, {used(c, 'a1', 'messages')})")
    boss.close()


def a3_union_of_bound_roles():
    db = "hard_a3_union"
    c = a3_setup(db, extra_roles=[("hard_initech_app", "IN ROLE quota_app"), ("hard_multi", "IN ROLE quota_app")])
    bind(c, "hard_initech_app", "initech")
    c.execute("SELECT quota.assign_plan('i1', 'FREE', tenant => 'initech')")
    c.execute("GRANT acme_app, hard_initech_app TO hard_multi")
    m = connect(db, user="hard_multi")
    for tenant, subject, allowed in (("acme", "a1", True), ("initech", "i1", True), ("globex", "g1", False)):
        m.execute(f"SET quota.tenant = '{tenant}'")
        if allowed:
            e, _ = attempt(m, "SELECT quota.quota_consume(%s::text, 'messages'::text)", (subject,))
            check(e is None, f"hard_multi (member of acme_app and hard_initech_app) acts for {tenant} ({describe(e)})")
        else:
            expect_error(m, "SELECT quota.quota_consume(%s::text, 'messages'::text)", (subject,), "42501",
                         f"hard_multi cannot act for {tenant}")
    got = (used(c, "a1", "messages"), used(c, "i1", "messages"), used(c, "g1", "messages"))
    check(got == (1, 1, 0), f"a1, i1, g1 used = 1, 1, 0 (got {got})")
    m.close()


def a3_bindings_survive_in_table():
    db = "hard_a3_table"
    c = a3_setup(db)
    bind(c, "acme_app", "acme2")
    table = lambda: rows(c, "SELECT role_name::text, tenant FROM quota.tenant_bindings ORDER BY 1, 2")
    e, result = attempt(c, "SELECT role_name::text, tenant FROM quota.tenant_bindings ORDER BY 1, 2")
    check(result == [("acme_app", "acme"), ("acme_app", "acme2"), ("acme_reader", "acme")],
          f"quota.tenant_bindings holds (role_name, tenant) rows ({result or describe(e)})")
    app = connect(db, user="acme_app")  # a new session obeys the stored binding
    app.execute("SET quota.tenant = 'globex'")
    expect_error(app, "SELECT quota.quota_consume('g1'::text, 'messages'::text)", None, "42501",
                 "a new acme_app session under globex is refused")
    app.close()
    e, result = attempt(c, "SELECT quota.unbind_tenant('acme_app', 'acme2')")
    check(result == [(1,)], f"unbind_tenant('acme_app', 'acme2') = 1 ({result or describe(e)})")
    e, result = attempt(c, "SELECT quota.unbind_tenant('acme_reader')")
    check(result == [(1,)], f"unbind_tenant('acme_reader') removes its 1 binding ({result or describe(e)})")
    e, result = attempt(c, "SELECT role_name::text, tenant FROM quota.tenant_bindings ORDER BY 1, 2")
    check(result == [("acme_app", "acme")], f"one binding left ({result or describe(e)})")
    e, result = attempt(c, "SELECT quota.unbind_tenant('acme_app')")
    check(result == [(1,)], f"unbind_tenant('acme_app') = 1 ({result or describe(e)})")
    app = connect(db, user="acme_app")  # unbound again: the shared-role model
    app.execute("SET quota.tenant = 'globex'")
    e, _ = attempt(app, "SELECT quota.quota_consume('g1'::text, 'messages'::text)")
    check(e is None, f"after unbind_tenant, acme_app acts for globex again ({describe(e)})")
    app.close()


# ---------------------------------------------------------------------------------------
# Item 5: bounded input
# ---------------------------------------------------------------------------------------

def a5_over_long_names_are_refused():
    c = fresh_db("hard_a5_bounds")
    c.execute("SELECT quota.set_limit('FREE', 'messages', 'day', 100000)")
    c.execute("SELECT quota.set_bonus_rule('FREE', 'messages', 'survey', 5)")
    c.execute("SELECT quota.assign_plan('s1', 'FREE')")
    s513, s512 = "s" * 513, "S" * 512
    n129, n128 = "n" * 129, "N" * 128
    euro171, euro170 = "\u20ac" * 171, "\u20ac" * 170  # 513 and 510 bytes, 171 and 170 characters
    over = [
        ("quota_consume subject 513 bytes", "SELECT quota.quota_consume(%s::text, 'messages'::text)", (s513,)),
        ("quota_check subject 513 bytes", "SELECT quota.quota_check(%s::text, 'messages'::text)", (s513,)),
        ("assign_plan subject 513 bytes", "SELECT quota.assign_plan(%s::text, 'FREE')", (s513,)),
        ("assign_plan subject of 171 3-byte characters", "SELECT quota.assign_plan(%s::text, 'FREE')", (euro171,)),
        ("apply_bonus subject 513 bytes", "SELECT quota.apply_bonus(%s::text, 'messages', 'survey', 'r0')", (s513,)),
        ("quota_consume metric 129 bytes", "SELECT quota.quota_consume('s1'::text, %s::text)", (n129,)),
        ("quota_check metric 129 bytes", "SELECT quota.quota_check('s1'::text, %s::text)", (n129,)),
        ("set_limit metric 129 bytes", "SELECT quota.set_limit('FREE', %s, 'day', 10)", (n129,)),
        ("set_limit plan 129 bytes", "SELECT quota.set_limit(%s, 'messages', 'day', 10)", (n129,)),
        ("assign_plan plan 129 bytes", "SELECT quota.assign_plan('s1'::text, %s)", (n129,)),
        ("apply_bonus kind 129 bytes", "SELECT quota.apply_bonus('s1'::text, 'messages', %s, 'r1')", (n129,)),
        ("set_bonus_rule kind 129 bytes", "SELECT quota.set_bonus_rule('FREE', 'messages', %s, 5)", (n129,)),
        ("apply_bonus reference 129 bytes", "SELECT quota.apply_bonus('s1'::text, 'messages', 'survey', %s)", (n129,)),
        ("assign_plan tenant 129 bytes", "SELECT quota.assign_plan('s2'::text, 'FREE', tenant => %s)", (n129,)),
        ("quota_consume idempotency_key 513 bytes", "SELECT quota.quota_consume('s1'::text, 'messages'::text, 1, %s)", (s513,)),
    ]
    for what, query, params in over:
        expect_error(c, query, params, "22023", what)
    check(used(c, "s1", "messages") == 0, f"none of them consumed for s1 (used {used(c, 's1', 'messages')})")
    check(one(c, "SELECT count(*) FROM quota.subjects WHERE subject NOT IN ('s1')") == 0, "no other subject was created")

    e, _ = attempt(c, "SET quota.max_metadata_bytes = 100")
    check(e is None, f"a superuser sets quota.max_metadata_bytes = 100 ({describe(e)})")
    big = json.dumps({"note": "x" * 180})
    small = json.dumps({"note": "x" * 40})
    expect_error(c, "SELECT quota.quota_consume('s1'::text, 'messages'::text, 1, NULL, %s::jsonb)", (big,), "22023",
                 f"quota_consume with {len(big)} bytes of metadata over quota.max_metadata_bytes = 100")
    e, _ = attempt(c, "SELECT quota.quota_consume('s1'::text, 'messages'::text, 1, NULL, %s::jsonb)", (small,))
    check(e is None, f"{len(small)} bytes of metadata are accepted ({describe(e)})")
    attempt(c, "RESET quota.max_metadata_bytes")

    # at the bound, on a subject of its own (an over-bound call that was wrongly accepted
    # may have moved s1 to another plan)
    c.execute("SELECT quota.assign_plan('b1', 'FREE')")
    at = [
        ("assign_plan subject 512 bytes", "SELECT quota.assign_plan(%s::text, 'FREE')", (s512,)),
        ("quota_consume subject 512 bytes", "SELECT quota.quota_consume(%s::text, 'messages'::text)", (s512,)),
        ("assign_plan subject of 170 3-byte characters", "SELECT quota.assign_plan(%s::text, 'FREE')", (euro170,)),
        ("set_limit metric 128 bytes", "SELECT quota.set_limit('FREE', %s, 'day', 10)", (n128,)),
        ("quota_consume metric 128 bytes", "SELECT quota.quota_consume('b1'::text, %s::text)", (n128,)),
        ("set_limit plan 128 bytes", "SELECT quota.set_limit(%s, 'messages', 'day', 10)", (n128,)),
        ("assign_plan plan 128 bytes", "SELECT quota.assign_plan('s3'::text, %s)", (n128,)),
        ("set_bonus_rule kind 128 bytes", "SELECT quota.set_bonus_rule('FREE', 'messages', %s, 5)", (n128,)),
        ("apply_bonus kind 128 bytes", "SELECT (quota.apply_bonus('b1'::text, 'messages', %s, 'r128')).applied", (n128,)),
        ("apply_bonus reference 128 bytes", "SELECT (quota.apply_bonus('b1'::text, 'messages', 'survey', %s)).applied", (n128,)),
        ("assign_plan tenant 128 bytes", "SELECT quota.assign_plan('s4'::text, 'FREE', tenant => %s)", (n128,)),
        ("quota_consume idempotency_key 512 bytes", "SELECT quota.quota_consume('b1'::text, 'messages'::text, 1, %s)", (s512,)),
    ]
    for what, query, params in at:
        e, result = attempt(c, query, params)
        check(e is None and result != [(False,)], f"at the bound: {what} works ({describe(e) if e else short(result, 80)})")
    check(used(c, s512, "messages") == 1, f"the 512-byte subject consumed (used {used(c, s512, 'messages')})")


def a5_errors_quote_a_short_prefix():
    c = fresh_db("hard_a5_prefix")
    c.execute("SELECT quota.set_limit('FREE', 'messages', 'day', 100)")
    c.execute("SELECT quota.assign_plan('s1', 'FREE')")
    mib = 1 << 20
    for what, query, params in (
            ("quota_consume with a 1 MiB metric", "SELECT quota.quota_consume('s1'::text, %s::text)", ("m" * mib,)),
            ("quota_check with a 1 MiB metric", "SELECT quota.quota_check('s1'::text, %s::text)", ("m" * mib,)),
            ("quota_consume with a 1 MiB subject", "SELECT quota.quota_consume(%s::text, 'messages'::text)", ("s" * mib,)),
            ("set_limit with a 1 MiB plan", "SELECT quota.set_limit(%s, 'messages', 'day', 1)", ("p" * mib,))):
        e = expect_error(c, query, params, "22023", what)
        if e is not None:
            sizes = {k: len((v or "").encode()) for k, v in (("message", e.diag.message_primary), ("detail", e.diag.message_detail),
                                                              ("hint", e.diag.message_hint))}
            check(sizes["message"] < 1000 and sizes["detail"] < 1000 and sizes["hint"] < 1000,
                  f"{what}: message, DETAIL and HINT are each under 1000 bytes ({sizes})")
    name = "u" * 100
    e = expect_error(c, "SELECT quota.quota_consume('s1'::text, %s::text)", (name,), "22023", "an unknown 100-byte metric")
    if e is not None:
        check(name in (e.diag.message_detail or ""), f"its DETAIL holds the whole name ({short(e.diag.message_detail)})")


def rss_anon_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise RuntimeError("no RssAnon line")


def a5_backend_memory_stays_bounded():
    c = fresh_db("hard_a5_memory")
    c.execute("SELECT quota.set_limit('FREE', 'messages', 'day', 100)")
    c.execute("SELECT quota.assign_plan('s1', 'FREE')")
    pid = one(c, "SELECT pg_backend_pid()")
    big = "m" * (1 << 20)
    big_call = lambda: attempt(c, "SELECT quota.quota_consume('s1'::text, %s::text)", (big,))[0]
    name_call = lambda name: attempt(c, "SELECT quota.quota_consume('s1'::text, %s::text)", (name,))[0]
    for i in range(20):
        big_call()
        name_call(f"warm{i}")
    r0 = rss_anon_kb(pid)
    codes = collections.Counter()
    started = time.monotonic()
    for _ in range(1000):
        e = big_call()
        codes[e.sqlstate if e else "ok"] += 1
    r1 = rss_anon_kb(pid)
    print(f"  backend {pid}: RssAnon {r0} kB before, {r1} kB after 1,000 calls with a 1 MiB metric "
          f"({time.monotonic() - started:.1f} s; {dict(codes)})")
    check(codes == {"22023": 1000}, f"each of the 1,000 calls raised 22023 ({dict(codes)})")
    check(r1 - r0 < 1024, f"RssAnon grew by {r1 - r0} kB (< 1024 kB)")
    codes = collections.Counter()
    started = time.monotonic()
    for i in range(20000):
        e = name_call(f"m{i}")
        codes[e.sqlstate if e else "ok"] += 1
    r2 = rss_anon_kb(pid)
    print(f"  RssAnon {r2} kB after 20,000 calls with distinct unknown metrics ({time.monotonic() - started:.1f} s; {dict(codes)})")
    check(codes == {"22023": 20000}, f"each unknown metric raised 22023 ({dict(codes)})")
    check(r2 - r1 < 2048, f"RssAnon grew by {r2 - r1} kB (< 2048 kB)")


def server_log_path():
    path = os.environ.get("QUOTA_SERVER_LOG") or os.path.join(HOST, "server.log")
    return path if os.path.isfile(path) else None


def a5_server_log_stays_small():
    log = server_log_path()
    if not check(log is not None, f"the server log is found ({os.path.join(HOST, 'server.log')}; or set QUOTA_SERVER_LOG)"):
        return
    c = fresh_db("hard_a5_log")
    c.execute("SELECT quota.set_limit('FREE', 'messages', 'day', 100)")
    c.execute("SELECT quota.assign_plan('s1', 'FREE')")
    big = "m" * (1 << 20)
    size0 = os.path.getsize(log)
    limit = 5 * 1000 * 1000
    calls, codes = 0, collections.Counter()
    for calls in range(1, 1001):
        e, _ = attempt(c, "SELECT quota.quota_consume('s1'::text, %s::text)", (big,))
        codes[e.sqlstate if e else "ok"] += 1
        if calls % 100 == 0 and os.path.getsize(log) - size0 >= limit:
            break  # already failed: spare the disk the rest
    time.sleep(0.5)  # let the logger catch up
    grown = os.path.getsize(log) - size0
    print(f"  server log grew by {grown} bytes over {calls} calls with a 1 MiB metric ({dict(codes)})")
    check(calls == 1000 and grown < limit, f"the server log grew by {grown / 1e6:.2f} MB over {calls} calls (< 5 MB over 1,000)")


def a5_long_subject_stored_earlier_keeps_working():
    c = fresh_db("hard_a5_long_subject")
    c.execute(f"SET quota.clock_override = '{DAY1}'")
    c.execute("SELECT quota.set_limit('FREE', 'messages', 'day', 10)")
    c.execute("SELECT quota.set_alerts('FREE', 'messages', ARRAY[50])")
    c.execute("SELECT quota.set_bonus_rule('FREE', 'messages', 'survey', 5)")
    c.execute("INSERT INTO quota.subjects (subject, plan, cycle_anchor) VALUES (repeat('x', 9000), 'FREE', now())")
    c.execute("SELECT quota.assign_plan('other', 'FREE')")
    long = "x" * 9000
    errors = []
    for _ in range(5):
        e, _ = attempt(c, "SELECT quota.quota_consume(%s::text, 'messages'::text)", (long,))
        errors.append(e)
    check(all(e is None for e in errors), f"5 consumes for the 9000-byte subject work, across the 50% threshold "
                                           f"({[describe(e) for e in errors if e]})")
    check(used(c, long, "messages") == 5, f"its used = 5 (got {used(c, long, 'messages')})")
    n = one(c, "SELECT count(*) FROM quota.events WHERE subject = %s AND type = 'threshold_crossed'", (long,))
    check(n == 1, f"the threshold event is in quota.events (got {n})")
    e, result = attempt(c, "SELECT (quota.apply_bonus(%s::text, 'messages', 'survey', 'ref-long')).applied", (long,))
    check(result == [(True,)], f"apply_bonus for it works ({result or describe(e)})")
    e, result = attempt(c, "SELECT quota.quota_reset(%s::text, 'messages')", (long,))
    check(result == [(1,)], f"quota_reset for it works and empties 1 window ({result or describe(e)})")
    e, result = attempt(c, "SELECT reservation FROM quota.quota_reserve(%s::text, 'messages', 1, '1 minute')", (long,))
    check(e is None, f"a hold for it ({describe(e)})")
    long_hold = result[0][0] if result else None
    other_hold = one(c, "SELECT reservation FROM quota.quota_reserve('other', 'messages', 1, '1 minute')")
    c.execute("SET quota.clock_override = '2026-06-01 13:00:00+00'")
    e, result = attempt(c, "SELECT quota.maintenance()")
    check(e is None, f"maintenance() with its lapsed hold returns ({result or describe(e)})")
    status = one(c, "SELECT status FROM quota.reservations WHERE id = %s", (other_hold,))
    check(status == "expired", f"the other subject's lapsed hold is expired (status {status})")
    if long_hold:
        status = one(c, "SELECT status FROM quota.reservations WHERE id = %s", (long_hold,))
        check(status == "expired", f"the long subject's lapsed hold is expired (status {status})")


# ---------------------------------------------------------------------------------------
# Item 6: refund_on_delete refunds what was charged
# ---------------------------------------------------------------------------------------

def a6_setup(db):
    c = fresh_db(db)
    c.execute(f"SET quota.clock_override = '{DAY1}'")
    c.execute("SELECT quota.set_limit('FREE', 'tokens', 'day', 100000)")
    c.execute("SET quota.default_plan = 'FREE'")
    c.execute("CREATE TABLE chat (id bigserial PRIMARY KEY, user_id text NOT NULL, content text)")
    expect_ok(c, """SELECT quota.enforce_on_insert('chat', subject_column => 'user_id', metric => 'tokens',
                    tokens_of => 'content', encoding => 'chars', refund_on_delete => true)""", what="enforce_on_insert on chat")
    return c


def insert_chat(c, user, content):
    return one(c, "INSERT INTO chat (user_id, content) VALUES (%s, %s) RETURNING id", (user, content))


def a6_refund_on_delete_needs_a_primary_key():
    c = fresh_db("hard_a6_pk")
    c.execute("SELECT quota.set_limit('FREE', 'tokens', 'day', 1000)")
    c.execute("CREATE TABLE nopk (user_id text NOT NULL, content text)")
    expect_error(c, """SELECT quota.enforce_on_insert('nopk', subject_column => 'user_id', metric => 'tokens',
                       tokens_of => 'content', encoding => 'chars', refund_on_delete => true)""", None, "22023",
                 "refund_on_delete on a table without a primary key")
    n = one(c, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'nopk'::regclass AND tgname LIKE 'quota%%'")
    check(n == 0, f"no quota trigger was created on it (got {n})")
    expect_ok(c, """SELECT quota.enforce_on_insert('nopk', subject_column => 'user_id', metric => 'tokens',
                    tokens_of => 'content', encoding => 'chars')""", what="without refund_on_delete the same table can be enforced")


def a6_update_then_delete_refunds_the_insert_charge():
    c = a6_setup("hard_a6_update")
    c.execute("SELECT quota.quota_consume('alice'::text, 'tokens'::text, 7)")
    before = used(c, "alice", "tokens")
    row = insert_chat(c, "alice", "hello")
    check(used(c, "alice", "tokens") == before + 5, f"inserting 'hello' charges 5 (used {before} -> {used(c, 'alice', 'tokens')})")
    c.execute("UPDATE chat SET content = %s WHERE id = %s", ("x" * 900, row))
    check(used(c, "alice", "tokens") == before + 5, f"the UPDATE to 900 chars is not metered (used {used(c, 'alice', 'tokens')})")
    c.execute("DELETE FROM chat WHERE id = %s", (row,))
    check(used(c, "alice", "tokens") == before, f"DELETE gives back exactly the 5 charged: used {before} (got {used(c, 'alice', 'tokens')})")


def a6_moved_subject_is_not_refunded():
    c = a6_setup("hard_a6_moved")
    c.execute("SELECT quota.quota_consume('carol'::text, 'tokens'::text, 50)")
    alice0, carol0 = used(c, "alice", "tokens"), used(c, "carol", "tokens")
    row = insert_chat(c, "alice", "hello")
    check(used(c, "alice", "tokens") == alice0 + 5, f"alice charged 5 (used {used(c, 'alice', 'tokens')})")
    c.execute("UPDATE chat SET user_id = 'carol' WHERE id = %s", (row,))
    c.execute("DELETE FROM chat WHERE id = %s", (row,))
    check(used(c, "alice", "tokens") == alice0, f"alice gets her charge back: used {alice0} (got {used(c, 'alice', 'tokens')})")
    check(used(c, "carol", "tokens") == carol0, f"carol's used is unchanged: {carol0} (got {used(c, 'carol', 'tokens')})")


def a6_rule_change_between_insert_and_delete():
    c = a6_setup("hard_a6_rule_change")
    c.execute("SELECT quota.quota_consume('alice'::text, 'tokens'::text, 200)")
    before = used(c, "alice", "tokens")
    row = insert_chat(c, "alice", "hello")
    check(used(c, "alice", "tokens") == before + 5, f"'hello' charged 5 (used {used(c, 'alice', 'tokens')})")
    expect_ok(c, """SELECT quota.enforce_on_insert('chat', subject_column => 'user_id', metric => 'tokens', amount => 100,
                    refund_on_delete => true)""", what="the rule changes to 100 per row")
    c.execute("DELETE FROM chat WHERE id = %s", (row,))
    check(used(c, "alice", "tokens") == before, f"DELETE refunds the 5 charged at insert: used {before} (got {used(c, 'alice', 'tokens')})")


def a6_earlier_window_refunds_nothing():
    c = a6_setup("hard_a6_window")
    row = insert_chat(c, "alice", "hello")
    check(used(c, "alice", "tokens") == 5, f"day 1: 'hello' charged 5 (used {used(c, 'alice', 'tokens')})")
    c.execute(f"SET quota.clock_override = '{DAY2}'")
    c.execute("SELECT quota.quota_consume('alice'::text, 'tokens'::text, 20)")
    check(used(c, "alice", "tokens") == 20, f"day 2: used 20 (got {used(c, 'alice', 'tokens')})")
    c.execute("DELETE FROM chat WHERE id = %s", (row,))
    check(used(c, "alice", "tokens") == 20, f"deleting day 1's row on day 2 leaves day 2 at 20 (got {used(c, 'alice', 'tokens')})")
    c.execute(f"SET quota.clock_override = '{DAY1}'")
    print(f"  (day 1 after the delete: used {used(c, 'alice', 'tokens')}; not asserted)")


# ---------------------------------------------------------------------------------------
# Item 7: smaller findings
# ---------------------------------------------------------------------------------------

def a7_notify_carries_only_an_event_id():
    db = "hard_a7_notify"
    c = fresh_db(db)
    c.execute("SELECT quota.set_limit('FREE', 'messages', 'day', 10)")
    c.execute("SELECT quota.set_alerts('FREE', 'messages', ARRAY[50, 100])")
    c.execute("SELECT quota.assign_plan('s1', 'FREE', tenant => 'tenant_secret')")
    fresh_roles(c, ("hard_notify_app", "IN ROLE quota_app"))
    got = []
    listener = connect(db)
    listener.add_notify_handler(lambda n: got.append(n.payload) if n.channel == "quota_events" else None)
    listener.execute("LISTEN quota_events")

    def drain():
        time.sleep(0.3)
        listener.execute("SELECT 1")

    c.execute("SELECT quota.quota_consume('s1'::text, 'messages'::text, 5)")
    drain()
    ids = [r[0] for r in rows(c, "SELECT id FROM quota.events WHERE subject = 's1' AND type = 'threshold_crossed' ORDER BY id")]
    check(len(ids) == 1, f"one threshold event row (ids {ids})")
    check(len(got) == 1 and ids and got[0] == str(ids[0]),
          f"the notification payload is just the event's id {ids[:1]} (got {[short(p, 120) for p in got]})")
    check(not any("s1" in p or "tenant_secret" in p for p in got), "no subject or tenant in the payload")
    e, _ = attempt(c, "SET quota.notify_payload = 'full'")
    check(e is None, f"a superuser SETs quota.notify_payload = 'full' ({describe(e)})")
    c.execute("SELECT quota.quota_consume('s1'::text, 'messages'::text, 5)")
    drain()
    payload = None
    if len(got) == 2:
        try:
            payload = json.loads(got[1])
        except ValueError:
            payload = None
    check(isinstance(payload, dict) and payload.get("type") == "threshold_crossed" and payload.get("subject") == "s1",
          f"with 'full' the payload is the JSON object (got {[short(p, 120) for p in got[1:]]})")
    app = connect(db, user="hard_notify_app")
    expect_error(app, "SET quota.notify_payload = 'full'", None, "42501", "a non-superuser cannot SET quota.notify_payload")
    app.close()
    listener.close()


def a7_rollback_prepared_is_not_counted():
    db = "hard_a7_prepared"
    c = fresh_db(db)
    c.execute("SELECT quota.set_limit('FREE', 'prep_metric', 'day', 100)")
    c.execute("SELECT quota.assign_plan('sp', 'FREE')")
    c.execute("SELECT quota.quota_consume('sp'::text, 'prep_metric'::text, 1)")  # the window row exists
    # this database consumes only prep_metric: a shared table that is full counts it under '(other)'
    stat = lambda: one(c, "SELECT coalesce(sum(consumed_total), 0) FROM quota.stats WHERE metric IN ('prep_metric', '(other)')")
    base = stat()
    check(base == 1, f"quota.stats counts this database's committed consume (consumed_total {base}, control)")
    x = connect(db)
    try:
        for gid, finish_sql, expect in (("hard_a7_rb", "ROLLBACK PREPARED 'hard_a7_rb'", 0),
                                        ("hard_a7_cm", "COMMIT PREPARED 'hard_a7_cm'", 5)):
            x.execute("BEGIN")
            x.execute("SELECT quota.quota_consume('sp'::text, 'prep_metric'::text, 5)")
            e, _ = attempt(x, f"PREPARE TRANSACTION '{gid}'")
            if not check(e is None, f"PREPARE TRANSACTION '{gid}' ({describe(e)})"):
                attempt(x, "ROLLBACK")
                continue
            c.execute(finish_sql)
            check(stat() == base + expect, f"after {finish_sql}: consumed_total {base} + {expect} (got {stat()})")
            base = stat()
        check(used(c, "sp", "prep_metric") == 6, f"the counter agrees: used 6 (got {used(c, 'sp', 'prep_metric')})")
    finally:
        for (gid,) in rows(c, "SELECT gid FROM pg_prepared_xacts WHERE gid LIKE 'hard_a7_%%'"):
            c.execute(f"ROLLBACK PREPARED '{gid}'")
        x.close()


def a7_stats_other_databases_keep_counting():
    a = fresh_db("hard_a7_stats_a")
    a.execute("SELECT quota.set_limit('BIG', 'metric_' || g, 'day', 10) FROM generate_series(1, 600) g")
    a.execute("SELECT quota.assign_plan('sa', 'BIG')")
    errors = 0
    for g in range(1, 601):
        errors += attempt(a, "SELECT quota.quota_consume('sa'::text, %s::text)", (f"metric_{g}",))[0] is not None
    check(errors == 0, f"600 metrics consumed once each in database A ({errors} errors)")
    total_a = one(a, "SELECT sum(consumed_total) FROM quota.stats")
    check(total_a == 600, f"database A's quota.stats adds up to 600 (got {total_a})")
    b = fresh_db("hard_a7_stats_b")
    b.execute("SELECT quota.set_limit('P', 'fresh_b', 'day', 10)")
    b.execute("SELECT quota.assign_plan('sb', 'P')")
    b.execute("SELECT quota.quota_consume('sb'::text, 'fresh_b'::text)")
    seen = rows(b, "SELECT metric, consumed_total FROM quota.stats ORDER BY 1")
    check(any(m in ("fresh_b", "(other)") and n == 1 for m, n in seen),
          f"database B's quota.stats shows its consume (fresh_b or (other), consumed_total 1; got {seen})")
    # Dropping database A frees its slots for the next new metric of another database.
    a.close()
    drop_db("hard_a7_stats_a")
    b.execute("SELECT quota.set_limit('P', 'fresh_b2', 'day', 10)")
    b.execute("SELECT quota.quota_consume('sb'::text, 'fresh_b2'::text)")
    seen = rows(b, "SELECT metric, consumed_total FROM quota.stats ORDER BY 1")
    check(("fresh_b2", 1) in seen, f"after database A is dropped, B's next new metric gets a row of its own (got {seen})")
    b.close()
    drop_db("hard_a7_stats_b")


def start_bt_cluster(d, port):
    pgbin = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
    stop_bt_cluster(d)
    subprocess.run(["rm", "-rf", d], check=True)
    os.makedirs(d)
    subprocess.run(["chown", "postgres", d], check=True)
    subprocess.run(["runuser", "-u", "postgres", "--", f"{pgbin}/initdb", "-D", f"{d}/data", "-U", "postgres", "-A", "trust",
                    "--no-sync", "-E", "UTF8", "--locale=C"], check=True, capture_output=True)
    with open(f"{d}/data/postgresql.conf", "a") as f:
        f.write(f"port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{d}'\nmax_connections = 20\n"
                "shared_preload_libraries = 'quota_ext'\n")
    subprocess.run(["runuser", "-u", "postgres", "--", "env", "RUST_BACKTRACE=1", "RUST_LIB_BACKTRACE=1", f"{pgbin}/pg_ctl",
                    "-D", f"{d}/data", "-l", f"{d}/server.log", "-w", "-t", "60", "start"], check=True, capture_output=True)


def stop_bt_cluster(d):
    if os.path.exists(f"{d}/data/postmaster.pid"):
        pgbin = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()
        subprocess.run(["runuser", "-u", "postgres", "--", f"{pgbin}/pg_ctl", "-D", f"{d}/data", "-m", "fast", "-w", "stop"],
                       capture_output=True)


BACKTRACE = re.compile(r"backtrace|\.rs:\d|\.rs:", re.IGNORECASE)


def error_text(e):
    return "\n".join(x or "" for x in (e.diag.message_primary, e.diag.message_detail, e.diag.message_hint, e.diag.context))


def a7_no_rust_backtrace_in_errors():
    d = f"{RUN}/bt"
    port = int(os.environ.get("QUOTA_BT_PORT", "55491"))
    start_bt_cluster(d, port)
    conns = []
    try:
        bt = lambda: conns.append(psycopg.connect(host=d, port=port, user="postgres", dbname="postgres", autocommit=True)) or conns[-1]
        c = bt()
        c.execute("CREATE EXTENSION quota_ext")
        c.execute("SELECT quota.set_limit('P', 'm1', 'day', 1000)")
        c.execute("SELECT quota.set_limit('P', 'm2', 'day', 1000)")
        c.execute("SELECT quota.assign_plan('s', 'P')")
        c.execute("SELECT quota.quota_consume('s'::text, 'm1'::text)")
        c.execute("SELECT quota.quota_consume('s'::text, 'm2'::text)")
        log = f"{d}/server.log"
        pos = os.path.getsize(log)
        a, b = bt(), bt()
        a.execute("BEGIN")
        a.execute("SELECT quota.quota_consume('s'::text, 'm1'::text)")
        b.execute("SET lock_timeout = '100ms'")
        e = expect_error(b, "SELECT quota.quota_consume('s'::text, 'm1'::text)", None, "55P03",
                         "a consume behind another session's counter row lock, lock_timeout 100ms")
        if e is not None:
            check(not BACKTRACE.search(error_text(e)), f"no backtrace in its message/DETAIL/HINT/CONTEXT ({short(error_text(e), 300)!r})")
        a.execute("ROLLBACK")
        b.execute("SET lock_timeout = 0")
        # deadlock: a holds m1 and wants m2, b holds m2 and wants m1 (separate calls)
        a.execute("BEGIN")
        b.execute("BEGIN")
        a.execute("SELECT quota.quota_consume('s'::text, 'm1'::text)")
        b.execute("SELECT quota.quota_consume('s'::text, 'm2'::text)")
        out = {}
        t = Worker(target=lambda: out.setdefault("a", attempt(a, "SELECT quota.quota_consume('s'::text, 'm2'::text)")[0]))
        t.start()
        time.sleep(0.3)
        out["b"] = attempt(b, "SELECT quota.quota_consume('s'::text, 'm1'::text)")[0]
        t.join(30)
        errors = [e for e in (out.get("a"), out.get("b")) if e is not None]
        codes = [e.sqlstate for e in errors]
        check(codes == ["40P01"], f"the deadlock ends one of the two with 40P01 (got {[describe(e) for e in errors]})")
        for e in errors:
            check(not BACKTRACE.search(error_text(e)), f"no backtrace in the {e.sqlstate} error ({short(error_text(e), 300)!r})")
        attempt(a, "ROLLBACK")
        attempt(b, "ROLLBACK")
        time.sleep(0.3)
        with open(log, errors="replace") as f:
            f.seek(pos)
            new = f.read()
        bad = [line for line in new.splitlines() if BACKTRACE.search(line)]
        check(not bad, f"the server log has no backtrace lines for them ({len(bad)} lines, first {short(bad[0] if bad else '', 200)!r})")
    finally:
        for conn in conns:
            conn.close()
        stop_bt_cluster(d)


def a7_clock_override_at_end_of_range():
    c = fresh_db("hard_a7_clock_end")
    for metric, period in (("m_day", "day"), ("m_week", "week"), ("m_month", "month"), ("m_cycle", "billing_cycle"),
                           ("m_life", "lifetime")):
        c.execute("SELECT quota.set_limit('FREE', %s, %s, 100)", (metric, period))
    c.execute("SELECT quota.assign_plan('s1', 'FREE')")
    e, _ = attempt(c, "SET quota.clock_override = '294276-12-31 23:59:59+00'")
    if e is not None:
        check(e.sqlstate == "22023", f"SET quota.clock_override to the end of the timestamp range is refused with 22023 ({describe(e)})")
        return
    print("  (the SET was accepted; every call under it must avoid XX000)")
    results = {}
    calls = [("assign_plan new", "SELECT quota.assign_plan('s2', 'FREE')")]
    for metric in ("m_day", "m_week", "m_month", "m_cycle", "m_life"):
        # count(*): the answers' timestamps may lie beyond what Python's datetime can load
        calls += [(f"quota_check {metric}", f"SELECT count(*) FROM quota.quota_check('s1'::text, '{metric}'::text)"),
                  (f"quota_consume {metric}", f"SELECT count(*) FROM quota.quota_consume('s1'::text, '{metric}'::text)"),
                  (f"quota_reserve {metric}", f"SELECT count(*) FROM quota.quota_reserve('s1'::text, '{metric}'::text, 1)")]
    calls += [("quota_status", "SELECT count(*) FROM quota.quota_status('s1'::text)"), ("maintenance", "SELECT quota.maintenance()")]
    for what, query in calls:
        e, _ = attempt(c, query)
        results[what] = e.sqlstate if e else "ok"
    xx = {k: v for k, v in results.items() if v == "XX000"}
    check(not xx, f"no call under the override gives XX000 ({results})")


def a7_renamed_column_is_followed():
    c = fresh_db("hard_a7_rename")
    c.execute(f"SET quota.clock_override = '{DAY1}'")
    c.execute("SELECT quota.set_limit('FREE', 'messages', 'day', 10)")
    c.execute("SELECT quota.set_limit('FREE', 'tokens', 'day', 1000)")
    c.execute("SET quota.default_plan = 'FREE'")
    c.execute("CREATE TABLE chat (id bigserial PRIMARY KEY, user_id text NOT NULL, content text)")
    c.execute("SELECT quota.enforce_on_insert('chat', subject_column => 'user_id', metric => 'messages')")
    c.execute("""SELECT quota.enforce_on_insert('chat', subject_column => 'user_id', metric => 'tokens', tokens_of => 'content',
                 encoding => 'chars')""")
    c.execute("INSERT INTO chat (user_id, content) VALUES ('ann', 'hello')")
    got = (used(c, "ann", "messages"), used(c, "ann", "tokens"))
    check(got == (1, 5), f"before the renames: messages 1, tokens 5 (got {got})")
    c.execute("ALTER TABLE chat RENAME COLUMN user_id TO author")
    c.execute("ALTER TABLE chat RENAME COLUMN content TO body")
    e, _ = attempt(c, "INSERT INTO chat (author, body) VALUES ('ann', 'hello!')")
    check(e is None, f"an insert after renaming both columns works ({describe(e)})")
    got = (used(c, "ann", "messages"), used(c, "ann", "tokens"))
    check(got == (2, 11), f"and consumes: messages 2, tokens 11 (got {got})")
    print(f"  (quota.enforced_tables now: {rows(c, 'SELECT metric, subject_column, consumes FROM quota.enforced_tables ORDER BY 1')})")


def a7_dropped_column_fails_closed():
    c = fresh_db("hard_a7_drop_column")
    c.execute(f"SET quota.clock_override = '{DAY1}'")
    c.execute("SELECT quota.set_limit('FREE', 'credits', 'day', 100)")
    c.execute("SET quota.default_plan = 'FREE'")
    c.execute("CREATE TABLE orders (id bigserial PRIMARY KEY, user_id text NOT NULL, cost integer)")
    c.execute("SELECT quota.enforce_on_insert('orders', subject_column => 'user_id', metric => 'credits', amount_column => 'cost')")
    c.execute("INSERT INTO orders (user_id, cost) VALUES ('ann', 3)")
    check(used(c, "ann", "credits") == 3, f"before the drop: credits 3 (got {used(c, 'ann', 'credits')})")
    e, _ = attempt(c, "ALTER TABLE orders DROP COLUMN cost")
    check(e is None, f"the amount column can be dropped ({describe(e)})")
    e, _ = attempt(c, "INSERT INTO orders (user_id) VALUES ('ann')")
    check(e is not None and e.sqlstate != "XX000", f"an insert after the drop fails, not XX000 ({describe(e)})")
    if e is not None:
        check("credits" in (e.diag.message_primary or ""), f"the message names the metric 'credits' ({short(e.diag.message_primary, 200)})")
    check(one(c, "SELECT count(*) FROM orders") == 1, "nothing was inserted")
    expect_ok(c, "SELECT quota.enforce_off('orders', 'credits')", what="enforce_off('orders', 'credits')")
    e, _ = attempt(c, "INSERT INTO orders (user_id) VALUES ('ann')")
    check(e is None, f"after enforce_off inserts work ({describe(e)})")


def a7_trigger_right_cannot_rewrite_owner_rule():
    db = "hard_a7_trigger_right"
    c = fresh_db(db)
    c.execute("SELECT quota.set_limit('FREE', 'messages', 'day', 10)")
    c.execute("CREATE TABLE t (id bigserial PRIMARY KEY, user_id text NOT NULL)")
    c.execute("SELECT quota.enforce_on_insert('t', subject_column => 'user_id', metric => 'messages')")
    fresh_roles(c, ("hard_trigger_only", "IN ROLE quota_admin"))
    c.execute("GRANT TRIGGER ON t TO hard_trigger_only")
    rule = lambda: rows(c, "SELECT table_name::text, metric, subject_column, amount, amount_column, tokens_of, encoding, "
                           "refund_on_delete, created_at FROM quota.enforcements ORDER BY 1, 2")
    trig = lambda: rows(c, "SELECT tgname FROM pg_trigger WHERE tgrelid = 't'::regclass ORDER BY 1")
    before, triggers = rule(), trig()
    r = connect(db, user="hard_trigger_only")
    expect_error(r, "SELECT quota.enforce_off('t', 'messages')", None, "42501", "a role with only TRIGGER on t: enforce_off")
    expect_error(r, "SELECT quota.enforce_on_insert('t', subject_column => 'user_id', metric => 'messages', amount => 0)", None,
                 "42501", "a role with only TRIGGER on t: enforce_on_insert rewriting the owner's rule")
    r.close()
    check(rule() == before, f"the rule is unchanged ({rule()})")
    check(trig() == triggers, f"the triggers are unchanged ({trig()})")
    c.execute("REVOKE ALL ON t FROM hard_trigger_only")  # so that the role can be dropped


def a7_delete_subject_starts_clean():
    c = fresh_db("hard_a7_delete_subject")
    c.execute("SELECT quota.set_limit('FREE', 'messages', 'day', 100)")
    c.execute("SELECT quota.set_alerts('FREE', 'messages', ARRAY[1])")
    c.execute("SELECT quota.set_bonus_rule('FREE', 'messages', 'survey', 5, 'subject')")
    c.execute("SELECT quota.assign_plan('dz', 'FREE', tenant => 't1')")
    reason = one(c, "SELECT reason FROM quota.quota_consume('dz'::text, 'messages'::text, 1, 'key1')")
    check(reason == "ok", f"first keyed consume (reason {reason})")
    c.execute("SELECT quota.quota_reserve('dz'::text, 'messages'::text, 2)")
    applied = one(c, "SELECT (quota.apply_bonus('dz'::text, 'messages', 'survey', 'ref1')).applied")
    check(applied is True, f"bonus with reference ref1 applied ({applied})")
    tables = ("quota.subjects", "quota.counters", "quota.reservations", "quota.events", "quota.idempotency_keys",
              "quota.bonus_grants")
    count = lambda t: one(c, f"SELECT count(*) FROM {t} WHERE subject = 'dz'")
    check(all(count(t) > 0 for t in tables), f"dz has rows in {tables} (control: {[count(t) for t in tables]})")
    ledger = one(c, "SELECT count(*) FROM quota.usage_events WHERE subject = 'dz'")
    e, result = attempt(c, "SELECT quota.delete_subject('dz')")
    check(result == [(True,)], f"delete_subject('dz') = true ({result or describe(e)})")
    left = {t: count(t) for t in tables}
    check(all(n == 0 for n in left.values()), f"nothing of dz is left but the ledger ({left})")
    n = one(c, "SELECT count(*) FROM quota.usage_events WHERE subject = 'dz'")
    check(n == ledger, f"the old subject's ledger rows remain ({n} of {ledger})")
    c.execute("SELECT quota.assign_plan('dz', 'FREE', tenant => 't2')")
    e, result = attempt(c, "SELECT reason, used FROM quota.quota_consume('dz'::text, 'messages'::text, 1, 'key1')")
    check(result == [("ok", 1)], f"the same idempotency key is not a replay for the new dz: (ok, used 1) (got {result or describe(e)})")
    e, result = attempt(c, "SELECT (quota.apply_bonus('dz'::text, 'messages', 'survey', 'ref1')).*")
    check(result is not None and result[0][0] is True, f"the bonus reference ref1 can be used again ({result or describe(e)})")
    n = one(c, "SELECT count(*) FROM quota.reservations WHERE subject = 'dz'")
    check(n == 0, f"the new dz has no hold (got {n})")
    check(used(c, "dz", "messages") == 1, f"the new dz used = 1 (got {used(c, 'dz', 'messages')})")


def a7_advisory_locks_cannot_block_keyed_consumes():
    db = "hard_a7_advisory"
    c = fresh_db(db)
    c.execute("SELECT quota.set_limit('FREE', 'messages', 'day', 100)")
    c.execute("SELECT quota.assign_plan('alice', 'FREE')")
    fresh_roles(c, ("hard_adv_app", "IN ROLE quota_app"))
    a = connect(db, user="hard_adv_app")
    b = connect(db, user="hard_adv_app")
    try:
        a.execute("BEGIN")
        guesses = ["pg_advisory_xact_lock(hashtextextended('alice' || chr(31) || 'k1', 7274))",
                   "pg_advisory_xact_lock(hashtextextended('alice' || chr(31) || 'k1', 0))",
                   "pg_advisory_xact_lock(hashtext('alice' || chr(31) || 'k1'))",
                   "pg_advisory_xact_lock(hashtext('alice'), hashtext('k1'))",
                   "pg_advisory_xact_lock(hashtextextended('alice:k1', 7274))",
                   "pg_advisory_xact_lock(hashtextextended('k1', 7274))"]
        for g in guesses:
            a.execute(f"SELECT {g}")
        b.execute("SET lock_timeout = '500ms'")
        e, result = attempt(b, "SELECT used FROM quota.quota_consume('alice'::text, 'messages'::text, 1, 'k1')")
        check(e is None and result == [(1,)], f"a keyed consume is not blocked by another role's advisory locks ({result or describe(e)})")
    finally:
        attempt(a, "ROLLBACK")
        a.close()
        b.close()


def a7_readme_lists_every_sqlstate():
    path = os.environ.get("QUOTA_README") or os.path.join(ROOT, "README.md")
    with open(path) as f:
        text = f.read()
    m = re.search(r"^## Errors\s*$(.*?)(?=^## )", text, re.M | re.S)
    if not check(m is not None, f"{path} has a '## Errors' section"):
        return
    listed = set()
    for line in m.group(1).splitlines():
        if line.startswith("|"):
            first = line.split("|")[1]
            listed |= set(re.findall(r"`([0-9A-Z]{5})`", first))
    wanted = ["QT429", "QT413", "QT404", "22023", "22004", "23001", "42501", "55000", "40001", "22P02", "55P03", "40P01"]
    missing = [code for code in wanted if code not in listed]
    check(not missing, f"the Errors table lists {', '.join(wanted)} (missing {missing}; listed {sorted(listed)})")



# Findings of the hostile review of 0.4.0 (before release) ---------------------------------

def a3_set_role_does_not_shed_a_binding():
    """A bound login role is a member of quota_app and quota_reader: SET ROLE to either
    must not lift its binding (bindings follow the session user too)."""
    db = "hard_a3_setrole"
    c = a3_setup(db)
    c.execute("GRANT quota_reader TO acme_app")
    app = connect(db, user="acme_app")
    app.execute("SET quota.tenant = 'globex'")
    for role in ("quota_app", "quota_reader"):
        app.execute(f"SET ROLE {role}")
        if role == "quota_app":
            expect_error(app, "SELECT used FROM quota.quota_consume('g1'::text, 'messages'::text)", None, "42501",
                         f"acme_app after SET ROLE {role}: consume for globex")
        expect_error(app, "SELECT count(*) FROM quota.subjects", None, "42501", f"acme_app after SET ROLE {role}: read subjects under globex")
        app.execute("RESET ROLE")
    check(used(c, "g1", "messages") == 0, "globex's g1 is untouched")
    app.close()


def a3_renamed_bound_role_stays_bound():
    db = "hard_a3_rename"
    c = a3_setup(db)
    fresh_roles(c, ("acme_app2", "IN ROLE quota_app"))
    c.execute("DROP ROLE acme_app2")
    c.execute("ALTER ROLE acme_app RENAME TO acme_app2")
    try:
        app = connect(db, user="acme_app2")
        app.execute("SET quota.tenant = 'globex'")
        expect_error(app, "SELECT used FROM quota.quota_consume('g1'::text, 'messages'::text)", None, "42501",
                     "the renamed bound role still may not act for globex")
        app.execute("SET quota.tenant = 'acme'")
        expect_ok(app, "SELECT used FROM quota.quota_consume('a1'::text, 'messages'::text)", what="and still acts for acme")
        app.close()
    finally:
        c.execute("ALTER ROLE acme_app2 RENAME TO acme_app")


def a2_partitions_attached_with_their_own_quotas_keep_them():
    c = fresh_db("hard_a2_attach_own")
    c.execute("SELECT quota.set_limit('FREE', 'm1', 'day', 100)")
    c.execute("SELECT quota.set_limit('FREE', 'm2', 'day', 100)")
    c.execute("SET quota.default_plan = 'FREE'")
    c.execute("CREATE TABLE r (id int, s text NOT NULL, k int NOT NULL) PARTITION BY LIST (k)")
    c.execute("CREATE TABLE t1 (LIKE r)")
    c.execute("CREATE TABLE t2 (LIKE r)")
    c.execute("SELECT quota.enforce_on_insert('t1', subject_column => 's', metric => 'm1')")
    c.execute("SELECT quota.enforce_on_insert('t2', subject_column => 's', metric => 'm2', amount => 10)")
    c.execute("ALTER TABLE r ATTACH PARTITION t1 FOR VALUES IN (1)")
    c.execute("ALTER TABLE r ATTACH PARTITION t2 FOR VALUES IN (2)")
    c.execute("INSERT INTO r VALUES (1, 'bob', 1)")
    c.execute("INSERT INTO r VALUES (2, 'bob', 2)")
    check((used(c, "bob", "m1"), used(c, "bob", "m2")) == (1, 10),
          f"each attached table keeps its own quota (m1 1, m2 10; got {used(c, 'bob', 'm1')}, {used(c, 'bob', 'm2')})")


def a2_stale_update_marker_after_dropping_a_partition():
    c = fresh_db("hard_a2_stale_marker")
    c.execute("SELECT quota.set_limit('FREE', 'messages', 'day', 100)")
    c.execute("SET quota.default_plan = 'FREE'")
    c.execute("CREATE TABLE m (id int, k int NOT NULL, s text NOT NULL, PRIMARY KEY (id, k)) PARTITION BY LIST (k)")
    c.execute("CREATE TABLE m2 PARTITION OF m FOR VALUES IN (2)")
    c.execute("CREATE TABLE m3 PARTITION OF m FOR VALUES IN (3)")
    c.execute("SELECT quota.enforce_on_insert('m', subject_column => 's', metric => 'messages')")
    c.execute("INSERT INTO m VALUES (10, 3, 'bob')")
    c.execute("UPDATE m SET s = s WHERE id = 10")   # a BEFORE UPDATE that does not move the row
    c.execute("DROP TABLE m3")
    expect_ok(c, "INSERT INTO m VALUES (11, 2, 'bob')", what="an insert after the updated row's partition was dropped")
    check(used(c, "bob", "messages") == 2, f"and it is charged (used {used(c, 'bob', 'messages')})")


def a6_charge_key_does_not_depend_on_session_settings():
    c = fresh_db("hard_a6_key_settings")
    c.execute("SELECT quota.set_limit('FREE', 'credits', 'day', 1000)")
    c.execute("SET quota.default_plan = 'FREE'")
    c.execute("CREATE TABLE e (t timestamptz PRIMARY KEY, s text NOT NULL, amt int)")
    c.execute("SELECT quota.enforce_on_insert('e', subject_column => 's', metric => 'credits', amount_column => 'amt', refund_on_delete => true)")
    c.execute("SET timezone = 'UTC'")
    c.execute("INSERT INTO e VALUES ('2026-01-01 10:00+00', 'carl', 200)")
    c.execute("SET timezone = 'Asia/Tokyo'")
    c.execute("DELETE FROM e")
    check(used(c, "carl", "credits") == 0, f"a row inserted under UTC and deleted under Asia/Tokyo is refunded (used {used(c, 'carl', 'credits')})")


def a6_on_conflict_do_nothing_keeps_the_first_charge():
    c = fresh_db("hard_a6_on_conflict")
    c.execute("SELECT quota.set_limit('FREE', 'credits', 'day', 1000)")
    c.execute("SET quota.default_plan = 'FREE'")
    c.execute("CREATE TABLE mm (id int PRIMARY KEY, s text NOT NULL, amt int)")
    c.execute("SELECT quota.enforce_on_insert('mm', subject_column => 's', metric => 'credits', amount_column => 'amt', refund_on_delete => true)")
    c.execute("INSERT INTO mm VALUES (1, 'dan', 100)")
    c.execute("INSERT INTO mm VALUES (1, 'eve', 1) ON CONFLICT DO NOTHING")
    c.execute("DELETE FROM mm WHERE id = 1")
    check(used(c, "dan", "credits") == 0, f"dan's row is refunded to dan (used {used(c, 'dan', 'credits')})")


def a6_truncate_forgets_charges():
    c = fresh_db("hard_a6_truncate")
    c.execute("SELECT quota.set_limit('FREE', 'credits', 'day', 1000)")
    c.execute("SET quota.default_plan = 'FREE'")
    c.execute("CREATE TABLE mm (id int PRIMARY KEY, s text NOT NULL, amt int)")
    c.execute("SELECT quota.enforce_on_insert('mm', subject_column => 's', metric => 'credits', amount_column => 'amt', refund_on_delete => true)")
    c.execute("INSERT INTO mm VALUES (5, 'dan', 7)")
    c.execute("TRUNCATE mm")
    check(one(c, "SELECT count(*) FROM quota.row_charges") == 0, "TRUNCATE forgets the table's row charges")
    c.execute("INSERT INTO mm VALUES (5, 'fay', 3)")
    c.execute("DELETE FROM mm")
    check((used(c, "dan", "credits"), used(c, "fay", "credits")) == (7, 0),
          f"a new row with a truncated row's key refunds its own charge (dan 7, fay 0; got {used(c, 'dan', 'credits')}, {used(c, 'fay', 'credits')})")


def a7_long_tenant_refusals_are_not_shown_to_a_prefix():
    c = fresh_db("hard_a7_refusal_prefix")
    c.execute("SELECT quota.set_limit('FREE', 'messages', 'day', 0)")
    long_tenant = "t" * 200  # stored before the bounds existed
    c.execute("INSERT INTO quota.subjects (subject, plan, tenant, cycle_anchor) VALUES ('lt', 'FREE', %s, now())", (long_tenant,))
    c.execute("SELECT set_config('quota.tenant', %s, false)", (long_tenant,))
    attempt(c, "SELECT quota.quota_try_consume('lt'::text, 'messages'::text)")
    c.execute("SELECT set_config('quota.tenant', %s, false)", (long_tenant[:128],))
    check(one(c, "SELECT count(*) FROM quota.recent_refusals() WHERE subject = 'lt'") == 0,
          "a tenant named by the first 128 bytes of a longer one does not see its refusals")
    c.execute("RESET quota.tenant")
    check(one(c, "SELECT count(*) FROM quota.recent_refusals() WHERE subject = 'lt'") == 1, "an administrator does")


def a3_reads_under_a_foreign_tenant_are_refused_whatever_matches():
    """Error or empty answer must not depend on rows: otherwise a bound role learns which
    of another tenant's subjects exist, and their usage by bisection."""
    db = "hard_a3_oracle"
    c = a3_setup(db)
    c.execute("SET quota.tenant = 'globex'")
    c.execute("SELECT quota.quota_consume('g1', 'messages', 7)")
    c.execute("RESET quota.tenant")
    app = connect(db, user="acme_reader")
    app.execute("SET quota.tenant = 'globex'")
    for what, query in [
        ("a subject that does not exist", "SELECT 1 FROM quota.subjects WHERE subject = 'nobody'"),
        ("a usage bound no row meets", "SELECT 1 FROM quota.counters WHERE subject = 'g1' AND used > 7"),
        ("an empty table", "SELECT count(*) FROM quota.row_charges"),
        ("a view", "SELECT count(*) FROM quota.usage_overview WHERE subject = 'nobody'"),
        ("the ledger by subject", "SELECT 1 FROM quota.usage_events WHERE subject = 'nobody'"),
    ]:
        expect_error(app, query, None, "42501", f"acme_reader under quota.tenant = 'globex' reading {what}")
    app.close()


# Findings of the second review ------------------------------------------------------------

def a3_switching_tenant_mid_query_reveals_nothing():
    """The guard checks quota.tenant when a query starts; the policies read it for every
    row. A switch inside the query (set_config in a condition, or a cursor fetched after
    SET) must answer the same whether or not another tenant's row matches."""
    db = "hard_a3_midquery"
    c = a3_setup(db)
    app = connect(db, user="acme_reader", autocommit=False)
    answers = {}
    for probe in ("g1", "nobody"):
        app.execute("SET LOCAL quota.tenant = 'acme'")
        e, got = attempt(app, "SELECT subject FROM quota.subjects WHERE subject = %s "
                              "AND (SELECT set_config('quota.tenant', 'globex', true)) IS NOT NULL", (probe,))
        answers[("condition", probe)] = describe(e) if e else got
        app.rollback()
        app.execute("SET LOCAL quota.tenant = 'acme'")
        app.execute("DECLARE cur CURSOR FOR SELECT subject FROM quota.subjects WHERE subject = %s", (probe,))
        app.execute("SET LOCAL quota.tenant = 'globex'")
        e, got = attempt(app, "FETCH cur")
        answers[("cursor", probe)] = describe(e) if e else got
        app.rollback()
    for way in ("condition", "cursor"):
        check(answers[(way, "g1")] == answers[(way, "nobody")],
              f"{way}: the answer for globex's g1 equals the one for a subject that does not exist ({answers[(way, 'g1')]} / {answers[(way, 'nobody')]})")
    app.close()


def a3_new_role_with_a_renamed_bound_roles_name():
    """Credential rotation: the bound role is renamed and a new role takes its name. Both
    stay bound; binding the new role elsewhere moves the old binding to the old role."""
    db = "hard_a3_rotation"
    c = a3_setup(db)
    c.execute("DROP ROLE IF EXISTS acme_app_old")
    c.execute("ALTER ROLE acme_app RENAME TO acme_app_old")
    c.execute("CREATE ROLE acme_app LOGIN IN ROLE quota_app")
    try:
        for role in ("acme_app_old", "acme_app"):
            app = connect(db, user=role)
            app.execute("SET quota.tenant = 'globex'")
            expect_error(app, "SELECT * FROM quota.quota_check('g1'::text, 'messages'::text)", None, "42501",
                         f"{role} (the renamed role, or the new one of its name) may not act for globex")
            app.close()
        c.execute("SELECT quota.bind_tenant('acme_app', 'initech')")
        check(rows(c, "SELECT role_name, tenant FROM quota.tenant_bindings WHERE tenant IN ('acme', 'initech') ORDER BY 2, 1")
              == [("acme_app_old", "acme"), ("acme_reader", "acme"), ("acme_app", "initech")],
              "binding the new role moves the old binding to the renamed role")
        app = connect(db, user="acme_app")
        app.execute("SET quota.tenant = 'acme'")
        expect_error(app, "SELECT * FROM quota.quota_check('a1'::text, 'messages'::text)", None, "42501",
                     "the new role does not inherit the old role's tenant")
        app.close()
    finally:
        c.execute("DROP ROLE IF EXISTS acme_app")
        c.execute("ALTER ROLE acme_app_old RENAME TO acme_app")


def a3_restored_binding_never_binds_by_a_foreign_oid():
    db = "hard_a3_foreign_oid"
    c = a3_setup(db, extra_roles=(("globex_app", "IN ROLE quota_app"),))
    globex_oid = one(c, "SELECT oid FROM pg_roles WHERE rolname = 'globex_app'")
    c.execute("SELECT quota.bind_tenant('globex_app', 'globex')")
    # As restored from another cluster: a role name that does not exist here, an oid that
    # happens to be globex_app's, another cluster's identifier.
    c.execute("INSERT INTO quota.tenant_bindings (role_name, tenant, role_oid, role_cluster) "
              "VALUES ('acme_app_from_elsewhere', 'acme', %s, '1')", (globex_oid,))
    app = connect(db, user="globex_app")
    app.execute("SET quota.tenant = 'acme'")
    expect_error(app, "SELECT * FROM quota.quota_check('a1'::text, 'messages'::text)", None, "42501",
                 "globex_app gains no tenant from a binding restored from another cluster")
    app.close()


def a6_truncated_partition_never_refunds_more_than_charged():
    c = fresh_db("hard_a6_truncate_partition")
    c.execute("SELECT quota.set_limit('FREE', 'credits', 'day', 10000)")
    c.execute("SET quota.default_plan = 'FREE'")
    c.execute("CREATE TABLE pt (id int, part int, s text NOT NULL, amt int, PRIMARY KEY (id, part)) PARTITION BY LIST (part)")
    c.execute("CREATE TABLE pt1 PARTITION OF pt FOR VALUES IN (1)")
    c.execute("SELECT quota.enforce_on_insert('pt', subject_column => 's', metric => 'credits', amount_column => 'amt', refund_on_delete => true)")
    c.execute("INSERT INTO pt VALUES (1, 1, 'alice', 900)")
    c.execute("TRUNCATE pt1")
    c.execute("INSERT INTO pt VALUES (1, 1, 'alice', 1)")
    c.execute("DELETE FROM pt WHERE id = 1")
    check(used(c, "alice", "credits") == 900, f"a row charged 1 refunds 1 (used 900; got {used(c, 'alice', 'credits')})")

TESTS = [
    a2_partition_rows_are_metered,
    a2_enforce_on_a_partition_is_refused,
    a2_partitions_created_or_attached_later_are_metered,
    a2_rows_inserted_straight_into_a_partition_are_metered,
    a2_refund_on_delete_through_the_root,
    a2_update_moving_a_row_keeps_its_charge,
    a2_detached_partition_is_not_metered,
    a3_bound_role_cannot_act_for_another_tenant,
    a3_bound_reader_cannot_read_another_tenant,
    a3_alter_role_set_does_not_bind,
    a3_bound_session_without_tenant_sees_nothing,
    a3_bound_session_acts_for_its_tenant,
    a3_hot_path_enforces_binding,
    a3_admin_is_not_restricted,
    a3_union_of_bound_roles,
    a3_bindings_survive_in_table,
    a5_over_long_names_are_refused,
    a5_errors_quote_a_short_prefix,
    a5_backend_memory_stays_bounded,
    a5_server_log_stays_small,
    a5_long_subject_stored_earlier_keeps_working,
    a6_refund_on_delete_needs_a_primary_key,
    a6_update_then_delete_refunds_the_insert_charge,
    a6_moved_subject_is_not_refunded,
    a6_rule_change_between_insert_and_delete,
    a6_earlier_window_refunds_nothing,
    a7_notify_carries_only_an_event_id,
    a7_rollback_prepared_is_not_counted,      # before a7_stats_other_...: that one fills the shared stats table
    a7_stats_other_databases_keep_counting,
    a7_no_rust_backtrace_in_errors,
    a7_clock_override_at_end_of_range,
    a7_renamed_column_is_followed,
    a7_dropped_column_fails_closed,
    a7_trigger_right_cannot_rewrite_owner_rule,
    a7_delete_subject_starts_clean,
    a7_advisory_locks_cannot_block_keyed_consumes,
    a7_readme_lists_every_sqlstate,
    a3_set_role_does_not_shed_a_binding,
    a3_reads_under_a_foreign_tenant_are_refused_whatever_matches,
    a3_renamed_bound_role_stays_bound,
    a2_partitions_attached_with_their_own_quotas_keep_them,
    a2_stale_update_marker_after_dropping_a_partition,
    a6_charge_key_does_not_depend_on_session_settings,
    a6_on_conflict_do_nothing_keeps_the_first_charge,
    a6_truncate_forgets_charges,
    a7_long_tenant_refusals_are_not_shown_to_a_prefix,
    a3_switching_tenant_mid_query_reveals_nothing,
    a3_new_role_with_a_renamed_bound_roles_name,
    a3_restored_binding_never_binds_by_a_foreign_oid,
    a6_truncated_partition_never_refunds_more_than_charged,
]


if __name__ == "__main__":
    wanted = sys.argv[1:]
    selected = [t for t in TESTS if not wanted or any(t.__name__.startswith(w) for w in wanted)]
    print(f"hardening tests against {HOST}:{PORT}: {len(selected)} of {len(TESTS)}")
    run_tests(selected)
    with connect("postgres") as admin:  # the roles are cluster-wide
        for role in ("acme_app", "acme_reader", "hard_shared_app", "hard_boss", "hard_initech_app", "hard_multi",
                     "hard_notify_app", "hard_trigger_only", "hard_adv_app"):
            drop_role(admin, role)
    finish()
