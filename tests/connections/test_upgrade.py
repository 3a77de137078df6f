"""In-place upgrade: 0.1.0 with data, ALTER EXTENSION quota_ext UPDATE (through every
upgrade script to the default version), then the data and the behaviour must survive, and
the upgraded catalog must equal a fresh install of the default version.

0.7.0 appends a period column to the counters, the ledger and the holds: each existing row
must get the period it was counted under, also when that is no longer its subject's plan's
(carol, in Tokyo, moved from a weekly to a daily calls limit).

0.8.0 (pools) appends a column to subjects (pool) and to the ledger (via), NULL in every
old row, and the level to the decision, the reservation and quota_status; after the
upgrade a pool of old subjects must count their consumes."""
import json
import datetime
import difflib

import psycopg2

from common import check, connect, finish, quota_tables, recreate_databases

OLD, NEW = "quota_upgrade_old", "quota_upgrade_new"
recreate_databases(OLD, NEW)

old = connect(OLD, autocommit=True)
cur = old.cursor()
cur.execute("CREATE EXTENSION quota_ext VERSION '0.1.0'")
for sql in [
    "SET quota.clock_override = '2026-11-20 09:00:00+00'",
    "SELECT quota.set_limit('FREE', 'messages', 'day', 5)",
    "SELECT quota.set_limit('FREE', 'tokens', 'month', 10000)",
    "SELECT quota.set_bonus_rule('FREE', 'messages', 'questionnaire', 2, 'subject')",
    "SELECT quota.set_limit('TEAM', 'calls', 'week', 100)",
    "SELECT quota.set_limit('TEAM', 'credits', 'billing_cycle', 1000)",
    "SELECT quota.set_limit('SOLO', 'calls', 'day', 10)",
    "SELECT quota.set_limit('SOLO', 'credits', 'billing_cycle', 1000)",
    "SELECT quota.assign_plan('alice', 'FREE', tenant => 'acme')",
    "SELECT quota.assign_plan('bob', 'FREE')",
    # 12:00 in Tokyo on the 10th: cycles start on the 10th at 03:00 UTC.
    "SELECT quota.assign_plan('carol', 'TEAM', cycle_anchor => '2026-01-10 03:00:00+00', time_zone => 'Asia/Tokyo')",
    "SELECT quota.quota_consume('alice', 'messages', 4)",
    "SELECT quota.quota_consume('bob', '{\"messages\": 2, \"tokens\": 300}'::jsonb)",
    "SELECT quota.quota_refund('bob', 'tokens', 100)",
    "SELECT quota.apply_bonus('alice', 'messages', 'questionnaire', 'form-1')",
    "CREATE TABLE public.messages (id bigserial PRIMARY KEY, user_id text NOT NULL)",
    "SELECT quota.enforce_on_insert('public.messages', subject_column => 'user_id', metric => 'messages')",
    "INSERT INTO public.messages (user_id) VALUES ('bob')",
    "SELECT quota.quota_consume('carol', '{\"calls\": 2, \"credits\": 5}'::jsonb)",
    # calls per day from now on; the week's window stays a week's
    "SELECT quota.assign_plan('carol', 'SOLO')",
    "SELECT quota.quota_consume('carol', 'calls', 1)",
]:
    cur.execute(sql)
cur.execute("SELECT reservation FROM quota.quota_reserve('alice', 'tokens', 1000, '1 hour')")
hold = cur.fetchone()[0]


def state(conn):
    out = quota_tables(conn)
    with conn.cursor() as c:
        for s in ("alice", "bob"):
            c.execute("SELECT * FROM quota.quota_status(%s) ORDER BY metric", (s,))
            out[f"status {s}"] = c.fetchall()
    return out


# 0.7.0 appends period (the limit's) to these; a row's window says which it is. At the
# clock above (Friday 2026-11-20 09:00 UTC, 18:00 in Tokyo):
PERIOD_TABLES = ("quota.counters", "quota.usage_events", "quota.reservations", "quota.usage_summaries",
                 "quota.row_charges")
