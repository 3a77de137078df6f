"""pg_dump / pg_restore round trip: a database with plans, subjects (tenants, zones,
billing cycles), counters, ledger and summaries, bonuses, holds, events, idempotency keys,
an enforced application table and pools (0.8.0: members, a pool of pools, the pools'
slices holding granted and drawn allowance, ledger rows naming the member they came
via) is dumped, restored into a fresh database and compared table by table; then the
restored copy must keep enforcing, a member's consume still charging its pools."""
import json
import os
import subprocess

import psycopg2

from common import HOST, PORT, check, connect, finish, quota_tables, recreate_databases

SRC, DST = "quota_dump_src", "quota_dump_dst"
PGBIN = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()

recreate_databases(SRC, DST)

src = connect(SRC, autocommit=True)
cur = src.cursor()
for sql in [
    "CREATE EXTENSION quota_ext",
    "SET quota.clock_override = '2026-10-10 09:00:00+00'",
    "SELECT quota.set_limit('PRO', 'messages', 'day', 5)",
    "SELECT quota.set_limit('PRO', 'tokens', 'billing_cycle', 10000, 'hard', 4000)",
    "SELECT quota.set_limit('PRO', 'images', 'week', 2, 'soft')",
    "SELECT quota.set_limit('PRO', 'products', 'lifetime', 3)",
    "SELECT quota.set_alerts('PRO', 'tokens', ARRAY[50, 90])",
    "SELECT quota.set_bonus_rule('PRO', 'messages', 'questionnaire', 5, 'subject')",
    "SELECT quota.set_bonus_rule('PRO', 'tokens', 'payment', 1000, 'global')",
    "SELECT quota.set_bonus_cap('PRO', 3)",
    "SELECT quota.assign_plan('alice', 'PRO', tenant => 'acme', time_zone => 'Europe/Paris', cycle_anchor => '2026-01-31 10:00+00')",
    "SELECT quota.assign_plan('bob', 'PRO', tenant => 'globex')",
    "SELECT quota.assign_plan('10.0.0.7', 'PRO')",
    "SELECT quota.quota_consume('alice', 'messages', 3, 'req-1', '{\"via\": \"api\"}')",
    "SELECT quota.quota_consume('alice', '{\"messages\": 1, \"tokens\": 2500}'::jsonb)",
    "SELECT quota.quota_consume('bob', 'images', 3)",
    "SELECT quota.quota_consume('10.0.0.7'::inet, 'products', 2)",
    "SELECT quota.quota_refund('alice', 'tokens', 500)",
    "SELECT quota.apply_bonus('alice', 'messages', 'questionnaire', 'form-1')",
    "SELECT quota.apply_bonus('bob', 'tokens', 'payment', 'pay_123')",
    "SET quota.clock_override = '2026-11-20 09:00:00+00'",
    "SELECT quota.compact_ledger('30 days')",
    "SELECT quota.quota_consume('bob', 'messages', 2)",
    "SELECT quota.quota_reset('bob', 'messages')",
    "SELECT quota.quota_consume('alice', 'messages', 4)",
    "SELECT quota.quota_reserve('alice', 'tokens', 1000, '1 hour')",
    "SELECT quota.quota_commit((SELECT reservation FROM quota.quota_reserve('bob', 'tokens', 800, '1 hour')), 600)",
    "CREATE TABLE public.messages (id bigserial PRIMARY KEY, user_id text NOT NULL, body text)",
    "SELECT quota.enforce_on_insert('public.messages', subject_column => 'user_id', metric => 'messages')",
    "INSERT INTO public.messages (user_id, body) VALUES ('bob', 'hi'), ('bob', 'there')",
    # 0.4.0 state: tenant bindings (by role name) and the charges of a refund_on_delete table.
    "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dump_acme_app') THEN CREATE ROLE dump_acme_app IN ROLE quota_app; END IF; END $$",
    "SELECT quota.bind_tenant('dump_acme_app', 'acme')",
    "CREATE TABLE public.products (id bigserial PRIMARY KEY, owner text NOT NULL)",
    "SELECT quota.enforce_on_insert('public.products', subject_column => 'owner', metric => 'products', refund_on_delete => true)",
    "INSERT INTO public.products (owner) VALUES ('10.0.0.7')",
    # 0.8.0: pools. dev-1 and dev-2 draw from team-a, which draws from org-1 with team-b
    # (a member counts at every level). quota.pool_slices is at its default (8): the
    # shared pools' day windows are handed out in slices, so pool_slices holds granted and
    # used rows.
    "SELECT quota.set_limit('SEAT', 'tokens', 'day', 400)",
    "SELECT quota.set_limit('TEAM', 'tokens', 'day', 1000)",
    "SELECT quota.set_limit('ORG', 'tokens', 'day', 5000)",
    "SELECT quota.assign_plan('org-1', 'ORG', tenant => 'acme')",
    "SELECT quota.assign_plan('team-a', 'TEAM', tenant => 'acme')",
    "SELECT quota.assign_plan('team-b', 'TEAM', tenant => 'acme')",
    "SELECT quota.assign_plan('dev-1', 'SEAT', tenant => 'acme')",
    "SELECT quota.assign_plan('dev-2', 'SEAT', tenant => 'acme')",
    "SELECT quota.set_pool('team-a', 'org-1')",
    "SELECT quota.set_pool('team-b', 'org-1')",
    "SELECT quota.set_pool('dev-1', 'team-a')",
    "SELECT quota.set_pool('dev-2', 'team-a')",
    "SELECT quota.quota_consume('dev-1', 'tokens', 100)",
    "SELECT quota.quota_consume('dev-1', 'tokens', 50, 'pool-req-1')",
    "SELECT quota.quota_refund('dev-1', 'tokens', 20)",
]:
    cur.execute(sql)
