"""The reliability suite: randomized stress with an independent client log, crash
recovery (kill -9), and bad input. Prints one summary line:

  reliability: operations=N aborts=N crashes_survived=N bad_inputs=N invariant_violations=N

Run by scripts/reliability.sh against its own cluster (QUOTA_HOST / QUOTA_PORT /
QUOTA_DATA). Exits non-zero on any violation.
"""
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid

import psycopg2

HOST = os.environ["QUOTA_HOST"]
PORT = int(os.environ["QUOTA_PORT"])
DATA = os.environ["QUOTA_DATA"]
PGBIN = os.environ["PGBIN"]
CLIENTS = int(os.environ.get("QUOTA_CLIENTS", "16"))
OPS_PER_CLIENT = int(os.environ.get("QUOTA_OPS", "250"))
CRASHES = int(os.environ.get("QUOTA_CRASHES", "3"))
SEED = int(os.environ.get("QUOTA_SEED", str(int(time.time()))))
CLOCK = "SET quota.clock_override = '2026-11-23 12:00:00+00'"
LIMITS = {"a": 40, "b": 400}      # hard, per day
HOT = [f"hot{i}" for i in range(3)]
COLD = [f"cold{i}" for i in range(200)]

violations = []
stats = {"operations": 0, "aborts": 0, "crashes_survived": 0, "bad_inputs": 0}
lock = threading.Lock()


def violation(msg):
    with lock:
        violations.append(msg)
    print(f"  VIOLATION: {msg}", flush=True)


def connect(db="reliability", autocommit=False):
    conn = psycopg2.connect(host=HOST, port=PORT, user="postgres", dbname=db, connect_timeout=5)
    conn.autocommit = autocommit
    return conn


def setup():
    admin = connect("postgres", autocommit=True)
    admin.cursor().execute("DROP DATABASE IF EXISTS reliability")
    admin.cursor().execute("CREATE DATABASE reliability")
    admin.close()
    conn = connect(autocommit=True)
    c = conn.cursor()
    c.execute("CREATE EXTENSION quota_ext")
    c.execute("CREATE EXTENSION amcheck")
    c.execute(CLOCK)
    for metric, limit in LIMITS.items():
        c.execute("SELECT quota.set_limit('REL', %s, 'day', %s)", (metric, limit))
    c.execute("SELECT quota.set_bonus_rule('REL', 'a', 'questionnaire', 5)")
    c.execute("SELECT quota.set_bonus_cap('REL', 3)")
    for s in HOT + COLD:
        c.execute("SELECT quota.assign_plan(%s, 'REL')", (s,))
    conn.close()


# The client log: what the client saw committed, by operation id --------------------------

class Log:
    def __init__(self):
        self.committed = {}   # op id -> (kind, subject, {metric: amount})
        self.aborted = set()  # op ids rolled back on purpose
        self.in_doubt = set() # op ids whose COMMIT did not answer (crash)
        self.keys = {}        # idempotency key -> number of committed sends

    def merge(self, other):
        self.committed.update(other.committed)
        self.aborted |= other.aborted
        self.in_doubt |= other.in_doubt
        for k, n in other.keys.items():
            self.keys[k] = self.keys.get(k, 0) + n


