"""Core engine under real concurrency: separate connections, separate transactions."""
import psycopg2

from common import check, connect, finish, fresh_database, run_clients

LEDGER_USED = """
    SELECT coalesce(sum(CASE kind WHEN 'consume' THEN amount ELSE -amount END), 0)
    FROM quota.usage_events WHERE subject = %s AND metric = %s AND kind <> 'bonus'"""

admin = fresh_database()
cur = admin.cursor()
cur.execute("SELECT quota.set_limit('TEN', 'calls', 'day', 10)")
cur.execute("SELECT quota.set_limit('TEN', 'tokens', 'day', 1000)")
cur.execute("SELECT quota.assign_plan('hot', 'TEN')")


def consume_once(i):
    conn = connect()
    try:
        with conn.cursor() as c:
            c.execute("SELECT allowed FROM quota.quota_consume('hot', 'calls')")
            conn.commit()
            return "ok"
    except psycopg2.Error as e:
        conn.rollback()
        return e.pgcode
    finally:
        conn.close()


print("20 concurrent consumers against a limit of 10")
outcomes = run_clients(20, consume_once)
check(outcomes.count("ok") == 10, f"exactly 10 succeed (got {outcomes.count('ok')})")
check(outcomes.count("QT429") == 10, f"the other 10 get QT429 (got {sorted(set(outcomes))})")
cur.execute("SELECT used FROM quota.counters WHERE subject = 'hot' AND metric = 'calls'")
check(cur.fetchone()[0] == 10, "the counter is 10")
cur.execute(LEDGER_USED, ("hot", "calls"))
check(cur.fetchone()[0] == 10, "the ledger sums to 10")


def consume_then_abort(i):
    """Odd clients consume and roll back; even clients consume and commit."""
    conn = connect()
    try:
        with conn.cursor() as c:
            c.execute("SELECT allowed FROM quota.quota_consume('hot', 'tokens', 40)")
            if i % 2:
                conn.rollback()
                return "aborted"
            conn.commit()
            return "ok"
    except psycopg2.Error as e:
        conn.rollback()
        return e.pgcode
    finally:
        conn.close()


print("aborted transactions leave no trace")
cur.execute("SELECT count(*) FROM quota.usage_events")
rows_before = cur.fetchone()[0]
outcomes = run_clients(30, consume_then_abort)
committed = outcomes.count("ok")
check(committed == 15, f"all 15 committing clients fit (got {committed})")
cur.execute("SELECT used FROM quota.counters WHERE subject = 'hot' AND metric = 'tokens'")
check(cur.fetchone()[0] == 40 * committed, f"the counter holds only committed usage ({40 * committed})")
cur.execute("SELECT count(*) FROM quota.usage_events")
check(cur.fetchone()[0] - rows_before == committed, "one ledger row per committed consume, none for aborts")


def multi_metric(i):
    """Clients consume 1 call + 100 tokens all or nothing; tokens run out first."""
    conn = connect()
    try:
        with conn.cursor() as c:
            c.execute("""SELECT count(*) FROM quota.quota_consume('multi', '{"calls": 1, "tokens": 100}'::jsonb)""")
            conn.commit()
            return "ok"
    except psycopg2.Error as e:
        conn.rollback()
        return e.pgcode
    finally:
        conn.close()


print("multi-metric consumes are all or nothing under concurrency")
cur.execute("SELECT quota.set_limit('MULTI', 'calls', 'day', 100)")
cur.execute("SELECT quota.set_limit('MULTI', 'tokens', 'day', 450)")
cur.execute("SELECT quota.assign_plan('multi', 'MULTI')")
outcomes = run_clients(12, multi_metric)
check(outcomes.count("ok") == 4, f"exactly 4 requests of 100 tokens fit in 450 (got {outcomes.count('ok')})")
cur.execute("SELECT metric, used FROM quota.counters WHERE subject = 'multi' ORDER BY metric")
check(cur.fetchall() == [("calls", 4), ("tokens", 400)], "calls and tokens moved together")


def retry_same_key(i):
    conn = connect()
    try:
        with conn.cursor() as c:
            c.execute("SELECT reason FROM quota.quota_consume('hot2', 'calls', 1, 'key-42')")
            reason = c.fetchone()[0]
            conn.commit()
            return reason
    except psycopg2.Error as e:
        conn.rollback()
        return e.pgcode
    finally:
        conn.close()


print("the same idempotency key from 8 connections is counted once")
cur.execute("SELECT quota.assign_plan('hot2', 'TEN')")
outcomes = run_clients(8, retry_same_key)
check(outcomes.count("ok") == 1 and outcomes.count("idempotent_replay") == 7, f"one applied, seven replays (got {outcomes})")
cur.execute("SELECT used FROM quota.counters WHERE subject = 'hot2' AND metric = 'calls'")
check(cur.fetchone()[0] == 1, "the counter is 1")


def same_payment(i):
    conn = connect()
    try:
        with conn.cursor() as c:
            c.execute("SELECT applied FROM quota.apply_bonus(%s, 'calls', 'payment', 'pay_777')", (f"payer{i}",))
            applied = c.fetchone()[0]
            conn.commit()
            return applied
    finally:
        conn.close()


print("one payment reference from 10 subjects at once is applied once")
cur.execute("SELECT quota.set_bonus_rule('TEN', 'calls', 'payment', 5)")
for i in range(10):
    cur.execute("SELECT quota.assign_plan(%s, 'TEN')", (f"payer{i}",))
outcomes = run_clients(10, same_payment)
check(outcomes.count(True) == 1, f"exactly one applied (got {outcomes.count(True)})")
cur.execute("SELECT count(*) FROM quota.bonus_grants WHERE reference = 'pay_777'")
check(cur.fetchone()[0] == 1, "one grant row")

finish()
