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
a4_library_keeps_released_symbols()
finish()