def client(i, stop, seed, ops=OPS_PER_CLIENT):
    rnd = random.Random(seed * 1000 + i)
    mine = Log()
    try:
        conn = connect()
    except psycopg2.Error:
        return mine
    cur = conn.cursor()
    cur.execute(CLOCK)
    conn.commit()
    for _ in range(ops):
        if stop.is_set():
            break
        subject = rnd.choice(HOT) if rnd.random() < 0.6 else rnd.choice(COLD)
        op = str(uuid.uuid4())
        roll = rnd.random()
        kind, effect = "consume", {}
        try:
            if roll < 0.40:
                metric, amount = rnd.choice(["a", "b"]), rnd.randint(1, 5)
                effect = {metric: amount}
                cur.execute("SELECT allowed FROM quota.quota_try_consume(%s, %s, %s, NULL, %s)",
                            (subject, metric, amount, json.dumps({"op": op})))
                if not cur.fetchone()[0]:
                    effect = {}
            elif roll < 0.55:
                amounts = {"a": 1, "b": rnd.randint(1, 20)}
                effect = amounts
                cur.execute("SELECT bool_and(allowed) FROM quota.quota_try_consume(%s, %s::jsonb, NULL, %s)",
                            (subject, json.dumps(amounts), json.dumps({"op": op})))
                if not cur.fetchone()[0]:
                    effect = {}
            elif roll < 0.65:
                kind = "refund"
                cur.execute("SELECT used FROM quota.quota_refund(%s, 'a', %s, %s)", (subject, rnd.randint(1, 3), op))
            elif roll < 0.72:
                kind = "bonus"
                cur.execute("SELECT applied FROM quota.apply_bonus(%s, 'a', 'questionnaire', %s)", (subject, op))
            elif roll < 0.74:
                kind = "reset"
                cur.execute("SELECT quota.quota_reset(%s, 'b')", (subject,))
            elif roll < 0.80:
                # A generation: reserve, then commit the actual amount or release.
                kind = "reserve"
                held = rnd.randint(1, 5)
                cur.execute("SELECT reservation FROM quota.quota_try_reserve(%s, 'b', %s)", (subject, held))
                rid = cur.fetchone()[0]
                if rid is not None and rnd.random() < 0.7:
                    actual = rnd.randint(0, held + 2)
                    try:
                        cur.execute("SAVEPOINT settle")
                        cur.execute("SELECT used FROM quota.quota_commit(%s, %s, %s)", (rid, actual, json.dumps({"op": op})))
                        effect = {"b": actual}
                    except psycopg2.Error as e:
                        if e.pgcode != "QT429":
                            raise
                        # More than held did not fit: release instead.
                        cur.execute("ROLLBACK TO SAVEPOINT settle")
                        cur.execute("SELECT quota.quota_release(%s)", (rid,))
                elif rid is not None:
                    cur.execute("SELECT quota.quota_release(%s, 'generation failed')", (rid,))
            elif roll < 0.88:
                # An idempotent retry: the same key sent twice, the second time on a
                # fresh statement (as a client retrying after a timeout would).
                kind = "keyed"
                amount = rnd.randint(1, 3)
                effect = {"b": amount}
                for _ in range(2):
                    cur.execute("SELECT allowed, reason FROM quota.quota_try_consume(%s, 'b', %s, %s, %s)",
                                (subject, amount, op, json.dumps({"op": op})))
                    allowed, _reason = cur.fetchone()
                    if not allowed:
                        effect = {}
                        break
            else:
                # Consume, then abort on purpose.
                kind = "abort"
                cur.execute("SELECT allowed FROM quota.quota_try_consume(%s, 'b', 1, NULL, %s)",
                            (subject, json.dumps({"op": op})))
                conn.rollback()
                mine.aborted.add(op)
                with lock:
                    stats["aborts"] += 1
                    stats["operations"] += 1
                continue
        except psycopg2.Error as e:
            try:
                conn.rollback()
            except psycopg2.Error:
                pass
            if e.pgcode in ("40001", "40P01"):
                continue
            if stop.is_set() or e.pgcode is None or e.pgcode.startswith("57") or e.pgcode.startswith("08"):
                break  # the server went away (crash test)
            violation(f"unexpected error {e.pgcode} on {kind}: {e.pgerror}")
            continue
        try:
            conn.commit()
        except psycopg2.Error:
            mine.in_doubt.add(op)
            break
        mine.committed[op] = (kind, subject, effect)
        if kind == "keyed" and effect:
            mine.keys[op] = mine.keys.get(op, 0) + 1
        with lock:
            stats["operations"] += 1
    try:
        conn.close()
    except psycopg2.Error:
        pass
    return mine


def run_load(seed, stop=None, clients=CLIENTS, ops=OPS_PER_CLIENT):
    stop = stop or threading.Event()
    log = Log()
    logs = [Log() for _ in range(clients)]
    threads = [threading.Thread(target=lambda i=i: logs[i].merge(client(i, stop, seed, ops))) for i in range(clients)]
    for t in threads:
        t.start()
    return threads, logs, stop, log


def join_load(threads, logs, log):
    for t in threads:
        t.join()
    for l in logs:
        log.merge(l)
    return log


# Invariants -----------------------------------------------------------------------------

