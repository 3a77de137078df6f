"""pg_dump / pg_restore round trip: a database with plans, subjects (tenants, zones,
billing cycles), counters, ledger and summaries, bonuses, holds, events, idempotency keys
and an enforced application table is dumped, restored into a fresh database and compared
table by table; then the restored copy must keep enforcing."""
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
]:
    cur.execute(sql)


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

dump = f"/tmp/quota_dump_{os.getpid()}.dump"
run = subprocess.run([f"{PGBIN}/pg_dump", "-Fc", "-h", HOST, "-p", str(PORT), "-U", "postgres", "-f", dump, SRC],
                     capture_output=True, text=True)
check(run.returncode == 0 and not run.stderr.strip(), f"pg_dump succeeds without warnings ({run.stderr.strip()[:300]})")
run = subprocess.run([f"{PGBIN}/pg_restore", "-h", HOST, "-p", str(PORT), "-U", "postgres", "-d", DST, "--exit-on-error", dump],
                     capture_output=True, text=True)
check(run.returncode == 0 and not run.stderr.strip(), f"pg_restore succeeds without warnings ({run.stderr.strip()[:300]})")
os.unlink(dump)

dst = connect(DST, autocommit=True)
after = snapshot(dst)
for name in sorted(set(before) | set(after)):
    check(before.get(name) == after.get(name), f"{name} is identical after restore")

with dst.cursor() as c:
    c.execute("SELECT count(*) FROM quota.ledger_check")
    check(c.fetchone()[0] == 0, "quota.ledger_check is empty after restore")
    c.execute("SET quota.clock_override = '2026-11-20 09:00:00+00'")
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