# 0.7.0 also appends columns whose value in an existing row is fixed: plan_limits.burst
# (rate limits only), the subjects' scheduled plan change (next_plan, next_plan_at, carry:
# none scheduled), and quota_status's source (every old limit is the plan's), next_plan and
# next_plan_at; 0.8.0 the subjects' pool (none) and quota_status's pool and level (the
# subject's own rows: no pool, level 0).
APPENDED = {
    "quota.plan_limits": (None,),
    "quota.subjects": (None, None, None, None),
    "status alice": ("plan", None, None, None, 0),
    "status bob": ("plan", None, None, None, 0),
}
# Columns appended after 0.7.0's period, fixed in an old row: 0.8.0's via of the ledger
# and of the holds (no old row was charged or held through a pool).
AFTER_PERIOD = {"quota.usage_events": (None,), "quota.reservations": (None,)}
EXPECTED_PERIOD = {
    ("alice", "messages", "2026-11-20 00:00:00+00"): "day",
    ("alice", "tokens", "2026-11-01 00:00:00+00"): "month",
    ("bob", "messages", "2026-11-20 00:00:00+00"): "day",
    ("bob", "tokens", "2026-11-01 00:00:00+00"): "month",
    ("carol", "calls", "2026-11-15 15:00:00+00"): "week",            # Monday 00:00 in Tokyo
    ("carol", "calls", "2026-11-19 15:00:00+00"): "day",             # the 20th in Tokyo
    ("carol", "credits", "2026-11-10 03:00:00+00"): "billing_cycle",
}

before = state(old)
cur.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'quota_ext'")
default_version = cur.fetchone()[0]
cur.execute("ALTER EXTENSION quota_ext UPDATE")
cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'quota_ext'")
check(cur.fetchone()[0] == default_version, f"the extension is at {default_version} after ALTER EXTENSION UPDATE")
after = state(old)
for name in sorted(before):
    got = after.get(name)
    want = before[name]
    if name == "quota.enforcements" and got is not None:
        # 0.4.0 adds the columns' numbers after the existing columns.
        got = [row[:len(want[0])] for row in got] if want else got
    if name in PERIOD_TABLES and got is not None:
        # 0.7.0 appends period (checked below), 0.8.0 more (AFTER_PERIOD). Rows are
        # ordered by their text, which the new columns may reorder: compare them in one
        # order.
        tail = AFTER_PERIOD.get(name, ())
        width = len(got[0]) - 1 - len(tail) if got else 0
        wrong = [row for row in got if tuple(row[width + 1:]) != tail]
        check(not wrong, f"{name}: the columns appended after period are {tail} in every old row" + (f" (not in {wrong})" if wrong else ""))
        got = sorted((row[:width] for row in got), key=repr)
        want = sorted(want, key=repr)
    appended = ""
    if name in APPENDED and got is not None:
        tail = APPENDED[name]
        wrong = [row for row in got if tuple(row[len(row) - len(tail):]) != tail]
        check(not wrong, f"{name}: the columns 0.7.0 and 0.8.0 append are {tail} in every old row" + (f" (not in {wrong})" if wrong else ""))
        got = sorted((tuple(row[:len(row) - len(tail)]) for row in got), key=repr)
        want = sorted((tuple(row) for row in want), key=repr)
        appended = f" (but for the {len(tail)} appended column{'s' if len(tail) > 1 else ''})"
    check(want == got, f"{name} is unchanged by the upgrade" + (" (but for period)" if name in PERIOD_TABLES else appended))
