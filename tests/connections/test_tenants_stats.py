"""Tenants and quota.stats over real connections.

- Two tenants' apps (each its own login role in quota_app, SET LOCAL quota.tenant per
  transaction) consume the same metric at the same time: each sees and spends only its own
  subjects, and crossing attempts from the other tenant's connections look like unknown
  subjects.
- quota.stats is shared memory: totals from many connections add up, a refusal whose
  transaction rolls back is counted, and a consume that rolls back is not.
- A cluster without shared_preload_libraries answers quota.stats with 55000 and a hint.
"""
import os
import subprocess

import psycopg2

from common import HOST, PORT, check, connect, finish, fresh_database, run_clients

admin = fresh_database()
cur = admin.cursor()
cur.execute("SELECT quota.set_limit('TEAM', 'msgs', 'day', 15)")
for tenant in ("t_red", "t_blue"):
    for k in range(3):
        cur.execute("SELECT quota.assign_plan(%s, 'TEAM', tenant => %s)", (f"{tenant}-{k}", tenant))
cur.execute("DROP ROLE IF EXISTS conn_red_app")
cur.execute("DROP ROLE IF EXISTS conn_blue_app")
cur.execute("CREATE ROLE conn_red_app LOGIN IN ROLE quota_app")
cur.execute("CREATE ROLE conn_blue_app LOGIN IN ROLE quota_app")
cur.execute("SELECT quota.stats_reset()")


def app_connection(role):
    conn = psycopg2.connect(host=HOST, port=PORT, user=role, dbname=admin.info.dbname)
    return conn


def tenant_worker(i):
    """Clients 0-3 are red, 4-7 blue. Each consumes 15 times on its tenant's subjects and
    tries 5 times to consume on the other tenant's."""
    tenant, other = ("t_red", "t_blue") if i < 4 else ("t_blue", "t_red")
    conn = app_connection("conn_red_app" if i < 4 else "conn_blue_app")
    outcome = {"ok": 0, "QT429": 0, "crossed": 0, "QT404": 0}
    try:
        for n in range(20):
            crossing = n % 4 == 3
            subject = f"{other if crossing else tenant}-{n % 3}"
            with conn.cursor() as c:
                try:
                    c.execute("SET LOCAL quota.tenant = %s", (tenant,))
                    c.execute("SELECT used FROM quota.quota_consume(%s, 'msgs')", (subject,))
                    conn.commit()
                    outcome["crossed" if crossing else "ok"] += 1
                except psycopg2.Error as e:
                    conn.rollback()
                    outcome[e.pgcode] = outcome.get(e.pgcode, 0) + 1
    finally:
        conn.close()
    return outcome


print("two tenants at once, 8 connections, with crossing attempts")
results = run_clients(8, tenant_worker)
total = {k: sum(r.get(k, 0) for r in results) for k in ("ok", "QT429", "crossed", "QT404")}
check(total["crossed"] == 0, f"no consume crossed to the other tenant (got {total['crossed']})")
check(total["QT404"] == 8 * 5, f"every crossing attempt was QT404 (got {total['QT404']} of 40)")
check(total["ok"] + total["QT429"] == 8 * 15, f"every own consume was allowed or refused ({total})")
cur.execute("""SELECT s.tenant, sum(c.used) FROM quota.counters c JOIN quota.subjects s USING (subject)
               GROUP BY 1 ORDER BY 1""")
used = dict(cur.fetchall())
check(used.get("t_blue", 0) + used.get("t_red", 0) == total["ok"], f"counters hold exactly the allowed consumes ({used}, ok={total['ok']})")
check(used.get("t_red") == 45 and used.get("t_blue") == 45, f"each tenant filled its 3 subjects to exactly 15 ({used})")
check(total["QT429"] == 2 * 15, f"the 2 x 15 consumes past the limits were refused (got {total['QT429']})")
cur.execute("SELECT count(*) FROM quota.ledger_check")
check(cur.fetchone()[0] == 0, "quota.ledger_check is empty")

