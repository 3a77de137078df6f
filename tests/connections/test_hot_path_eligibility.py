"""Every eligibility check of the hot path, over a real connection (psycopg 3).

The hot path writes quota.counters (an in-place update) and quota.usage_events (an
append) itself, so it must step aside when either table has something the executor
would do and it does not (src/hotpath/heap.rs `updatable`, `insertable` and
`others_default_to_null`, called by src/hotpath/tables.rs `resolve`; docs/hotpath.md
"What takes the general path"). One
test per check. Each, as the superuser, in one transaction:

  1. sets up a subject with a limit and its window row (one consume), then shows that a
     consume takes the hot path (quota.hot_path_status(): consumes = true, hot_calls
     grows by one, general_calls does not);
  2. adds ONE thing to one quota table (a rule, a CHECK constraint, a stored generated
     column, an expression, partial or hash index, an exclusion or deferrable unique
     constraint, a ledger column with a default or NOT NULL, a trigger);
  3. shows that quota.hot_path_status() now reports consumes = false with that table and
     check (checks = true: a check only reads), that a consume takes the general path
     (general_calls grows by one, hot_calls does not) and is counted exactly (used grows
     by the amount, the counter and one new ledger row say so), and that the executor did
     what the hot path would not have: the rule or trigger fired, the default was filled,
     the generated column computed, the new index holds every row (amcheck), a consume
     violating the CHECK constraint failed with 23514; while a check still takes the hot
     path;
  4. rolls back, and shows that the hot path serves the next consume again.

Also: the LOG line 'quota_ext: hot path steps aside' (table and check) is written once
per backend, and `SET quota.hot_path = off` is not stepping aside (enabled = false, no
LOG line, every call general).

The LOG check reads the server log: $QUOTA_LOG, else $QUOTA_SERVER_LOG, else
$QUOTA_HOST/server.log (where scripts/cluster.sh has the server write it). Without one,
those checks are skipped with a note and the rest runs.

Run a subset: python3 test_hot_path_eligibility.py check_constraint trigger
"""
import json
import os
import sys
import time

from hardening_common import (HOST, PORT, attempt, check, connect, describe, drop_role, finish, fresh_db, fresh_roles, one,
                              rows, run_tests)

DB = "quota_hot_eligibility"
PLAN = "ELIG"
METRIC = "calls"
NEEDLE = "quota_ext: hot path steps aside"


def log_path():
    for path in (os.environ.get("QUOTA_LOG"), os.environ.get("QUOTA_SERVER_LOG"), os.path.join(HOST, "server.log")):
        if path and os.path.isfile(path):
            return path
    return None


LOG = log_path()


# Helpers ------------------------------------------------------------------------------

def status(conn):
    """quota.hot_path_status() of conn's backend, as a dict."""
    cur = conn.execute("""SELECT enabled, checks, consumes, table_name, failed_check, hot_calls, general_calls
                          FROM quota.hot_path_status()""")
    names = [d.name for d in cur.description]
    row = cur.fetchone()
    return dict(zip(names, row))


def consume(conn, subject, amount, tag):
    """One consume (metadata {"tag": tag}); its `used`."""
    return one(conn, "SELECT used FROM quota.quota_consume(%s::text, %s::text, %s::bigint, NULL, %s::jsonb)",
               (subject, METRIC, amount, json.dumps({"tag": tag})))


def quota_check(conn, subject, amount=1):
    return one(conn, "SELECT used FROM quota.quota_check(%s::text, %s::text, %s::bigint)", (subject, METRIC, amount))


def counter(conn, subject):
    return one(conn, "SELECT sum(used)::bigint FROM quota.counters WHERE subject = %s AND metric = %s", (subject, METRIC))


def ledger(conn, subject):
    """The subject's consume rows: [(amount, tag)] in id order."""
    return rows(conn, """SELECT amount, metadata->>'tag' FROM quota.usage_events
                         WHERE subject = %s AND metric = %s AND kind = 'consume' ORDER BY id""", (subject, METRIC))


def calls(before, after):
    """(hot, general) calls between two statuses."""
    return after["hot_calls"] - before["hot_calls"], after["general_calls"] - before["general_calls"]


