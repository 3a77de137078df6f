"""The hot path's caches (subjects' rows, plan limits; shared or per backend, see
test_subject_cache.py, which also runs this file with the shared cache off) across connections:
every change another connection commits is seen by the next call of a connection whose
cache holds the old value; and 8 hot-path consumers racing while the limit changes
under them keep the counter equal to what they were told and to the ledger."""
import random

from common import check, connect, consume_many, execute_each, finish, fresh_database, run_clients

admin = fresh_database()
cur = admin.cursor()
cur.execute("SELECT quota.set_limit('A', 'calls', 'day', 1000000)")
cur.execute("SELECT quota.set_limit('B', 'calls', 'day', 1000000)")
cur.execute("SELECT quota.assign_plan('s1', 'A')")
cur.execute("SELECT quota.quota_consume('s1', 'calls')")  # the window row exists: hot path

reader = connect(autocommit=True)
r = reader.cursor()
r.execute("SET client_min_messages = debug2")


def served_hot():
    """Whether the reader's last call was served by the hot path (its DEBUG2 note)."""
    hot = any("served by the hot path" in n for n in reader.notices)
    reader.notices.clear()
    return hot


print("a change committed elsewhere is seen by the next call (50 random changes)")
rng = random.Random(7)
seen_all, hot_all = True, True
for i in range(50):
    r.execute("SELECT limit_value FROM quota.quota_check('s1', 'calls')")  # warm the cache
    hot_all &= served_hot()
    what = rng.choice(["limit", "plan", "zone"])
    if what == "limit":
        value = rng.randint(10, 10_000)
        cur.execute("UPDATE quota.plan_limits SET limit_value = %s WHERE plan = (SELECT plan FROM quota.subjects WHERE subject = 's1')", (value,))
        r.execute("SELECT limit_value FROM quota.quota_check('s1', 'calls')")
        seen_all &= r.fetchone()[0] == value
    elif what == "plan":
        cur.execute("SELECT plan FROM quota.subjects WHERE subject = 's1'")
        other = "B" if cur.fetchone()[0] == "A" else "A"
        cur.execute("SELECT quota.assign_plan('s1', %s)", (other,))
        cur.execute("SELECT limit_value FROM quota.plan_limits WHERE plan = %s", (other,))
        expected = cur.fetchone()[0]
        r.execute("SELECT limit_value FROM quota.quota_check('s1', 'calls')")
        seen_all &= r.fetchone()[0] == expected
    else:
        zone = rng.choice(["UTC", "Asia/Tokyo", "America/New_York"])
        cur.execute("SELECT quota.assign_plan('s1', (SELECT plan FROM quota.subjects WHERE subject = 's1'), time_zone => %s)", (zone,))
        cur.execute("SELECT ((date_trunc('day', now() AT TIME ZONE %s) + interval '1 day') AT TIME ZONE %s)", (zone, zone))
        expected = cur.fetchone()[0]
        r.execute("SELECT reset_at FROM quota.quota_check('s1', 'calls')")
        seen_all &= r.fetchone()[0] == expected
    hot_all &= served_hot()
check(hot_all, "every call of the reader was served by the hot path (its cache in play)")
check(seen_all, "every committed change was seen by the other connection's next call")

print("an uncommitted change is not seen elsewhere; its rollback is never seen")
admin.autocommit = False
cur.execute("UPDATE quota.plan_limits SET limit_value = 1 WHERE plan IN ('A', 'B')")
r.execute("SELECT limit_value FROM quota.quota_check('s1', 'calls')")
check(r.fetchone()[0] != 1, "the reader does not see the open transaction's limit")
admin.rollback()
admin.autocommit = True
r.execute("SELECT limit_value FROM quota.quota_check('s1', 'calls')")
check(r.fetchone()[0] != 1, "nor after its ROLLBACK")

print("8 hot-path consumers while the limit moves under them")
cur.execute("SELECT quota.set_limit('RACE', 'calls', 'day', 50)")
for i in range(8):
    cur.execute("SELECT quota.assign_plan(%s, 'RACE')", (f"r{i}",))
cur.execute("SELECT quota.assign_plan('shared', 'RACE')")
cur.execute("SELECT quota.quota_consume('shared', 'calls')")
violations = []


def mover(i):
    rng = random.Random(i)
    return execute_each("UPDATE quota.plan_limits SET limit_value = %s WHERE plan = 'RACE'", [(rng.randint(100, 1200),) for _ in range(60)])


results = run_clients(9, lambda i: mover(i) if i == 8 else consume_many('shared', 'calls', 150, violations))
check(violations == [], f"every answer is consistent: used <= its limit, refusals are QT429 ({violations[:5]})")
cur.execute("SELECT used FROM quota.counters WHERE subject = 'shared'")
used = cur.fetchone()[0]
check(used == 1 + sum(results[:8]), f"the counter holds exactly the admitted consumes ({used} = 1 + {sum(results[:8])})")
cur.execute("SELECT count(*) FROM quota.ledger_check")
check(cur.fetchone()[0] == 0, "the ledger agrees with every counter")
cur.execute("SELECT limit_value FROM quota.plan_limits WHERE plan = 'RACE'")
final = cur.fetchone()[0]
r.execute("SELECT limit_value FROM quota.quota_check('shared', 'calls')")
check(r.fetchone()[0] == final, "after the race every connection sees the final limit")

finish()
