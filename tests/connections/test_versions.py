"""Item 4 of the hardening issue: a library newer than a database's extension version
still serves that database, exactly, with that version's semantics; plan and limit changes
are seen at once by every connection, before and after ALTER EXTENSION UPDATE; and the
library keeps every C symbol that a released install or upgrade script refers to.

Every released version (each frozen sql/released/quota_ext--X.Y.Z.sql) is created under the
current library, in its own database, with two connections: `admin` changes plans and
limits, `app` consumes (and would keep stale caches if any were used)."""
import glob
import os
import re
import subprocess

import psycopg2

from common import check, connect, finish, recreate_databases

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
RELEASED_DIR = os.path.join(ROOT, "sql", "released")
RELEASED = sorted(
    (os.path.basename(p)[len("quota_ext--"):-len(".sql")] for p in glob.glob(os.path.join(RELEASED_DIR, "quota_ext--*.sql"))
     if "--" not in os.path.basename(p)[len("quota_ext--"):]),
    key=lambda v: tuple(int(x) for x in v.split(".")),
)


def consume(cur, subject, n=1):
    """used after the consume, or the SQLSTATE of its refusal."""
    try:
        cur.execute("SELECT used FROM quota.quota_consume(%s, 'messages', %s)", (subject, n))
        return cur.fetchone()[0]
    except psycopg2.Error as e:
        return e.pgcode


def a4_old_version_sees_plan_and_limit_changes(version):
    print(f"a4_old_version_sees_plan_and_limit_changes ({version})")
    db = "quota_version_" + version.replace(".", "_")
    recreate_databases(db)
    admin, app = connect(db, autocommit=True), connect(db, autocommit=True)
    a, p = admin.cursor(), app.cursor()
    a.execute("CREATE EXTENSION quota_ext VERSION %s", (version,))
    a.execute("SET quota.clock_override = '2026-11-20 09:00:00+00'")
    p.execute("SET quota.clock_override = '2026-11-20 09:00:00+00'")
    a.execute("SELECT quota.set_limit('BIG', 'messages', 'day', 1000)")
    a.execute("SELECT quota.set_limit('SMALL', 'messages', 'day', 5)")
    a.execute("SELECT quota.assign_plan('alice', 'BIG')")
    # Warm whatever a backend may cache: many consumes on the same window.
    used = [consume(p, "alice") for _ in range(10)]
    check(used == list(range(1, 11)), f"{version}: ten consumes on the big plan count 1..10 ({used[-1]})")

    a.execute("SELECT quota.assign_plan('alice', 'SMALL')")
    check(consume(p, "alice") == "QT429", f"{version}: after assign_plan to a 5/day plan, the app's next consume is refused")
    a.execute("SELECT quota.set_limit('SMALL', 'messages', 'day', 12)")
    check(consume(p, "alice") == 11, f"{version}: after set_limit to 12, the app's next consume counts 11")
    check(consume(p, "alice") == 12 and consume(p, "alice") == "QT429", f"{version}: and stops at 12")
    p.execute("SELECT used, limit_value FROM quota.quota_check('alice', 'messages')")
    check(p.fetchone() == (12, 12), f"{version}: quota_check agrees (12 of 12)")

    a.execute("ALTER EXTENSION quota_ext UPDATE")
    a.execute("SELECT extversion FROM pg_extension WHERE extname = 'quota_ext'")
    current = a.fetchone()[0]
    check(current == RELEASED[-1] or current > version, f"{version}: updated to {current}")
    # The app's backend served the old version; now the hot path may serve it. Changes
    # made after the update must still be seen at once.
    check(consume(p, "alice") == "QT429", f"{version}: after the update, still refused at 12 of 12")
    a.execute("SELECT quota.set_limit('SMALL', 'messages', 'day', 20)")
    got = [consume(p, "alice") for _ in range(3)]
    check(got == [13, 14, 15], f"{version}: after the update, set_limit to 20 is seen at once ({got})")
    a.execute("SELECT quota.assign_plan('alice', 'BIG')")
    a.execute("SELECT quota.set_limit('BIG', 'messages', 'day', 15)")
    check(consume(p, "alice") == "QT429", f"{version}: back on BIG lowered to 15: refused at 15")
    a.execute("SELECT count(*) FROM quota.ledger_check")
    check(a.fetchone()[0] == 0, f"{version}: the ledger proves every counter")
    admin.close()
    app.close()
    recreate_databases(db, create=False)


