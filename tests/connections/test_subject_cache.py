"""The shared subject cache (src/hotpath/subject_cache.rs) across real connections:
- a row one backend read serves another backend, and so does a window row's remembered TID;
- a change committed by any connection (even one that never used the hot path) is seen
  by the next call of every connection, including one that is brand new;
- the changing transaction sees its own change, others only after COMMIT, never after
  ROLLBACK; a deleted subject is unknown at once;
- a subject created by a transaction that rolled back is never served; a table rewrite
  that changes values (ALTER TABLE ... TYPE ... USING) is seen;
- a transaction that changed subjects cannot be PREPAREd (55000), others can;
- window rows that moved (VACUUM FULL, deleted and created again) are found anyway;
- 8 consumers while subjects flip between plans: every answer is consistent, the
  counter holds exactly what was admitted and agrees with the ledger;
- a streaming standby (no trigger fires there) sees a replayed plan change at once;
- with quota.subject_cache_size = 0 the per-backend caches serve, and the hot-path
  test (test_hot_path.py) passes against such a cluster too."""
import os
import random
import subprocess
import sys
import time

import psycopg2

from common import check, connect, consume_many, execute_each, expect_sqlstate, finish, fresh_database, run_clients

admin = fresh_database()
cur = admin.cursor()
cur.execute("SELECT quota.set_limit('A', 'calls', 'day', 100)")
cur.execute("SELECT quota.set_limit('B', 'calls', 'day', 200)")
for s in ["c1", "c2", "c3"]:
    cur.execute("SELECT quota.assign_plan(%s, 'A')", (s,))
    cur.execute("SELECT quota.quota_consume(%s, 'calls')", (s,))  # window rows exist


def session():
    conn = connect(autocommit=True)
    c = conn.cursor()
    c.execute("SET client_min_messages = debug2")
    return conn, c


def notes(conn):
    out = list(conn.notices)
    conn.notices.clear()
    return " ".join(out)


def limit_of(c, subject):
    c.execute("SELECT limit_value FROM quota.quota_check(%s, 'calls')", (subject,))
    return c.fetchone()[0]


print("one backend's read serves another backend")
a, ac = session()
limit_of(ac, "c1")
limit_of(ac, "c1")  # the first may have filled the entry, the second remembers the TID
b, bc = session()
check(limit_of(bc, "c1") == 100, "a new connection gets the right limit")
n = notes(b)
check("subject from the shared cache" in n, f"from the entry another backend filled ({n})")
check("window row found where the shared cache remembered it" in n, "and the window row by its remembered TID")

print("a change committed elsewhere is seen at once, by old and brand-new connections")
cur.execute("SELECT quota.assign_plan('c1', 'B')")  # admin never used the hot path
check(limit_of(ac, "c1") == 200, "an old connection sees the new plan")
fresh, fc = session()
check(limit_of(fc, "c1") == 200, "a brand-new connection sees it on its first call")
rng = random.Random(11)
seen = True
for i in range(40):
    plan = rng.choice(["A", "B"])
    zone = rng.choice(["UTC", "Asia/Tokyo", "America/New_York"])
    writer = connect(autocommit=True)  # a new connection each time
    writer.cursor().execute("SELECT quota.assign_plan('c1', %s, time_zone => %s)", (plan, zone))
    writer.close()
    cur.execute("SELECT ((date_trunc('day', now() AT TIME ZONE %s) + interval '1 day') AT TIME ZONE %s)", (zone, zone))
    reset_at = cur.fetchone()[0]
    for c in (ac, bc):
        c.execute("SELECT limit_value, reset_at FROM quota.quota_check('c1', 'calls')")
        seen &= c.fetchone() == ((100 if plan == "A" else 200), reset_at)
check(seen, "40 plan and zone changes from new connections, each seen by the next call")

print("the changing transaction sees its own change; others after COMMIT only")
cur.execute("SELECT quota.assign_plan('c2', 'A')")
limit_of(bc, "c2")
admin.autocommit = False
cur.execute("SELECT quota.assign_plan('c2', 'B')")
check(limit_of(cur, "c2") == 200, "the open transaction sees its own change")
check(limit_of(bc, "c2") == 100, "another connection does not, yet")
admin.rollback()
check(limit_of(bc, "c2") == 100, "nor after ROLLBACK")
check(limit_of(cur, "c2") == 100, "and the rolled-back transaction's session is back to the old plan")
admin.rollback()
cur.execute("SELECT quota.assign_plan('c2', 'B')")
admin.commit()
check(limit_of(bc, "c2") == 200, "after COMMIT it does")
admin.rollback()
admin.autocommit = True