def setup_subject(conn, subject):
    """A limit, the subject and its window row (the first consume, general: the row is new)."""
    conn.execute("SELECT quota.set_limit(%s, %s, 'day', 1000000)", (PLAN, METRIC))
    conn.execute("SELECT quota.assign_plan(%s, %s)", (subject, PLAN))
    consume(conn, subject, 1, "first")


def expect_hot_consume(conn, subject, amount, tag, what):
    """A consume the hot path must serve: hot_calls + 1, general_calls + 0, used + amount."""
    used_before, counter0, ledger0 = quota_check(conn, subject, 0), counter(conn, subject), ledger(conn, subject)
    s0 = status(conn)  # after the check (itself a call)
    got = consume(conn, subject, amount, tag)
    s1 = status(conn)
    check(s0["enabled"] and s0["consumes"] and s0["failed_check"] is None and s0["table_name"] is None,
          f"{what}: status says consumes may take the hot path (enabled {s0['enabled']}, consumes {s0['consumes']}, "
          f"table {s0['table_name']}, check {s0['failed_check']})")
    check(calls(s0, s1) == (1, 0), f"{what}: the consume took the hot path (hot, general calls: {calls(s0, s1)})")
    counted_exactly(conn, subject, amount, tag, used_before, got, counter0, ledger0, what)


def counted_exactly(conn, subject, amount, tag, used_before, got, counter0, ledger0, what):
    """The consume answered used + amount, the counter grew by amount, one ledger row was
    added, and the counter equals the subject's ledger."""
    check(got == used_before + amount, f"{what}: the consume answered used {used_before} + {amount} (got {got})")
    check(counter(conn, subject) == counter0 + amount, f"{what}: the counter grew by {amount} ({counter0} -> {counter(conn, subject)})")
    new = ledger(conn, subject)[len(ledger0):]
    check(new == [(amount, tag)], f"{what}: exactly one new ledger row, consume {amount} tagged {tag} (got {new})")
    total = sum(a for a, _ in ledger(conn, subject))
    check(counter(conn, subject) == total, f"{what}: the counter equals the ledger ({counter(conn, subject)}, {total})")


def expect_general_consume(conn, subject, amount, tag, table, failed, what):
    """After the change: status reports the step aside; a consume takes the general path and
    is counted exactly; a check still takes the hot path."""
    s0 = status(conn)
    check(s0["enabled"] is True, f"{what}: enabled is still true ({s0['enabled']})")
    check(s0["consumes"] is False, f"{what}: consumes = false ({s0['consumes']})")
    check(s0["checks"] is True, f"{what}: checks = true, a check only reads ({s0['checks']})")
    check((s0["table_name"], s0["failed_check"]) == (table, failed),
          f"{what}: table_name, failed_check = {table!r}, {failed!r} (got {s0['table_name']!r}, {s0['failed_check']!r})")
    used0, counter0, ledger0 = quota_check(conn, subject, 0), counter(conn, subject), ledger(conn, subject)
    s1 = status(conn)
    check(calls(s0, s1) == (1, 0), f"{what}: a check still takes the hot path (hot, general calls: {calls(s0, s1)})")
    got = consume(conn, subject, amount, tag)
    s2 = status(conn)
    check(calls(s1, s2) == (0, 1), f"{what}: the consume took the general path (hot, general calls: {calls(s1, s2)})")
    counted_exactly(conn, subject, amount, tag, used0, got, counter0, ledger0, f"{what}, general")
    # A second consume in the same transaction still steps aside (the table is still changed).
    got2 = consume(conn, subject, 1, tag + "-again")
    s3 = status(conn)
    check(calls(s2, s3) == (0, 1) and got2 == got + 1,
          f"{what}: so does the next one (hot, general calls: {calls(s2, s3)}; used {got} -> {got2})")


