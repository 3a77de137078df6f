"""quota.throttle over real connections (0.7.0): one key from 20 connections at once,
tenant-scoped keys for a hostile quota_app role, and maintenance() keeping a stream of
new keys (IP addresses) from growing the table."""
import psycopg2

from common import check, connect, expect_sqlstate, finish, fresh_database, run_clients

CLOCK = "SET quota.clock_override = '2026-11-23 12:00:00+00'"
admin = fresh_database()
cur = admin.cursor()


def take(_):
    conn = connect()
    try:
        with conn.cursor() as c:
            c.execute(CLOCK)
            # burst 9: 10 units at once, then one an hour
            c.execute("SELECT limited FROM quota.throttle('hot-key', 9, 1, '1 hour')")
            limited = c.fetchone()[0]
        conn.commit()
        return limited
    finally:
        conn.close()


print("20 connections on one key whose bucket holds 10")
outcomes = run_clients(20, take)
check(outcomes.count(False) == 10, f"exactly 10 admitted (got {outcomes.count(False)})")
check(outcomes.count(True) == 10, "the other 10 limited")
cur.execute("SELECT tat = '2026-11-23 22:00:00+00' FROM quota.throttles WHERE key = 'hot-key'")
check(cur.fetchone() == (True,), "the key's TAT is 10 hours ahead (10 units of 1 hour)")

print("a quota_app role sees and spends only its tenant's keys")
for stmt in ("DROP ROLE IF EXISTS thr_app", "CREATE ROLE thr_app LOGIN", "GRANT quota_app TO thr_app",
             "SELECT quota.bind_tenant('thr_app', 'acme')"):
    cur.execute(stmt)
# The real clock (quota.clock_override is superuser-set: the app role runs on it too).
cur.execute("RESET quota.clock_override")
cur.execute("SET quota.tenant = 'globex'")
cur.execute("SELECT limited FROM quota.throttle('login:alice', 0, 1, '1 hour')")
check(cur.fetchone()[0] is False, "globex's key taken (as an administrator)")
cur.execute("RESET quota.tenant")
app = psycopg2.connect(host=admin.info.host, port=admin.info.port, user="thr_app", dbname=admin.info.dbname)
app.autocommit = True
a = app.cursor()
expect_sqlstate(a, "SELECT * FROM quota.throttle('login:alice', 0, 1, '1 hour')", "42501", "a bound role with no quota.tenant is refused")
a.execute("SET quota.tenant = 'acme'")
a.execute("SELECT limited FROM quota.throttle('login:alice', 0, 1, '1 hour')")
check(a.fetchone()[0] is False, "acme's key of the same name is its own (globex's spent one does not count)")
a.execute("SELECT tenant, key FROM quota.throttles ORDER BY 1, 2")
check(a.fetchall() == [("acme", "login:alice")], "it reads only acme's rows")
expect_sqlstate(a, "DELETE FROM quota.throttles", "42501", "it cannot delete keys directly")
expect_sqlstate(a, "UPDATE quota.throttles SET tat = '-infinity'", "42501", "nor reset them")
a.execute("SET quota.tenant = 'globex'")
expect_sqlstate(a, "SELECT * FROM quota.throttle('x', 0, 1, '1 hour')", "42501", "nor act for another tenant")
app.close()

print("a stream of 20,000 new keys, then maintenance()")
cur.execute(CLOCK)
cur.execute("""SELECT count(*) FROM generate_series(1, 20000) i,
               quota.throttle('ip:10.' || (i / 256) || '.' || (i % 256) || '.1', 4, 5, '1 minute')""")
cur.execute("SELECT count(*) FROM quota.throttles WHERE key LIKE 'ip:%'")
check(cur.fetchone()[0] == 20000, "one row per key")
cur.execute("SELECT quota.maintenance()")
cur.execute("SELECT count(*) FROM quota.throttles WHERE key LIKE 'ip:%'")
check(cur.fetchone()[0] == 20000, "maintenance keeps buckets that are not full yet")
cur.execute("SET quota.clock_override = '2026-11-23 12:00:13+00'")
cur.execute("SELECT quota.maintenance()")
cur.execute("SELECT count(*) FROM quota.throttles WHERE key LIKE 'ip:%'")
check(cur.fetchone()[0] == 0, "12 s later every bucket is full again: all 20,000 rows deleted")
cur.execute("SELECT count(*) FROM quota.throttles WHERE key = 'hot-key'")
check(cur.fetchone()[0] == 1, "a key still in use stays")
print("maintenance() never waits for a key an application transaction holds (no deadlock)")
cur.execute("RESET quota.clock_override")
cur.execute("SELECT count(*) FROM quota.throttle('dl-x', 0, 1, '1 second') x, quota.throttle('dl-y', 0, 1, '1 second') y")
cur.execute("SELECT pg_sleep(1.1)")  # both buckets full again
app = connect()
with app.cursor() as c:
    c.execute("SELECT limited FROM quota.throttle('dl-x', 0, 1, '1 hour')")  # holds dl-x until COMMIT
    sweeper = connect(autocommit=True)
    with sweeper.cursor() as s:
        s.execute("SET lock_timeout = '2s'")
        s.execute("SELECT quota.maintenance()")  # would wait on dl-x (and time out) if it locked it
        s.execute("SELECT key FROM quota.throttles WHERE key LIKE 'dl-%' ORDER BY 1")
        left = [r[0] for r in s.fetchall()]
    check(left == ["dl-x"], f"it deleted dl-y and skipped the held dl-x (left: {left})")
    c.execute("SELECT limited FROM quota.throttle('dl-y', 0, 1, '1 hour')")
    check(c.fetchone() == (False,), "the application's next key is not blocked by the sweep")
app.commit()
app.close()
sweeper.close()

print("maintenance() on a database still at 0.6.0 (no quota.throttles)")
old_db = connect("postgres", autocommit=True)
with old_db.cursor() as c:
    c.execute("DROP DATABASE IF EXISTS quota_thr_old")
    c.execute("CREATE DATABASE quota_thr_old")
old_db.close()
old_db = connect("quota_thr_old", autocommit=True)
with old_db.cursor() as c:
    c.execute("CREATE EXTENSION quota_ext VERSION '0.6.0'")
    c.execute("SELECT quota.maintenance()")
    check(c.fetchone() == (0,), "it answers as 0.6.0 did (no error about quota.throttles)")
    check(not [n for n in old_db.notices if "WARNING" in n], f"and warns of nothing ({old_db.notices})")
old_db.close()
admin.close()
finish()