print("a deleted subject is unknown at once")
limit_of(bc, "c3")
cur.execute("DELETE FROM quota.subjects WHERE subject = 'c3'")
expect_sqlstate(bc, "SELECT quota.quota_consume('c3', 'calls')", "QT404", "QT404 for the deleted subject")

print("a subject created by a transaction that rolls back is never cached")
ghost = connect(autocommit=True)
gc = ghost.cursor()
gc.execute("BEGIN")
gc.execute("SET LOCAL quota.default_plan = 'A'")
gc.execute("SELECT quota.quota_consume('ghost', 'calls')")  # creates the subject and its window
gc.execute("SELECT used FROM quota.quota_consume('ghost', 'calls')")  # the hot path reads it
check(gc.fetchone()[0] == 2, "the creating transaction sees its subject")
gc.execute("ROLLBACK")
ghost.close()
expect_sqlstate(bc, "SELECT quota.quota_check('ghost', 'calls')", "QT404", "QT404 for it in another connection")

print("a rewrite of quota.subjects that changes values is seen")
limit_of(bc, "c2")
cur.execute("ALTER TABLE quota.subjects ALTER COLUMN time_zone TYPE text "
            "USING (CASE WHEN subject = 'c2' THEN 'Asia/Tokyo' ELSE time_zone END)")
cur.execute("SELECT ((date_trunc('day', now() AT TIME ZONE 'Asia/Tokyo') + interval '1 day') AT TIME ZONE 'Asia/Tokyo')")
tokyo = cur.fetchone()[0]
bc.execute("SELECT reset_at FROM quota.quota_check('c2', 'calls')")
check(bc.fetchone()[0] == tokyo, "the next call uses the rewritten zone")

print("two-phase commit")
tpc = connect(autocommit=True)  # BEGIN and PREPARE sent as statements
tc = tpc.cursor()
tc.execute("BEGIN")
tc.execute("SELECT quota.assign_plan('c2', 'A')")
try:
    tc.execute("PREPARE TRANSACTION 'quota_subjects'")
    check(False, "PREPARE of a subject change must fail")
except psycopg2.Error as e:
    check(e.pgcode == "55000" and "directly" in (e.diag.message_hint or ""), f"55000 with a hint ({e.pgcode}: {e.diag.message_hint})")
tc.execute("ROLLBACK")
tc.execute("BEGIN")
tc.execute("SELECT quota.quota_consume('c2', 'calls')")
tc.execute("PREPARE TRANSACTION 'quota_consume'")
tc.execute("COMMIT PREPARED 'quota_consume'")
tpc.close()
check(limit_of(bc, "c2") == 200, "a consume can be prepared, and the plan change was never made")

print("window rows that moved are found anyway")
for _ in range(3):
    bc.execute("SELECT quota.quota_consume('c1', 'calls')")
cur.execute("VACUUM FULL quota.counters")
bc.execute("SELECT used FROM quota.quota_consume('c1', 'calls')")
cur.execute("SELECT used FROM quota.counters WHERE subject = 'c1'")
check(bc.fetchone()[0] == cur.fetchone()[0], "after VACUUM FULL, the consume updated the row that holds the usage")
cur.execute("DELETE FROM quota.counters WHERE subject = 'c1'")
bc.execute("SELECT used FROM quota.quota_consume('c1', 'calls')")
bc.execute("SELECT used FROM quota.quota_consume('c1', 'calls')")
check(bc.fetchone()[0] == 2, "a window row deleted and created again is the one counted")
cur.execute("SELECT count(*) FROM quota.counters WHERE subject = 'c1'")
check(cur.fetchone()[0] == 1, "and no second row appeared")

print("8 consumers while the subject flips between plans")
cur.execute("SELECT quota.set_limit('LOW', 'calls', 'day', 300)")
cur.execute("SELECT quota.set_limit('HIGH', 'calls', 'day', 900)")
cur.execute("SELECT quota.assign_plan('flip', 'LOW')")
cur.execute("SELECT quota.quota_consume('flip', 'calls')")
bad = []


def flipper(i):
    return execute_each("SELECT quota.assign_plan('flip', %s)", [("HIGH" if k % 2 == 0 else "LOW",) for k in range(80)])


results = run_clients(9, lambda i: flipper(i) if i == 8 else consume_many('flip', 'calls', 150, bad, (300, 900)))
check(bad == [], f"every answer consistent: used <= limit, limit one of the plans', refusals QT429 ({bad[:5]})")
cur.execute("SELECT used FROM quota.counters WHERE subject = 'flip'")
used = cur.fetchone()[0]
check(used == 1 + sum(results[:8]), f"the counter holds exactly the admitted consumes ({used} = 1 + {sum(results[:8])})")
cur.execute("SELECT count(*) FROM quota.ledger_check WHERE subject <> 'c1'")  # c1's row was deleted above
check(cur.fetchone()[0] == 0, "the ledger agrees with every counter")

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
run = os.environ.get("QUOTA_RUN", "/tmp/quota_ext")

