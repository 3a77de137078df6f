"""The reliability suite: randomized stress with an independent client log, crash
recovery (kill -9), compaction under load, and bad input. Prints the seed first:

  reliability: seed=N (replay with QUOTA_SEED=N)

then a digest of every client's operation plan, and ends with one summary line:

  reliability: operations=N aborts=N crashes_survived=N bad_inputs=N invariant_violations=N
               server_log=X.XMB peak_rss=NMB

Everything random is drawn from the seed before it runs: each client's operations (per
phase: random.Random(f"{seed}-{phase}-{client}")), the kill delays, and the fixed number
of property-test calls (QUOTA_PROPERTY_CALLS). QUOTA_SEED=N replays the same plans (the
digests printed at the start are the same); only the interleaving and the moment of each
kill depend on the machine.

Values travel as server-side bound parameters (psycopg 3's default cursor), so no statement
text carries them and the server log never repeats a 1 MiB argument. The server log is
scanned as a stream, a chunk at a time, from a byte offset taken at the start of each
phase, and must stay under QUOTA_LOG_LIMIT_MB (100 MB).

Run by scripts/reliability.sh against its own cluster (QUOTA_HOST / QUOTA_PORT /
QUOTA_DATA / QUOTA_LOG). Exits non-zero on any violation.
"""
import hashlib
import json
import os
import random
import resource
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter

import psycopg

HOST = os.environ["QUOTA_HOST"]
PORT = int(os.environ["QUOTA_PORT"])
DATA = os.environ["QUOTA_DATA"]
PGBIN = os.environ["PGBIN"]
SERVER_LOG = os.environ.get("QUOTA_LOG") or os.path.normpath(os.path.join(DATA, "..", "server.log"))
CLIENTS = int(os.environ.get("QUOTA_CLIENTS", "16"))
OPS_PER_CLIENT = int(os.environ.get("QUOTA_OPS", "250"))
CRASHES = int(os.environ.get("QUOTA_CRASHES", "3"))
PROPERTY_CALLS = int(os.environ.get("QUOTA_PROPERTY_CALLS", "6000"))
LOG_LIMIT = int(os.environ.get("QUOTA_LOG_LIMIT_MB", "100")) * 1000 * 1000
SEED = int(os.environ.get("QUOTA_SEED") or random.SystemRandom().randrange(1, 1 << 31))
CLOCK = "SET quota.clock_override = '2026-11-23 12:00:00+00'"
LIMITS = {"a": 40, "b": 400}      # hard, per day
HOT = [f"hot{i}" for i in range(3)]
COLD = [f"cold{i}" for i in range(200)]
MB = 1000 * 1000

violations = []
stats = {"operations": 0, "aborts": 0, "crashes_survived": 0, "bad_inputs": 0}
lock = threading.Lock()


def violation(msg):
    with lock:
        violations.append(msg)
    print(f"  VIOLATION: {msg}", flush=True)


def connect(db="reliability", autocommit=False):
    # psycopg.Cursor binds on the server: "%s" becomes $1, $2... and the values go in the
    # Bind message, never into the statement text (a ClientCursor would interpolate them,
    # and every ERROR's STATEMENT line would repeat them in the server log).
    return psycopg.connect(host=HOST, port=PORT, user="postgres", dbname=db, connect_timeout=5,
                           autocommit=autocommit, cursor_factory=psycopg.Cursor)


def cursor(conn):
    cur = conn.cursor()
    assert type(cur) is psycopg.Cursor, f"{type(cur)} would bind values on the client"
    return cur


def error_text(e):
    text = (e.diag.message_primary if isinstance(e, psycopg.Error) and e.diag.message_primary else str(e))
    return text.splitlines()[0][:300] if text else repr(e)


def digest(obj):
    return hashlib.sha256(repr(obj).encode()).hexdigest()[:12]


def setup():
    admin = connect("postgres", autocommit=True)
    admin.execute("DROP DATABASE IF EXISTS reliability")
    admin.execute("CREATE DATABASE reliability")
    admin.close()
    conn = connect(autocommit=True)
    c = cursor(conn)
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


# The server log: scanned as a stream from a byte offset -----------------------------------

LOG_NEEDLES = (b"PANIC", b"terminated by signal", b"panicked at", b"XX000")