def check_invariants(log, label, per_op=True):
    conn = connect(autocommit=True)
    c = conn.cursor()
    # 1. Every window's counter equals its ledger: the events, plus what compaction
    #    summarised. Computed here independently of the extension's own quota.ledger_check,
    #    which must agree.
    c.execute("""
        SELECT count(*) FROM quota.counters k
        LEFT JOIN (
            SELECT subject, metric, window_start,
                   sum(CASE kind WHEN 'consume' THEN amount WHEN 'commit' THEN amount
                                 WHEN 'refund' THEN -amount WHEN 'reset' THEN -amount ELSE 0 END) AS used,
                   coalesce(sum(amount) FILTER (WHERE kind = 'bonus'), 0) AS bonus
            FROM (SELECT subject, metric, window_start, kind, amount FROM quota.usage_events
                  UNION ALL
                  SELECT subject, metric, window_start, kind, amount FROM quota.usage_summaries) flows
            GROUP BY 1, 2, 3) l USING (subject, metric, window_start)
        WHERE k.used <> coalesce(l.used, 0) OR k.bonus <> coalesce(l.bonus, 0)""")
    bad = c.fetchone()[0]
    if bad:
        violation(f"{label}: {bad} windows whose counter differs from the ledger")
    c.execute("SELECT count(*) FROM quota.ledger_check")
    if c.fetchone()[0] != bad:
        violation(f"{label}: quota.ledger_check disagrees with the independent check")
    if not per_op:
        return
    # 2. The ledger agrees with the client log, op by op.
    c.execute("""SELECT metadata->>'op', metric, amount FROM quota.usage_events
                 WHERE kind IN ('consume', 'commit') AND metadata ? 'op'""")
    ledger = {}
    for op, metric, amount in c.fetchall():
        ledger.setdefault(op, {})
        if metric in ledger[op]:
            violation(f"{label}: op {op} counted twice on {metric}")
        ledger[op][metric] = amount
    for op, (kind, _subject, effect) in log.committed.items():
        if kind in ("consume", "keyed", "reserve") and ledger.get(op, {}) != effect:
            violation(f"{label}: acknowledged op {op} has ledger {ledger.get(op)} but the client saw {effect}")
    for op in log.aborted:
        if op in ledger:
            violation(f"{label}: aborted op {op} left a ledger row")
    known = set(log.committed) | log.aborted | log.in_doubt
    for op in ledger:
        if op not in known:
            violation(f"{label}: ledger row for an op the client never sent ({op})")
    # 3. Idempotent retries counted exactly once.
    c.execute("""SELECT idempotency_key, count(*) FROM quota.usage_events
                 WHERE kind = 'consume' AND idempotency_key IS NOT NULL GROUP BY 1 HAVING count(*) > 1""")
    for key, n in c.fetchall():
        violation(f"{label}: idempotency key {key} counted {n} times")
    # Holds: every window's reserved equals its held reservations.
    c.execute("""
        SELECT count(*) FROM quota.counters k
        WHERE k.reserved <> (SELECT coalesce(sum(amount), 0) FROM quota.reservations r
                             WHERE r.subject = k.subject AND r.metric = k.metric
                               AND r.window_start = k.window_start AND r.status = 'held')""")
    bad = c.fetchone()[0]
    if bad:
        violation(f"{label}: {bad} windows whose reserved differs from their held reservations")
    # 4. No hard limit was ever exceeded: replay each window in id order (within a window
    # rows are written under its row lock, so id order is commit order).
    c.execute("""SELECT subject, metric, window_start, kind, amount FROM quota.usage_events
                 WHERE metric IN ('a', 'b') ORDER BY subject, metric, window_start, id""")
    state = {}
    for subject, metric, ws, kind, amount in c.fetchall():
        used, bonus = state.get((subject, metric, ws), (0, 0))
        if kind in ("consume", "commit"):
            used += amount
        elif kind in ("refund", "reset"):
            used -= amount
        elif kind == "bonus":
            bonus += amount
        if used < 0 or used > LIMITS[metric] + bonus:
            violation(f"{label}: {subject}/{metric} reached {used} over limit {LIMITS[metric]}+{bonus}")
        state[(subject, metric, ws)] = (used, bonus)
    # 5. Index integrity.
    c.execute("""SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                 JOIN pg_am a ON a.oid = c.relam
                 WHERE c.relnamespace = 'quota'::regnamespace AND a.amname = 'btree'""")
    for (index,) in c.fetchall():
        try:
            c.execute("SELECT bt_index_check(%s::regclass, true)", (f"quota.{index}",))
        except psycopg2.Error as e:
            violation(f"{label}: amcheck on {index}: {e.pgerror}")
    conn.close()