print("a hot standby sees replayed plan changes (it does not use the shared cache)")
cur.execute("SELECT quota.assign_plan('sb1', 'A')")
cur.execute("SELECT quota.quota_consume('sb1', 'calls')")
sport = os.environ.get("QUOTA_STANDBY_PORT", "55439")
primary_host = os.environ.get("QUOTA_HOST", os.path.join(run, "test"))
primary_port = os.environ.get("QUOTA_PORT", "55433")
made = subprocess.run(["bash", "-c", f"""
    set -e; . scripts/cluster.sh; cluster_stop standby; dir="$QUOTA_RUN/standby"; rm -rf "$dir"; mkdir -p "$dir"
    chown postgres "$dir" 2>/dev/null || true
    as_pg "$PGBIN/pg_basebackup" -h {primary_host} -p {primary_port} -U postgres -D "$dir/data" -X stream -R
    printf "port = {sport}\nunix_socket_directories = '%s'\n" "$dir" >> "$dir/data/postgresql.conf"
    as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null"""],
    cwd=root, capture_output=True, text=True, env=dict(os.environ, QUOTA_RUN=run))
check(made.returncode == 0, f"a streaming standby of the test cluster started ({made.stderr.strip()[-300:]})")
try:
    standby = psycopg2.connect(host=os.path.join(run, "standby"), port=sport, user="postgres", dbname="quota_connections")
    standby.autocommit = True
    sc = standby.cursor()
    sc.execute("SET client_min_messages = debug2")
    check(limit_of(sc, "sb1") == 100 and limit_of(sc, "sb1") == 100, "the standby answers with plan A")
    cur.execute("SELECT quota.assign_plan('sb1', 'B')")
    cur.execute("SELECT pg_current_wal_lsn()::text")
    lsn = cur.fetchone()[0]
    for _ in range(300):
        sc.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,))
        if sc.fetchone()[0]:
            break
        time.sleep(0.05)
    standby.notices.clear()
    check(limit_of(sc, "sb1") == 200, "after replay, the standby's next check has plan B")
    n = notes(standby)
    check("served by the hot path" in n and "shared cache" not in n, f"served by the hot path, without the shared cache ({n})")
    standby.close()
finally:
    subprocess.run(["bash", "-c", ". scripts/cluster.sh && cluster_stop standby"], cwd=root, env=dict(os.environ, QUOTA_RUN=run))

print("quota.subject_cache_size = 0: per-backend caches, and test_hot_path.py against them")
port = os.environ.get("QUOTA_NOCACHE_PORT", "55438")
started = subprocess.run(["bash", "-c", f". scripts/cluster.sh && cluster_start nocache {port} \"shared_preload_libraries = 'quota_ext'\" "
                          "'quota.subject_cache_size = 0'"], cwd=root, capture_output=True, text=True)
check(started.returncode == 0, f"a cluster without the shared cache started ({started.stderr.strip()[:300]})")
try:
    env = dict(os.environ, QUOTA_HOST=os.path.join(run, "nocache"), QUOTA_PORT=port)
    probe = psycopg2.connect(host=env["QUOTA_HOST"], port=port, user="postgres", dbname="postgres")
    probe.autocommit = True
    pc = probe.cursor()
    pc.execute("SHOW quota.subject_cache_size")
    check(pc.fetchone()[0] == "0", "the setting is 0 there")
    probe.close()
    out = subprocess.run([sys.executable, os.path.join(root, "tests", "connections", "test_hot_path.py")], env=env,
                         capture_output=True, text=True)
    print("   " + out.stdout.strip().replace("\n", "\n   "))
    check(out.returncode == 0 and "FAIL" not in out.stdout, f"test_hot_path.py passes there ({out.stderr.strip()[-300:]})")
    db = psycopg2.connect(host=env["QUOTA_HOST"], port=port, user="postgres", dbname="quota_connections")
    db.autocommit = True
    dc = db.cursor()
    dc.execute("SET client_min_messages = debug2")
    dc.execute("SELECT quota.quota_check('s1', 'calls')")
    dc.execute("SELECT quota.quota_check('s1', 'calls')")
    n = " ".join(db.notices)
    check("served by the hot path" in n and "shared cache" not in n, f"the hot path serves without the shared cache ({n})")
    db.close()
finally:
    subprocess.run(["bash", "-c", ". scripts/cluster.sh && cluster_stop nocache"], cwd=root)

finish()
