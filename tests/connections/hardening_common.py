"""psycopg 3 helpers for the 0.4.0 hardening tests (tests/connections/test_hardening.py).

Values are always sent as bound server-side parameters (psycopg 3 never interpolates them
into the statement text), so 1 MiB arguments reach the server as parameters.

Every test runs in its own database (fresh_db) and is run by run_tests, which prints the
test's name, catches whatever it raises and records it as a failure, so one broken test
never stops the others. An exception in a thread the test started fails it too: use
Worker (join() raises it again), and a plain thread's uncaught exception is recorded by
common.py's threading.excepthook and counted against the test that was running.
"""
import os
import sys
import time
import traceback

import psycopg
from psycopg import sql

from common import THREAD_ERRORS, Worker, WorkerError  # noqa: F401 - Worker, WorkerError for the tests

HOST = os.environ.get("QUOTA_HOST", "/tmp/quota_ext/test")
PORT = int(os.environ.get("QUOTA_PORT", "55433"))

FAILURES = []  # (test name, message)
CURRENT = ["(setup)"]


def check(condition, message):
    status = "ok  " if condition else "FAIL"
    print(f"  {status} {message}", flush=True)
    if not condition:
        FAILURES.append((CURRENT[0], message))
    return bool(condition)


def connect(db, user="postgres", autocommit=True, **kw):
    return psycopg.connect(host=HOST, port=PORT, user=user, dbname=db, autocommit=autocommit, **kw)


def fresh_db(name, extension=True):
    """(Re)create database `name` (with the extension unless told otherwise) and return
    an autocommit superuser connection to it."""
    with connect("postgres") as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    conn = connect(name)
    if extension:
        conn.execute("CREATE EXTENSION quota_ext")
    return conn


def drop_db(name):
    """Drop database `name` (closing its connections)."""
    with connect("postgres") as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def fresh_roles(admin, *specs):
    """Drop and create login roles. specs: (name, "IN ROLE quota_app" or similar)."""
    for name, options in specs:
        drop_role(admin, name)
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN " + options).format(sql.Identifier(name)))


def drop_role(admin, name):
    try:
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
    except psycopg.Error:
        # privileges left in this database: drop them, then the role
        try:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
        except psycopg.Error as e:
            print(f"  (could not drop role {name}: {describe(e)})")


def one(conn, query, params=None):
    """The first column of the first row (None when there is no row)."""
    row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


def rows(conn, query, params=None):
    return conn.execute(query, params).fetchall()


def attempt(conn, query, params=None):
    """Run a statement: (None, rows) on success, (error, None) on failure. On a
    connection in a transaction the caller decides what to do with the aborted state."""
    try:
        cur = conn.execute(query, params)
        return None, (cur.fetchall() if cur.description else None)
    except psycopg.Error as e:
        return e, None


def short(text, n=160):
    text = "" if text is None else str(text)
    return text if len(text) <= n else text[:n] + f"...({len(text)} chars)"


def describe(e):
    if e is None:
        return "no error"
    return f"{e.sqlstate}: {short(e.diag.message_primary)}"


def expect_error(conn, query, params, codes, what):
    """The statement must fail with one of `codes` (a string or a tuple). Returns the error."""
    if isinstance(codes, str):
        codes = (codes,)
    e, result = attempt(conn, query, params)
    if e is None:
        check(False, f"{what}: expected {'/'.join(codes)}, got no error (result {short(result)})")
    else:
        check(e.sqlstate in codes, f"{what}: {'/'.join(codes)} (got {describe(e)})")
    return e


def expect_ok(conn, query, params=None, what=None):
    """The statement must succeed. Returns its rows (None when it failed)."""
    e, result = attempt(conn, query, params)
    check(e is None, f"{what or short(query, 80)} succeeds ({describe(e)})")
    return result


def used(conn, subject, metric):
    """`used` of the subject's current window as quota_check reports it (amount 0, no
    write); None when quota_check fails (e.g. QT404)."""
    e, result = attempt(conn, "SELECT used FROM quota.quota_check(%s::text, %s::text, 0)", (subject, metric))
    return None if e else result[0][0]


def run_tests(tests):
    for test in tests:
        CURRENT[0] = test.__name__
        print(f"\n== {test.__name__}", flush=True)
        started = time.monotonic()
        try:
            test()
        except Exception as e:  # noqa: BLE001 - a test's crash is one of its failures
            traceback.print_exc(limit=3)
            check(False, f"{test.__name__} raised {type(e).__name__}: {short(e, 300)}")
        thread_errors()
        print(f"  ({time.monotonic() - started:.1f} s)", flush=True)
    CURRENT[0] = "(summary)"


def thread_errors():
    """Uncaught exceptions of threads since the last call: failures of the current test."""
    while THREAD_ERRORS:
        check(False, f"a thread raised: {short(THREAD_ERRORS.pop(0), 300)}")


def finish():
    thread_errors()
    print()
    if FAILURES:
        failed = []
        for name, _ in FAILURES:
            if name not in failed:
                failed.append(name)
        print(f"{len(FAILURES)} check(s) failed in {len(failed)} test(s):")
        for name in failed:
            first = next(m for n, m in FAILURES if n == name)
            print(f"  {name}: {short(first, 300)}")
        sys.exit(1)
    print("all checks passed")
