"""Shared helpers for the real-connection tests: one psycopg2 connection per client,
against the cluster that scripts/test.sh started (QUOTA_HOST / QUOTA_PORT)."""
import os
import sys
import threading

import psycopg2

HOST = os.environ.get("QUOTA_HOST", "/tmp/quota_ext/test")
PORT = int(os.environ.get("QUOTA_PORT", "55433"))
DB = os.environ.get("QUOTA_DB", "quota_connections")


def connect(db=DB, autocommit=False):
    conn = psycopg2.connect(host=HOST, port=PORT, user="postgres", dbname=db)
    conn.autocommit = autocommit
    return conn


def fresh_database():
    """(Re)create the test database with the extension installed."""
    admin = connect("postgres", autocommit=True)
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {DB}")
        cur.execute(f"CREATE DATABASE {DB}")
    admin.close()
    conn = connect(autocommit=True)
    with conn.cursor() as cur:
        cur.execute("CREATE EXTENSION quota_ext")
    return conn


def recreate_databases(*names, create=True):
    """Drop these databases if they exist and (unless create=False) create them empty."""
    admin = connect("postgres", autocommit=True)
    with admin.cursor() as cur:
        for name in names:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
            if create:
                cur.execute(f"CREATE DATABASE {name}")
    admin.close()


def quota_tables(conn):
    """Every table of schema quota (found in pg_class) with all its rows in a stable order,
    and every sequence's state: {name: rows}."""
    out = {}
    with conn.cursor() as cur:
        cur.execute("""SELECT c.oid::regclass::text, c.relkind FROM pg_class c
                       WHERE c.relnamespace = 'quota'::regnamespace AND c.relkind IN ('r', 'S') ORDER BY 1""")
        for name, kind in cur.fetchall():
            cur.execute(f"SELECT last_value, is_called FROM {name}" if kind == "S" else f"SELECT * FROM {name} t ORDER BY t::text")
            out[name] = cur.fetchall()
    return out


def run_clients(n, body):
    """Run body(i) in n threads that start together; return their results in order."""
    barrier = threading.Barrier(n)
    results = [None] * n

    def worker(i):
        barrier.wait()
        results[i] = body(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def consume_many(subject, metric, calls, problems, limits=None):
    """One new connection consuming `calls` times. Answers with used > limit (or a limit
    not in `limits`) and errors other than QT429 go to `problems`. Returns how many
    consumes were admitted."""
    conn = connect(autocommit=True)
    c = conn.cursor()
    admitted = 0
    for _ in range(calls):
        try:
            c.execute("SELECT used, limit_value FROM quota.quota_consume(%s, %s)", (subject, metric))
            used, limit = c.fetchone()
            if used > limit or (limits is not None and limit not in limits):
                problems.append((used, limit))
            admitted += 1
        except psycopg2.Error as e:
            if e.pgcode != "QT429":
                problems.append(e.pgcode)
    conn.close()
    return admitted


def execute_each(sql, params):
    """One new connection running sql once for each parameter tuple (autocommit); 0."""
    conn = connect(autocommit=True)
    c = conn.cursor()
    for p in params:
        c.execute(sql, p)
    conn.close()
    return 0


def expect_sqlstate(cursor, sql, code, what):
    """Run sql, which must fail with SQLSTATE code; record the check as `what`."""
    try:
        cursor.execute(sql)
        check(False, f"{what}: no error")
    except psycopg2.Error as e:
        check(e.pgcode == code, f"{what} ({e.pgcode})")


FAILURES = []


def check(condition, message):
    status = "ok  " if condition else "FAIL"
    print(f"  {status} {message}")
    if not condition:
        FAILURES.append(message)


def finish():
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed")
        sys.exit(1)
    print("all checks passed")