def eligibility_case(name, table, failed, ddl, after=None):
    """The test of one eligibility check: see the module comment. `ddl`: the statements
    that add the one thing (and what it needs); `after(conn, subject)`: more checks while
    it is in place."""
    conn = connect(DB)
    subject = f"elig-{name}"
    try:
        conn.execute("BEGIN")
        setup_subject(conn, subject)
        expect_hot_consume(conn, subject, 2, "hot-before", "before the change")
        for statement in ddl:
            conn.execute(statement)
        expect_general_consume(conn, subject, 5, "general", table, failed, f"with {name}")
        if after:
            after(conn, subject)
        conn.execute("ROLLBACK")
        # The change is gone with the transaction (and so is the subject): the next
        # transaction resolves the tables again and the hot path serves it.
        check(status(conn)["failed_check"] is None, f"after ROLLBACK: no failed check ({status(conn)['failed_check']})")
        check(one(conn, "SELECT count(*) FROM quota.counters WHERE subject = %s", (subject,)) == 0,
              "after ROLLBACK: the transaction's subject left no counter")
        setup_subject(conn, subject)
        expect_hot_consume(conn, subject, 3, "hot-after", "after ROLLBACK")
        check(ledger(conn, subject) == [(1, "first"), (3, "hot-after")],
              f"after ROLLBACK: the ledger holds the new transaction's two consumes ({ledger(conn, subject)})")
    finally:
        conn.close()


def fired(table, op, n):
    def after(conn, subject):
        got = one(conn, "SELECT count(*) FROM public.elig_fired WHERE tbl = %s AND op = %s", (table, op))
        check(got == n, f"the {'rule' if op == 'RULE' else 'trigger'} on {table} fired for the {n} general consumes ({got} times)")
    return after


def refused_by_check(amount):
    """A consume the quota admits but the CHECK constraint does not: 23514 (the executor
    checked it), and nothing written."""
    def after(conn, subject):
        before = (counter(conn, subject), ledger(conn, subject))
        conn.execute("SAVEPOINT violate")
        e, _ = attempt(conn, "SELECT used FROM quota.quota_consume(%s::text, %s::text, %s::bigint)", (subject, METRIC, amount))
        check(e is not None and e.sqlstate == "23514", f"a consume of {amount} violating the CHECK constraint fails with 23514 ({describe(e)})")
        conn.execute("ROLLBACK TO SAVEPOINT violate")
        check((counter(conn, subject), ledger(conn, subject)) == before, "and writes nothing")
    return after


def index_complete(index):
    """amcheck: every row of the table has its entry in the (btree) index, so the general
    path's writes maintained it."""
    def after(conn, subject):
        e, _ = attempt(conn, "SELECT bt_index_check(%s::regclass, true)", (index,))
        check(e is None, f"bt_index_check({index}, heapallindexed) passes ({describe(e)})")
    return after


def filled(column, value):
    def after(conn, subject):
        got = rows(conn, f"SELECT DISTINCT {column} FROM quota.usage_events WHERE subject = %s AND metadata->>'tag' LIKE 'general%%'",
                   (subject,))
        check(got == [(value,)], f"the general consumes' ledger rows have {column} = {value!r} (got {got})")
    return after


# One test per eligibility check -------------------------------------------------------

FIRED_TABLE = "CREATE TABLE public.elig_fired (tbl text, op text)"


def rule_on_counters():
    eligibility_case("rule on counters", "quota.counters", "rule", [
        FIRED_TABLE,
        "CREATE RULE elig_rule AS ON UPDATE TO quota.counters DO ALSO INSERT INTO public.elig_fired VALUES ('counters', 'RULE')"],
        fired("counters", "RULE", 2))


def rule_on_ledger():
    eligibility_case("rule on ledger", "quota.usage_events", "rule", [
        FIRED_TABLE,
        "CREATE RULE elig_rule AS ON INSERT TO quota.usage_events DO ALSO INSERT INTO public.elig_fired VALUES ('usage_events', 'RULE')"],
        fired("usage_events", "RULE", 2))


def check_constraint():
    eligibility_case("check constraint", "quota.counters", "check constraint",
                     ["ALTER TABLE quota.counters ADD CONSTRAINT elig_check CHECK (used < 100000)"],
                     refused_by_check(200000))


def check_constraint_on_ledger():
    eligibility_case("check constraint on ledger", "quota.usage_events", "check constraint",
                     ["ALTER TABLE quota.usage_events ADD CONSTRAINT elig_check CHECK (amount < 100000)"],
                     refused_by_check(200000))


def generated_column():
    eligibility_case("generated column", "quota.counters", "generated column",
                     ["ALTER TABLE quota.counters ADD COLUMN elig_twice bigint GENERATED ALWAYS AS (used * 2) STORED"],
                     lambda conn, subject: check(
                         one(conn, "SELECT bool_and(elig_twice = used * 2) FROM quota.counters WHERE subject = %s", (subject,)),
                         "the general path's update computed the generated column"))


