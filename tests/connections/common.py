"""Shared helpers for the real-connection tests: one psycopg2 connection per client,
against the cluster that scripts/test.sh started (QUOTA_HOST / QUOTA_PORT)."""
import contextlib
import io
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


# Worker threads --------------------------------------------------------------------------
# An exception in a thread must fail its test, never vanish: Worker.join() raises it again
# in the joining thread, and any other thread's uncaught exception (a plain
# threading.Thread) is recorded by the hook below and fails finish() (and, in
# hardening_common.run_tests, the test it happened in).

THREAD_ERRORS = []  # "thread name: Type: message" of every uncaught exception in a thread
_default_excepthook = threading.excepthook


def _record_thread_error(args):
    if args.exc_type is not SystemExit:
        THREAD_ERRORS.append(f"{args.thread.name if args.thread else 'a thread'}: {args.exc_type.__name__}: {args.exc_value}")
    _default_excepthook(args)  # prints the traceback


threading.excepthook = _record_thread_error


class WorkerError(Exception):
    """A worker thread raised: the original exception is its __cause__."""


class Worker(threading.Thread):
    """A thread whose exception is not lost: join() raises WorkerError (from the original
    exception, with its traceback) in the thread that joins, once the worker has ended."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.error = None

    def run(self):
        try:
            super().run()
        except BaseException as e:  # noqa: BLE001 - handed to join()
            self.error = e

    def join(self, timeout=None):
        super().join(timeout)
        if self.error is not None:
            error, self.error = self.error, None
            raise WorkerError(f"{self.name} raised {type(error).__name__}: {error}") from error


def run_clients(n, body):
    """Run body(i) in n threads that start together; return their results in order. If a
    thread raises, every thread is still joined, then the first exception is raised here."""
    barrier = threading.Barrier(n)
    results = [None] * n

    def worker(i):
        barrier.wait()
        results[i] = body(i)

    threads = [Worker(target=worker, args=(i,), name=f"client {i}") for i in range(n)]
    for t in threads:
        t.start()
    errors = []
    for t in threads:
        try:
            t.join()
        except WorkerError as e:
            errors.append(e)
    if errors:
        if len(errors) > 1:
            print(f"  {len(errors)} client threads raised; the first: {errors[0]}", file=sys.stderr)
        raise errors[0]
    return results


def self_test_thread_errors():
    """Proof that a raising worker fails: run_clients raises the worker's exception,
    Worker.join() does, and an uncaught exception in a plain thread is recorded. Returns
    (what, held) pairs; tests/connections/test_threads.py checks them."""
    out = []

    def body(i):
        if i == 1:
            raise ValueError("worker 1 broke")
        return i

    try:
        run_clients(3, body)
        out.append(("run_clients raises a worker's exception", False))
    except WorkerError as e:
        out.append(("run_clients raises a worker's exception", isinstance(e.__cause__, ValueError) and "worker 1 broke" in str(e)))

    t = Worker(target=lambda: 1 / 0)
    t.start()
    try:
        t.join()
        out.append(("Worker.join() raises the worker's exception", False))
    except WorkerError as e:
        out.append(("Worker.join() raises the worker's exception", isinstance(e.__cause__, ZeroDivisionError)))

    before = len(THREAD_ERRORS)
    plain = threading.Thread(target=lambda: {}["missing"], name="plain thread")
    with contextlib.redirect_stderr(io.StringIO()):  # its expected traceback
        plain.start()
        plain.join()
    recorded = THREAD_ERRORS[before:]
    del THREAD_ERRORS[before:]  # expected here: not a failure of the caller
    out.append(("a plain thread's exception is recorded", len(recorded) == 1 and "KeyError" in recorded[0]))
    return out


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
    for error in THREAD_ERRORS:
        check(False, f"a thread raised: {error}")
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed")
        sys.exit(1)
    print("all checks passed")