# dev-2 from a session of its own (another backend: most likely another slice).
src2 = connect(SRC, autocommit=True)
with src2.cursor() as c2:
    c2.execute("SET quota.clock_override = '2026-11-20 09:00:00+00'")
    c2.execute("SELECT quota.quota_consume('dev-2', 'tokens', 70)")
src2.close()
# What each level counted: dev-1 130, dev-2 70; team-a and org-1 200.
POOL_USAGE = "SELECT subject, used, reserved FROM quota.window_usage WHERE metric = 'tokens' AND period = 'day' AND subject IN ('dev-1', 'dev-2', 'team-a', 'org-1') ORDER BY 1"
cur.execute(POOL_USAGE)
pool_usage = cur.fetchall()
# (0.9.0) A tenant paused for a move: the pause is state, kept by the dump.
cur.execute("SELECT quota.pause_tenant('dump-moved', 'n9', moved => true)")


def snapshot(conn):
    """Every table and sequence of schema quota, row-level security flags and policies, and
    the application table with its triggers."""
    out = quota_tables(conn)
    with conn.cursor() as c:
        c.execute("""SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class
                     WHERE relnamespace = 'quota'::regnamespace AND relkind = 'r' ORDER BY 1""")
        out["row-level security"] = c.fetchall()
        c.execute("SELECT tablename, policyname, roles::text, qual FROM pg_policies WHERE schemaname = 'quota' ORDER BY 1, 2")
        out["policies"] = c.fetchall()
        c.execute("SELECT * FROM public.messages ORDER BY id")
        out["public.messages"] = c.fetchall()
        c.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.messages'::regclass AND NOT tgisinternal ORDER BY 1")
        out["triggers on messages"] = c.fetchall()
    return out


before = snapshot(src)
check(len(before["quota.usage_summaries"]) > 0 and len(before["quota.usage_events"]) > 0,
      "the source has both summarised and live ledger rows")
check(len(before["quota.reservations"]) == 2 and len(before["quota.bonus_grants"]) == 2,
      "the source has holds and bonus grants")
check(len(before["quota.tenant_bindings"]) == 1 and len(before["quota.row_charges"]) == 1,
      "the source has a tenant binding and a row charge")
check(before["quota.tenant_pauses"] and before["quota.tenant_pauses"][0][:3] == ("dump-moved", "moved", "n9"),
      "the source has a tenant pause")
check(pool_usage == [("dev-1", 130, 0), ("dev-2", 70, 0), ("org-1", 200, 0), ("team-a", 200, 0)],
      f"the source's pools counted their members' usage ({pool_usage})")