def expression_index():
    eligibility_case("expression index", "quota.counters", "expression index",
                     ["CREATE INDEX elig_expr ON quota.counters ((used + 1))"], index_complete("quota.elig_expr"))


def partial_index():
    eligibility_case("partial index", "quota.counters", "partial index",
                     ["CREATE INDEX elig_partial ON quota.counters (metric) WHERE used > 0"], index_complete("quota.elig_partial"))


def hash_index():
    eligibility_case("hash index", "quota.counters", "not a btree index",
                     ["CREATE INDEX elig_hash ON quota.counters USING hash (metric)"])


def brin_index():
    # A summarizing index: from PostgreSQL 16 an update may be HOT and still need its
    # entries (TU_Summarizing), which the hot path does not write.
    eligibility_case("brin index", "quota.counters", "not a btree index",
                     ["CREATE INDEX elig_brin ON quota.counters USING brin (used)"])


def exclusion_constraint():
    eligibility_case("exclusion constraint", "quota.counters", "exclusion constraint",
                     ["ALTER TABLE quota.counters ADD CONSTRAINT elig_excl "
                      "EXCLUDE USING btree (subject WITH =, metric WITH =, window_start WITH =)"], index_complete("quota.elig_excl"))


def deferrable_unique():
    eligibility_case("deferrable unique constraint", "quota.usage_events", "deferrable unique constraint",
                     ["ALTER TABLE quota.usage_events ADD CONSTRAINT elig_unique UNIQUE (id, subject) DEFERRABLE"],
                     index_complete("quota.elig_unique"))


def ledger_column_with_default():
    eligibility_case("ledger column with a default", "quota.usage_events", "column with a default or NOT NULL",
                     ["ALTER TABLE quota.usage_events ADD COLUMN elig_source text DEFAULT 'api'"],
                     filled("elig_source", "api"))


def ledger_column_not_null():
    eligibility_case("ledger column NOT NULL with a default", "quota.usage_events", "column with a default or NOT NULL",
                     ["ALTER TABLE quota.usage_events ADD COLUMN elig_region text NOT NULL DEFAULT 'eu'"],
                     filled("elig_region", "eu"))


TRIGGER_FUNCTION = [
    FIRED_TABLE,
    """CREATE FUNCTION public.elig_fire() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN INSERT INTO public.elig_fired VALUES (TG_TABLE_NAME, TG_OP); RETURN NEW; END $$""",
]


def trigger_on_counters():
    eligibility_case("trigger on counters", "quota.counters", "trigger", TRIGGER_FUNCTION + [
        "CREATE TRIGGER elig_trigger BEFORE UPDATE ON quota.counters FOR EACH ROW EXECUTE FUNCTION public.elig_fire()"],
        fired("counters", "UPDATE", 2))


def trigger_on_ledger():
    eligibility_case("trigger on ledger", "quota.usage_events", "trigger", TRIGGER_FUNCTION + [
        "CREATE TRIGGER elig_trigger AFTER INSERT ON quota.usage_events FOR EACH ROW EXECUTE FUNCTION public.elig_fire()"],
        fired("usage_events", "INSERT", 2))


# The LOG line and the setting ---------------------------------------------------------

def log_lines(offset):
    """The server log's lines from byte `offset` that contain the LOG line's text."""
    with open(LOG, "rb") as f:
        f.seek(offset)
        return [line.decode("utf-8", "replace") for line in f.read().splitlines() if NEEDLE.encode() in line]


def of_backend(lines, pid):
    # log_line_prefix (default '%m [%p] ', scripts/reliability.sh '%m [%p] %e ') names the pid.
    return [line for line in lines if f"[{pid}]" in line]