print("each tenant's connection sees only its own rows")
for role, tenant, other in (("conn_red_app", "t_red", "t_blue"), ("conn_blue_app", "t_blue", "t_red")):
    conn = app_connection(role)
    with conn.cursor() as c:
        c.execute("SET quota.tenant = %s", (tenant,))
        c.execute("SELECT DISTINCT tenant FROM quota.usage_events")
        seen = {r[0] for r in c.fetchall()}
        check(seen == {tenant}, f"{role} reads ledger rows of {tenant} only (saw {seen})")
        c.execute("SELECT count(*) FROM quota.counters WHERE subject LIKE %s", (other + "%",))
        check(c.fetchone()[0] == 0, f"{role} sees no counter of {other}")
        c.execute("SELECT count(*) FROM quota.usage_overview WHERE tenant <> %s", (tenant,))
        check(c.fetchone()[0] == 0, f"{role} sees only {tenant} in quota.usage_overview")
        try:
            c.execute("UPDATE quota.counters SET used = 0")
            check(False, f"{role} cannot write quota.counters")
        except psycopg2.Error as e:
            check(e.pgcode == "42501", f"{role} writing quota.counters fails with 42501 (got {e.pgcode})")
            conn.rollback()
    conn.close()

print("quota.stats across connections")
cur.execute("SELECT consumed_total, consumes_total, exceeded_total FROM quota.stats WHERE metric = 'msgs'")
consumed, consumes, exceeded = cur.fetchone()
check(consumed == total["ok"] and consumes == total["ok"], f"consumed_total = allowed consumes ({consumed}, {total['ok']})")
check(exceeded == total["QT429"], f"exceeded_total = refusals ({exceeded}, {total['QT429']})")


def rolled_back(i):
    conn = connect()
    with conn.cursor() as c:
        try:
            c.execute("SELECT quota.quota_consume('t_red-0', 'msgs', 1000)")
        except psycopg2.Error:
            pass
        conn.rollback()
        c.execute("SELECT quota.quota_refund('t_red-0', 'msgs', 1)")
        c.execute("SELECT quota.quota_consume('t_red-0', 'msgs', 1)")
        conn.rollback()
    conn.close()


run_clients(4, rolled_back)
cur.execute("SELECT consumed_total, exceeded_total, refunded_total FROM quota.stats WHERE metric = 'msgs'")
after = cur.fetchone()
check(after == (consumed, exceeded + 4, 0), f"4 rolled-back refusals counted, rolled-back consumes/refunds not ({after})")

print("without shared_preload_libraries")
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
port = int(os.environ.get("QUOTA_NOPRELOAD_PORT", "55437"))
start = subprocess.run(
    ["bash", "-c", f". scripts/cluster.sh && cluster_start nopreload {port}"], cwd=root, capture_output=True, text=True)
check(start.returncode == 0, f"a cluster without preload starts ({start.stderr.strip()[:200]})")
try:
    run = os.environ.get("QUOTA_RUN", "/tmp/quota_ext")
    conn = psycopg2.connect(host=f"{run}/nopreload", port=port, user="postgres", dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as c:
        c.execute("CREATE EXTENSION quota_ext")
        c.execute("SELECT quota.set_limit('P', 'm', 'day', 1)")
        c.execute("SELECT quota.assign_plan('s', 'P')")
        c.execute("SELECT used FROM quota.quota_consume('s', 'm')")
        check(c.fetchone()[0] == 1, "quotas work without preload")
        try:
            c.execute("SELECT * FROM quota.stats")
            check(False, "quota.stats refuses to answer without preload")
        except psycopg2.Error as e:
            check(e.pgcode == "55000", f"quota.stats raises 55000 (got {e.pgcode})")
            check("shared_preload_libraries" in (e.diag.message_hint or ""), f"with a hint naming the setting ({e.diag.message_hint})")
    conn.close()
finally:
    subprocess.run(["bash", "-c", f". scripts/cluster.sh && cluster_stop nopreload {port}"], cwd=root)

cur.execute("DROP OWNED BY conn_red_app, conn_blue_app")
cur.execute("DROP ROLE conn_red_app")
cur.execute("DROP ROLE conn_blue_app")
finish()