def log_size():
    try:
        return os.path.getsize(SERVER_LOG)
    except FileNotFoundError:
        return 0


def log_excerpt(f, offset, width=160):
    """The log line around offset (at most `width` bytes either side), for a report."""
    f.seek(max(0, offset - width))
    around = f.read(2 * width)
    hit = offset - max(0, offset - width)
    start = around.rfind(b"\n", 0, hit) + 1
    end = around.find(b"\n", hit)
    return around[start:end if end >= 0 else len(around)].decode("utf-8", "replace")


def scan_log(start, label, chunk=1 << 20):
    """Search the server log from byte `start` to its current end for the needles, a chunk
    at a time (memory bounded by the chunk size, whatever the file or line lengths). The
    crash test kills the postmaster on purpose; backends it orphaned may log "terminating
    connection" but never "terminated by signal" (that is a backend crash)."""
    keep = max(len(n) for n in LOG_NEEDLES) - 1
    first = {}
    end = start                          # just after the last complete line scanned
    with open(SERVER_LOG, "rb") as f:
        f.seek(start)
        tail, base = b"", start          # base: file offset of buf[0]
        while True:
            block = f.read(chunk)
            if not block:
                break
            buf = tail + block
            for needle in LOG_NEEDLES:
                if needle not in first:
                    at = buf.find(needle)
                    if at >= 0:
                        first[needle] = base + at
            newline = buf.rfind(b"\n")
            if newline >= 0:
                end = base + newline + 1
            tail = buf[-keep:]
            base += len(buf) - len(tail)
        for needle, offset in sorted(first.items(), key=lambda kv: kv[1]):
            violation(f"server log ({label}) contains {needle.decode()!r} at byte {offset}: "
                      f"{log_excerpt(f, offset)}")
    return end  # where the next phase's scan starts


# Operation plans: every random choice is drawn before the run ---------------------------

def client_plan(seed, phase, i, ops):
    """Client i's operations in this phase, from its own generator: (kind, subject, op id,
    parameters...). The outcomes (refusals, conflicts) never feed back into the draws, so
    the same seed gives the same sequence whatever the server answers."""
    rnd = random.Random(f"{seed}-{phase}-{i}")
    plan = []
    for _ in range(ops):
        subject = rnd.choice(HOT) if rnd.random() < 0.6 else rnd.choice(COLD)
        op = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
        roll = rnd.random()
        if roll < 0.40:
            step = ("consume", subject, op, rnd.choice(["a", "b"]), rnd.randint(1, 5))
        elif roll < 0.55:
            step = ("multi", subject, op, rnd.randint(1, 20))
        elif roll < 0.65:
            step = ("refund", subject, op, rnd.randint(1, 3))
        elif roll < 0.72:
            step = ("bonus", subject, op)
        elif roll < 0.74:
            step = ("reset", subject, op)
        elif roll < 0.80:
            # A generation: reserve, then (70%) commit the actual amount or release.
            held = rnd.randint(1, 5)
            settle = rnd.random() < 0.7
            step = ("reserve", subject, op, held, settle, rnd.randint(0, held + 2))
        elif roll < 0.88:
            step = ("keyed", subject, op, rnd.randint(1, 3))
        else:
            step = ("abort", subject, op)
        plan.append(step)
    return plan


def phase_plans(seed, phase, ops, clients=CLIENTS):
    plans = [client_plan(seed, phase, i, ops) for i in range(clients)]
    per_client = " ".join(f"c{i}={digest(p)[:8]}" for i, p in enumerate(plans))
    print(f"   plan {phase}: {clients} x {ops} ops, digest {digest([digest(p) for p in plans])}: {per_client}",
          flush=True)
    return plans


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


def server_gone(e):
    code = e.sqlstate
    return code is None or code.startswith("57") or code.startswith("08")


