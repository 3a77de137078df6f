"""Reservations and events over real connections: parallel holds, seed 000's
generation flow with a LISTEN connection, ROLLBACK, and expiry."""
import json
import select
import time

import psycopg2

from common import check, connect, finish, fresh_database, run_clients

CLOCK = "SET quota.clock_override = '2026-11-23 12:00:00+00'"
admin = fresh_database()
cur = admin.cursor()
cur.execute("SELECT quota.set_limit('AI', 'tokens', 'month', 40000)")
cur.execute("SELECT quota.assign_plan('par', 'AI')")
cur.execute("SELECT quota.assign_plan('gen', 'AI')")
cur.execute("SELECT quota.assign_plan('slow', 'AI')")


def reserve_4000(i):
    conn = connect()
    try:
        with conn.cursor() as c:
            c.execute(CLOCK)
            c.execute("SELECT reservation FROM quota.quota_reserve('par', 'tokens', 4000)")
            rid = c.fetchone()[0]
        conn.commit()
        return rid
    except psycopg2.Error as e:
        conn.rollback()
        return e.pgcode
    finally:
        conn.close()


print("20 parallel reservations against a limit that fits 10")
outcomes = run_clients(20, reserve_4000)
holds = [o for o in outcomes if o not in ("QT429", None)]
check(len(holds) == 10, f"exactly 10 holds (got {len(holds)})")
check(outcomes.count("QT429") == 10, "the other 10 get QT429")
cur.execute("SELECT used, reserved FROM quota.counters WHERE subject = 'par'")
check(cur.fetchone() == (0, 40000), "reserved = 40000, used = 0")
cur.execute("SELECT count(*) FROM quota.reservations WHERE subject = 'par' AND status = 'held'")
check(cur.fetchone()[0] == 10, "10 held reservation rows")


def notifications(conn, wait=0.5):
    """Collect notifications that arrive within `wait` seconds. Each carries only the id of
    its event in quota.events (0.4.0), which the listener then reads there."""
    got = []
    deadline = time.time() + wait
    while time.time() < deadline:
        if select.select([conn], [], [], max(0.0, deadline - time.time())) != ([], [], []):
            conn.poll()
            while conn.notifies:
                payload = conn.notifies.pop(0).payload
                check(payload.isdigit(), f"a notification carries only an event id ({payload[:60]})")
                with conn.cursor() as c:
                    c.execute("SELECT payload FROM quota.events WHERE id = %s", (int(payload),))
                    row = c.fetchone()
                got.append(row[0] if row else {"type": "missing", "id": payload})
    return got


print("seed 000: check, reserve, fail and release, reserve, commit; the event arrives at COMMIT")
listener = connect(autocommit=True)
listener.cursor().execute("LISTEN quota_events")
app = connect()
a = app.cursor()
a.execute(CLOCK)
a.execute("SELECT allowed FROM quota.quota_check('gen', 'tokens', 4000)")
check(a.fetchone()[0], "the check allows 4000")
a.execute("SELECT reservation FROM quota.quota_reserve('gen', 'tokens', 4000)")
r1 = a.fetchone()[0]
app.commit()
a.execute(CLOCK)
a.execute("SELECT quota.quota_release(%s, 'model timed out')", (r1,))
check(a.fetchone()[0] is True, "the failed generation's hold is released")
app.commit()
a.execute(CLOCK)
a.execute("SELECT used, reserved FROM quota.quota_check('gen', 'tokens', 0)")
check(a.fetchone() == (0, 0), "usage is unchanged after the release")
a.execute("SELECT reservation FROM quota.quota_reserve('gen', 'tokens', 4000)")
r2 = a.fetchone()[0]
app.commit()
a.execute(CLOCK)
a.execute("SELECT used FROM quota.quota_commit(%s, 1234)", (r2,))
check(a.fetchone()[0] == 1234, "usage rises by the actual 1234")
before = notifications(listener)
check(before == [], f"nothing is delivered before COMMIT (got {before})")
app.commit()
after = notifications(listener)
completed = [e for e in after if e["type"] == "reservation_committed"]
check(len(completed) == 1, f"one reservation_committed event after COMMIT (got {[e['type'] for e in after]})")
if completed:
    e = completed[0]
    check((e["subject"], e["metric"], e["amount"], e["held"], e["used"], e["limit"]) == ("gen", "tokens", 1234, 4000, 1234, 40000),
          f"the payload carries subject, metric, amounts and limit ({e})")
    check(e["reservation"] == r2 and e["occurred_at"] == "2026-11-23T12:00:00Z" and "window" in e, "and the reservation id, window and time")

print("a rolled-back commit sends nothing")
a.execute(CLOCK)
a.execute("SELECT reservation FROM quota.quota_reserve('gen', 'tokens', 100)")
r3 = a.fetchone()[0]
app.commit()
a.execute(CLOCK)
a.execute("SELECT used FROM quota.quota_commit(%s, 100)", (r3,))
app.rollback()
check(notifications(listener) == [], "no notification after ROLLBACK")
cur.execute("SELECT status FROM quota.reservations WHERE id = %s", (r3,))
check(cur.fetchone()[0] == "held", "the reservation is still held")

print("an expired hold stops counting (quota.clock_override)")
a.execute(CLOCK)
a.execute("SELECT reservation FROM quota.quota_reserve('slow', 'tokens', 39000, '1 minute')")
app.commit()
other = connect()
o = other.cursor()
o.execute(CLOCK)
try:
    o.execute("SELECT used FROM quota.quota_consume('slow', 'tokens', 5000)")
    check(False, "while held, 5000 more does not fit")
except psycopg2.Error as err:
    check(err.pgcode == "QT429", "while held, 5000 more is refused with QT429")
    other.rollback()
o.execute("SET quota.clock_override = '2026-11-23 12:02:00+00'")
o.execute("SELECT used, reserved FROM quota.quota_consume('slow', 'tokens', 5000)")
check(o.fetchone() == (5000, 0), "after the TTL the hold no longer counts")
other.commit()
expired = [e for e in notifications(listener) if e["type"] == "reservation_expired"]
check(len(expired) == 1 and expired[0]["amount"] == 39000, "a reservation_expired event is sent")

finish()