with src.cursor() as c:
    c.execute("SELECT count(*) FILTER (WHERE granted > 0), count(*) FILTER (WHERE used > 0), count(DISTINCT subject) FROM quota.pool_slices")
    granted, drawn, pools = c.fetchone()
    check(granted > 0 and drawn > 0 and pools == 2, f"the source's pool_slices hold granted and drawn allowance of both pools ({granted} granted, {drawn} drawn, {pools} pools)")
    c.execute("SELECT subject, pool FROM quota.subjects WHERE pool IS NOT NULL ORDER BY 1")
    memberships = c.fetchall()
    check(memberships == [("dev-1", "team-a"), ("dev-2", "team-a"), ("team-a", "org-1"), ("team-b", "org-1")], f"the source has its memberships ({memberships})")
    c.execute("SELECT subject, via, kind, count(*) FROM quota.usage_events WHERE via IS NOT NULL GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")
    via_rows = c.fetchall()
    check(len(via_rows) >= 5 and {r[0] for r in via_rows} == {"team-a", "org-1"}
          and {r[1] for r in via_rows if r[0] == "org-1"} == {"team-a"} and {r[1] for r in via_rows if r[0] == "team-a"} == {"dev-1", "dev-2"},
          f"the source's ledger has pool rows naming their member ({via_rows})")

dump = f"/tmp/quota_dump_{os.getpid()}.dump"
run = subprocess.run([f"{PGBIN}/pg_dump", "-Fc", "-h", HOST, "-p", str(PORT), "-U", "postgres", "-f", dump, SRC],
                     capture_output=True, text=True)
check(run.returncode == 0 and not run.stderr.strip(), f"pg_dump succeeds without warnings ({run.stderr.strip()[:300]})")
run = subprocess.run([f"{PGBIN}/pg_restore", "-h", HOST, "-p", str(PORT), "-U", "postgres", "-d", DST, "--exit-on-error", dump],
                     capture_output=True, text=True)
check(run.returncode == 0 and not run.stderr.strip(), f"pg_restore succeeds without warnings ({run.stderr.strip()[:300]})")
os.unlink(dump)


def detail_of(error):
    return json.loads(error.diag.message_detail or "{}")


def pools_after_restore(c):
    """The restored pools: same memberships, slices and via rows (snapshot compared them
    whole); a member's consume is charged to its pools again, through the restored slices,
    and a pool that is full refuses with QT429 naming the pool, its level and the member."""
    c.execute("SELECT subject, pool FROM quota.subjects WHERE pool IS NOT NULL ORDER BY 1")
    check(c.fetchall() == [("dev-1", "team-a"), ("dev-2", "team-a"), ("team-a", "org-1"), ("team-b", "org-1")], "the restored subjects keep their pool")
    c.execute("SELECT subject, via, kind, count(*) FROM quota.usage_events WHERE via IS NOT NULL GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")
    check(c.fetchall() == via_rows, "the restored ledger keeps each pool row's via")
    c.execute("SELECT count(*) FILTER (WHERE granted > 0), count(*) FILTER (WHERE used > 0) FROM quota.pool_slices")
    check(c.fetchone() == (granted, drawn), "the restored pool_slices hold what the source's held")
    c.execute(POOL_USAGE)
    check(c.fetchall() == pool_usage, "each level counts after restore what it counted before (slices included)")
    c.execute("SELECT pool, member, member_used, pool_used FROM quota.pool_members WHERE metric = 'tokens' ORDER BY 1, 2")
    members = c.fetchall()
    check(("team-a", "dev-1", 130, 200) in members and ("team-a", "dev-2", 70, 200) in members,
          f"quota.pool_members gives each member's share after restore ({members})")

    c.execute("SELECT max(id) FROM quota.usage_events")
    last = c.fetchone()[0]
    c.execute("SELECT used, level FROM quota.quota_consume('dev-1', 'tokens', 10)")
    used, level = c.fetchone()
    check((used, level) == (140, 0), f"a member's consume after restore answers for its own window (used {used}, level {level})")
    c.execute(POOL_USAGE)
    got = c.fetchall()
    check(got == [("dev-1", 140, 0), ("dev-2", 70, 0), ("org-1", 210, 0), ("team-a", 210, 0)],
          f"and is charged to its pool and its pool's pool ({got})")
    c.execute("SELECT subject, via, amount FROM quota.usage_events WHERE id > %s ORDER BY id", (last,))
    rows = sorted(c.fetchall())
    check(rows == [("dev-1", None, 10), ("org-1", "team-a", 10), ("team-a", "dev-1", 10)],
          f"the new ledger rows name, on each pool's row, the member the call came through ({rows})")
    c.execute("SELECT quota_status.* FROM quota.quota_status('dev-1') WHERE metric = 'tokens' ORDER BY level")
    status = [(r[-2], r[-1], r[4]) for r in c.fetchall()]  # pool, level, used
    check(status == [(None, 0, 140), ("team-a", 1, 210), ("org-1", 2, 210)], f"quota_status of a member shows its pools' rows after restore ({status})")

    # team-a lowered to 300 (below what its slices were granted): 210 used leave 90. 100
    # fits dev-2's own 400 but not the pool: refused, the slices gathered back.
    c.execute("SELECT quota.set_limit('TEAM', 'tokens', 'day', 300)")
    try:
        c.execute("SELECT quota.quota_consume('dev-2', 'tokens', 100)")
        check(False, "a full pool refuses its member after restore")
    except psycopg2.Error as e:
        d = detail_of(e)
        check(e.pgcode == "QT429" and d.get("subject") == "team-a" and d.get("level") == 1 and d.get("member") == "dev-2"
              and d.get("remaining") == 90, f"a full pool refuses its member after restore: QT429 naming the pool, level 1 and the member ({e.pgcode} {d})")
        check([(r.get("subject"), r.get("level")) for r in d.get("refused", [])] == [("team-a", 1)],
              f"its refused limits name the pool and level ({d.get('refused')})")
        check('pool "team-a"' in e.diag.message_primary, f"the message names the pool ({e.diag.message_primary})")
    c.execute("SELECT subject, level, used, remaining FROM quota.quota_consume('dev-2', 'tokens', 90)")
    got = c.fetchone()
    check(got == ("team-a", 1, 300, 0), f"what the pool has left is still taken in full, the pool binding ({got})")
    c.execute(POOL_USAGE)
    got = c.fetchall()
    check(got == [("dev-1", 140, 0), ("dev-2", 160, 0), ("org-1", 300, 0), ("team-a", 300, 0)], f"every level counted it ({got})")
    c.execute("SELECT count(*) FROM quota.ledger_check")
    check(c.fetchone()[0] == 0, "quota.ledger_check is empty after the restored pools are used")
    c.execute("SELECT quota.set_limit('TEAM', 'tokens', 'day', 1000)")