def client(stop, plan):
    mine = Log()
    conn = None
    try:
        conn = connect()
        cur = cursor(conn)
        cur.execute(CLOCK)
        conn.commit()
    except psycopg.Error:
        if conn is not None:
            conn.close()
        return mine  # the server went away before this client started (crash test)
    for step in plan:
        if stop.is_set():
            break
        kind, subject, op = step[:3]
        effect = {}
        try:
            if kind == "consume":
                metric, amount = step[3:]
                effect = {metric: amount}
                cur.execute("SELECT allowed FROM quota.quota_try_consume(%s, %s, %s, NULL, %s)",
                            (subject, metric, amount, json.dumps({"op": op})))
                if not cur.fetchone()[0]:
                    effect = {}
            elif kind == "multi":
                kind = "consume"
                amounts = {"a": 1, "b": step[3]}
                effect = amounts
                cur.execute("SELECT bool_and(allowed) FROM quota.quota_try_consume(%s, %s::jsonb, NULL, %s)",
                            (subject, json.dumps(amounts), json.dumps({"op": op})))
                if not cur.fetchone()[0]:
                    effect = {}
            elif kind == "refund":
                cur.execute("SELECT used FROM quota.quota_refund(%s, 'a', %s, %s)", (subject, step[3], op))
            elif kind == "bonus":
                cur.execute("SELECT applied FROM quota.apply_bonus(%s, 'a', 'questionnaire', %s)", (subject, op))
            elif kind == "reset":
                cur.execute("SELECT quota.quota_reset(%s, 'b')", (subject,))
            elif kind == "reserve":
                held, settle, actual = step[3:]
                cur.execute("SELECT reservation FROM quota.quota_try_reserve(%s, 'b', %s)", (subject, held))
                rid = cur.fetchone()[0]
                if rid is not None and settle:
                    try:
                        cur.execute("SAVEPOINT settle")
                        cur.execute("SELECT used FROM quota.quota_commit(%s, %s, %s)",
                                    (rid, actual, json.dumps({"op": op})))
                        effect = {"b": actual}
                    except psycopg.Error as e:
                        if e.sqlstate != "QT429":
                            raise
                        # More than held did not fit: release instead.
                        cur.execute("ROLLBACK TO SAVEPOINT settle")
                        cur.execute("SELECT quota.quota_release(%s)", (rid,))
                elif rid is not None:
                    cur.execute("SELECT quota.quota_release(%s, 'generation failed')", (rid,))
            elif kind == "keyed":
                # An idempotent retry: the same key sent twice, the second time on a
                # fresh statement (as a client retrying after a timeout would).
                amount = step[3]
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
                cur.execute("SELECT allowed FROM quota.quota_try_consume(%s, 'b', 1, NULL, %s)",
                            (subject, json.dumps({"op": op})))
                conn.rollback()
                mine.aborted.add(op)
                with lock:
                    stats["aborts"] += 1
                    stats["operations"] += 1
                continue
        except psycopg.Error as e:
            try:
                conn.rollback()
            except psycopg.Error:
                pass
            if e.sqlstate in ("40001", "40P01"):
                continue
            if stop.is_set() or server_gone(e):
                break  # the server went away (crash test)
            violation(f"unexpected error {e.sqlstate} on {kind}: {error_text(e)}")
            continue
        try:
            conn.commit()
        except psycopg.Error:
            mine.in_doubt.add(op)
            break
        mine.committed[op] = (kind, subject, effect)
        if kind == "keyed" and effect:
            mine.keys[op] = mine.keys.get(op, 0) + 1
        with lock:
            stats["operations"] += 1
    try:
        conn.close()
    except psycopg.Error:
        pass
    return mine


def run_load(plans, stop=None):
    stop = stop or threading.Event()
    log = Log()
    logs = [Log() for _ in plans]
    threads = [threading.Thread(target=lambda i=i: logs[i].merge(client(stop, plans[i]))) for i in range(len(plans))]
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
    c = cursor(conn)
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
        conn.close()
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
    for subject, metric, ws, kind, amount in c:
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
        except psycopg.Error as e:
            violation(f"{label}: amcheck on {index}: {error_text(e)}")
    conn.close()


# Compaction under load, crash recovery ---------------------------------------------------

def compaction_under_load(plans):
    """Clients consume, refund and reserve while another session compacts the whole
    ledger again and again; the counters must stay provable from summaries + events."""
    threads, logs, stop, log = run_load(plans)
    conn = connect(autocommit=True)
    compacted = 0
    with cursor(conn) as c:
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