check(after.get("quota.usage_summaries") == [], "the new summaries table exists and is empty")
for table in ("quota.counters", "quota.usage_events", "quota.reservations"):
    cur.execute(f"SELECT DISTINCT subject, metric, window_start, period FROM {table}")
    got = {(s, m, w.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S+00")): p for s, m, w, p in cur.fetchall()}
    wrong = sorted(f"{' '.join(k)}: {p}" for k, p in got.items() if EXPECTED_PERIOD.get(k) != p)
    missing = sorted(set(EXPECTED_PERIOD) - set(got)) if table == "quota.counters" else []
    check(got and not wrong and not missing, f"{table}: each row's period is its window's"
          + (f" (wrong: {wrong}; no such counter: {missing})" if wrong or missing else ""))
cur.execute("SELECT count(*) FROM quota.ledger_check")
check(cur.fetchone()[0] == 0, "quota.ledger_check is empty after the upgrade (the ledger's periods are its counters')")
check(all(r[-3] is not None for r in after.get("quota.enforcements", [])) and after.get("quota.enforcements"),
      "0.4.0: each enforced column's number is filled in from its name")

print("behaviour after the upgrade")
cur.execute("SELECT used FROM quota.quota_consume('bob', 'messages')")
check(cur.fetchone()[0] == 4, "consume continues from the old counter (bob: 3 -> 4)")
cur.execute("INSERT INTO public.messages (user_id) VALUES ('bob')")
try:
    cur.execute("INSERT INTO public.messages (user_id) VALUES ('bob')")
    check(False, "the old enforcement trigger refuses bob's 6th message")
except psycopg2.Error as e:
    check(e.pgcode == "QT429", f"the old enforcement trigger refuses bob's 6th message with QT429 (got {e.pgcode})")
cur.execute("SELECT used, reserved FROM quota.quota_commit(%s, 700)", (hold,))
check(cur.fetchone() == (700, 0), "the hold made before the upgrade commits")
for statement in ("UPDATE quota.usage_events SET amount = 0", "DELETE FROM quota.usage_events"):
    try:
        cur.execute(statement)
        check(False, f"the ledger refuses {statement.split()[0]}")
    except psycopg2.Error as e:
        check(e.pgcode == "23001", f"the ledger refuses {statement.split()[0]} (got {e.pgcode})")
cur.execute("SET quota.clock_override = '2026-12-31 00:00:00+00'")
cur.execute("SELECT quota.compact_ledger('1 day')")
check(cur.fetchone()[0] > 0, "compact_ledger summarises the pre-upgrade ledger")
cur.execute("SELECT count(*) FROM quota.ledger_check")
check(cur.fetchone()[0] == 0, "quota.ledger_check is empty after compaction")
cur.execute("SET quota.clock_override = '2026-11-20 09:00:00+00'")
cur.execute("SET ROLE quota_app")
cur.execute("SELECT subject FROM quota.subjects ORDER BY 1")
check(cur.fetchall() == [("bob",), ("carol",)], "row-level security now scopes old rows (quota_app sees the untenanted bob and carol, not acme's alice)")
cur.execute("RESET ROLE")

print("pools after the upgrade")
# bob (FREE: 10000 tokens a month, 300 used and 100 refunded before) joins a new pool
# of 500 tokens a day; carol (TEAM, SOLO) joins it too. quota.pool_slices is at its
# default: the pool's day window is handed out in slices.
for sql in [
    "SELECT quota.set_limit('POOL', 'tokens', 'day', 500)",
    "SELECT quota.assign_plan('team-x', 'POOL')",
    "SELECT quota.set_pool('bob', 'team-x')",
    "SELECT quota.set_limit('SOLO', 'tokens', 'day', 1000)",
    "SELECT quota.set_pool('carol', 'team-x')",
]:
    cur.execute(sql)
cur.execute("SELECT subject, pool FROM quota.subjects WHERE pool IS NOT NULL ORDER BY 1")
check(cur.fetchall() == [("bob", "team-x"), ("carol", "team-x")], "set_pool makes old subjects members of a new pool")
cur.execute("SELECT subject, level, used, remaining FROM quota.quota_consume('bob', 'tokens', 100)")
got = cur.fetchone()
check(got == ("team-x", 1, 100, 400), f"a member's consume answers for the binding window, its pool's ({got})")
cur.execute("SELECT used FROM quota.quota_consume('carol', 'tokens', 150)")
cur.execute("SELECT subject, used FROM quota.window_usage WHERE subject = 'team-x' AND metric = 'tokens'")
check(cur.fetchall() == [("team-x", 250)], "and in its pool's (team-x: 100 + 150)")
cur.execute("SELECT count(*), sum(used) FROM quota.pool_slices WHERE subject = 'team-x'")
slices, drawn = cur.fetchone()
check(slices > 0 and drawn == 250, f"the pool's window is drawn from in slices ({slices} slices, {drawn} drawn)")
cur.execute("SELECT via, amount FROM quota.usage_events WHERE subject = 'team-x' ORDER BY id")
check(cur.fetchall() == [("bob", 100), ("carol", 150)], "the pool's ledger rows name the member")
cur.execute("SELECT pool, level, used, limit_value FROM quota.quota_status('bob') WHERE metric = 'tokens' ORDER BY level")
check(cur.fetchall() == [(None, 0, 300, 10000), ("team-x", 1, 250, 500)],
      "quota_status of a member shows its own row (bob: 200 -> 300 tokens this month) and its pool's")
try:
    cur.execute("SELECT quota.quota_consume('bob', 'tokens', 300)")
    check(False, "the pool refuses bob's 300 (250 of 500 used)")
except psycopg2.Error as e:
    d = json.loads(e.diag.message_detail or "{}")
    check(e.pgcode == "QT429" and (d.get("subject"), d.get("level"), d.get("member"), d.get("remaining")) == ("team-x", 1, "bob", 250),
          f"the pool refuses bob's 300 with QT429 naming the pool, level 1 and bob ({e.pgcode} {d})")
cur.execute("SELECT allowed, subject, level, used FROM quota.quota_check('bob', 'tokens', 250)")
check(cur.fetchone() == (True, "team-x", 1, 250), "quota_check admits what the pool has left, the pool binding")
cur.execute("SELECT count(*) FROM quota.ledger_check")
check(cur.fetchone()[0] == 0, "quota.ledger_check is empty with the pool's slices")

print(f"the upgraded catalog equals a fresh {default_version}")
new = connect(NEW, autocommit=True)
new.cursor().execute("CREATE EXTENSION quota_ext")

CATALOG = {
    "members": """SELECT pg_describe_object(classid, objid, objsubid) FROM pg_depend
                  WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
                    AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'quota_ext')""",
    "functions": """SELECT p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') -> '
                           || pg_get_function_result(p.oid) || ' secdef=' || p.prosecdef
                           || ' config=' || coalesce(p.proconfig::text, '-') || ' vol=' || p.provolatile::text
                           || ' strict=' || p.proisstrict || ' acl=' || coalesce(p.proacl::text, '-')
                           || ' args=' || coalesce(pg_get_function_arguments(p.oid), '')
                    FROM pg_proc p WHERE p.pronamespace = 'quota'::regnamespace""",
    "relations": """SELECT c.relname || ' ' || c.relkind::text || ' acl=' || coalesce(c.relacl::text, '-')
                           || ' rls=' || c.relrowsecurity || '/' || c.relforcerowsecurity
                           || ' opts=' || coalesce(c.reloptions::text, '-')
                    FROM pg_class c WHERE c.relnamespace = 'quota'::regnamespace""",
    # position: among the columns not dropped (0.7.0's period must be last in both)
    "columns": """SELECT c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                         || ' position=' || (SELECT count(*) FROM pg_attribute b WHERE b.attrelid = a.attrelid
                                             AND b.attnum > 0 AND b.attnum <= a.attnum AND NOT b.attisdropped)
                         || ' notnull=' || a.attnotnull || ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '-')
                         || ' identity=' || a.attidentity::text
                  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                  WHERE c.relnamespace = 'quota'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped""",
    "constraints": """SELECT conrelid::regclass || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
                      WHERE connamespace = 'quota'::regnamespace""",
    "policies": "SELECT tablename || ' ' || policyname || ' ' || roles::text || ' ' || cmd || ' ' || coalesce(qual, '-') FROM pg_policies WHERE schemaname = 'quota'",
    "views": "SELECT viewname || ': ' || definition FROM pg_views WHERE schemaname = 'quota'",
    "triggers": """SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                   WHERE c.relnamespace = 'quota'::regnamespace AND NOT t.tgisinternal""",
    "indexes": "SELECT indexdef FROM pg_indexes WHERE schemaname = 'quota'",
    "config dump": """SELECT unnest(extconfig)::regclass::text || ' ' || coalesce(array_to_string(extcondition, ','), '')
                      FROM pg_extension WHERE extname = 'quota_ext'""",
    "event triggers": "SELECT evtname || ' ' || evtevent || ' ' || evtfoid::regproc FROM pg_event_trigger",
}
for name, sql in CATALOG.items():
    got = {}
    for label, conn in (("upgraded", old), ("fresh", new)):
        with conn.cursor() as c:
            c.execute(sql)
            got[label] = sorted(r[0] for r in c.fetchall())
    same = got["upgraded"] == got["fresh"]
    check(same and got["fresh"], f"{name}: upgraded = fresh ({len(got['fresh'])} entries)")
    if not same:
        for line in difflib.unified_diff(got["fresh"], got["upgraded"], "fresh", "upgraded", lineterm="", n=0):
            print("      " + line)

old.close()
new.close()
recreate_databases(OLD, NEW, create=False)
finish()
