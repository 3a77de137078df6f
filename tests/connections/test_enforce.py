"""Quota triggers on an application table, over real connections: INSERT, multi-row
INSERT, COPY, ROLLBACK and concurrent inserters."""
import io

import psycopg2

from common import check, connect, finish, fresh_database, run_clients

admin = fresh_database()
cur = admin.cursor()
cur.execute("SELECT quota.set_limit('FREE', 'messages', 'day', 5)")
cur.execute("SELECT quota.set_limit('FREE', 'tokens', 'day', 1000000)")
cur.execute("ALTER DATABASE quota_connections SET quota.default_plan = 'FREE'")
cur.execute("SET quota.default_plan = 'FREE'")
cur.execute("CREATE TABLE messages (id bigserial PRIMARY KEY, user_id text NOT NULL, content text)")
cur.execute("SELECT quota.enforce_on_insert('public.messages', subject_column => 'user_id', metric => 'messages')")
cur.execute("""SELECT quota.enforce_on_insert('public.messages', subject_column => 'user_id', metric => 'tokens',
                                             tokens_of => 'content', encoding => 'cl100k_base')""")


def rows(user):
    cur.execute("SELECT count(*) FROM messages WHERE user_id = %s", (user,))
    return cur.fetchone()[0]


def used(user, metric="messages"):
    cur.execute("SELECT used FROM quota.quota_check(%s, %s, 0)", (user, metric))
    return cur.fetchone()[0]


def insert(conn, user, n=1, content="hello"):
    try:
        with conn.cursor() as c:
            c.execute("INSERT INTO messages (user_id, content) SELECT %s, %s FROM generate_series(1, %s)", (user, content, n))
        conn.commit()
        return "ok"
    except psycopg2.Error as e:
        conn.rollback()
        return e.pgcode


print("the 6th INSERT fails with QT429 and the table keeps 5 rows")
app = connect()
outcomes = [insert(app, "alice") for _ in range(6)]
check(outcomes == ["ok"] * 5 + ["QT429"], f"five inserted, the sixth refused ({outcomes})")
check(rows("alice") == 5, "the table has 5 rows")
check(used("alice") == 5, "5 messages counted")
check(used("alice", "tokens") == 5, "hello is one token per row: 5 tokens counted")

print("a multi-row INSERT that would cross the limit inserts nothing")
check(insert(app, "bob", 3) == "ok", "3 rows fit")
check(insert(app, "bob", 3) == "QT429", "3 more do not")
check(rows("bob") == 3 and used("bob") == 3, "still 3 rows and 3 counted")

print("COPY behaves the same")


def copy(user, n):
    data = io.StringIO("".join(f"{user}\tline {i}\n" for i in range(n)))
    try:
        with app.cursor() as c:
            c.copy_expert("COPY messages (user_id, content) FROM STDIN", data)
        app.commit()
        return "ok"
    except psycopg2.Error as e:
        app.rollback()
        return e.pgcode


check(copy("carol", 4) == "ok", "COPY of 4 rows fits")
check(copy("carol", 2) == "QT429", "COPY of 2 more is refused")
check(rows("carol") == 4 and used("carol") == 4, "4 rows, 4 counted")

print("a rolled-back INSERT consumes nothing")
with app.cursor() as c:
    c.execute("INSERT INTO messages (user_id, content) VALUES ('dave', 'a'), ('dave', 'b')")
app.rollback()
check(rows("dave") == 0, "no rows")
check(used("dave") == 0, "nothing counted")
cur.execute("SELECT count(*) FROM quota.usage_events WHERE subject = 'dave'")
check(cur.fetchone()[0] == 0, "no ledger rows")

print("16 concurrent inserters never exceed the limit")


def racer(i):
    conn = connect()
    try:
        return insert(conn, "erin")
    finally:
        conn.close()


outcomes = run_clients(16, racer)
check(outcomes.count("ok") == 5, f"exactly 5 inserts succeed (got {outcomes.count('ok')})")
check(set(outcomes) == {"ok", "QT429"}, f"the rest get QT429 ({sorted(set(outcomes))})")
check(rows("erin") == 5 and used("erin") == 5, "5 rows, 5 counted")

print("the ledger agrees with the counters")
cur.execute("""
    SELECT count(*) FROM quota.counters c
    WHERE c.used <> (SELECT coalesce(sum(CASE kind WHEN 'consume' THEN amount ELSE -amount END), 0)
                     FROM quota.usage_events e
                     WHERE e.subject = c.subject AND e.metric = c.metric AND e.window_start = c.window_start
                       AND kind <> 'bonus')""")
check(cur.fetchone()[0] == 0, "no window disagrees")

print("dropping the extension refuses while tables depend on it; CASCADE leaves nothing broken")
try:
    cur.execute("DROP EXTENSION quota_ext")
    check(False, "DROP EXTENSION without CASCADE must refuse")
except psycopg2.Error as e:
    check(e.pgcode == "2BP01", f"refused with 2BP01 dependent_objects_still_exist (got {e.pgcode})")
cur.execute("DROP EXTENSION quota_ext CASCADE")
cur.execute("INSERT INTO messages (user_id, content) VALUES ('alice', 'after drop')")
check(rows("alice") == 6, "the table works without quotas after DROP EXTENSION CASCADE")

finish()