# The widths of a released version's answers: quota.decision's and quota.reservation's
# attributes and quota_status(text)'s columns (0.8.0 appends level to the two types, and
# pool and level to quota_status). A version not listed is checked against its catalog.
WIDTHS = {"0.7.0": {"decision": 13, "reservation": 15, "status": 12}}


def catalog_widths(cur):
    cur.execute("""SELECT (SELECT count(*) FROM pg_attribute WHERE attrelid = 'quota.decision'::regclass AND attnum > 0 AND NOT attisdropped),
                          (SELECT count(*) FROM pg_attribute WHERE attrelid = 'quota.reservation'::regclass AND attnum > 0 AND NOT attisdropped),
                          (SELECT count(*) FROM pg_proc p, unnest(p.proargmodes) m WHERE p.oid = 'quota.quota_status(text)'::regprocedure AND m = 't')""")
    return dict(zip(("decision", "reservation", "status"), cur.fetchone()))


def answered(cur, sql, params=()):
    """(number of columns, rows as {column: value}) of one call: SELECT * FROM expands the
    function's declared row type, and PostgreSQL refuses a returned row of another width.
    An error is answered as (0, [{"error": "SQLSTATE message"}]), for the check to show."""
    try:
        cur.execute(sql, params)
    except psycopg2.Error as e:
        return 0, [{"error": f"{e.pgcode} {e.diag.message_primary}"}]
    names = [d.name for d in cur.description]
    rows = [dict(zip(names, r)) for r in cur.fetchall()]
    return len(names), rows or [{}]


def a4_old_version_answers_in_its_own_types(version):
    """A database at an older version gets answers of its own types from this library:
    consume, check, reserve, commit and quota_status, by position as a driver reads them,
    with the columns that version declares (no `level`, no `pool` before 0.8.0); after
    ALTER EXTENSION UPDATE the same session gets the new columns."""
    print(f"a4_old_version_answers_in_its_own_types ({version})")
    db = "quota_width_" + version.replace(".", "_")
    recreate_databases(db)
    conn = connect(db, autocommit=True)
    c = conn.cursor()
    c.execute("CREATE EXTENSION quota_ext VERSION %s", (version,))
    c.execute("SET quota.clock_override = '2026-11-20 09:00:00+00'")
    c.execute("SELECT quota.set_limit('W', 'messages', 'day', 100)")
    c.execute("SELECT quota.assign_plan('carol', 'W')")
    c.execute("SELECT quota.assign_plan('dave', 'W')")

    def calls(label, subject, expect_level):
        """carol before the update, dave after: each round starts from an empty window."""
        want = catalog_widths(c)
        if label == version and version in WIDTHS:
            check(want == WIDTHS[version], f"{version}: its catalog declares {WIDTHS[version]} ({want})")
        n, rows = answered(c, "SELECT * FROM quota.quota_consume(%s, 'messages', 2)", (subject,))
        r = rows[0]
        check(n == want["decision"] and r.get("allowed") and r.get("subject") == subject,
              f"{label}: quota_consume answers a decision of {want['decision']} columns ({n}, {r})")
        used = r.get("used", 0)
        n, rows = answered(c, "SELECT * FROM quota.quota_consume(%s, '{\"messages\": 1}'::jsonb)", (subject,))
        check(n == want["decision"] and len(rows) == 1 and rows[0].get("used") == used + 1,
              f"{label}: quota_consume (jsonb) answers decisions of {want['decision']} columns ({n}, {rows})")
        n, rows = answered(c, "SELECT * FROM quota.quota_check(%s, 'messages')", (subject,))
        check(n == want["decision"] and rows[0].get("used") == used + 1,
              f"{label}: quota_check answers {want['decision']} columns ({n}, {rows[0]})")
        n, rows = answered(c, "SELECT * FROM quota.quota_reserve(%s, 'messages', 5, '1 hour')", (subject,))
        r = rows[0]
        hold = r.get("reservation")
        check(n == want["reservation"] and r.get("allowed") and r.get("reserved") == 5 and hold is not None,
              f"{label}: quota_reserve answers a reservation of {want['reservation']} columns ({n}, {r})")
        # With a hold open: the read-only answers count it.
        n, rows = answered(c, "SELECT * FROM quota.quota_check(%s, 'messages')", (subject,))
        check(n == want["decision"] and rows[0].get("reserved") == 5,
              f"{label}: quota_check counts the hold ({n}, {rows[0]})")
        n, rows = answered(c, "SELECT * FROM quota.quota_status(%s)", (subject,))
        check(n == want["status"] and len(rows) == 1 and rows[0].get("used") == used + 1 and rows[0].get("reserved") == 5,
              f"{label}: quota_status answers {want['status']} columns, the hold counted ({n}, {rows})")
        n, rows = answered(c, "SELECT * FROM quota.quota_commit(%s, 3)", (hold,))
        r = rows[0]
        check(n == want["decision"] and r.get("used") == used + 4 and r.get("reserved") == 0,
              f"{label}: quota_commit answers {want['decision']} columns ({n}, {r})")
        check(r.get("level") == expect_level and ("level" in r) == (expect_level is not None),
              f"{label}: level is {'not a column' if expect_level is None else expect_level} ({r.get('level')})")

    # 0.8.0 and later declare level (0 for a subject in no pool); older versions have no such column.
    has_level = tuple(int(x) for x in version.split(".")) >= (0, 8, 0)
    calls(version, "carol", 0 if has_level else None)
    c.execute("ALTER EXTENSION quota_ext UPDATE")
    c.execute("SELECT extversion FROM pg_extension WHERE extname = 'quota_ext'")
    current = c.fetchone()[0]
    calls(f"{version} updated to {current}", "dave", 0)
    c.execute("SELECT count(*) FROM quota.ledger_check")
    check(c.fetchone()[0] == 0, f"{version}: the ledger proves every counter")
    conn.close()
    recreate_databases(db, create=False)