# Crash recovery -------------------------------------------------------------------------

def compaction_under_load(seed):
    """Clients consume, refund and reserve while another session compacts the whole
    ledger again and again; the counters must stay provable from summaries + events."""
    threads, logs, stop, log = run_load(seed, ops=OPS_PER_CLIENT // 2)
    conn = connect(autocommit=True)
    compacted = 0
    with conn.cursor() as c:
        c.execute("SET ROLE quota_admin")
        while any(t.is_alive() for t in threads):
            c.execute("SELECT quota.compact_ledger('0 seconds')")
            compacted += c.fetchone()[0]
            time.sleep(0.05)
        join_load(threads, logs, log)
        c.execute("SELECT quota.compact_ledger('0 seconds')")
        compacted += c.fetchone()[0]
    conn.close()
    return compacted


def postmaster_pid():
    with open(os.path.join(DATA, "postmaster.pid")) as f:
        return int(f.readline())


def crash_and_restart(seed):
    # Enough work that the kill lands in the middle of it.
    threads, logs, stop, log = run_load(seed, ops=OPS_PER_CLIENT * 4)
    time.sleep(random.Random(seed).uniform(0.5, 3.0))
    pid = postmaster_pid()
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    os.kill(pid, signal.SIGKILL)
    for child in children:
        try:
            os.kill(int(child), signal.SIGKILL)
        except ProcessLookupError:
            pass
    stop.set()
    log = join_load(threads, logs, log)
    # Wait until every killed process is gone. In a container whose init does not reap,
    # they stay zombies, which PostgreSQL would take for a running postmaster: once all
    # are dead or zombies, the stale lock file is removed (as an operator would).
    for p in [pid] + [int(x) for x in children]:
        for _ in range(100):
            try:
                with open(f"/proc/{p}/status") as f:
                    if "State:\tZ" in f.read():
                        break
            except FileNotFoundError:
                break
            time.sleep(0.05)
    for lockfile in (os.path.join(DATA, "postmaster.pid"), os.path.join(HOST, f".s.PGSQL.{PORT}.lock")):
        if os.path.exists(lockfile):
            os.remove(lockfile)
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run(as_pg + [f"{PGBIN}/pg_ctl", "-D", DATA, "-l", os.path.join(DATA, "..", "server.log"), "-w", "-t", "120", "start"],
                   check=True, stdout=subprocess.DEVNULL)
    stats["crashes_survived"] += 1
    return log


# Bad input ------------------------------------------------------------------------------

ALLOWED_STATES = {"QT429", "QT413", "QT404", "22023", "22004", "22P02", "22003", "22007", "22008", "22015",
                  "42P01", "42501", "42804", "23001", "54000", "0A000", "2BP01", "42883", "22021"}
BAD_VALUES = {
    "text": [None, "", "x" * (1 << 20), "'; DROP TABLE quota.plans; --", "\x01\x02\x1b[0m", "Robert'); --", "ünï©ødé 😀"],
    "bigint": [None, 0, -1, -9223372036854775808, 9223372036854775807, "9223372036854775808"],
    "integer": [None, 0, -1, 2147483647, "2147483648"],
    "jsonb": [None, "{bad", "[]", "{}", '{"a": 1e400}', '{"a": -1}', '{"a": "x"}', '"str"'],
    "inet": [None, "999.1.1.1", "not-an-ip", "::1", "10.0.0.1/8"],
    "interval": [None, "-1 day", "0", "1000 years", "garbage"],
    "uuid": [None, "00000000-0000-0000-0000-000000000000", "not-a-uuid"],
    "timestamp with time zone": [None, "infinity", "-infinity", "garbage", "4713-01-01 BC"],
    "boolean": [None],
    "integer[]": [None, "{}", "{0}", "{-5,2000}", "{NULL}"],
    "regclass": [None, "pg_class", "nosuch_table", "quota.usage_events"],
}
GOOD = {"text": "hot0", "bigint": 1, "integer": 1, "jsonb": '{"a": 1}', "inet": "10.1.2.3",
        "interval": "1 minute", "uuid": "00000000-0000-0000-0000-000000000000",
        "timestamp with time zone": "2026-01-01 00:00:00+00", "boolean": True, "integer[]": "{80}",
        "regclass": "quota.plans"}


def bad_inputs():
    conn = connect(autocommit=True)
    c = conn.cursor()
    c.execute(CLOCK)
    sigs = {}
    c2 = conn.cursor()
    c2.execute("""SELECT p.oid, p.proname, array(SELECT pg_catalog.format_type(t, NULL) FROM unnest(p.proargtypes) t)
                  FROM pg_proc p WHERE p.pronamespace = 'quota'::regnamespace AND p.prokind = 'f'
                    AND p.prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype)""")
    for oid, name, types in c2.fetchall():
        sigs[oid] = (name, types)
    rnd = random.Random(SEED)

    def call(name, types, values):
        args = ", ".join(f"%s::{t}" for t in types)
        try:
            c.execute(f"SELECT quota.{name}({args})", values)
            c.fetchall()
            return None
        except psycopg2.Error as e:
            return e.pgcode

    tried = 0
    for name, types in sigs.values():
        if name in ("maintenance",) or not types:
            continue
        for i, t in enumerate(types):
            for bad in BAD_VALUES.get(t, [None]):
                values = [GOOD.get(x, None) for x in types]
                values[i] = bad
                code = call(name, types, values)
                tried += 1
                if code is not None and code not in ALLOWED_STATES:
                    violation(f"bad input: quota.{name} arg {i + 1} ({t}) = {str(bad)[:40]!r} gave SQLSTATE {code}")
    # Property test: random argument tuples, bounded in time.
    deadline = time.time() + float(os.environ.get("QUOTA_PROPERTY_SECONDS", "45"))
    names = list(sigs.values())
    while time.time() < deadline:
        name, types = rnd.choice(names)
        if name == "maintenance" or not types:
            continue
        values = [rnd.choice(BAD_VALUES.get(t, [None]) + [GOOD.get(t)]) for t in types]
        code = call(name, types, values)
        tried += 1
        if code is not None and code not in ALLOWED_STATES:
            violation(f"property: quota.{name}{tuple(str(v)[:30] for v in values)} gave SQLSTATE {code}")
    stats["bad_inputs"] = tried
    conn.close()


def server_log_clean():
    path = os.path.join(DATA, "..", "server.log")
    with open(path, errors="replace") as f:
        text = f.read()
    for needle in ("PANIC", "terminated by signal", "panicked at", "XX000"):
        # The crash test kills the postmaster on purpose; backends it orphaned may log
        # "terminating connection" but never "terminated by signal" (that is a backend crash).
        if needle in text:
            violation(f"server log contains {needle!r}")


def main():
    print(f"reliability: seed {SEED}, {CLIENTS} clients x {OPS_PER_CLIENT} operations", flush=True)
    setup()
    print("-- stress", flush=True)
    threads, logs, stop, log = run_load(SEED)
    log = join_load(threads, logs, log)
    check_invariants(log, "stress")
    print(f"   {stats['operations']} operations, {stats['aborts']} aborts, {len(violations)} violations", flush=True)
    print("-- crash recovery", flush=True)
    total = log
    for k in range(CRASHES):
        before = stats["operations"]
        crashed = crash_and_restart(SEED + k + 1)
        total.merge(crashed)
        check_invariants(total, f"crash {k + 1}")
        print(f"   crash {k + 1} survived after {stats['operations'] - before} acknowledged operations "
              f"({len(crashed.in_doubt)} in doubt), {len(violations)} violations", flush=True)
    print("-- retention: compaction during load", flush=True)
    compacted = compaction_under_load(SEED + 100)
    check_invariants(None, "retention", per_op=False)
    print(f"   {compacted} events summarised while clients ran, {len(violations)} violations", flush=True)
    print("-- bad input", flush=True)
    bad_inputs()
    server_log_clean()
    print(f"reliability: operations={stats['operations']} aborts={stats['aborts']} "
          f"crashes_survived={stats['crashes_survived']} bad_inputs={stats['bad_inputs']} "
          f"invariant_violations={len(violations)}", flush=True)
    sys.exit(1 if violations else 0)


if __name__ == "__main__":
    main()