def log_line_once_per_backend():
    if LOG is None:
        print(f"  note: no server log found ($QUOTA_LOG, $QUOTA_SERVER_LOG, {os.path.join(HOST, 'server.log')}): "
              "the LOG line is not checked")
        return
    offset = os.path.getsize(LOG)
    pids = []
    for backend in range(2):
        conn = connect(DB)
        pid = one(conn, "SELECT pg_backend_pid()")
        pids.append(pid)
        # Two transactions, each stepping aside on several consumes: still one line.
        for txn in range(2):
            subject = f"elig-log-{backend}-{txn}"
            conn.execute("BEGIN")
            setup_subject(conn, subject)
            conn.execute("ALTER TABLE quota.counters ADD CONSTRAINT elig_log CHECK (used >= 0)")
            s0 = status(conn)
            for k in range(3):
                consume(conn, subject, 1, f"log-{k}")
            s1 = status(conn)
            check(not s1["consumes"] and calls(s0, s1) == (0, 3),
                  f"backend {backend}, transaction {txn}: three consumes stepped aside (hot, general calls: {calls(s0, s1)})")
            conn.execute("ROLLBACK")
        conn.close()
    lines = []
    for _ in range(30):  # the backends wrote before answering; allow for a slow disk
        lines = log_lines(offset)
        if all(of_backend(lines, pid) for pid in pids):
            break
        time.sleep(0.1)
    for backend, pid in enumerate(pids):
        mine = of_backend(lines, pid)
        check(len(mine) == 1, f"backend {backend} (pid {pid}) wrote the LOG line once ({len(mine)} times: {mine[:3]})")
        check(all("LOG:" in line and "quota.counters" in line and "check constraint" in line for line in mine),
              f"backend {backend}'s line is a LOG naming quota.counters and 'check constraint' ({mine[:1]})")
    check(len(lines) == len(pids), f"no other backend wrote it meanwhile ({len(lines)} lines)")


def hot_path_off():
    conn = connect(DB)
    pid = one(conn, "SELECT pg_backend_pid()")
    subject = "elig-off"
    setup_subject(conn, subject)
    expect_hot_consume(conn, subject, 1, "on", "quota.hot_path on")
    offset = os.path.getsize(LOG) if LOG else None
    conn.execute("SET quota.hot_path = off")
    s0 = status(conn)
    check((s0["enabled"], s0["checks"], s0["consumes"]) == (False, False, False),
          f"off: enabled, checks, consumes are all false ({s0['enabled']}, {s0['checks']}, {s0['consumes']})")
    check((s0["table_name"], s0["failed_check"]) == (None, None),
          f"off is not stepping aside: no table, no failed check ({s0['table_name']}, {s0['failed_check']})")
    used0 = counter(conn, subject)
    got = [consume(conn, subject, k, f"off-{k}") for k in (1, 2, 3)]
    quota_check(conn, subject, 1)
    s1 = status(conn)
    check(calls(s0, s1) == (0, 4), f"off: three consumes and a check took the general path (hot, general calls: {calls(s0, s1)})")
    check(got == [used0 + 1, used0 + 3, used0 + 6] and counter(conn, subject) == used0 + 6,
          f"off: each consume counted ({got}, counter {counter(conn, subject)})")
    if LOG:
        time.sleep(0.3)
        mine = of_backend(log_lines(offset), pid)
        check(mine == [], f"off: no LOG line ({mine[:2]})")
    else:
        print("  note: no server log found: the absence of a LOG line is not checked")
    # Only a superuser may change it.
    with connect("postgres") as admin:
        fresh_roles(admin, ("elig_app", "IN ROLE quota_app"))
    app = connect(DB, user="elig_app")
    e, _ = attempt(app, "SET quota.hot_path = off")
    check(e is not None and e.sqlstate == "42501", f"a non-superuser cannot SET quota.hot_path ({describe(e)})")
    app.close()
    with connect("postgres") as admin:
        drop_role(admin, "elig_app")
    conn.execute("SET quota.hot_path = on")
    expect_hot_consume(conn, subject, 1, "on-again", "quota.hot_path on again")
    conn.close()


TESTS = [
    rule_on_counters,
    rule_on_ledger,
    check_constraint,
    check_constraint_on_ledger,
    generated_column,
    expression_index,
    partial_index,
    hash_index,
    brin_index,
    exclusion_constraint,
    deferrable_unique,
    ledger_column_with_default,
    ledger_column_not_null,
    trigger_on_counters,
    trigger_on_ledger,
    log_line_once_per_backend,
    hot_path_off,
]


if __name__ == "__main__":
    wanted = sys.argv[1:]
    selected = [t for t in TESTS if not wanted or any(w in t.__name__ for w in wanted)]
    print(f"hot path eligibility tests against {HOST}:{PORT}: {len(selected)} of {len(TESTS)}; server log {LOG or '(none)'}")
    with fresh_db(DB) as conn:
        conn.execute("CREATE EXTENSION amcheck")
    run_tests(selected)
    finish()