def a4_library_keeps_released_symbols():
    print("a4_library_keeps_released_symbols")
    pkglibdir = subprocess.run(["pg_config", "--pkglibdir"], capture_output=True, text=True, check=True).stdout.strip()
    library = os.path.join(pkglibdir, "quota_ext.so")
    out = subprocess.run(["nm", "-D", "--defined-only", library], capture_output=True, text=True, check=True).stdout
    exported = {line.split()[-1] for line in out.splitlines() if line.strip()}
    wanted = set()
    for script in glob.glob(os.path.join(RELEASED_DIR, "quota_ext--*.sql")):
        with open(script) as f:
            wanted |= set(re.findall(r"'MODULE_PATHNAME'\s*,\s*'([A-Za-z0-9_]+)'", f.read()))
    missing = sorted(wanted - exported)
    check(len(wanted) > 30 and not missing, f"every C symbol of the released scripts ({len(wanted)}) is in {library}: missing {missing}")


def a4_released_scripts_are_frozen():
    """Every install and upgrade script in sql/released/ is listed in
    sql/released/SHA256SUMS with the hash it was released with: released scripts are never
    edited."""
    print("a4_released_scripts_are_frozen")
    import hashlib
    manifest = {}
    with open(os.path.join(RELEASED_DIR, "SHA256SUMS")) as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                digest, name = line.split()
                name = name.lstrip("*")  # sha256sum's binary-mode marker
                manifest[name] = digest
    scripts = sorted(os.path.basename(p) for p in glob.glob(os.path.join(RELEASED_DIR, "quota_ext--*.sql")))
    check(sorted(manifest) == scripts, f"sql/released/SHA256SUMS lists exactly the scripts in sql/released/ ({len(scripts)})")
    for name in scripts:
        with open(os.path.join(RELEASED_DIR, name), "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        check(manifest.get(name) == digest, f"{name} is as released")


check(RELEASED[:3] == ["0.1.0", "0.2.0", "0.3.0"], f"the released install scripts are frozen: {RELEASED}")
a4_released_scripts_are_frozen()
# Every released version older than the library's own (the default version): on a
# release branch the newest released one is the library's, and has nothing to update to.
_conn = connect("postgres", autocommit=True)
with _conn.cursor() as _cur:
    _cur.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'quota_ext'")
    DEFAULT = _cur.fetchone()[0]
_conn.close()
OLDER = [v for v in RELEASED if tuple(map(int, v.split("."))) < tuple(map(int, DEFAULT.split(".")))]
check(OLDER and OLDER[-1] in RELEASED[-2:], f"every released version before {DEFAULT} is served: {OLDER}")
for v in OLDER:
    a4_old_version_sees_plan_and_limit_changes(v)
    a4_old_version_answers_in_its_own_types(v)
check("0.7.0" in OLDER or DEFAULT == "0.7.0", "0.7.0 is among the versions served")
a4_library_keeps_released_symbols()
finish()