def crash_and_restart(plans, delay):
    # Enough work that the kill lands in the middle of it.
    threads, logs, stop, log = run_load(plans)
    time.sleep(delay)
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
    subprocess.run(as_pg + [f"{PGBIN}/pg_ctl", "-D", DATA, "-l", SERVER_LOG, "-w", "-t", "120", "start"],
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


def choices(t):
    """The values the property test draws from for an argument of type t."""
    return BAD_VALUES.get(t, [None]) + [GOOD.get(t)]


def signatures():
    """Every callable function of schema quota with arguments, as (name, [argument types]),
    sorted by name and types (not by oid) so that a seed picks the same calls every time."""
    conn = connect(autocommit=True)
    c = cursor(conn)
    c.execute("""SELECT p.proname, array(SELECT pg_catalog.format_type(t, NULL) FROM unnest(p.proargtypes) t)
                 FROM pg_proc p WHERE p.pronamespace = 'quota'::regnamespace AND p.prokind = 'f'
                   AND p.prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype)""")
    sigs = sorted((name, list(types)) for name, types in c.fetchall() if name != "maintenance" and types)
    conn.close()
    return sigs


def property_plan(seed, sigs, calls):
    """calls random argument tuples: (signature index, index into choices(t) per argument)."""
    rnd = random.Random(f"{seed}-property")
    plan = []
    for _ in range(calls):
        k = rnd.randrange(len(sigs))
        plan.append((k, tuple(rnd.randrange(len(choices(t))) for t in sigs[k][1])))
    print(f"   plan property: {calls} calls over {len(sigs)} functions, digest {digest((sigs, plan))}", flush=True)
    return plan


class LogBudgetExceeded(Exception):
    pass


def describe(values):
    return ", ".join("NULL" if v is None else repr(v if len(str(v)) <= 24 else f"{str(v)[:16]}... ({len(str(v))} chars)")
                     for v in values)


def bad_inputs(sigs, plan):
    conn = connect(autocommit=True)
    c = cursor(conn)
    c.execute(CLOCK)
    heavy = Counter()   # (function, SQLSTATE) -> bytes of server log, for calls that wrote >= 64 kB
    heaviest = {}       # (function, SQLSTATE) -> the arguments of the first such call

    def call(name, types, values):
        """One call; returns its SQLSTATE (None: it succeeded). Stops the test once the
        server log reaches the limit, and remembers which calls wrote the most of it."""
        args = ", ".join(f"%s::{t}" for t in types)
        before = log_size()
        try:
            c.execute(f"SELECT quota.{name}({args})", values)
            c.fetchall()
            code = None
        except psycopg.Error as e:
            if e.sqlstate is None:
                raise  # the connection, not the call, failed
            code = e.sqlstate
        # The backend writes its error report to the log before it answers.
        after = log_size()
        if after - before >= 64 * 1000:
            heavy[(name, code)] += after - before
            heaviest.setdefault((name, code), describe(values))
        if after >= LOG_LIMIT:
            raise LogBudgetExceeded(f"quota.{name}({describe(values)})")
        return code

    tried = 0
    outcomes = Counter()
    try:
        for name, types in sigs:
            for i, t in enumerate(types):
                for bad in BAD_VALUES.get(t, [None]):
                    values = [GOOD.get(x, None) for x in types]
                    values[i] = bad
                    code = call(name, types, values)
                    tried += 1
                    if code is not None and code not in ALLOWED_STATES:
                        violation(f"bad input: quota.{name} arg {i + 1} ({t}) = {str(bad)[:40]!r} gave SQLSTATE {code}")
        one_at_a_time = tried
        # Property test: a fixed number of random argument tuples, drawn from the seed.
        for k, picks in plan:
            name, types = sigs[k]
            values = [choices(t)[j] for t, j in zip(types, picks)]
            code = call(name, types, values)
            tried += 1
            outcomes[code or "ok"] += 1
            if code is not None and code not in ALLOWED_STATES:
                violation(f"property: quota.{name}{tuple(str(v)[:30] for v in values)} gave SQLSTATE {code}")
    except LogBudgetExceeded as e:
        one_at_a_time = min(tried, sum(len(BAD_VALUES.get(t, [None])) for _, types in sigs for t in types))
        violation(f"bad input: the server log reached {log_size() / MB:.1f} MB (limit {LOG_LIMIT / MB:.0f} MB) "
                  f"at call {tried + 1}, {e}; stopped")
    stats["bad_inputs"] = tried
    conn.close()
    top = ", ".join(f"{code}={count}" for code, count in outcomes.most_common())
    print(f"   {one_at_a_time} one-argument calls, {tried - one_at_a_time} property calls ({top}), "
          f"{len(violations)} violations", flush=True)
    if heavy:
        print(f"   calls whose error report wrote >= 64 kB to the server log ({sum(heavy.values()) / MB:.1f} MB in all):",
              flush=True)
        for (name, code), size in heavy.most_common(8):
            print(f"     quota.{name} -> {code or 'ok'}: {size / MB:.1f} MB, e.g. ({heaviest[(name, code)]})", flush=True)


def main():
    print(f"reliability: seed={SEED} (replay with QUOTA_SEED={SEED})", flush=True)
    if os.environ.get("QUOTA_PROPERTY_SECONDS"):
        print("   note: QUOTA_PROPERTY_SECONDS is ignored; the property test makes QUOTA_PROPERTY_CALLS "
              f"({PROPERTY_CALLS}) calls", flush=True)
    print(f"   {CLIENTS} clients x {OPS_PER_CLIENT} operations, {CRASHES} crashes, "
          f"{PROPERTY_CALLS} property calls, server log {SERVER_LOG}", flush=True)
    mark = 0  # the cluster was started for this run: its whole log is ours
    setup()
    # Every plan is drawn before anything runs, so the digests say what this seed replays.
    stress_plans = phase_plans(SEED, "stress", OPS_PER_CLIENT)
    # Enough work per client that each kill lands in the middle of it.
    crash_plans = [phase_plans(SEED, f"crash{k + 1}", OPS_PER_CLIENT * 4) for k in range(CRASHES)]
    crash_delays = [random.Random(f"{SEED}-crash{k + 1}-delay").uniform(0.5, 3.0) for k in range(CRASHES)]
    retention_plans = phase_plans(SEED, "retention", OPS_PER_CLIENT // 2)
    sigs = signatures()
    prop_plan = property_plan(SEED, sigs, PROPERTY_CALLS)

    print("-- stress", flush=True)
    threads, logs, stop, log = run_load(stress_plans)
    log = join_load(threads, logs, log)
    check_invariants(log, "stress")
    mark = scan_log(mark, "setup and stress")
    print(f"   {stats['operations']} operations, {stats['aborts']} aborts, {len(violations)} violations", flush=True)

    print("-- crash recovery", flush=True)
    total = log
    for k in range(CRASHES):
        before = stats["operations"]
        crashed = crash_and_restart(crash_plans[k], crash_delays[k])
        total.merge(crashed)
        check_invariants(total, f"crash {k + 1}")
        mark = scan_log(mark, f"crash {k + 1}")
        print(f"   crash {k + 1} after {crash_delays[k]:.2f} s survived after {stats['operations'] - before} "
              f"acknowledged operations ({len(crashed.in_doubt)} in doubt), {len(violations)} violations", flush=True)

    print("-- retention: compaction during load", flush=True)
    compacted = compaction_under_load(retention_plans)
    check_invariants(None, "retention", per_op=False)
    mark = scan_log(mark, "retention")
    print(f"   {compacted} events summarised while clients ran, {len(violations)} violations", flush=True)

    print("-- bad input", flush=True)
    started = time.monotonic()
    bad_inputs(sigs, prop_plan)
    mark = scan_log(mark, "bad input")
    print(f"   {time.monotonic() - started:.0f} s", flush=True)

    size = log_size()
    if size >= LOG_LIMIT:
        violation(f"server log is {size / MB:.1f} MB, over the {LOG_LIMIT / MB:.0f} MB limit")
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"reliability: operations={stats['operations']} aborts={stats['aborts']} "
          f"crashes_survived={stats['crashes_survived']} bad_inputs={stats['bad_inputs']} "
          f"invariant_violations={len(violations)} server_log={size / MB:.1f}MB "
          f"peak_rss={peak_rss * 1024 / MB:.0f}MB seed={SEED}", flush=True)
    sys.exit(1 if violations else 0)


if __name__ == "__main__":
    main()