dst = connect(DST, autocommit=True)
after = snapshot(dst)
for name in sorted(set(before) | set(after)):
    check(before.get(name) == after.get(name), f"{name} is identical after restore")

with dst.cursor() as c:
    c.execute("SELECT count(*) FROM quota.ledger_check")
    check(c.fetchone()[0] == 0, "quota.ledger_check is empty after restore")
    c.execute("SET quota.clock_override = '2026-11-20 09:00:00+00'")
    pools_after_restore(c)
    c.execute("SELECT max(id) FROM quota.usage_events")
    last = c.fetchone()[0]
    c.execute("SELECT used FROM quota.quota_consume('alice', 'tokens', 10)")
    c.execute("SELECT max(id) FROM quota.usage_events")
    check(c.fetchone()[0] > last, "new ledger rows continue after the restored ids")
    c.execute("SELECT count(*) FROM quota.usage_events WHERE subject = 'bob' AND metric = 'messages'")
    bob_rows = c.fetchone()[0]
    c.execute("INSERT INTO public.messages (user_id, body) VALUES ('bob', '3'), ('bob', '4'), ('bob', '5')")
    try:
        c.execute("INSERT INTO public.messages (user_id, body) VALUES ('bob', 'one too many')")
        check(False, "the restored enforcement trigger refuses the 6th message")
    except psycopg2.Error as e:
        check(e.pgcode == "QT429", f"the restored enforcement trigger refuses the 6th message with QT429 (got {e.pgcode})")
    c.execute("SELECT count(*) FROM quota.usage_events WHERE subject = 'bob' AND metric = 'messages'")
    check(c.fetchone()[0] == bob_rows + 3, "the trigger consumed exactly the three accepted rows")
    c.execute("SELECT used FROM quota.quota_check('10.0.0.7', 'products', 0)")
    products = c.fetchone()[0]
    c.execute("DELETE FROM public.products")
    c.execute("SELECT used FROM quota.quota_check('10.0.0.7', 'products', 0)")
    check(c.fetchone()[0] == products - 1, "a restored row charge is refunded when its row is deleted")
    c.execute("SELECT role_name, tenant FROM quota.tenant_bindings")
    check(c.fetchall() == [("dump_acme_app", "acme")], "the restored binding names its role")
    try:
        c.execute("DELETE FROM quota.usage_events")
        check(False, "the restored ledger is still append-only")
    except psycopg2.Error as e:
        check(e.pgcode == "23001", f"the restored ledger is still append-only (got {e.pgcode})")

src.close()
dst.close()
recreate_databases(SRC, DST, create=False)
finish()
