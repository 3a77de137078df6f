"""The reliability suite: randomized stress with an independent client log, crash
recovery (kill -9), compaction under load, pools drawn from in slices (under load, through
a kill -9), a partitioned enforced table, bound tenant roles, old-version databases updated
under load, the hot path against the general path (one seeded sequence of operations played
with quota.hot_path on and off, compared), and bad input. Prints the seed first:

  reliability: seed=N (replay with QUOTA_SEED=N)

then a digest of every client's operation plan, and ends with one summary line:

  reliability: operations=N aborts=N crashes_survived=N partition_txns=N tenant_ops=N
               cross_tenant_refused=N old_version_ops=N differential_ops=N pool_txns=N
               pool_retries=N bad_inputs=N invariant_violations=N server_log=X.XMB
               peak_rss=NMB seed=N

(the pools phase ends with a line of its own, "pools: transactions=N ..."). QUOTA_PHASES
(e.g. "pools" or "stress,crash") runs only the phases named; every plan is still drawn and
printed.

Everything random is drawn from the seed before it runs: each client's operations (per
phase: random.Random(f"{seed}-{phase}-{client}")), the admin's overrides and plan changes
(scheduled, cancelled, immediate) of the stress, crash and retention phases and its plan
and limit changes of the old-version phase, and when each happens (as a share of the
clients' operations done),
the kill delays, the pools phase's transactions and bonuses, the differential phase's
steps (QUOTA_DIFF_OPS of them), and the fixed number of property-test calls
(QUOTA_PROPERTY_CALLS).
QUOTA_SEED=N replays the same plans (the digests printed at the start are the same); only
the interleaving and the moment of each kill depend on the machine.

Values travel as server-side bound parameters (psycopg 3's default cursor), so no statement
text carries them and the server log never repeats a 1 MiB argument. The server log is
scanned as a stream, a chunk at a time, from a byte offset taken at the start of each
phase, and must stay under QUOTA_LOG_LIMIT_MB (100 MB).

Run by scripts/reliability.sh against its own cluster (QUOTA_HOST / QUOTA_PORT /
QUOTA_DATA / QUOTA_LOG). Exits non-zero on any violation.
"""
import datetime
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
# The phases, in the order they run; QUOTA_PHASES (names separated by commas or spaces) runs
# only those (every plan is still drawn and printed: the digests are the same).
ALL_PHASES = ["stress", "crash", "retention", "pools", "partition", "tenants", "old", "differential", "bad_input"]
PHASES = os.environ.get("QUOTA_PHASES", "").replace(",", " ").split() or ALL_PHASES
CLOCK_AT = "2026-11-23 12:00:00+00"
CLOCK = f"SET quota.clock_override = '{CLOCK_AT}'"
# metric: {period: limit}, all hard. "b" has two limits (limits v2): every consume, hold,
# reset and commit of b takes both its windows. The clock stands still within each of these
# phases (PHASE_CLOCK), so the month (300) binds before the day (400); both are checked.
# "r" has a day and a rate (STRESS_RATE, GCRA: its period is 'per 1 minute', its limit
# None here: a rate is checked by gcra_held, not replayed as a count).
STRESS_RATE = ("r", 20, 60, 4)   # metric, count, per (seconds), burst: T = 3 s, tau = 15 s
LIMITS = {"a": {"day": 40}, "b": {"day": 400, "month": 300}, "r": {"day": 60, "per 1 minute": None}}
# The plan an admin connection moves subjects to and back, now or at an instant ahead
# (quota.assign_plan effective_at, carry 'usage' or 'percent'), while the clients run. It
# differs from REL only in b's day (500, not 400), which never binds: b's month (300) caps
# every consume, and a 'percent' change scales the day by 500/400 or 400/500 (rounded
# down). A change back to REL always carries 'percent', so the day's used stays at most
# the month's under REL and at most 1.25 x it under REL2 (consumes, commits and resets
# move both windows alike), i.e. at most 375 under either plan. Every exact check below
# (the hard-limit replay against LIMITS included) holds whatever the interleaving of
# these changes. The admin also sets and removes overrides of a's day whose
# value is the plan's (max 40, or add 0): the limit in force never changes, and the hot
# path must step aside and come back around them without a lost or doubled unit.
REL2_DAY_B = 500
# Each phase of the shared database runs at its own instant, a minute after the one
# before (stress, crash 1..3, retention): the rate refills between phases, and a change
# scheduled during a phase falls due in the next one, where the first write stores it.
PHASE_CLOCK = {}
ADMIN_ACTIONS = int(os.environ.get("QUOTA_ADMIN_ACTIONS", "30"))  # per phase
HOT = [f"hot{i}" for i in range(3)]
COLD = [f"cold{i}" for i in range(200)]
MB = 1000 * 1000

violations = []
stats = {"operations": 0, "aborts": 0, "crashes_survived": 0, "bad_inputs": 0, "partition_txns": 0,
         "tenant_ops": 0, "cross_tenant_refused": 0, "old_version_ops": 0, "differential_ops": 0,
         "rate_limited": 0, "pool_txns": 0, "pool_retries": 0}
lock = threading.Lock()


def violation(msg):
    with lock:
        violations.append(msg)
    print(f"  VIOLATION: {msg}", flush=True)


def connect(db="reliability", autocommit=False, user="postgres"):
    # psycopg.Cursor binds on the server: "%s" becomes $1, $2... and the values go in the
    # Bind message, never into the statement text (a ClientCursor would interpolate them,
    # and every ERROR's STATEMENT line would repeat them in the server log).
    return psycopg.connect(host=HOST, port=PORT, user=user, dbname=db, connect_timeout=5,
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
    metric, count, per, burst = STRESS_RATE
    for plan in ("REL", "REL2"):
        for m, limits in LIMITS.items():
            for period, limit in limits.items():
                if period.startswith("per "):
                    c.execute("SELECT quota.set_rate_limit(%s, %s, %s, make_interval(secs => %s), %s)",
                              (plan, m, count, per, burst))
                else:
                    value = REL2_DAY_B if (plan, m, period) == ("REL2", "b", "day") else limit
                    c.execute("SELECT quota.set_limit(%s, %s, %s, %s)", (plan, m, period, value))
        c.execute("SELECT quota.set_bonus_rule(%s, 'a', 'questionnaire', 5)", (plan,))
        c.execute("SELECT quota.set_bonus_cap(%s, 3)", (plan,))
    c.execute("SELECT array_agg(period ORDER BY period) FROM quota.plan_limits WHERE plan = 'REL' AND metric = %s",
              (metric,))
    periods = c.fetchone()[0]
    if periods != sorted(LIMITS[metric]):
        violation(f"setup: {metric} has the periods {periods}, {sorted(LIMITS[metric])} expected")
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
            step = ("consume", subject, op, rnd.choice(["a", "b", "r"]), rnd.randint(1, 5))
        elif roll < 0.55:
            step = ("multi", subject, op, rnd.randint(1, 20), rnd.random() < 0.4)
        elif roll < 0.65:
            step = ("refund", subject, op, rnd.randint(1, 3), "r" if rnd.random() < 0.3 else "a")
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


def client(stop, plan, clock=CLOCK_AT, progress=None):
    mine = Log()
    conn = None
    try:
        conn = connect()
        cur = cursor(conn)
        cur.execute("SELECT set_config('quota.clock_override', %s, false)", (clock,))
        conn.commit()
    except psycopg.Error:
        if conn is not None:
            conn.close()
        return mine  # the server went away before this client started (crash test)
    for step in plan:
        if stop.is_set():
            break
        if progress is not None:
            with lock:
                progress[0] += 1
        kind, subject, op = step[:3]
        effect = {}
        try:
            if kind == "consume":
                metric, amount = step[3:]
                effect = {metric: amount}
                cur.execute("SELECT allowed, reason FROM quota.quota_try_consume(%s, %s, %s, NULL, %s)",
                            (subject, metric, amount, json.dumps({"op": op})))
                allowed, reason = cur.fetchone()
                if not allowed:
                    effect = {}
                    if reason == "rate_limited":
                        with lock:
                            stats["rate_limited"] += 1
            elif kind == "multi":
                kind = "consume"
                # With r now and then: a rate refusal refuses the whole call.
                amounts = {"a": 1, "b": step[3], **({"r": 1} if step[4] else {})}
                effect = amounts
                cur.execute("SELECT bool_and(allowed) FROM quota.quota_try_consume_many(%s, %s::jsonb, NULL, %s)",
                            (subject, json.dumps(amounts), json.dumps({"op": op})))
                if not cur.fetchone()[0]:
                    effect = {}
            elif kind == "refund":
                cur.execute("SELECT used FROM quota.quota_refund(%s, %s, %s, %s)", (subject, step[4], step[3], op))
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


def admin_plan(seed, phase):
    """The admin's overrides and plan changes during a phase of the shared database, each
    with the share of the clients' operations done before it runs (the order is fixed by
    the seed; when each lands among the clients' calls is the machine's)."""
    rnd = random.Random(f"{seed}-{phase}-admin")
    subjects = HOT + COLD[:5]
    actions = []
    for _ in range(ADMIN_ACTIONS):
        s, roll = rnd.choice(subjects), rnd.random()
        if roll < 0.30:
            # Same limit as the plan's: 'max' 40 or 'add' 0; sometimes expiring in a later phase.
            actions.append(("override", s, rnd.choice(["max", "add"]), rnd.choice([None, 30, 150])))
        elif roll < 0.45:
            actions.append(("unoverride", s, rnd.choice(["day", None])))
        elif roll < 0.80:
            plan, seconds, carry = rnd.choice(["REL", "REL2"]), rnd.randint(1, 59), rnd.choice(["usage", "percent"])
            actions.append(("schedule", s, plan, seconds, "percent" if plan == "REL" else carry))
        elif roll < 0.90:
            actions.append(("cancel", s))
        else:
            plan, carry = rnd.choice(["REL", "REL2"]), rnd.choice(["usage", "percent"])
            actions.append(("assign", s, plan, "percent" if plan == "REL" else carry))
    at = sorted(rnd.uniform(0.02, 0.95) for _ in actions)
    return list(zip(at, actions))


def stress_admin(clock, actions, progress, total, stop, done, report):
    """Apply the admin's actions at their share of the clients' operations, at the phase's
    clock. Deadlocks and serialization failures are retried; a server gone (crash test)
    ends it. report: {"applied": n, "failed": n}."""
    conn = None
    try:
        conn = connect(autocommit=True)
        c = cursor(conn)
        c.execute("SELECT set_config('quota.clock_override', %s, false)", (clock,))
    except psycopg.Error:
        return
    at_clock = datetime.datetime.fromisoformat(clock)
    for at, action in actions:
        while progress[0] < at * total and not done.is_set() and not stop.is_set():
            time.sleep(0.002)
        if stop.is_set():
            break
        kind, s = action[:2]
        for attempt in range(20):
            try:
                if kind == "override":
                    mode, expires = action[2:]
                    c.execute("SELECT quota.set_override(%s, 'a', 'day', %s, %s, %s::timestamptz)",
                              (s, 40 if mode == "max" else 0, mode,
                               None if expires is None else (at_clock + datetime.timedelta(seconds=expires)).isoformat()))
                elif kind == "unoverride":
                    c.execute("SELECT quota.remove_override(%s, 'a', %s)", (s, action[2]))
                elif kind == "schedule":
                    plan, seconds, carry = action[2:]
                    c.execute("SELECT quota.assign_plan(%s, %s, effective_at => %s::timestamptz, carry => %s)",
                              (s, plan, (at_clock + datetime.timedelta(seconds=seconds)).isoformat(), carry))
                elif kind == "cancel":
                    c.execute("SELECT quota.cancel_plan_change(%s)", (s,))
                else:
                    c.execute("SELECT quota.assign_plan(%s, %s, carry => %s)", action[1:])
                report["applied"] += 1
                break
            except psycopg.Error as e:
                if stop.is_set() or server_gone(e):
                    report["failed"] += 1
                    conn.close()
                    return
                if e.sqlstate not in ("40P01", "40001") or attempt == 19:
                    violation(f"admin {action}: {e.sqlstate}: {error_text(e)}")
                    break
    conn.close()


def run_load(plans, stop=None, clock=CLOCK_AT, admin=None):
    """The clients of `plans` at `clock`, and the admin's actions (admin_plan) beside them."""
    stop = stop or threading.Event()
    log = Log()
    logs = [Log() for _ in plans]
    progress = [0]
    done = threading.Event()
    def run(i):
        try:
            logs[i].merge(client(stop, plans[i], clock, progress))
        except Exception as e:  # noqa: BLE001  the harness broke: a violation, never a silent pass
            violation(f"load client {i} crashed: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(plans))]
    for t in threads:
        t.start()
    log.admin = {"applied": 0, "failed": 0}
    if admin:
        total = sum(len(p) for p in plans)

        def run_admin():
            try:
                stress_admin(clock, admin, progress, total, stop, done, log.admin)
            except Exception as e:  # noqa: BLE001
                violation(f"admin thread crashed: {type(e).__name__}: {e}")
        helper = threading.Thread(target=run_admin)
        helper.start()
        log.helper = (helper, done)
    return threads, logs, stop, log


def join_load(threads, logs, log):
    for t in threads:
        t.join()
    helper = getattr(log, "helper", None)
    if helper:
        helper[1].set()
        helper[0].join()
        log.helper = None
    for l in logs:
        log.merge(l)
    return log


# Invariants -----------------------------------------------------------------------------

def has_period(c):
    """Whether the database's tables carry the limit's period (0.7.0 on; before, one limit
    per metric and no period column)."""
    c.execute("""SELECT EXISTS (SELECT FROM pg_attribute WHERE attrelid = 'quota.counters'::regclass
                                  AND attname = 'period' AND NOT attisdropped)""")
    return c.fetchone()[0]


def has_used_change(c):
    """Whether quota.used_change(kind, amount) exists (0.7.0 on): each ledger kind's part
    of a window's used, carry_up and carry_down included."""
    c.execute("SELECT to_regprocedure('quota.used_change(text, bigint)') IS NOT NULL")
    return c.fetchone()[0]


USED_CHANGE_V1 = ("CASE kind WHEN 'consume' THEN amount WHEN 'commit' THEN amount "
                  "WHEN 'refund' THEN -amount WHEN 'reset' THEN -amount ELSE 0 END")


def counters_match_ledger(c, label):
    """Every window's counter equals its ledger: the events, plus what compaction
    summarised, per window (subject, metric, period, window_start): a day and a month
    window of one metric are two windows, even when both start at the same instant, and a
    rate limit's row ('-infinity') and each first-use window are windows too. Each row
    counts quota.used_change(kind, amount): consume and commit add, refund and reset
    subtract, a scheduled change's carry_up adds and carry_down subtracts. Computed here
    independently of the extension's own quota.ledger_check, which must agree. (A database
    still before 0.7.0 has no period and no carries: one limit per metric there.)"""
    key = "subject, metric, period, window_start" if has_period(c) else "subject, metric, window_start"
    change = "quota.used_change(kind, amount)" if has_used_change(c) else USED_CHANGE_V1
    c.execute(f"""
        SELECT count(*) FROM quota.counters k
        LEFT JOIN (
            SELECT {key}, sum({change}) AS used,
                   coalesce(sum(amount) FILTER (WHERE kind = 'bonus'), 0) AS bonus
            FROM (SELECT {key}, kind, amount FROM quota.usage_events
                  UNION ALL
                  SELECT {key}, kind, amount FROM quota.usage_summaries) flows
            GROUP BY {key}) l USING ({key})
        WHERE k.used <> coalesce(l.used, 0) OR k.bonus <> coalesce(l.bonus, 0)""")
    bad = c.fetchone()[0]
    if bad:
        violation(f"{label}: {bad} windows whose counter differs from the ledger")
        c.execute(f"""
            SELECT k.subject, k.metric, {'k.period' if 'period' in key else 'NULL'}, k.window_start::text, k.used,
                   k.bonus, (SELECT array_agg(kind || ' ' || amount ORDER BY id) FROM quota.usage_events e
                             WHERE ({', '.join('e.' + x for x in key.split(', '))}) = ({', '.join('k.' + x for x in key.split(', '))}))
            FROM quota.counters k
            LEFT JOIN (SELECT {key}, sum({change}) AS used, coalesce(sum(amount) FILTER (WHERE kind = 'bonus'), 0) AS bonus
                       FROM (SELECT {key}, kind, amount FROM quota.usage_events UNION ALL
                             SELECT {key}, kind, amount FROM quota.usage_summaries) flows GROUP BY {key}) l USING ({key})
            WHERE k.used <> coalesce(l.used, 0) OR k.bonus <> coalesce(l.bonus, 0) LIMIT 3""")
        for row in c.fetchall():
            print(f"     counter {row[:6]} ledger rows {short_repr(row[6])}", flush=True)
    c.execute("SELECT count(*) FROM quota.ledger_check")
    if c.fetchone()[0] != bad:
        violation(f"{label}: quota.ledger_check disagrees with the independent check")


def hard_limits_held(c, label, hard, subjects=None):
    """No hard limit was ever exceeded. hard: {(metric, period): limit}, the hard limits
    whose value stayed the same for every subject while the phase ran (a limit that a plan
    change or an override moved is left out by the caller: after a downgrade that keeps
    the usage, used above the new limit is right; rate limits are left out too, their
    used counts units admitted, not a window's total: gcra_held checks them). Replays each
    window (subject, metric, period, window_start) of those limits in id order (within a
    window rows are written under its row lock, so id order is commit order), each row
    counting quota.used_change(kind, amount): used never below 0 nor above the limit plus
    the window's bonus so far. Then the state now: no window of those limits holds more
    than its limit and bonus, holds included (used + reserved). subjects: only these
    (None: all)."""
    c.execute("""SELECT subject, metric, period, window_start::text, kind, quota.used_change(kind, amount), amount
                 FROM quota.usage_events
                 WHERE metric = ANY(%s) AND (%s::text[] IS NULL OR subject = ANY(%s))
                 ORDER BY subject, metric, period, window_start, id""",
              (sorted({m for m, _ in hard}), subjects, subjects))
    state = {}
    for subject, metric, period, ws, kind, change, amount in c:
        limit = hard.get((metric, period))
        if limit is None:
            continue
        used, bonus = state.get((subject, metric, period, ws), (0, 0))
        used += change
        if kind == "bonus":
            bonus += amount
        if used < 0 or used > limit + bonus:
            violation(f"{label}: {subject}/{metric} ({period}, window {ws}) reached {used} over limit {limit}+{bonus}")
        state[(subject, metric, period, ws)] = (used, bonus)
    metrics, periods = zip(*sorted(hard)) if hard else ((), ())
    c.execute("""
        SELECT k.subject, k.metric, k.period, k.window_start::text, k.used, k.reserved, k.bonus, h.limit_value
        FROM quota.counters k JOIN unnest(%s::text[], %s::text[], %s::bigint[]) h (metric, period, limit_value)
          ON h.metric = k.metric AND h.period = k.period
        WHERE (%s::text[] IS NULL OR k.subject = ANY(%s)) AND k.used + k.reserved > h.limit_value + k.bonus""",
              (list(metrics), list(periods), [hard[k] for k in zip(metrics, periods)], subjects, subjects))
    for subject, metric, period, ws, used, reserved, bonus, limit in c.fetchall():
        violation(f"{label}: {subject}/{metric} ({period}, window {ws}) has {used} used + {reserved} reserved over "
                  f"limit {limit}+{bonus}")


def gcra_held(c, label, rates, subjects=None):
    """Rate limits (GCRA) admitted no more than their rate. rates: {metric: (calendar
    period, [(count, per seconds, burst), ...])}, every rate the metric had while the
    phase ran. With T the emission interval (per / count, whole microseconds) and
    tau = T (burst + 1), a unit admitted at t moves the state (TAT) to at most t + tau and
    at least max(TAT, t) + T, so the units admitted at instants in [t1, t2] number at most
    (t2 - t1 + tau) / T: checked loosely with the smallest T and the largest tau of the
    rates given, for every pair of instants. A unit is paced by a consume (its ledger row
    in the rate's window) or a hold (its 'reserve' row in the metric's calendar period
    given; a commit or a release takes no more pace). Instants are the rows' created_at,
    the quota clock of the call. Also: every rate row's TAT (window_end) is at most tau
    after the last instant a unit was admitted (or a commit, which takes pace for what goes
    beyond its hold)."""
    for metric, (calendar, rs) in rates.items():
        t_min = min(per * 1_000_000 // count for count, per, _ in rs)
        tau = max(per * 1_000_000 // count * (burst + 1) for count, per, burst in rs)
        c.execute("""SELECT subject, (extract(epoch FROM created_at) * 1000000)::bigint AS t, sum(amount)
                     FROM quota.usage_events
                     WHERE metric = %s AND (%s::text[] IS NULL OR subject = ANY(%s))
                       AND ((period LIKE 'per %%' AND kind = 'consume') OR (period = %s AND kind = 'reserve'))
                     GROUP BY 1, 2 ORDER BY 1, 2""", (metric, subjects, subjects, calendar))
        paced = {}
        for subject, t, n in c.fetchall():
            paced.setdefault(subject, []).append((t, int(n)))
        for subject, points in paced.items():
            worst = None
            for i in range(len(points)):
                total = 0
                for j in range(i, len(points)):
                    total += points[j][1]
                    span = points[j][0] - points[i][0]
                    if total * t_min > span + tau and worst is None:
                        worst = (i, j, total, span)
            if worst:
                i, j, total, span = worst
                violation(f"{label}: {subject}/{metric} was admitted {total} units in {span / 1e6:.3f} s "
                          f"(from instant {points[i][0]} to {points[j][0]}); the rates allow at most "
                          f"{(span + tau) // t_min} (T >= {t_min} us, tau <= {tau} us)")
        c.execute("""SELECT k.subject, k.period, (extract(epoch FROM k.window_end) * 1000000)::bigint,
                            (SELECT max((extract(epoch FROM e.created_at) * 1000000)::bigint) FROM quota.usage_events e
                             WHERE e.subject = k.subject AND e.metric = k.metric
                               AND ((e.period = k.period AND e.kind = 'consume')
                                    -- a commit beyond its hold takes pace for the rest
                                    OR (e.period = %s AND e.kind = 'commit')))
                     FROM quota.counters k
                     WHERE k.metric = %s AND k.period LIKE 'per %%' AND (%s::text[] IS NULL OR k.subject = ANY(%s))""",
                  (calendar, metric, subjects, subjects))
        for subject, period, tat, last in c.fetchall():
            admitted = [t for t, _ in paced.get(subject, [])]
            latest = max([x for x in [last] + admitted if x is not None], default=None)
            if latest is not None and tat is not None and tat > latest + tau:
                violation(f"{label}: {subject}/{metric} ({period}) has its TAT {tat} more than tau ({tau} us) after "
                          f"the last admission at {latest}")


def new_kinds(c):
    """What the phases so far did with limits v2, for the report: the rate's admitted units,
    carry rows, subjects with an override or a pending change."""
    c.execute("""SELECT coalesce(sum(amount) FILTER (WHERE period LIKE 'per %%' AND kind = 'consume'), 0),
                        count(*) FILTER (WHERE kind IN ('carry_up', 'carry_down'))
                 FROM (SELECT period, kind, amount FROM quota.usage_events
                       UNION ALL SELECT period, kind, amount FROM quota.usage_summaries) e""")
    paced, carries = c.fetchone()
    c.execute("""SELECT (SELECT count(*) FROM quota.subject_overrides), count(*) FILTER (WHERE next_plan IS NOT NULL),
                        count(*) FILTER (WHERE plan = 'REL2') FROM quota.subjects""")
    overrides, pending, rel2 = c.fetchone()
    return (f"rate: {paced} units admitted, {stats['rate_limited']} consumes refused rate_limited; {carries} carry "
            f"rows; now {overrides} overrides, {pending} pending changes, {rel2} subjects on REL2")


def check_invariants(log, label, per_op=True):
    conn = connect(autocommit=True)
    c = cursor(conn)
    print(f"   {label}: {new_kinds(c)}", flush=True)
    # 1. Every window's counter equals its ledger.
    counters_match_ledger(c, label)
    if not per_op:
        conn.close()
        return
    # 2. The ledger agrees with the client log, op by op: an op counts once in each window
    #    of its metric (one ledger row per limit, each of the same amount).
    c.execute("""SELECT metadata->>'op', metric, period, amount FROM quota.usage_events
                 WHERE kind IN ('consume', 'commit') AND metadata ? 'op'""")
    rows = {}
    for op, metric, period, amount in c.fetchall():
        per = rows.setdefault(op, {}).setdefault(metric, {})
        if period in per:
            violation(f"{label}: op {op} counted twice on {metric} ({period})")
        per[period] = amount
    ledger = {}
    for op, metrics in rows.items():
        for metric, per in metrics.items():
            if set(per) != set(LIMITS.get(metric, {})) or len(set(per.values())) != 1:
                violation(f"{label}: op {op} is in the ledger of {metric} as {per}: one row of one amount for each "
                          f"of its limits {sorted(LIMITS.get(metric, {}))} expected")
            ledger.setdefault(op, {})[metric] = max(per.values())
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
    # 3. Idempotent retries counted exactly once (in each window of the metric).
    c.execute("""SELECT idempotency_key, metric, period, count(*) FROM quota.usage_events
                 WHERE kind = 'consume' AND idempotency_key IS NOT NULL GROUP BY 1, 2, 3 HAVING count(*) > 1""")
    for key, metric, period, n in c.fetchall():
        violation(f"{label}: idempotency key {key} counted {n} times on {metric} ({period})")
    # Holds: every window's reserved equals its held reservations (a hold has one row per
    # window of its metric, all with the hold's id).
    c.execute("""
        SELECT count(*) FROM quota.counters k
        WHERE k.reserved <> (SELECT coalesce(sum(amount), 0) FROM quota.reservations r
                             WHERE r.subject = k.subject AND r.metric = k.metric AND r.period = k.period
                               AND r.window_start = k.window_start AND r.status = 'held')""")
    bad = c.fetchone()[0]
    if bad:
        violation(f"{label}: {bad} windows whose reserved differs from their held reservations")
    c.execute("""
        SELECT count(*) FROM (SELECT id FROM quota.reservations GROUP BY id
                              HAVING count(*) <> count(DISTINCT period) OR count(DISTINCT status) > 1
                                  OR count(DISTINCT amount) > 1) x""")
    bad = c.fetchone()[0]
    if bad:
        violation(f"{label}: {bad} reservations whose rows (one per window) disagree on status or amount, "
                  "or repeat a period")
    # 4. No hard limit was ever exceeded (b's day against 400 under either plan: see
    #    REL2_DAY_B), and the rate never admitted more than GCRA allows.
    hard_limits_held(c, label, {(m, p): limit for m, limits in LIMITS.items() for p, limit in limits.items()
                                if limit is not None})
    metric, count, per, burst = STRESS_RATE
    gcra_held(c, label, {metric: ("day", [(count, per, burst)])})
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

def compaction_under_load(plans, clock, admin):
    """Clients consume, refund and reserve while another session compacts the whole
    ledger again and again; the counters must stay provable from summaries + events."""
    threads, logs, stop, log = run_load(plans, clock=clock, admin=admin)
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
    return compacted, log.admin


def postmaster_pid():
    with open(os.path.join(DATA, "postmaster.pid")) as f:
        return int(f.readline())


def crash_and_restart(plans, delay, clock, admin):
    # Enough work that the kill lands in the middle of it.
    threads, logs, stop, log = run_load(plans, clock=clock, admin=admin)
    time.sleep(delay)
    killed = kill_postmaster()
    stop.set()
    log = join_load(threads, logs, log)
    restart_after_kill(*killed)
    stats["crashes_survived"] += 1
    return log


def kill_postmaster():
    """kill -9 the postmaster and its backends; (pid, children) for restart_after_kill."""
    pid = postmaster_pid()
    children = [int(x) for x in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]
    os.kill(pid, signal.SIGKILL)
    for child in children:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pid, children


def restart_after_kill(pid, children):
    # Wait until every killed process is gone. In a container whose init does not reap,
    # they stay zombies, which PostgreSQL would take for a running postmaster: once all
    # are dead or zombies, the stale lock file is removed (as an operator would).
    for p in [pid] + children:
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


# Shared by the three phases below ---------------------------------------------------------

def new_op(rnd):
    return str(uuid.UUID(int=rnd.getrandbits(128), version=4))


def fresh_database(db, version=None):
    """Drop and create `db` with the extension (at `version`, else the default)."""
    admin = connect("postgres", autocommit=True)
    admin.execute(f'DROP DATABASE IF EXISTS "{db}"')
    admin.execute(f'CREATE DATABASE "{db}"')
    admin.close()
    conn = connect(db, autocommit=True)
    c = cursor(conn)
    if version:
        # A utility statement takes no bound parameter; versions are this file's constants.
        assert all(part.isdigit() for part in version.split(".")), version
        c.execute(f"CREATE EXTENSION quota_ext VERSION '{version}'")
    else:
        c.execute("CREATE EXTENSION quota_ext")
    c.execute(CLOCK)
    return conn, c


def run_threads(fns):
    """Run each function in its own thread; their results, in order. An exception in a
    thread is a violation (the harness itself broke)."""
    results = [None] * len(fns)

    def run(i):
        try:
            results[i] = fns[i]()
        except Exception as e:  # noqa: BLE001
            violation(f"client thread {i} crashed: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def detail_of(e):
    try:
        return json.loads(e.diag.message_detail or "{}")
    except ValueError:
        return {}


def refusal_justified(e, label):
    """A QT429 must say why: used + reserved + requested > limit + bonus (its JSON DETAIL)."""
    d = detail_of(e)
    try:
        if not d["used"] + d.get("reserved", 0) + d["requested"] > d["limit"] + d.get("bonus", 0):
            violation(f"{label}: QT429 although {d['used']} + {d.get('reserved', 0)} + {d['requested']} fits in "
                      f"{d['limit']}+{d.get('bonus', 0)}")
    except (KeyError, TypeError):
        violation(f"{label}: QT429 without a usable DETAIL ({e.diag.message_detail!r})")
    return d


def show_plans(phase, plans):
    per_client = " ".join(f"c{i}={digest(p)[:8]}" for i, p in enumerate(plans))
    print(f"   plan {phase}: {len(plans)} clients, digest {digest([digest(p) for p in plans])}: {per_client}", flush=True)


# Pools with slices --------------------------------------------------------------------------
# Three levels: 16 members ("pm0".."pm15"), 8 in each of two teams ("pteam0", "pteam1"), both
# teams in one organisation ("porg"). A member's consume must fit its own limits, its team's
# and the organisation's, all or nothing. Metric t is limited at every level (a team has a
# day and a month: two sliced windows in one consume), c at the member's and the team's (the
# organisation has no limit on c: that level is skipped). The pools' hard calendar windows
# are drawn from in slices (quota.pool_slices, 8 by default); some connections set it to 0
# (every consume locks the pool's counter rows and gathers the slices back) or to 3, and some
# transactions SET LOCAL it to 0. 16 connections run transactions of one call (or two on one
# member): quota_try_consume, quota_consume (QT429 caught by a savepoint),
# quota_try_consume_many (t and c), keyed consumes sent twice, and refunds of the
# connection's own member; 12% roll back on purpose after consuming. Deadlocks and
# serialization failures (40P01, 40001) retry the whole transaction, counted. An admin
# connection applies bonuses to the teams meanwhile. Three runs: the load (day D), a load
# killed by kill -9 of the postmaster (day D+1), and a load after the restart (day D+1, the
# windows the crash left); pool_check after each. The limits scale with QUOTA_CLIENTS x
# QUOTA_OPS so that every level refuses some of the time.

POOL_DB = "relpool"
POOL_CLIENTS = CLIENTS
POOL_OPS = OPS_PER_CLIENT          # transactions per connection in the load run
POOL_ORG = "porg"
POOL_TEAMS = {"pteam0": [f"pm{i}" for i in range(8)], "pteam1": [f"pm{i}" for i in range(8, 16)]}
POOL_MEMBERS = [m for ms in POOL_TEAMS.values() for m in ms]
POOL_TEAM_OF = {m: t for t, ms in POOL_TEAMS.items() for m in ms}
_POOL_UNIT = max(1, POOL_CLIENTS * POOL_OPS)
# plan: {(metric, period): limit}, all hard. The load asks for about 5 x _POOL_UNIT of t, half
# through each team: pteam1's day (PTEAM_B) fills first, then the organisation's binds
# before pteam0's day, and a busy member's own t, everyone's c, refuse too; on day D+1 what
# pteam1's month has left binds before its day.
POOL_LIMITS = {
    "PMEMBER": {("c", "day"): max(3, _POOL_UNIT // 100), ("t", "day"): max(10, _POOL_UNIT // 8)},
    "PTEAM_A": {("c", "day"): max(10, _POOL_UNIT // 16), ("t", "day"): max(30, _POOL_UNIT * 6 // 5),
                ("t", "month"): max(50, _POOL_UNIT * 2)},
    "PTEAM_B": {("c", "day"): max(10, _POOL_UNIT // 16), ("t", "day"): max(20, _POOL_UNIT * 7 // 10),
                ("t", "month"): max(30, _POOL_UNIT * 5 // 4)},
    "PORG": {("t", "day"): max(40, _POOL_UNIT * 7 // 4)},
}
POOL_PLAN_OF = {POOL_ORG: "PORG", "pteam0": "PTEAM_A", "pteam1": "PTEAM_B", **{m: "PMEMBER" for m in POOL_MEMBERS}}
POOL_BONUS = max(5, _POOL_UNIT // 20)  # the teams' 'topup' bonus on t
POOL_BONUSES = 4                       # applied per run, at seeded points of the load
# Each run at its own instant; the crash run and the run after it share day D+1's windows
# (and every run the month's).
POOL_CLOCK = {"load": "2026-11-23 12:00:00+00", "crash": "2026-11-24 12:00:00+00",
              "after": "2026-11-24 12:01:00+00"}
POOL_RUN_OPS = {"load": POOL_OPS, "crash": POOL_OPS * 4, "after": max(1, POOL_OPS // 4)}
POOL_RETRIES = 20
POOL_DEADLOCK_TIMEOUT = "50ms"


def pool_session_slices(i):
    """quota.pool_slices of connection i for the whole session (None: the default, 8)."""
    return 0 if i % 4 == 3 else 3 if i % 8 == 5 else None


def pool_plan(seed, run, i, txns):
    """Connection i's transactions in one run: (calls, 'commit' or 'rollback', SET LOCAL
    quota.pool_slices = 0 or not). A call is (kind, member, op id, ...). One call in nine
    transactions of ten; two calls on the same member in the others (a second statement
    that may take a pool's counter row while the first holds one of its slices: such
    transactions may deadlock, and are retried). 40% of the transactions are on the
    connection's own member (pm<i>), and only those refund: the client log then knows it
    never asks for more than the member used (see pool_client)."""
    rnd = random.Random(f"{seed}-pools-{run}-{i}")
    own = POOL_MEMBERS[i] if i < len(POOL_MEMBERS) else None
    plan = []
    for _ in range(txns):
        member = own if own is not None and rnd.random() < 0.4 else rnd.choice(POOL_MEMBERS)
        calls = []
        for _ in range(2 if rnd.random() < 0.1 else 1):
            op = new_op(rnd)
            amount = rnd.randint(20, 60) if rnd.random() < 0.05 else rnd.randint(1, 6)
            kind = rnd.random()
            if kind < 0.40:
                calls.append(("try", member, op, amount))
            elif kind < 0.62:
                calls.append(("consume", member, op, amount))
            elif kind < 0.77:
                calls.append(("many", member, op, amount))
            elif kind < 0.85:
                calls.append(("keyed", member, op, amount))
            elif member == own:
                calls.append(("refund", own, op, "c" if rnd.random() < 0.2 else "t", rnd.randint(1, 8)))
            else:
                calls.append(("try", member, op, amount))
        plan.append((calls, "rollback" if rnd.random() < 0.12 else "commit", rnd.random() < 0.05))
    return plan


def pool_admin_plan(seed, run):
    """The admin's bonuses in one run: (share of the transactions done, team, reference)."""
    rnd = random.Random(f"{seed}-pools-{run}-admin")
    teams = sorted(POOL_TEAMS)
    return sorted((rnd.uniform(0.05, 0.9), rnd.choice(teams), new_op(rnd)) for _ in range(POOL_BONUSES))


def pool_window_start(period, day):
    """The start (epoch seconds) of a calendar window of `period` containing `day` (UTC
    subjects)."""
    start = day if period == "day" else day.replace(day=1)
    return int(datetime.datetime(start.year, start.month, start.day, tzinfo=datetime.timezone.utc).timestamp())


def pool_levels(member):
    """The subjects a member's consume charges, with their level: itself, its team, the org."""
    return [(member, 0), (POOL_TEAM_OF[member], 1), (POOL_ORG, 2)]


def pool_rows(member, metric, amount, day):
    """The ledger rows one consume or refund of `amount` writes: one per window of every
    level that limits the metric, (subject, metric, period, window start, amount, via: the
    pool's member the call came through)."""
    rows = []
    levels = pool_levels(member)
    for subject, level in levels:
        # A pool's rows name its member the call came through (one level below).
        via = levels[level - 1][0] if level else None
        for (m, period) in sorted(POOL_LIMITS[POOL_PLAN_OF[subject]]):
            if m == metric:
                rows.append((subject, metric, period, pool_window_start(period, day), amount, via))
    return sorted(rows, key=repr)


class PoolLog:
    """One connection's log in one run. A transaction's effects: ("consume", op, member,
    {metric: amount}) for an allowed consume, ("refund", op, member, metric, amount)."""

    def __init__(self, i, run, day):
        self.i, self.run, self.day = i, run, day
        self.committed = []     # effects of each committed transaction
        self.in_doubt = []      # effects of each transaction whose COMMIT did not answer
        self.lost = set()       # op ids that must not be in the ledger: rolled back, refused
        self.counts = Counter()
        self.one_call = Counter()  # (SQLSTATE, kind) -> retries of one-call transactions
        self.resolved = False      # in-doubt transactions looked up in the ledger (pool_resolve)


def pool_refusal(log, label, member, d, via, counted=True):
    """Check a refusal's numbers (a decision row or a QT429 DETAIL, as a dict): the level
    that refused names its subject (the member, its team, the organisation; `member` when a
    pool refused), the request really did not fit (used + reserved + requested > limit +
    bonus), and nothing is held (this phase makes no reservation: reserved > 0 means the
    answer counted allowance handed to slices as held)."""
    level, subject = d.get("level"), d.get("subject")
    if counted:
        log.counts[f"refused_level{level}"] += 1
    expected = dict((lv, s) for s, lv in pool_levels(member))
    if level not in expected or subject != expected[level]:
        violation(f"{label}: a refusal of {member} names level {level} subject {subject}, expected one of {expected}")
    if level and via is not None and via != member:
        violation(f"{label}: a refusal by pool {subject} names member {via}, not {member}")
    try:
        used, reserved, requested, limit = d["used"], d.get("reserved") or 0, d["requested"], d["limit"]
    except KeyError:
        violation(f"{label}: a refusal without its numbers: {d}")
        return
    if used + reserved + requested <= limit:
        violation(f"{label}: {member} refused by {subject} (level {level}, {d.get('metric')} {d.get('period')}) "
                  f"although {used} used + {reserved} reserved + {requested} requested fits in {limit}")
    if reserved:
        # Counter and slices read at two instants (e.g. the counter before a gather, the
        # slices after it): allowance handed back counts as held, and what the slices
        # drew is not counted yet. A refusal on such numbers need not be right.
        log.counts["refused_phantom_hold"] += 1
        violation(f"{label}: {member} refused by {subject} (level {level}, {d.get('metric')} {d.get('period')}) "
                  f"with reserved {reserved}, though nothing is held in this phase: the numbers are not of one "
                  f"instant ({used} used + {requested} requested {'fits in' if used + requested <= limit else 'is over'} "
                  f"the limit {limit})")


DECISION_COLS = "allowed, subject, metric, period, used, limit_value, bonus, requested, reserved, level, reason"


def decision_dict(row):
    d = dict(zip([c.strip() for c in DECISION_COLS.split(",")], row))
    d["limit"] = (d["limit_value"] or 0) + (d["bonus"] or 0)
    return d


def pool_call(cur, call, log, label):
    """One call; its effect (None: refused, or a refund skipped)."""
    kind, member, op = call[:3]
    meta = json.dumps({"op": op})
    if kind in ("try", "keyed"):
        amount = call[3]
        key = op if kind == "keyed" else None
        answers = []
        for _ in range(2 if key else 1):
            cur.execute(f"SELECT {DECISION_COLS} FROM quota.quota_try_consume(%s, 't', %s, %s, %s)",
                        (member, amount, key, meta))
            answers.append(decision_dict(cur.fetchone()))
        # A key replays the first allowed answer; a refusal is not remembered, so a retry
        # after one is decided again (and may be allowed: a refund or a bonus in between).
        if answers[0]["allowed"] and not answers[-1]["allowed"]:
            violation(f"{label}: keyed consume {op} of {member} was allowed, then refused when sent again with "
                      f"its key (the first answer must be replayed): {answers[-1]}")
        for n, d in enumerate(answers):
            if not d["allowed"]:
                pool_refusal(log, label, member, d, None, counted=n == len(answers) - 1)
        if not answers[-1]["allowed"]:
            return None
        if not answers[0]["allowed"]:
            log.counts["keyed_allowed_on_retry"] += 1
        return ("consume", op, member, {"t": amount})
    if kind == "consume":
        amount = call[3]
        cur.execute("SAVEPOINT pool_call")
        try:
            cur.execute("SELECT allowed FROM quota.quota_consume(%s, 't', %s, NULL, %s)", (member, amount, meta))
            if not cur.fetchone()[0]:
                violation(f"{label}: quota_consume answered allowed = false instead of raising QT429")
        except psycopg.Error as e:
            if e.sqlstate != "QT429":
                raise
            cur.execute("ROLLBACK TO SAVEPOINT pool_call")
            d = detail_of(e)
            pool_refusal(log, label, member, d, d.get("member"))
            return None
        cur.execute("RELEASE SAVEPOINT pool_call")
        return ("consume", op, member, {"t": amount})
    if kind == "many":
        amounts = {"t": call[3], "c": 1}
        cur.execute(f"SELECT {DECISION_COLS} FROM quota.quota_try_consume_many(%s, %s::jsonb, NULL, %s)",
                    (member, json.dumps(amounts), meta))
        rows = [decision_dict(r) for r in cur.fetchall()]
        if all(r["allowed"] for r in rows):
            return ("consume", op, member, amounts)
        # Every metric that does not fit answers its own refusal; one that fits answers
        # other_metric_refused.
        refusing = [r for r in rows if not r["allowed"] and r["reason"] != "other_metric_refused"]
        if not refusing or any(r["allowed"] for r in rows):
            violation(f"{label}: a refused quota_try_consume_many answers {rows}")
        for n, r in enumerate(refusing):
            pool_refusal(log, label, member, r, None, counted=n == 0)
        return None
    raise AssertionError(kind)


def pool_client(i, plan, run, clock, day, budget, stop, progress):
    """Connection i's transactions. `budget` ({metric: n}) is what its own member has used
    of its committed consumes less its refunds, this day: a refund asks for at most that, so
    that every level gives back exactly the amount asked (no level's used is below it: a
    pool's used is the sum of its members')."""
    log = PoolLog(i, run, day)
    label = f"pools {run}"
    try:
        conn = connect(POOL_DB)
        cur = cursor(conn)
        cur.execute("SELECT set_config('quota.clock_override', %s, false)", (clock,))
        if pool_session_slices(i) is not None:
            cur.execute("SELECT set_config('quota.pool_slices', %s, false)", (str(pool_session_slices(i)),))
        conn.commit()
    except psycopg.Error:
        return log  # the server went away before this client started (the crash run)
    budget = dict(budget)
    for calls, end, local_off in plan:
        if stop.is_set():
            break
        with lock:
            progress[0] += 1
        log.counts["transactions"] += 1
        for attempt in range(POOL_RETRIES):
            effects, mine = [], dict(budget)
            try:
                if local_off:
                    cur.execute("SET LOCAL quota.pool_slices = 0")
                for call in calls:
                    log.counts["calls"] += 1
                    if call[0] == "refund":
                        _, member, op, metric, asked = call
                        amount = min(asked, mine.get(metric, 0))
                        if amount <= 0:
                            log.counts["refunds_skipped"] += 1
                            continue
                        cur.execute("SELECT used FROM quota.quota_refund(%s, %s, %s, %s)", (member, metric, amount, op))
                        cur.fetchone()
                        mine[metric] -= amount
                        effects.append(("refund", op, member, metric, amount))
                        continue
                    effect = pool_call(cur, call, log, label)
                    if effect is None:
                        log.lost.add(call[2])
                        log.counts["refused"] += 1
                        continue
                    if effect[2] == POOL_MEMBERS[i % len(POOL_MEMBERS)] and i < len(POOL_MEMBERS):
                        for metric, amount in effect[3].items():
                            mine[metric] = mine.get(metric, 0) + amount
                    effects.append(effect)
                if end == "rollback":
                    conn.rollback()
                    log.lost |= {call[2] for call in calls}
                    log.counts["aborts"] += 1
                    break
            except psycopg.Error as e:
                try:
                    conn.rollback()
                except psycopg.Error:
                    pass
                log.lost |= {call[2] for call in calls}
                if e.sqlstate in ("40001", "40P01"):
                    log.counts[f"retry_{e.sqlstate}"] += 1
                    if len(calls) == 1:
                        # One statement takes its locks in the documented order: such a
                        # deadlock is a cycle with a two-call transaction, or a slip in the order.
                        log.counts[f"retry_{e.sqlstate}_one_call"] += 1
                        log.one_call[(e.sqlstate, calls[0][0])] += 1
                    time.sleep(0.001 * (attempt + 1))
                    continue
                if stop.is_set() or server_gone(e):
                    return finish_pool_client(conn, log)
                violation(f"{label}: unexpected error {e.sqlstate} in a transaction of {[c[0] for c in calls]}: "
                          f"{error_text(e)}")
                break
            try:
                conn.commit()
            except psycopg.Error as e:
                if stop.is_set() or server_gone(e):
                    log.in_doubt.append(effects)
                    return finish_pool_client(conn, log)
                violation(f"{label}: COMMIT failed with {e.sqlstate}: {error_text(e)}")
                log.lost |= {call[2] for call in calls}
                break
            log.committed.append(effects)
            log.lost -= {e[1] for e in effects}
            budget = mine
            log.counts["committed"] += 1
            break
        else:
            log.counts["gave_up"] += 1
    return finish_pool_client(conn, log)


def finish_pool_client(conn, log):
    try:
        conn.close()
    except psycopg.Error:
        pass
    return log


def pool_setup():
    conn, c = fresh_database(POOL_DB)
    for plan, limits in POOL_LIMITS.items():
        for (metric, period), value in sorted(limits.items()):
            c.execute("SELECT quota.set_limit(%s, %s, %s, %s)", (plan, metric, period, value))
    for plan in ("PTEAM_A", "PTEAM_B"):
        c.execute("SELECT quota.set_bonus_rule(%s, 't', 'topup', %s)", (plan, POOL_BONUS))
    c.execute("SELECT quota.assign_plan(%s, 'PORG')", (POOL_ORG,))
    for team, members in POOL_TEAMS.items():
        c.execute("SELECT quota.assign_plan(%s, %s)", (team, POOL_PLAN_OF[team]))
        c.execute("SELECT quota.set_pool(%s, %s)", (team, POOL_ORG))
        for m in members:
            c.execute("SELECT quota.assign_plan(%s, 'PMEMBER')", (m,))
            c.execute("SELECT quota.set_pool(%s, %s)", (m, team))
    c.execute("SELECT current_setting('quota.pool_slices')")
    slices = c.fetchone()[0]
    if slices != "8":
        violation(f"pools: quota.pool_slices is {slices}, the default 8 expected")
    # Deadlocks are retried, and counted: found at 50 ms instead of the default 1 s, so that
    # they cost the run little time (a deadlock is found whatever the timeout; the timeout
    # is only when the check runs).
    c.execute(f'ALTER DATABASE "{POOL_DB}" SET deadlock_timeout = {POOL_DEADLOCK_TIMEOUT!r}')
    conn.close()


def pool_bonuses(bonuses, clock, progress, total, stop, done, report):
    """Apply the teams' bonuses at their share of the transactions done."""
    try:
        conn = connect(POOL_DB, autocommit=True)
        c = cursor(conn)
        c.execute("SELECT set_config('quota.clock_override', %s, false)", (clock,))
    except psycopg.Error:
        return
    for at, team, reference in bonuses:
        while progress[0] < at * total and not done.is_set() and not stop.is_set():
            time.sleep(0.002)
        if stop.is_set():
            break
        for attempt in range(POOL_RETRIES):
            try:
                c.execute("SELECT applied, reason FROM quota.apply_bonus(%s, 't', 'topup', %s)", (team, reference))
                applied, reason = c.fetchone()
                if not applied:
                    violation(f"pools: the bonus {reference} of {team} was not applied ({reason})")
                report["bonuses"] += 1
                break
            except psycopg.Error as e:
                if stop.is_set() or server_gone(e):
                    conn.close()
                    return
                if e.sqlstate not in ("40P01", "40001") or attempt == POOL_RETRIES - 1:
                    violation(f"pools: bonus of {team}: {e.sqlstate}: {error_text(e)}")
                    break
                report["retries"] += 1
    conn.close()


def pool_run(run, plans, bonuses, budgets, kill_after=None):
    """One run of the clients (and the admin's bonuses); with kill_after (seconds), kill -9
    the postmaster then, and restart it once every client has given up."""
    clock = POOL_CLOCK[run]
    day = datetime.datetime.fromisoformat(clock).date()
    stop, done = threading.Event(), threading.Event()
    progress = [0]
    total = sum(len(p) for p in plans)
    logs = [None] * len(plans)
    report = {"bonuses": 0, "retries": 0}

    def client_thread(i):
        try:
            logs[i] = pool_client(i, plans[i], run, clock, day, budgets.get(i, {}), stop, progress)
        except Exception as e:  # noqa: BLE001  the harness broke: a violation, never a silent pass
            violation(f"pools {run}: client {i} crashed: {type(e).__name__}: {e}")

    def admin_thread():
        try:
            pool_bonuses(bonuses, clock, progress, total, stop, done, report)
        except Exception as e:  # noqa: BLE001
            violation(f"pools {run}: admin thread crashed: {type(e).__name__}: {e}")

    started = time.monotonic()
    threads = [threading.Thread(target=client_thread, args=(i,)) for i in range(len(plans))]
    helper = threading.Thread(target=admin_thread)
    for t in threads + [helper]:
        t.start()
    killed = None
    if kill_after is not None:
        time.sleep(kill_after)
        killed = kill_postmaster()
        stop.set()
    for t in threads:
        t.join()
    done.set()
    helper.join()
    if killed:
        restart_after_kill(*killed)
    elapsed = time.monotonic() - started
    return [l for l in logs if l is not None], report, elapsed


def pool_resolve(c, logs, label):
    """The transactions that committed: those acknowledged, and those in doubt (COMMIT
    unanswered, the crash) that the ledger holds. An in-doubt transaction is all in the
    ledger or not at all."""
    c.execute("""SELECT coalesce(metadata->>'op', idempotency_key) FROM quota.usage_events
                 WHERE kind IN ('consume', 'refund')""")
    present = {op for (op,) in c.fetchall()}
    resolved = []
    for log in logs:
        for effects in log.committed:
            resolved.append((log, effects))
        for effects in log.in_doubt:
            there = [e[1] in present for e in effects]
            if all(there):
                resolved.append((log, effects))
                if not log.resolved:
                    log.counts["in_doubt_committed"] += 1
            elif any(there):
                violation(f"{label}: a transaction whose COMMIT was in doubt is in the ledger in part: "
                          f"{sum(there)} of its {len(there)} calls ({[e[:3] for e in effects]})")
            else:
                log.lost |= {e[1] for e in effects}
        log.resolved = True
    return resolved


def pool_budgets(resolved, run):
    """Each connection's budget (see pool_client) after the transactions of `run`."""
    budgets = {}
    for log, effects in resolved:
        if log.run != run or log.i >= len(POOL_MEMBERS):
            continue
        own = POOL_MEMBERS[log.i]
        b = budgets.setdefault(log.i, {})
        for e in effects:
            if e[0] == "consume" and e[2] == own:
                for metric, amount in e[3].items():
                    b[metric] = b.get(metric, 0) + amount
            elif e[0] == "refund":
                b[e[3]] = b.get(e[3], 0) - e[4]
    return budgets


def pool_check(all_logs, label):
    """The invariants of the pools, after a run (all runs so far: all_logs)."""
    conn = connect(POOL_DB, autocommit=True)
    c = cursor(conn)
    resolved = pool_resolve(c, all_logs, label)
    subjects = [POOL_ORG] + sorted(POOL_TEAMS) + POOL_MEMBERS
    # 1. Every acknowledged (or in-doubt and committed) call is in the ledger exactly as the
    #    client saw it, at every level: one row per window of each level limiting the
    #    metric, the pools' naming the member (via); nothing else is.
    c.execute("""SELECT kind, coalesce(metadata->>'op', idempotency_key), subject, metric, period,
                        extract(epoch FROM window_start)::bigint, amount, via
                 FROM quota.usage_events WHERE kind IN ('consume', 'refund')""")
    ledger = {}
    for kind, op, subject, metric, period, ws, amount, via in c.fetchall():
        ledger.setdefault((kind, op), []).append((subject, metric, period, ws, amount, via))
    expected_rows = {}
    expected_used = Counter()
    for log, effects in resolved:
        for e in effects:
            if e[0] == "consume":
                rows = [r for metric, amount in sorted(e[3].items()) for r in pool_rows(e[2], metric, amount, log.day)]
                sign = 1
            else:
                rows = pool_rows(e[2], e[3], e[4], log.day)
                sign = -1
            expected_rows[(e[0], e[1])] = sorted(rows, key=repr)
            for subject, metric, period, ws, amount, _via in rows:
                expected_used[(subject, metric, period, ws)] += sign * amount
    bad = 0
    for key, rows in expected_rows.items():
        got = sorted(ledger.get(key, []), key=repr)
        if got != rows:
            bad += 1
            if bad <= 5:
                violation(f"{label}: acknowledged {key[0]} {key[1]} has the ledger rows {got}, expected {rows}")
    if bad > 5:
        violation(f"{label}: {bad} acknowledged calls in all differ from the ledger")
    lost = set().union(*(log.lost for log in all_logs)) if all_logs else set()
    strays = [key for key in ledger if key not in expected_rows]
    if strays:
        refused = sum(1 for _, op in strays if op in lost)
        violation(f"{label}: {len(strays)} ledger entries of calls not acknowledged ({refused} of them refused or "
                  f"rolled back), e.g. {strays[:3]}")
    # 2. Every window (pools' and members'): used, counting the slices, equals what the
    #    client log says, and equals the ledger (independently, and quota.ledger_check).
    c.execute("""SELECT k.subject, k.metric, k.period, extract(epoch FROM k.window_start)::bigint, k.used, k.reserved,
                        k.bonus, coalesce(sum(s.used), 0)::bigint, coalesce(sum(s.granted), 0)::bigint,
                        count(s.slice), coalesce(bool_or(s.used < 0 OR s.used > s.granted), false),
                        (SELECT coalesce(sum(r.amount), 0) FROM quota.reservations r
                         WHERE (r.subject, r.metric, r.period, r.window_start, r.status)
                             = (k.subject, k.metric, k.period, k.window_start, 'held'))
                 FROM quota.counters k
                 LEFT JOIN quota.pool_slices s USING (subject, metric, period, window_start)
                 GROUP BY k.subject, k.metric, k.period, k.window_start""")
    windows = {}
    for subject, metric, period, ws, used, reserved, bonus, s_used, s_granted, n, bad_slice, held in c.fetchall():
        key = (subject, metric, period, ws)
        windows[key] = used + s_used
        limit = POOL_LIMITS.get(POOL_PLAN_OF.get(subject), {}).get((metric, period))
        where = f"{subject}/{metric} ({period}, window {datetime.datetime.fromtimestamp(ws, datetime.timezone.utc):%Y-%m-%d})"
        numbers = f"counter used {used} reserved {reserved} bonus {bonus}; {n} slices used {s_used} granted {s_granted}"
        if limit is None:
            violation(f"{label}: a window no limit explains: {where}: {numbers}")
            continue
        if used + s_used > limit + bonus or used + reserved > limit + bonus:
            violation(f"{label}: {where} is over its limit {limit}+{bonus}: {numbers}")
        if bad_slice:
            violation(f"{label}: {where} has a slice whose used is below 0 or above its granted: {numbers}")
        if s_granted > reserved or reserved - s_granted != held:
            violation(f"{label}: {where}: the slices' granted and the held reservations ({held}) do not add up to "
                      f"the counter's reserved: {numbers}")
        if n and subject in POOL_MEMBERS:
            violation(f"{label}: {where}: a member's window has slices: {numbers}")
        if used + s_used != expected_used.get(key, 0):
            violation(f"{label}: {where} used {used + s_used}, the clients' log says {expected_used.get(key, 0)}: {numbers}")
    for key, n in expected_used.items():
        if key not in windows and n:
            violation(f"{label}: {key} has no counter, the clients' log says {n} used")
    c.execute("SELECT subject, metric, period, extract(epoch FROM window_start)::bigint, used FROM quota.window_usage")
    for subject, metric, period, ws, used in c.fetchall():
        if windows.get((subject, metric, period, ws)) != used:
            violation(f"{label}: quota.window_usage says {subject}/{metric} ({period}) used {used}, counters and "
                      f"slices {windows.get((subject, metric, period, ws))}")
    c.execute("""SELECT k.subject, k.metric, k.period, k.window_start::text, k.used + coalesce(s.used, 0), l.used,
                        k.bonus, l.bonus
                 FROM quota.counters k
                 LEFT JOIN (SELECT subject, metric, period, window_start, sum(used) AS used FROM quota.pool_slices
                            GROUP BY 1, 2, 3, 4) s USING (subject, metric, period, window_start)
                 LEFT JOIN (SELECT subject, metric, period, window_start, sum(quota.used_change(kind, amount)) AS used,
                                   sum(amount) FILTER (WHERE kind = 'bonus') AS bonus
                            FROM (SELECT subject, metric, period, window_start, kind, amount FROM quota.usage_events
                                  UNION ALL SELECT subject, metric, period, window_start, kind, amount
                                  FROM quota.usage_summaries) e GROUP BY 1, 2, 3, 4) l
                   USING (subject, metric, period, window_start)
                 WHERE k.used + coalesce(s.used, 0) <> coalesce(l.used, 0) OR k.bonus <> coalesce(l.bonus, 0)""")
    for row in c.fetchall():
        violation(f"{label}: {row[0]}/{row[1]} ({row[2]}, window {row[3]}) counts used {row[4]} bonus {row[6]}, "
                  f"its ledger {row[5]} and {row[7]}")
    c.execute("SELECT subject, metric, period, window_start::text, counter_used, ledger_used FROM quota.ledger_check")
    for row in c.fetchall():
        violation(f"{label}: quota.ledger_check: {row}")
    # 3. No hard limit was ever exceeded, replaying the ledger in id order (rows of a pool
    #    window drawn from slices are not written under one row lock, but consumes commute
    #    and a refund or bonus gathers the slices back, waiting for every draw: a prefix in
    #    id order never counts more than what was committed at some instant), level by level.
    for plan, limits in POOL_LIMITS.items():
        hard_limits_held(c, label, limits, [s for s in subjects if POOL_PLAN_OF[s] == plan])
    # 4. Membership unchanged, and the indexes clean.
    c.execute("SELECT subject, pool FROM quota.subjects WHERE subject = ANY(%s)", (subjects,))
    pools = dict(c.fetchall())
    want = {POOL_ORG: None, **{t: POOL_ORG for t in POOL_TEAMS}, **POOL_TEAM_OF}
    if pools != want:
        violation(f"{label}: the memberships changed: {sorted(set(pools.items()) ^ set(want.items()))}")
    c.execute("""SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                 JOIN pg_am a ON a.oid = c.relam
                 WHERE c.relnamespace = 'quota'::regnamespace AND a.amname = 'btree'""")
    for (index,) in c.fetchall():
        try:
            c.execute("SELECT bt_index_check(%s::regclass, true)", (f"quota.{index}",))
        except psycopg.Error as e:
            violation(f"{label}: amcheck on {index}: {error_text(e)}")
    # What the slices hold now, for the report.
    c.execute("""SELECT count(*), count(*) FILTER (WHERE granted > 0), coalesce(sum(granted), 0), coalesce(sum(used), 0)
                 FROM quota.pool_slices""")
    slices = c.fetchone()
    c.execute("""SELECT subject, metric, period, extract(epoch FROM window_start)::bigint, used, bonus
                 FROM quota.window_usage WHERE subject = ANY(%s) ORDER BY subject, metric, period""",
              ([POOL_ORG] + sorted(POOL_TEAMS),))
    pools_now = c.fetchall()
    conn.close()
    return resolved, slices, pools_now


def pools_phase(plans, admin, crash_delay):
    """Load, crash, load after the restart; the invariants after each (pool_check)."""
    started = time.monotonic()
    pool_setup()
    conn = connect(POOL_DB, autocommit=True)
    cursor(conn).execute("CREATE EXTENSION amcheck")
    conn.close()
    all_logs, budgets, totals, retries = [], {}, Counter(), 0
    for run in ("load", "crash", "after"):
        kill = crash_delay if run == "crash" else None
        logs, report, elapsed = pool_run(run, plans[run], admin[run], budgets, kill_after=kill)
        if kill is not None:
            stats["crashes_survived"] += 1
        all_logs += logs
        resolved, slices, pools_now = pool_check(all_logs, f"pools {run}")
        budgets = pool_budgets(resolved, run) if run == "crash" else {}
        counts, one_call = Counter(), Counter()
        for log in logs:
            counts.update(log.counts)
            one_call.update({kind: n for (_, kind), n in log.one_call.items()})
        totals.update(counts)
        retries += report["retries"]
        in_doubt = sum(len(log.in_doubt) for log in logs)
        refused = " ".join(f"{name} {counts[f'refused_level{lv}']}"
                           for lv, name in enumerate(["member", "team", "org"]))
        print(f"   {run}{f' (kill -9 after {kill:.2f} s)' if kill is not None else ''}: {counts['transactions']} "
              f"transactions ({counts['committed']} committed, {counts['aborts']} rolled back on purpose, "
              f"{in_doubt} in doubt of which {counts['in_doubt_committed']} committed, {counts['gave_up']} given up), "
              f"{counts['calls']} calls: {counts['refused']} refused ({refused}), "
              f"{counts['refunds_skipped']} refunds skipped; retried 40P01 {counts['retry_40P01']} "
              f"({counts['retry_40P01_one_call']} in one-call transactions"
              f"{': ' + ', '.join(f'{k} {n}' for k, n in sorted(one_call.items())) if one_call else ''}), "
              f"40001 {counts['retry_40001']}; "
              f"{report['bonuses']} bonuses; slices now: {slices[0]} rows, "
              f"{slices[1]} holding {slices[2]} granted, {slices[3]} used; {elapsed:.1f} s, "
              f"{len(violations)} violations", flush=True)
        day = datetime.datetime.fromisoformat(POOL_CLOCK[run]).date()
        print("     pool windows now: " + ", ".join(
            f"{s}/{m} {p} {u} of {POOL_LIMITS[POOL_PLAN_OF[s]][(m, p)]}+{b}" for s, m, p, ws, u, b in pools_now
            if ws == pool_window_start(p, day)), flush=True)
    stats["pool_txns"] = totals["transactions"]
    stats["pool_retries"] = totals["retry_40P01"] + totals["retry_40001"] + retries
    print(f"pools: transactions={totals['transactions']} committed={totals['committed']} aborts={totals['aborts']} "
          f"calls={totals['calls']} refused={totals['refused']} refused_by_pool="
          f"{totals['refused_level1'] + totals['refused_level2']} retries={stats['pool_retries']} "
          f"one_call_deadlocks={totals['retry_40P01_one_call']} "
          f"in_doubt_committed={totals['in_doubt_committed']} crashes_survived=1 "
          f"invariant_violations={len(violations)} seconds={time.monotonic() - started:.0f} seed={SEED}", flush=True)


# Partitioned enforced table ---------------------------------------------------------------
# A table partitioned by day, with a hard daily quota of rows per user that refunds on
# DELETE. Clients insert (through the root and straight into partitions, one or several
# rows per statement), move rows between partitions, change primary keys, change a row's
# user, delete, and roll back on purpose (whole transactions, or their last statement
# through a savepoint). Every row's body is a tag drawn from the seed, so the client log
# follows rows whatever their key. Moves neither charge nor refund; a delete refunds the
# row's inserting user exactly once.

PART_DB = "relpart"
# One limit (per day) on the metric: the checks below add up a subject's counters and
# ledger rows over its windows, which a second limit of the metric would count twice.
PART_METRIC = "rows"
PART_LIMIT = 6
PART_SUBJECTS = [f"pu{i}" for i in range(6)]
PART_CLIENTS = 8
PART_TXNS = OPS_PER_CLIENT
# name, [from, to) (the last one is the DEFAULT partition; [from, to) is where rows are
# put into it), days a plan draws from.
PARTITIONS = [
    ("msgs_w1", "2026-11-01", "2026-11-08", ["2026-11-02", "2026-11-06"]),
    ("msgs_w2", "2026-11-08", "2026-11-15", ["2026-11-09", "2026-11-14"]),
    ("msgs_w3", "2026-11-15", "2026-11-22", ["2026-11-16", "2026-11-21"]),
    ("msgs_rest", "2026-11-22", "2027-01-01", ["2026-11-25", "2026-12-31"]),
]
# Each client's session DateStyle (client i gets number i modulo their count): the row's
# primary key holds a date, and an application's DateStyle is its own business.
PART_DATESTYLES = ["ISO, MDY", "SQL, DMY", "German", "Postgres, MDY"]
PICK = "(SELECT id, day FROM msgs WHERE user_id = %s ORDER BY md5(body || %s) LIMIT 1)"


def partition_setup():
    conn, c = fresh_database(PART_DB)
    c.execute("SELECT quota.set_limit('PART', %s, 'day', %s)", (PART_METRIC, PART_LIMIT))
    for s in PART_SUBJECTS:
        c.execute("SELECT quota.assign_plan(%s, 'PART')", (s,))
    c.execute("""CREATE TABLE msgs (id bigserial, user_id text NOT NULL, day date NOT NULL, body text,
                 PRIMARY KEY (id, day)) PARTITION BY RANGE (day)""")
    for name, lo, hi, _days in PARTITIONS[:-1]:
        c.execute(f"CREATE TABLE {name} PARTITION OF msgs FOR VALUES FROM ('{lo}') TO ('{hi}')")
    c.execute(f"CREATE TABLE {PARTITIONS[-1][0]} PARTITION OF msgs DEFAULT")
    c.execute("SELECT quota.enforce_on_insert('msgs', subject_column => 'user_id', metric => %s, refund_on_delete => true)",
              (PART_METRIC,))
    conn.close()


def partition_plan(seed, i, txns):
    """Client i's transactions: ([statement, ...], end), end in commit, rollback,
    savepoint (the last statement runs in a savepoint that is rolled back)."""
    rnd = random.Random(f"{seed}-partition-{i}")
    day = lambda: rnd.choice(rnd.choice(PARTITIONS)[3])  # noqa: E731
    plan = []
    for _ in range(txns):
        stmts = []
        for _ in range(rnd.choice([1, 1, 1, 2, 2, 3])):
            s = rnd.choice(PART_SUBJECTS)
            salt = f"{rnd.getrandbits(32):08x}"
            roll = rnd.random()
            if roll < 0.22:
                stmts.append(("insert", s, [(day(), new_op(rnd)) for _ in range(rnd.choice([1, 1, 1, 2, 3]))]))
            elif roll < 0.30:
                part = rnd.choice(PARTITIONS)
                stmts.append(("insert_into", part[0], s, rnd.choice(part[3]), new_op(rnd)))
            elif roll < 0.42:
                stmts.append(("move", s, salt, day()))
            elif roll < 0.47:
                src, dst = rnd.sample(PARTITIONS, 2)
                stmts.append(("move_all", s, src[0], rnd.choice(dst[3])))
            elif roll < 0.55:
                stmts.append(("rekey", s, salt, day() if rnd.random() < 0.5 else None))
            elif roll < 0.58:
                part = rnd.choice(PARTITIONS)
                stmts.append(("rekey_in", part[0], s, salt))
            elif roll < 0.62:
                stmts.append(("reassign", s, salt, rnd.choice(PART_SUBJECTS)))
            elif roll < 0.87:
                stmts.append(("delete", s, salt))
            else:
                part = rnd.choice(PARTITIONS)
                stmts.append(("delete_from", part[0], s, salt))
        end = rnd.random()
        plan.append((stmts, "rollback" if end < 0.10 else "savepoint" if end < 0.18 else "commit"))
    return plan


def partition_statement(cur, stmt):
    """Run one statement; ({tag: user} inserted, [tags deleted], rows updated)."""
    kind = stmt[0]
    if kind == "insert":
        _, s, rows = stmt
        cur.execute("INSERT INTO msgs (user_id, day, body) VALUES " + ", ".join(["(%s, %s::date, %s)"] * len(rows))
                    + " RETURNING body", [v for day, tag in rows for v in (s, day, tag)])
        return {b: s for (b,) in cur.fetchall()}, [], 0
    if kind == "insert_into":
        _, part, s, day, tag = stmt
        cur.execute(f"INSERT INTO {part} (id, user_id, day, body) VALUES (nextval('msgs_id_seq'), %s, %s::date, %s) "
                    "RETURNING body", (s, day, tag))
        return {b: s for (b,) in cur.fetchall()}, [], 0
    if kind == "move":
        _, s, salt, day = stmt
        cur.execute(f"UPDATE msgs SET day = %s::date WHERE (id, day) = {PICK} RETURNING body", (day, s, salt))
    elif kind == "move_all":
        _, s, part, day = stmt
        cur.execute("UPDATE msgs SET day = %s::date WHERE user_id = %s AND tableoid = %s::regclass RETURNING body",
                    (day, s, part))
    elif kind == "rekey":
        _, s, salt, day = stmt
        if day is None:
            cur.execute(f"UPDATE msgs SET id = nextval('msgs_id_seq') WHERE (id, day) = {PICK} RETURNING body", (s, salt))
        else:
            cur.execute(f"UPDATE msgs SET id = nextval('msgs_id_seq'), day = %s::date WHERE (id, day) = {PICK} "
                        "RETURNING body", (day, s, salt))
    elif kind == "rekey_in":
        _, part, s, salt = stmt
        cur.execute(f"UPDATE {part} SET id = nextval('msgs_id_seq') WHERE (id, day) = "
                    f"(SELECT id, day FROM {part} WHERE user_id = %s ORDER BY md5(body || %s) LIMIT 1) RETURNING body",
                    (s, salt))
    elif kind == "reassign":
        _, s, salt, other = stmt
        cur.execute(f"UPDATE msgs SET user_id = %s WHERE (id, day) = {PICK} RETURNING body", (other, s, salt))
    elif kind == "delete":
        _, s, salt = stmt
        cur.execute(f"DELETE FROM msgs WHERE (id, day) = {PICK} RETURNING body", (s, salt))
        return {}, [b for (b,) in cur.fetchall()], 0
    elif kind == "delete_from":
        _, part, s, salt = stmt
        cur.execute(f"DELETE FROM {part} WHERE (id, day) = "
                    f"(SELECT id, day FROM {part} WHERE user_id = %s ORDER BY md5(body || %s) LIMIT 1) RETURNING body",
                    (s, salt))
        return {}, [b for (b,) in cur.fetchall()], 0
    return {}, [], len(cur.fetchall())


class PartLog:
    def __init__(self):
        self.inserted = {}        # tag -> the user its insert charged (committed)
        self.deleted = Counter()  # tag -> committed deletes that returned it
        self.txns = self.rollbacks = self.refusals = self.deadlocks = self.conflicts = self.changed = 0


def partition_client(plan, datestyle):
    mine = PartLog()
    conn = connect(PART_DB)
    cur = cursor(conn)
    cur.execute(CLOCK)
    cur.execute("SELECT set_config('DateStyle', %s, false)", (datestyle,))
    # Transactions of several statements on random users deadlock now and then; find out
    # sooner than the default second.
    cur.execute("SET deadlock_timeout = '100ms'")
    conn.commit()
    for stmts, end in plan:
        inserted, deleted, changed = {}, [], 0
        try:
            for k, stmt in enumerate(stmts):
                undone = end == "savepoint" and k == len(stmts) - 1
                if undone:
                    cur.execute("SAVEPOINT last")
                ins, dels, updated = partition_statement(cur, stmt)
                if not undone:
                    inserted.update(ins)
                    deleted += dels
                    changed += updated
            if end == "savepoint":
                cur.execute("ROLLBACK TO SAVEPOINT last")
            if end == "rollback":
                conn.rollback()
                mine.rollbacks += 1
                continue
            conn.commit()
        except psycopg.Error as e:
            conn.rollback()
            if e.sqlstate == "QT429":
                refusal_justified(e, "partition")
                mine.refusals += 1
            elif e.sqlstate == "40P01":
                mine.deadlocks += 1
            elif e.sqlstate == "40001":
                mine.conflicts += 1
            else:
                violation(f"partition: unexpected error {e.sqlstate} on {[st[0] for st in stmts]}: {error_text(e)}")
            continue
        mine.txns += 1
        mine.changed += changed
        mine.inserted.update(inserted)
        mine.deleted.update(deleted)
    conn.close()
    return mine


def partition_phase(plans):
    started = time.monotonic()
    logs = run_threads([lambda p=p, i=i: partition_client(p, PART_DATESTYLES[i % len(PART_DATESTYLES)])
                        for i, p in enumerate(plans)])
    elapsed = time.monotonic() - started
    logs = [l for l in logs if l is not None]
    inserted, deleted = {}, Counter()
    for l in logs:
        inserted.update(l.inserted)
        deleted.update(l.deleted)
    label = "partition"
    for tag, n in deleted.items():
        if n > 1:
            violation(f"{label}: row {tag} was deleted by {n} committed statements")
        if tag not in inserted:
            violation(f"{label}: a committed delete returned row {tag}, which no committed insert made")
    live = {tag: s for tag, s in inserted.items() if tag not in deleted}
    conn = connect(PART_DB, autocommit=True)
    c = cursor(conn)
    c.execute("SET DateStyle = 'ISO, MDY'")
    # The table: exactly the live rows, each once.
    c.execute("SELECT body, id, day::text FROM msgs")
    rows = c.fetchall()
    in_table = Counter(body for body, _id, _day in rows)
    twice = [b for b, n in in_table.items() if n > 1]
    missing = set(live) - set(in_table)
    extra = set(in_table) - set(live)
    if twice or missing or extra:
        violation(f"{label}: the table differs from the client log: {len(missing)} live rows missing, "
                  f"{len(extra)} unexpected, {len(twice)} twice (e.g. {sorted(missing | extra | set(twice))[:3]})")
    # The counters: each user's used = its live rows (each cost 1), never over the limit.
    expected = Counter(live.values())
    c.execute("SELECT subject, sum(used), count(*) FROM quota.counters WHERE metric = %s GROUP BY 1", (PART_METRIC,))
    counters = {s: (used, windows) for s, used, windows in c.fetchall()}
    for s in PART_SUBJECTS:
        used, windows = counters.get(s, (0, 0))
        if used != expected[s] or windows > 1:
            violation(f"{label}: {s} used {used} in {windows} windows, but {expected[s]} of its charged rows are live")
        if used > PART_LIMIT:
            violation(f"{label}: {s} used {used} over the limit {PART_LIMIT}")
    # The row charges: one per live row, for the user its insert charged. (How a charge
    # names its row is the extension's business; the drain below shows that each live
    # row's DELETE finds its own.)
    c.execute("""SELECT subject, metric, amount, count(*) FROM quota.row_charges
                 WHERE table_name = 'msgs'::regclass GROUP BY 1, 2, 3""")
    charges = Counter()
    for s, metric, amount, n in c.fetchall():
        if (metric, amount) != (PART_METRIC, 1):
            violation(f"{label}: {n} row charges of {amount} {metric} for {s}")
        charges[s] += n
    c.execute("SELECT count(*), count(DISTINCT row_key) FROM quota.row_charges WHERE table_name = 'msgs'::regclass")
    n, keys = c.fetchone()
    if n != keys or n != len(live):
        violation(f"{label}: {n} row charges with {keys} distinct keys for {len(live)} live rows")
    for s in PART_SUBJECTS:
        if charges[s] != expected[s]:
            violation(f"{label}: {s} has {charges[s]} row charges for {expected[s]} live rows it was charged for")
    # The ledger: one consume per committed insert, one refund per committed delete, for the
    # inserting user; replayed in id order, no user ever went past the limit.
    c.execute("""SELECT subject, period, window_start, kind, amount FROM quota.usage_events WHERE metric = %s
                 ORDER BY subject, period, window_start, id""", (PART_METRIC,))
    flows = Counter()
    state = {}
    for s, period, ws, kind, amount in c.fetchall():
        flows[(s, kind)] += amount
        if amount != 1 or kind not in ("consume", "refund") or period != "day":
            violation(f"{label}: ledger row {kind} {amount} ({period}) for {s} (only consumes and refunds of 1 in "
                      "the day window expected)")
        used = state.get((s, period, ws), 0) + (amount if kind == "consume" else -amount)
        if not 0 <= used <= PART_LIMIT:
            violation(f"{label}: the ledger of {s} reaches {used} (limit {PART_LIMIT})")
        state[(s, period, ws)] = used
    ins_by, del_by = Counter(inserted.values()), Counter(inserted[t] for t in deleted if t in inserted)
    for s in PART_SUBJECTS:
        if (flows[(s, "consume")], flows[(s, "refund")]) != (ins_by[s], del_by[s]):
            violation(f"{label}: {s} ledger has {flows[(s, 'consume')]} consumes and {flows[(s, 'refund')]} refunds; "
                      f"the clients committed {ins_by[s]} inserts and {del_by[s]} deletes of its rows")
    counters_match_ledger(c, label)
    # Drain: one DELETE of every row, from a session with yet another DateStyle, refunds
    # each live row exactly once: every counter back to 0, no charge left.
    c.execute(CLOCK)
    c.execute("SET DateStyle = 'Postgres, DMY'")
    c.execute("DELETE FROM msgs")
    c.execute("SELECT subject, sum(used)::bigint FROM quota.counters WHERE metric = %s GROUP BY 1 HAVING sum(used) <> 0",
              (PART_METRIC,))
    left = c.fetchall()
    c.execute("SELECT count(*) FROM quota.row_charges WHERE table_name = 'msgs'::regclass")
    charges_left = c.fetchone()[0]
    c.execute("SELECT count(*) FROM quota.usage_events WHERE metric = %s AND kind = 'refund'", (PART_METRIC,))
    refunds = c.fetchone()[0] - sum(flows[(s, "refund")] for s in PART_SUBJECTS)
    if left or charges_left or refunds != len(live):
        violation(f"{label}: deleting the {len(live)} live rows made {refunds} refunds and left {charges_left} "
                  f"row charges and used {left}")
    counters_match_ledger(c, f"{label} (drained)")
    conn.close()
    total = lambda attr: sum(getattr(l, attr) for l in logs)  # noqa: E731
    stats["partition_txns"] = total("txns")
    print(f"   {total('txns')} transactions committed, {total('rollbacks')} rolled back on purpose, "
          f"{total('refusals')} refused (QT429), {total('deadlocks')} deadlocks, {total('conflicts')} serialization "
          f"failures; rows: {len(inserted)} inserted, {total('changed')} updated (moved, re-keyed, reassigned), "
          f"{len(deleted)} deleted, {len(live)} live; DateStyles {PART_DATESTYLES}; {elapsed:.1f} s, "
          f"{len(violations)} violations", flush=True)


# Bound tenant roles -----------------------------------------------------------------------
# Two tenants, each served by its own login role bound to it (quota.bind_tenant). Each
# tenant's clients consume, check, refund and read for their own subjects, and keep trying
# to act for the other tenant: under quota.tenant naming it (42501, nothing read or
# written), naming its subjects under their own tenant (QT404), or with no tenant at all
# (QT404). Every counter and ledger row of a tenant must be explained by its own clients.

TENANTS = {"acme": "rel_acme", "globex": "rel_globex"}
TENANT_SUBJECTS = {t: [f"{t}-{i}" for i in range(3)] for t in TENANTS}
UNTENANTED = "free-0"
# One limit (per day) per metric: the counters are summed per subject and metric below,
# and each op is expected once per metric in the ledger.
TENANT_LIMITS = {"calls": 30, "tokens": 300}
TENANT_CLIENTS = 4  # per tenant
TENANT_OPS = OPS_PER_CLIENT
TENANT_DB = "reltenant"
PROBES = {
    "subject_exists": "SELECT 1 FROM quota.subjects WHERE subject = %s",
    "used_above": "SELECT 1 FROM quota.counters WHERE subject = %s AND metric = 'calls' AND used > %s",
    "event_above": "SELECT 1 FROM quota.usage_events WHERE subject = %s AND amount > %s",
}
CROSS_CALLS = ["consume", "try_consume", "try_consume_jsonb", "check", "status", "refund", "reserve",
               "read_events", "read_counters", "read_subjects", "read_overview"]


def tenant_setup():
    conn, c = fresh_database(TENANT_DB)
    for metric, limit in TENANT_LIMITS.items():
        c.execute("SELECT quota.set_limit('TEN', %s, 'day', %s)", (metric, limit))
    for tenant, subjects in TENANT_SUBJECTS.items():
        for s in subjects:
            c.execute("SELECT quota.assign_plan(%s, 'TEN', tenant => %s)", (s, tenant))
    c.execute("SELECT quota.assign_plan(%s, 'TEN')", (UNTENANTED,))
    # quota.clock_override is superuser-only: the bound roles' sessions get it from here.
    c.execute(f"ALTER DATABASE {TENANT_DB} SET quota.clock_override = '{CLOCK_AT}'")
    for tenant, role in TENANTS.items():
        c.execute(f"""DO $$ BEGIN
                        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{role}') THEN
                            CREATE ROLE {role} LOGIN IN ROLE quota_app;
                        END IF;
                      END $$""")
        c.execute("SELECT quota.bind_tenant(%s, %s)", (role, tenant))
    # One consume per subject, so that no table a client may read is empty (a read of an
    # empty table has no row to refuse).
    setup = {}
    for tenant, subjects in TENANT_SUBJECTS.items():
        for s in subjects:
            op = f"setup-{s}"
            c.execute("SELECT quota.quota_consume(%s, 'calls', 1, NULL, %s)", (s, json.dumps({"op": op, "tenant": tenant})))
            setup[op] = (tenant, s)
    conn.close()
    return setup


def tenant_plan(seed, tenant, i, ops):
    rnd = random.Random(f"{seed}-tenant-{tenant}-{i}")
    own = TENANT_SUBJECTS[tenant]
    other = [t for t in TENANTS if t != tenant][0]
    plan = []
    for _ in range(ops):
        op = new_op(rnd)
        s = rnd.choice(own)
        roll = rnd.random()
        if roll < 0.25:
            plan.append(("consume", s, op, rnd.randint(1, 3)))
        elif roll < 0.33:
            plan.append(("multi", s, op, rnd.randint(1, 2), rnd.randint(1, 30)))
        elif roll < 0.39:
            plan.append(("keyed", s, op, rnd.randint(1, 3)))
        elif roll < 0.49:
            plan.append(("refund", s, op, rnd.randint(1, 3)))
        elif roll < 0.53:
            plan.append(("check", s))
        elif roll < 0.56:
            plan.append(("status", s))
        elif roll < 0.60:
            plan.append(("read", rnd.choice(["usage_events", "counters", "subjects", "usage_overview"])))
        elif roll < 0.64:
            plan.append(("abort", s, op, rnd.randint(1, 3)))
        elif roll < 0.80:
            # Act under quota.tenant = the other tenant, for any subject: 42501. SET LOCAL,
            # or a session-wide SET put back afterwards.
            target = rnd.choice(TENANT_SUBJECTS[other] + own + [UNTENANTED])
            plan.append(("cross", other, target, op, rnd.choice(CROSS_CALLS), rnd.random() < 0.5))
        elif roll < 0.86:
            # Read under the other tenant with a condition: 42501 too, whether a row matches
            # or not (else the answer tells whether one exists).
            target = rnd.choice(TENANT_SUBJECTS[other] + [f"{other}-ghost{rnd.randint(0, 9)}"])
            plan.append(("probe", other, target, op, rnd.choice(sorted(PROBES)), rnd.randint(0, TENANT_LIMITS["calls"])))
        elif roll < 0.95:
            # Name the other tenant's (or an untenanted) subject under our own tenant: QT404.
            target = rnd.choice(TENANT_SUBJECTS[other] + [UNTENANTED])
            plan.append(("foreign", target, op, rnd.choice(CROSS_CALLS)))
        else:
            # No tenant at all: a bound session sees no subject, not even its own.
            plan.append(("untenanted", s, op, rnd.choice(CROSS_CALLS)))
    return plan


def tenant_call(cur, call, subject, op, tenant):
    """One call a tenant client may try; returns the rows it got."""
    meta = json.dumps({"op": op, "tenant": tenant})
    if call == "consume":
        cur.execute("SELECT used FROM quota.quota_consume(%s, 'calls', 1, NULL, %s)", (subject, meta))
    elif call == "try_consume":
        cur.execute("SELECT used FROM quota.quota_try_consume(%s, 'calls', 1, NULL, %s)", (subject, meta))
    elif call == "try_consume_jsonb":
        cur.execute("SELECT used FROM quota.quota_try_consume_many(%s, %s::jsonb, NULL, %s)",
                    (subject, json.dumps({"calls": 1, "tokens": 1}), meta))
    elif call == "check":
        cur.execute("SELECT used FROM quota.quota_check(%s, 'calls')", (subject,))
    elif call == "status":
        cur.execute("SELECT used FROM quota.quota_status(%s)", (subject,))
    elif call == "refund":
        cur.execute("SELECT used FROM quota.quota_refund(%s, 'calls', 1, %s)", (subject, op))
    elif call == "reserve":
        cur.execute("SELECT reservation FROM quota.quota_try_reserve(%s, 'calls', 1)", (subject,))
    elif call == "read_events":
        cur.execute("SELECT subject FROM quota.usage_events")
    elif call == "read_counters":
        cur.execute("SELECT subject FROM quota.counters")
    elif call == "read_subjects":
        cur.execute("SELECT subject FROM quota.subjects")
    else:
        cur.execute("SELECT subject FROM quota.usage_overview")
    return cur.fetchall()


class TenantLog:
    def __init__(self):
        self.consumed = {}    # op -> (subject, {metric: amount}) committed
        self.refunded = {}    # op -> (subject, amount) committed
        self.unsent = set()   # ops that must leave no trace (aborted, refused, attempts)
        self.ops = self.refused_cross = 0
        self.answered_probes = []  # (probe, subject, n, rows) that did not fail with 42501


def tenant_client(tenant, plan):
    mine = TenantLog()
    role = TENANTS[tenant]
    label = f"tenant {tenant}"
    own = set(TENANT_SUBJECTS[tenant])
    balance = Counter()   # calls this client consumed and has not refunded, by subject
    conn = connect(TENANT_DB, user=role)
    cur = cursor(conn)
    cur.execute("SELECT set_config('quota.tenant', %s, false)", (tenant,))
    conn.commit()

    def expect(what, codes, fn):
        """Run fn in a transaction; it must fail with one of codes. Should it succeed, it
        commits, so that the ledger and counter checks see whatever it did."""
        try:
            got = fn()
        except psycopg.Error as e:
            conn.rollback()
            if e.sqlstate not in codes:
                violation(f"{label}: {what}: expected {'/'.join(codes)}, got {e.sqlstate}: {error_text(e)}")
            return e.sqlstate
        conn.commit()
        violation(f"{label}: {what}: expected {'/'.join(codes)}, but it succeeded ({got[:3]})")
        return None

    for step in plan:
        kind = step[0]
        mine.ops += 1
        try:
            if kind in ("consume", "keyed", "abort"):
                s, op, amount = step[1:]
                meta = json.dumps({"op": op, "tenant": tenant})
                key = op if kind == "keyed" else None
                for _ in range(2 if kind == "keyed" else 1):
                    cur.execute("SELECT allowed, used, limit_value FROM quota.quota_try_consume(%s, 'calls', %s, %s, %s)",
                                (s, amount, key, meta))
                    allowed, used, limit = cur.fetchone()
                    if allowed and used > limit:
                        violation(f"{label}: {s} admitted to used {used} over limit {limit}")
                if kind == "abort" or not allowed:
                    conn.rollback()
                    mine.unsent.add(op)
                    continue
                conn.commit()
                mine.consumed[op] = (s, {"calls": amount})
                balance[s] += amount
            elif kind == "multi":
                s, op, calls, tokens = step[1:]
                try:
                    cur.execute("SELECT metric, used, limit_value FROM quota.quota_consume_many(%s, %s::jsonb, NULL, %s)",
                                (s, json.dumps({"calls": calls, "tokens": tokens}), json.dumps({"op": op, "tenant": tenant})))
                    for metric, used, limit in cur.fetchall():
                        if used > limit:
                            violation(f"{label}: {s}/{metric} admitted to used {used} over limit {limit}")
                    conn.commit()
                    mine.consumed[op] = (s, {"calls": calls, "tokens": tokens})
                    balance[s] += calls
                except psycopg.Error as e:
                    conn.rollback()
                    if e.sqlstate != "QT429":
                        raise
                    refusal_justified(e, label)
                    mine.unsent.add(op)
            elif kind == "refund":
                s, op, wanted = step[1:]
                # Never more than this client holds: then no refund is ever clipped at zero.
                amount = min(wanted, balance[s])
                if amount == 0:
                    continue
                answers = set()
                for _ in range(2):  # the same key twice: refunded once
                    cur.execute("SELECT used FROM quota.quota_refund(%s, 'calls', %s, %s)", (s, amount, op))
                    answers.add(cur.fetchone()[0])
                if len(answers) != 1:
                    violation(f"{label}: a refund retried with its key answered {sorted(answers)}")
                conn.commit()
                mine.refunded[op] = (s, amount)
                balance[s] -= amount
            elif kind in ("check", "status"):
                s = step[1]
                if kind == "check":
                    cur.execute("SELECT used, limit_value FROM quota.quota_check(%s, 'calls', 0)", (s,))
                else:
                    cur.execute("SELECT used, limit_value FROM quota.quota_status(%s)", (s,))
                rows = cur.fetchall()
                conn.commit()
                if not rows or any(used > limit for used, limit in rows):
                    violation(f"{label}: {kind} of {s} answered {rows}")
            elif kind == "read":
                cur.execute(f"SELECT DISTINCT subject FROM quota.{step[1]}")
                seen = {r[0] for r in cur.fetchall()}
                conn.commit()
                if not seen <= own:
                    violation(f"{label}: reading quota.{step[1]} showed other subjects: {sorted(seen - own)}")
            elif kind == "cross":
                other, target, op, call, session_wide = step[1:]
                mine.unsent.add(op)

                def attempt():
                    if session_wide:
                        cur.execute("SELECT set_config('quota.tenant', %s, false)", (other,))
                    else:
                        cur.execute("SELECT set_config('quota.tenant', %s, true)", (other,))
                    return tenant_call(cur, call, target, op, tenant)
                if expect(f"{call} for {target} under quota.tenant = '{other}'", ("42501",), attempt) == "42501":
                    mine.refused_cross += 1
                if session_wide:
                    # The failed transaction's SET was rolled back with it; say it again anyway.
                    cur.execute("SELECT set_config('quota.tenant', %s, false)", (tenant,))
                    conn.commit()
            elif kind == "probe":
                other, target, op, probe, n = step[1:]
                mine.unsent.add(op)
                cur.execute("SELECT set_config('quota.tenant', %s, true)", (other,))
                params = (target,) if probe == "subject_exists" else (target, n)
                try:
                    cur.execute(PROBES[probe], params)
                    mine.answered_probes.append((probe, target, n, len(cur.fetchall())))
                except psycopg.Error as e:
                    if e.sqlstate != "42501":
                        raise
                    mine.refused_cross += 1
                conn.rollback()
            elif kind == "foreign":
                target, op, call = step[1:]
                mine.unsent.add(op)
                if call.startswith("read_"):
                    rows = tenant_call(cur, call, target, op, tenant)
                    conn.rollback()
                    if not {r[0] for r in rows} <= own:
                        violation(f"{label}: {call} under its own tenant showed {sorted({r[0] for r in rows} - own)}")
                else:
                    expect(f"{call} for {target} under its own tenant", ("QT404",),
                           lambda: tenant_call(cur, call, target, op, tenant))
            elif kind == "untenanted":
                s, op, call = step[1:]
                mine.unsent.add(op)

                def attempt():
                    cur.execute("SELECT set_config('quota.tenant', '', true)")
                    return tenant_call(cur, call, s, op, tenant)
                if call.startswith("read_"):
                    rows = attempt()
                    conn.rollback()
                    if rows:
                        violation(f"{label}: {call} without a tenant showed {len(rows)} rows")
                else:
                    expect(f"{call} for its own {s} without a tenant", ("QT404", "42501"), attempt)
        except psycopg.Error as e:
            conn.rollback()
            if e.sqlstate in ("40001", "40P01"):
                continue
            violation(f"{label}: unexpected error {e.sqlstate} on {kind}: {error_text(e)}")
    conn.close()
    return mine


def tenant_phase(plans, setup):
    started = time.monotonic()
    logs = run_threads([lambda t=t, p=p: tenant_client(t, p) for t, p in plans])
    elapsed = time.monotonic() - started
    by_tenant = {t: TenantLog() for t in TENANTS}
    for (t, _), l in zip(plans, logs):
        if l is None:
            continue
        by_tenant[t].consumed.update(l.consumed)
        by_tenant[t].refunded.update(l.refunded)
        by_tenant[t].unsent |= l.unsent
        by_tenant[t].ops += l.ops
        by_tenant[t].refused_cross += l.refused_cross
        by_tenant[t].answered_probes += l.answered_probes
    for op, (t, s) in setup.items():
        by_tenant[t].consumed[op] = (s, {"calls": 1})
    for t, l in by_tenant.items():
        if l.answered_probes:
            answered = Counter((probe, "a row" if rows else "no row") for probe, _s, _n, rows in l.answered_probes)
            violation(f"tenants: {len(l.answered_probes)} of {t}'s reads under the other tenant answered instead of "
                      f"failing with 42501 ({', '.join(f'{p} with {r}: {n}' for (p, r), n in sorted(answered.items()))}; "
                      f"e.g. {l.answered_probes[:3]}); the answer tells whether such a row exists")
    conn = connect(TENANT_DB, autocommit=True)
    c = cursor(conn)
    owner = {s: t for t, subjects in TENANT_SUBJECTS.items() for s in subjects}
    # Every ledger row is one of its tenant's own clients' committed operations.
    c.execute("""SELECT e.subject, e.metric, e.kind, e.amount, coalesce(e.metadata->>'op', e.idempotency_key),
                        e.metadata->>'tenant'
                 FROM quota.usage_events e ORDER BY e.id""")
    ledger = {}
    for s, metric, kind, amount, op, said in c.fetchall():
        t = owner.get(s)
        log = by_tenant.get(t)
        if log is None:
            violation(f"tenants: a ledger row for {s}, which belongs to no bound tenant ({kind} {amount})")
            continue
        if kind == "consume" and (op not in log.consumed or said != t):
            other = [x for x in TENANTS if op in by_tenant[x].consumed or op in by_tenant[x].unsent]
            violation(f"tenants: consume {op} on {t}'s {s} is not one of {t}'s committed operations "
                      f"(tagged {said}, known to {other})")
        elif kind == "refund" and op not in log.refunded:
            violation(f"tenants: refund {op} on {t}'s {s} is not one of {t}'s committed refunds")
        elif kind not in ("consume", "refund"):
            violation(f"tenants: unexpected ledger row {kind} {amount} on {s}")
        if (op, metric) in ledger:
            violation(f"tenants: op {op} counted twice on {metric}")
        ledger[(op, metric)] = (s, kind, amount)
    expected = Counter()
    for t, log in by_tenant.items():
        for op, (s, amounts) in log.consumed.items():
            for metric, amount in amounts.items():
                expected[(s, metric)] += amount
                if ledger.get((op, metric)) != (s, "consume", amount):
                    violation(f"tenants: {t}'s committed consume {op} ({s} {metric} {amount}) has ledger "
                              f"{ledger.get((op, metric))}")
        for op, (s, amount) in log.refunded.items():
            expected[(s, "calls")] -= amount
            if ledger.get((op, "calls")) != (s, "refund", amount):
                violation(f"tenants: {t}'s committed refund {op} ({s} {amount}) has ledger {ledger.get((op, 'calls'))}")
        traces = [op for op in log.unsent if any((op, m) in ledger for m in TENANT_LIMITS)]
        if traces:
            violation(f"tenants: {len(traces)} of {t}'s aborted, refused or cross-tenant operations are in the ledger")
    # Every counter equals what its own tenant's clients' log says.
    c.execute("SELECT subject, metric, sum(used) FROM quota.counters GROUP BY 1, 2")
    counters = {(s, m): used for s, m, used in c.fetchall()}
    for key in set(counters) | set(expected):
        if counters.get(key, 0) != expected.get(key, 0):
            violation(f"tenants: counter {key[0]}/{key[1]} is {counters.get(key, 0)}, "
                      f"{owner.get(key[0])}'s clients say {expected.get(key, 0)}")
    for (s, m), used in counters.items():
        if used > TENANT_LIMITS[m]:
            violation(f"tenants: {s}/{m} used {used} over limit {TENANT_LIMITS[m]}")
    c.execute("SELECT role_name, tenant FROM quota.tenant_bindings ORDER BY 1")
    if c.fetchall() != sorted((r, t) for t, r in TENANTS.items()):
        violation("tenants: the bindings changed")
    counters_match_ledger(c, "tenants")
    conn.close()
    ops = sum(l.ops for l in by_tenant.values())
    refused = sum(l.refused_cross for l in by_tenant.values())
    stats["tenant_ops"] = ops
    stats["cross_tenant_refused"] = refused
    print(f"   {ops} operations by {len(plans)} bound connections, {refused} cross-tenant attempts refused with 42501, "
          + ", ".join(f"{t}: {len(l.consumed)} consumes and {len(l.refunded)} refunds committed" for t, l in by_tenant.items())
          + f"; {elapsed:.1f} s, {len(violations)} violations", flush=True)


# Old-version databases ----------------------------------------------------------------------
# A database created at a released version (served by this library with that version's
# semantics), under a consume load, while an admin connection moves subjects between plans
# and raises and lowers limits, and updates the extension in the middle of the load. A
# consume (or check) must be decided against a limit in force while it ran: the last one
# committed before it started, or one committed while it ran; and the ledger, replayed in
# id order, must give each consume exactly the used it returned.

OLD_VERSIONS = ["0.2.0", "0.3.0"]
OLD_SUBJECTS = [f"o{i}" for i in range(4)]
OLD_PLANS = {"BIG": 30, "SMALL": 12}
OLD_CLIENTS = 6
OLD_OPS = OPS_PER_CLIENT
OLD_CHANGES = 40


def old_db(version):
    return "relold_" + version.replace(".", "_")


def old_setup(version):
    conn, c = fresh_database(old_db(version), version)
    for plan, limit in OLD_PLANS.items():
        c.execute("SELECT quota.set_limit(%s, 'calls', 'day', %s)", (plan, limit))
    for s in OLD_SUBJECTS:
        c.execute("SELECT quota.assign_plan(%s, 'BIG')", (s,))
    conn.close()


def old_plans(seed, version):
    clients = []
    for i in range(OLD_CLIENTS):
        rnd = random.Random(f"{seed}-old-{version}-{i}")
        plan = []
        for _ in range(OLD_OPS):
            s, op, roll = rnd.choice(OLD_SUBJECTS), new_op(rnd), rnd.random()
            if roll < 0.50:
                plan.append(("try", s, op, rnd.randint(1, 3)))
            elif roll < 0.62:
                plan.append(("consume", s, op, rnd.randint(1, 3)))
            elif roll < 0.82:
                plan.append(("refund", s, op, rnd.randint(1, 4)))
            elif roll < 0.94:
                plan.append(("check", s, op, rnd.randint(1, 3)))
            else:
                plan.append(("abort", s, op, rnd.randint(1, 3)))
        clients.append(plan)
    rnd = random.Random(f"{seed}-old-{version}-admin")
    changes = []
    for _ in range(OLD_CHANGES):
        if rnd.random() < 0.5:
            changes.append(("assign", rnd.choice(OLD_SUBJECTS), rnd.choice(list(OLD_PLANS))))
        else:
            changes.append(("limit", rnd.choice(list(OLD_PLANS)), rnd.randint(4, 40)))
    changes.insert(rnd.randint(OLD_CHANGES // 3, 2 * OLD_CHANGES // 3), ("update",))
    # Each change waits until this fraction of the clients' operations is done.
    at = sorted(rnd.uniform(0.02, 0.95) for _ in changes)
    return clients, list(zip(at, changes))


class OldLog:
    def __init__(self):
        self.decided = []    # (t0, t1, kind, subject, op, amount, allowed, used, limit, committed)
        self.refunded = {}   # op -> (subject, amount, used after)
        self.unsent = set()


def old_client(version, plan, progress):
    mine = OldLog()
    label = f"old {version}"
    balance = Counter()
    conn = connect(old_db(version))
    cur = cursor(conn)
    cur.execute(CLOCK)
    conn.commit()
    for kind, s, op, amount in plan:
        meta = json.dumps({"op": op})
        t0 = time.monotonic()
        try:
            if kind in ("try", "abort"):
                cur.execute("SELECT allowed, used, limit_value FROM quota.quota_try_consume(%s, 'calls', %s, NULL, %s)",
                            (s, amount, meta))
                allowed, used, limit = cur.fetchone()
                if kind == "abort":
                    conn.rollback()
                    mine.unsent.add(op)
                else:
                    conn.commit()
                    if allowed:
                        balance[s] += amount
                    else:
                        mine.unsent.add(op)
                mine.decided.append((t0, time.monotonic(), "consume", s, op, amount, allowed, used, limit,
                                     allowed and kind == "try"))
            elif kind == "consume":
                try:
                    cur.execute("SELECT used, limit_value FROM quota.quota_consume(%s, 'calls', %s, NULL, %s)",
                                (s, amount, meta))
                    used, limit = cur.fetchone()
                    conn.commit()
                    balance[s] += amount
                    mine.decided.append((t0, time.monotonic(), "consume", s, op, amount, True, used, limit, True))
                except psycopg.Error as e:
                    conn.rollback()
                    if e.sqlstate != "QT429":
                        raise
                    d = refusal_justified(e, label)
                    mine.unsent.add(op)
                    mine.decided.append((t0, time.monotonic(), "consume", s, op, amount, False, d.get("used"),
                                         d.get("limit"), False))
            elif kind == "refund":
                amount = min(amount, balance[s])
                if amount:
                    cur.execute("SELECT used FROM quota.quota_refund(%s, 'calls', %s, %s)", (s, amount, op))
                    used = cur.fetchone()[0]
                    conn.commit()
                    balance[s] -= amount
                    mine.refunded[op] = (s, amount, used)
            else:  # check
                cur.execute("SELECT allowed, used, limit_value FROM quota.quota_check(%s, 'calls', %s)", (s, amount))
                allowed, used, limit = cur.fetchone()
                conn.commit()
                mine.decided.append((t0, time.monotonic(), "check", s, op, amount, allowed, used, limit, False))
        except psycopg.Error as e:
            conn.rollback()
            mine.unsent.add(op)
            if e.sqlstate not in ("40001", "40P01"):
                violation(f"{label}: unexpected error {e.sqlstate} on {kind}: {error_text(e)}")
        with lock:
            progress[0] += 1
    conn.close()
    return mine


def old_admin(version, changes, progress, total, done):
    """Apply each change once the clients have done its share of their operations; the
    log of (started, committed, effective limit of every subject after it)."""
    plans = {s: "BIG" for s in OLD_SUBJECTS}
    limits = dict(OLD_PLANS)
    log = [(float("-inf"), float("-inf"), {s: limits[plans[s]] for s in OLD_SUBJECTS})]
    updated = None
    conn = connect(old_db(version), autocommit=True)
    c = cursor(conn)
    c.execute(CLOCK)
    for at, change in changes:
        while progress[0] < at * total and not done.is_set():
            time.sleep(0.002)
        t0 = time.monotonic()
        for attempt in range(20):
            try:
                if change[0] == "assign":
                    c.execute("SELECT quota.assign_plan(%s, %s)", change[1:])
                    plans[change[1]] = change[2]
                elif change[0] == "limit":
                    c.execute("SELECT quota.set_limit(%s, 'calls', 'day', %s)", change[1:])
                    limits[change[1]] = change[2]
                else:
                    c.execute("ALTER EXTENSION quota_ext UPDATE")
                    c.execute("SELECT extversion FROM pg_extension WHERE extname = 'quota_ext'")
                    updated = (c.fetchone()[0], progress[0])
                break
            except psycopg.Error as e:
                if e.sqlstate != "40P01" or attempt == 19:
                    violation(f"old {version}: admin {change}: {e.sqlstate}: {error_text(e)}")
                    break
        log.append((t0, time.monotonic(), {s: limits[plans[s]] for s in OLD_SUBJECTS}))
    conn.close()
    return log, updated


def limits_in_force(admin_log, subject, t0, t1):
    """The limits a call that ran from t0 to t1 may have been decided against: the one
    after the last change committed before it started, and those of changes that may have
    committed while it ran."""
    base = max(k for k, (_a0, a1, _state) in enumerate(admin_log) if a1 < t0)
    last = max([base] + [k for k, (a0, _a1, _state) in enumerate(admin_log) if a0 < t1])
    return {admin_log[k][2][subject] for k in range(base, last + 1)}


def old_version_phase(version, plans):
    clients, changes = plans
    label = f"old {version}"
    progress = [0]
    total = sum(len(p) for p in clients)
    done = threading.Event()
    admin_result = []
    def run_admin():
        try:
            admin_result.append(old_admin(version, changes, progress, total, done))
        except Exception as e:  # noqa: BLE001
            violation(f"{label}: the admin thread crashed: {type(e).__name__}: {e}")

    admin = threading.Thread(target=run_admin)
    started = time.monotonic()
    admin.start()
    logs = run_threads([lambda p=p: old_client(version, p, progress) for p in clients])
    done.set()
    admin.join()
    elapsed = time.monotonic() - started
    if not admin_result:
        violation(f"{label}: the admin connection failed")
        return
    admin_log, updated = admin_result[0]
    logs = [l for l in logs if l is not None]
    # 1. Every decision was taken against a limit in force while the call ran.
    decided = sorted((d for l in logs for d in l.decided), key=lambda d: d[0])
    stale = 0
    by_op = {}
    for t0, t1, kind, s, op, amount, allowed, used, limit, committed in decided:
        if committed:
            by_op[op] = (s, amount, used, limit)
        possible = limits_in_force(admin_log, s, t0, t1)
        if limit not in possible:
            stale += 1
            if stale <= 5:
                violation(f"{label}: {kind} on {s} ({'allowed' if allowed else 'refused'}, used {used}) decided "
                          f"against limit {limit}; the limits in force while it ran were {sorted(possible)}")
        elif allowed and kind == "consume" and used > limit:
            violation(f"{label}: consume on {s} admitted to used {used} over limit {limit}")
        elif allowed and kind == "check" and used + amount > limit:
            violation(f"{label}: check on {s} says {amount} more fits at {used} of {limit}")
        elif not allowed and used is not None and used + amount <= limit:
            violation(f"{label}: {kind} on {s} refused at {used} + {amount} of {limit}")
    if stale > 5:
        violation(f"{label}: ... {stale} decisions in all against a limit not in force")
    refunded = {op: v for l in logs for op, v in l.refunded.items()}
    unsent = set().union(*(l.unsent for l in logs)) if logs else set()
    # 2. Replay the ledger in id order: each committed consume and refund is there once,
    #    with the used it returned; nothing else is.
    conn = connect(old_db(version), autocommit=True)
    c = cursor(conn)
    # (After the update to 0.7.0 every row has the period of its window, 'day'.)
    period = "period" if has_period(c) else "'day'"
    c.execute(f"""SELECT subject, {period}, window_start, kind, amount, coalesce(metadata->>'op', idempotency_key)
                  FROM quota.usage_events WHERE metric = 'calls' ORDER BY 1, 2, 3, id""")
    running, seen = {}, set()
    for s, period, ws, kind, amount, op in c.fetchall():
        used = running.get((s, period, ws), 0) + (amount if kind == "consume" else -amount if kind == "refund" else 0)
        running[(s, period, ws)] = used
        if op in seen:
            violation(f"{label}: op {op} is in the ledger twice")
        seen.add(op)
        if kind == "consume" and op in by_op:
            want = by_op[op]
            if (s, amount, used) != want[:3]:
                violation(f"{label}: consume {op} returned {want[:3]} (subject, amount, used) but the ledger replays "
                          f"({s}, {amount}, {used})")
            if used > want[3]:
                violation(f"{label}: the ledger of {s} reaches {used} at a consume decided against limit {want[3]}")
        elif kind == "refund" and op in refunded:
            if (s, amount, used) != refunded[op]:
                violation(f"{label}: refund {op} returned {refunded[op]} but the ledger replays ({s}, {amount}, {used})")
        else:
            violation(f"{label}: ledger row {kind} {amount} on {s} for an op no client committed "
                      f"({'aborted or refused' if op in unsent else 'unknown'})")
    missing = (set(by_op) | set(refunded)) - seen
    if missing:
        violation(f"{label}: {len(missing)} committed operations are not in the ledger")
    # 3. The counters equal the ledger; the extension was updated.
    counters_match_ledger(c, label)
    c.execute("SELECT extversion FROM pg_extension WHERE extname = 'quota_ext'")
    now = c.fetchone()[0]
    if not updated or now == version:
        violation(f"{label}: the extension was not updated (now {now})")
    conn.close()
    consumes = sum(1 for d in decided if d[2] == "consume")
    stats["old_version_ops"] = stats.get("old_version_ops", 0) + len(decided) + len(refunded)
    print(f"   {version}: {len(decided)} decisions ({consumes} consumes, {len(by_op)} admitted) and {len(refunded)} "
          f"refunds by {len(clients)} clients, {len(changes) - 1} plan and limit changes, updated to {updated and updated[0]} "
          f"after {updated and updated[1]} of {total} operations; {elapsed:.1f} s, {len(violations)} violations", flush=True)


# The hot path against the general path ----------------------------------------------------
# One sequence of operations, drawn from the seed before anything runs like every plan
# above, is played twice, step by step: on subjects diffhot-N through a connection with
# quota.hot_path on, and on subjects diffgen-N (same plan) through one with it off (a
# superuser-only setting: both connect as postgres). Both follow the same clock
# (quota.clock_override, moved forward now and then so that new windows start), so every
# answer and every row written must be the same once subject ids, reservation ids, row ids
# and write stamps (created_at, occurred_at, settled_at) are normalised. Each step's
# answers are compared (every column of every row; an error by SQLSTATE, message and
# DETAIL); the counters, ledger, events, reservations, idempotency keys, bonus grants,
# subjects (plan and pending change) and overrides every DIFF_COMPARE_EVERY steps and at
# the end. The steps include admin steps played on both twins alike: overrides set and
# removed, plan changes scheduled a few simulated minutes ahead (carry 'usage' or
# 'percent'), cancelled or made at once, and nudges of the clock by seconds (a rate refills,
# a first-use window closes). Then quota.hot_path_status() must show
# that the hot path served a good share of the 'on' connection's checks and consumes, and
# none of the 'off' connection's. QUOTA_DIFF_OPS steps (2,000; 0 skips the phase), one
# connection at a time: QUOTA_SEED replays the run exactly, interleaving included.

DIFF_DB = "reldiff"
DIFF_OPS = int(os.environ.get("QUOTA_DIFF_OPS", "2000"))
DIFF_COMPARE_EVERY = 250
DIFF_PAIRS = 3
DIFF_SIDES = ("on", "off")
DIFF_SUBJECTS = {"on": [f"diffhot-{i}" for i in range(DIFF_PAIRS)], "off": [f"diffgen-{i}" for i in range(DIFF_PAIRS)]}
# metric: its limits, each (period, limit, enforcement, per-request cap, alert thresholds).
# A metric may have several (limits v2): a consume must fit every hard one, all or nothing.
# The per-request cap belongs to the metric (set_limit sets it on every window): the same
# on each of a metric's limits. The clock moves ~12 days over the run (ticks), across a
# month's end, so day windows come and go under a month and a week that stay.
DIFF_METRICS = {
    "a": [("day", 40, "hard", None, [50, 90])],
    "b": [("day", 60, "soft", None, [80, 100, 150])],
    "c": [("day", 30, "hard", 6, [])],
    "m": [("month", 500, "hard", None, [75])],
    "w": [("week", 120, "soft", 20, [100])],
    "k": [("billing_cycle", 300, "hard", None, [50])],
    "l": [("lifetime", 900, "soft", 40, [])],
    # A day and a month, both hard: the day binds within a day, the month over a few.
    "d": [("day", 8, "hard", None, [80]), ("month", 16, "hard", None, [50, 90])],
    # A hard day and a soft week (its overage recorded while the day still lets through).
    "e": [("day", 6, "hard", 5, [100]), ("week", 15, "soft", 5, [100, 150])],
    # Three: a hard day and month, a soft week (lock order day, month, week).
    "f": [("day", 10, "hard", None, []), ("month", 30, "hard", None, [90]), ("week", 20, "soft", None, [80])],
    # A day and a rate (DIFF_RATES): 3 per 10 seconds, burst 1, so that consumes between
    # two moves of the clock are refused (QT429 rate_limited); both on the hot path.
    "g": [("day", 30, "hard", None, [50])],
    # A window that opens at first use (10 minutes) under a day: the general path on both
    # sides (the hot path steps aside), ticks and nudges close it.
    "h": [("10 minutes", 12, "hard", None, []), ("day", 40, "hard", None, [90])],
}
# metric: (count, per seconds, burst): quota.set_rate_limit, period 'per <per> seconds'.
DIFF_RATES = {"g": (3, 10, 1)}
# The second plan, DIFF2, which scheduled changes move pairs to and back (assign_plan
# effective_at a few simulated minutes ahead, carry 'usage' or 'percent', now and then
# cancelled, or assigned at once): DIFF with these limits changed (None: DIFF2 lacks the
# window), and its own rate for g. The clock runs through each change's instant, so each
# takes effect on both sides (read at once, stored by the first write).
DIFF2_CHANGES = {("a", "day"): 20, ("d", "month"): 30, ("g", "day"): 60, ("h", "10 minutes"): 24, ("e", "week"): None}
DIFF2_RATES = {"g": (6, 10, 2)}
# Overrides an admin step sets and removes on both sides (quota.set_override: max or add,
# sometimes expiring): (metric, period). c has no week: an override adds that window
# (hard); f's week is soft in the plan.
DIFF_OVERRIDES = [("a", "day"), ("d", "month"), ("g", "day"), ("h", "10 minutes"), ("c", "week"), ("f", "week")]
# Bonus rules are set on these metrics; a bonus raises every current window of its metric.
DIFF_BONUS_METRICS = ["a", "d"]
# Each pair's (tenant, cycle anchor, time zone): windows in a half-hour zone, a cycle
# anchored at a month's end, and the ledger's tenant column all go through both paths.
DIFF_SUBJECT_SETUP = [(None, None, None), ("diff-tenant", None, None), (None, "2026-10-31 20:00:00+00", "Asia/Kolkata")]
# kind: (amount, reference scope); "survey" has no rule (refused with a reason).
DIFF_BONUSES = {"questionnaire": (5, "subject"), "login": (2, "none")}
DIFF_HOT_SHARE = 0.30   # of the 'on' connection's checks and consumes, at least
DIFF_REPORTED = 12      # differences reported one by one; the rest are counted
# Write stamps: dropped from JSON before comparing (their columns are not compared).
DIFF_STAMPS = ("occurred_at", "created_at", "settled_at")


def diff_setup():
    conn, c = fresh_database(DIFF_DB)
    for plan, changes, rates in (("DIFF", {}, DIFF_RATES), ("DIFF2", DIFF2_CHANGES, DIFF2_RATES)):
        for metric, limits in DIFF_METRICS.items():
            for period, limit, enforcement, cap, alerts in limits:
                limit = changes.get((metric, period), limit)
                if limit is None:
                    continue
                c.execute("SELECT quota.set_limit(%s, %s, %s, %s, %s, %s)", (plan, metric, period, limit, enforcement, cap))
                if alerts:
                    c.execute("SELECT quota.set_alerts(%s, %s, %s, %s)", (plan, metric, alerts, period))
        for metric, (count, per, burst) in rates.items():
            c.execute("SELECT quota.set_rate_limit(%s, %s, %s, make_interval(secs => %s), %s)",
                      (plan, metric, count, per, burst))
        for metric in DIFF_BONUS_METRICS:
            for kind, (amount, scope) in DIFF_BONUSES.items():
                c.execute("SELECT quota.set_bonus_rule(%s, %s, %s, %s, %s)", (plan, metric, kind, amount, scope))
        c.execute("SELECT quota.set_bonus_cap(%s, 4)", (plan,))
    for subjects in DIFF_SUBJECTS.values():
        for s, (tenant, anchor, zone) in zip(subjects, DIFF_SUBJECT_SETUP):
            c.execute("SELECT quota.assign_plan(%s, 'DIFF', %s, %s::timestamptz, %s)", (s, tenant, anchor, zone))
    conn.close()


def diff_plan(seed, ops):
    """The steps, each (kind, pair, parameters...): the same for both sides."""
    rnd = random.Random(f"{seed}-differential")
    metrics = sorted(DIFF_METRICS)
    reserves = {p: [] for p in range(DIFF_PAIRS)}   # steps that reserved, by pair
    keys = {p: [] for p in range(DIFF_PAIRS)}       # idempotency keys used, by pair
    clock = datetime.datetime.fromisoformat(CLOCK_AT)

    def amount(low=1):
        r = rnd.random()
        if r < 0.80:
            return rnd.randint(low, 4)
        if r < 0.92:
            return rnd.randint(5, 25)
        return rnd.randint(30, 800)  # past most limits and every per-request cap

    def amounts():
        return {m: amount() for m in sorted(rnd.sample(metrics, rnd.randint(2, 3)))}

    def key(p, n):
        if keys[p] and rnd.random() < 0.3:
            return rnd.choice(keys[p])  # a retry (or the same key for another request)
        keys[p].append(f"key-{n}")
        return keys[p][-1]

    def simple(n, p):
        """A check or consume, alone or in a transaction."""
        roll = rnd.random()
        if roll < 0.40:
            return ("consume", p, rnd.choice(metrics), amount(), rnd.random() < 0.5, rnd.random() < 0.5)
        if roll < 0.52:
            return ("multi", p, amounts(), rnd.random() < 0.5)
        if roll < 0.80:
            return ("check", p, rnd.choice(metrics), amount(0))
        if roll < 0.92:
            return ("consume_check", p, rnd.choice(["from", "select", "try_from"]), rnd.choice(metrics), amount(),
                    rnd.choice(metrics), amount(0))
        return ("refund", p, rnd.choice(metrics), rnd.randint(1, 6), None)

    def admin(p):
        """An admin step, the same on both sides: an override, a scheduled plan change, or
        a nudge of the clock (seconds: the rate refills, a first-use window may close)."""
        nonlocal clock
        roll = rnd.random()
        if roll < 0.33:
            clock += datetime.timedelta(seconds=rnd.randint(1, 90))
            return ("nudge", p, clock.isoformat())
        if roll < 0.57:
            metric, period = rnd.choice(DIFF_OVERRIDES)
            mode = rnd.choice(["max", "max", "add"])
            value = rnd.randint(3, 60) if mode == "max" else rnd.randint(0, 20)
            expires = None if rnd.random() < 0.6 else (clock + datetime.timedelta(minutes=rnd.randint(5, 180))).isoformat()
            return ("override", p, metric, period, value, mode, expires)
        if roll < 0.70:
            metric, period = rnd.choice(DIFF_OVERRIDES)
            return ("unoverride", p, metric, period if rnd.random() < 0.7 else None)
        if roll < 0.87:
            at = (clock + datetime.timedelta(seconds=rnd.randint(30, 40 * 60))).isoformat()
            return ("schedule", p, rnd.choice(["DIFF", "DIFF2"]), at, rnd.choice(["usage", "percent"]))
        if roll < 0.94:
            return ("cancel", p)
        return ("assign", p, rnd.choice(["DIFF", "DIFF2"]), rnd.choice(["usage", "percent"]))

    plan = []
    for n in range(ops):
        p = rnd.randrange(DIFF_PAIRS)
        if rnd.random() < 0.075:
            plan.append(admin(p))
            continue
        roll = rnd.random()
        if roll < 0.62:
            step = simple(n, p)
        elif roll < 0.65:
            step = ("check_multi", p, amounts())
        elif roll < 0.70:
            what = (rnd.choice(metrics), amount()) if rnd.random() < 0.6 else amounts()
            step = ("keyed", p, what, key(p, n), rnd.random() < 0.5)
        elif roll < 0.75:
            step = ("refund", p, rnd.choice(metrics), rnd.randint(1, 8), key(p, n) if rnd.random() < 0.3 else None)
        elif roll < 0.765:
            step = ("reset", p, rnd.choice(metrics + [None]))
        elif roll < 0.795:
            kind = rnd.choice(["questionnaire", "questionnaire", "login", "survey"])
            step = ("bonus", p, rnd.choice(DIFF_BONUS_METRICS), kind,
                    f"ref-{rnd.randint(0, 30)}" if kind == "questionnaire" else None)
        elif roll < 0.845:
            step = ("reserve", p, rnd.choice(metrics), amount(), rnd.random() < 0.5,
                    rnd.choice(["15 minutes", "15 minutes", "6 hours", "2 days"]))
            reserves[p].append(n)
        elif roll < 0.895:
            if not reserves[p]:
                step = simple(n, p)
            else:
                held = rnd.choice(reserves[p][-6:])
                how = rnd.choice(["commit", "commit", "release"])
                actual = rnd.choice([None, rnd.randint(0, 8), rnd.randint(9, 60)])
                step = ("settle", p, held, how, actual)
        elif roll < 0.955:
            # A transaction of a few calls, some in savepoints rolled back or released;
            # now and then REPEATABLE READ (where the hot path never serves).
            body = []
            for _ in range(rnd.randint(2, 4)):
                inner = simple(n, p)
                body.append(("savepoint", inner, rnd.random() < 0.5) if rnd.random() < 0.25 else inner)
            step = ("txn", p, body, rnd.choice(["commit", "commit", "rollback"]),
                    "REPEATABLE READ" if rnd.random() < 0.1 else "READ COMMITTED")
        elif roll < 0.975:
            clock += datetime.timedelta(minutes=rnd.randint(20, 12 * 60))
            step = ("tick", p, clock.isoformat())
        elif roll < 0.985:
            step = ("status", p)
        elif roll < 0.99:
            # Every consume also writes a 'consumed' event (both paths' event writing).
            step = ("notify", p, rnd.choice(["on", "off"]))
        else:
            step = ("unknown", p, rnd.choice(["consume", "check"]))
        plan.append(step)
    return plan


def text_timestamps(conn):
    """Load timestamptz as its text: lifetime windows start at '-infinity', which Python's
    datetime cannot hold (and the text, in the same TimeZone on every connection, compares
    as well)."""
    conn.adapters.register_loader("timestamptz", psycopg.types.string.TextLoader)
    return conn


class DiffSide:
    """One side of the differential: its connection and how its answers are normalised."""

    def __init__(self, side):
        self.side = side
        self.subjects = DIFF_SUBJECTS[side]
        self.conn = text_timestamps(connect(DIFF_DB, autocommit=True))
        self.cur = cursor(self.conn)
        self.cur.execute(CLOCK)
        self.cur.execute(f"SET quota.hot_path = {side}")
        # Thousands of one-statement transactions: no need to wait for each flush.
        self.cur.execute("SET synchronous_commit = off")
        self.rids = {}   # plan step -> its reservation id
        self.names = {}  # reservation id (text) -> R<step>
        self.overs = []  # admitted consumes whose hard binding limit they went past

    def call(self, sql, params):
        """One statement: ("ok", rows) or ("error", SQLSTATE, message, DETAIL). An admitted
        consume answers for its binding limit; when that is hard, it fits it whatever the
        plan, override or carry in force: used + reserved <= limit_value + bonus (a rate
        answers as redis-cell: used is the burst capacity taken)."""
        try:
            self.cur.execute(sql, params)
            rows = self.cur.fetchall() if self.cur.description else None
        except psycopg.Error as e:
            return ["error", e.sqlstate, e.diag.message_primary, e.diag.message_detail]
        if rows and "consume(" in sql and "quota_check" not in sql:
            cols = [d.name for d in self.cur.description]
            if {"allowed", "enforcement", "used", "reserved", "limit_value", "bonus"} <= set(cols):
                for row in rows:
                    r = dict(zip(cols, row))
                    if r["allowed"] and r["enforcement"] == "hard" and r["used"] + r["reserved"] > r["limit_value"] + r["bonus"]:
                        self.overs.append(self.norm(r))
        return ["ok", rows]

    def norm(self, v):
        if isinstance(v, str):
            if v.startswith("{") and v.endswith("}"):
                try:
                    return self.norm(json.loads(v))
                except ValueError:
                    pass
            for i, s in enumerate(self.subjects):
                v = v.replace(s, f"S{i}")
            for rid, name in self.names.items():
                v = v.replace(rid, name)
            return v
        if isinstance(v, uuid.UUID):
            return self.names.get(str(v), "R(unknown)")
        if isinstance(v, (datetime.datetime, datetime.date)):
            return v.isoformat()
        if isinstance(v, dict):
            return {k: self.norm(x) for k, x in v.items() if k not in DIFF_STAMPS}
        if isinstance(v, (list, tuple)):
            return [self.norm(x) for x in v]
        return v

    def one(self, n, step):
        """Run one (non-transaction) step; its answer, normalised."""
        kind, p = step[0], step[1]
        s = self.subjects[p]
        meta = json.dumps({"step": n})
        if kind == "consume":
            metric, amount, try_form, with_meta = step[2:]
            fn = "quota_try_consume" if try_form else "quota_consume"
            r = self.call(f"SELECT * FROM quota.{fn}(%s::text, %s::text, %s::bigint, NULL, %s::jsonb)",
                          (s, metric, amount, meta if with_meta else None))
        elif kind == "multi":
            amounts, try_form = step[2:]
            fn = "quota_try_consume" if try_form else "quota_consume"
            r = self.call(f"SELECT * FROM quota.{fn}(%s::text, %s::jsonb, NULL, %s::jsonb)", (s, json.dumps(amounts), meta))
        elif kind == "check":
            r = self.call("SELECT * FROM quota.quota_check(%s::text, %s::text, %s::bigint)", (s, step[2], step[3]))
        elif kind == "check_multi":
            r = self.call("SELECT * FROM quota.quota_check(%s::text, %s::jsonb)", (s, json.dumps(step[2])))
        elif kind == "consume_check":
            form, cm, ca, km, ka = step[2:]
            if form == "select":
                sql = ("SELECT quota.quota_consume(%s::text, %s::text, %s::bigint), "
                       "quota.quota_check(%s::text, %s::text, %s::bigint)")
            else:
                fn = "quota_try_consume" if form == "try_from" else "quota_consume"
                sql = (f"SELECT * FROM quota.{fn}(%s::text, %s::text, %s::bigint) c, "
                       "quota.quota_check(%s::text, %s::text, %s::bigint) k")
            r = self.call(sql, (s, cm, ca, s, km, ka))
        elif kind == "keyed":
            what, key, try_form = step[2:]
            fn = "quota_try_consume" if try_form else "quota_consume"
            if isinstance(what, dict):
                r = self.call(f"SELECT * FROM quota.{fn}(%s::text, %s::jsonb, %s::text, %s::jsonb)",
                              (s, json.dumps(what), key, meta))
            else:
                r = self.call(f"SELECT * FROM quota.{fn}(%s::text, %s::text, %s::bigint, %s::text, %s::jsonb)",
                              (s, what[0], what[1], key, meta))
        elif kind == "refund":
            r = self.call("SELECT * FROM quota.quota_refund(%s::text, %s::text, %s::bigint, %s::text)", (s,) + tuple(step[2:]))
        elif kind == "reset":
            r = self.call("SELECT quota.quota_reset(%s::text, %s::text)", (s, step[2]))
        elif kind == "bonus":
            r = self.call("SELECT * FROM quota.apply_bonus(%s::text, %s::text, %s::text, %s::text)", (s,) + tuple(step[2:]))
        elif kind == "reserve":
            metric, amount, try_form, ttl = step[2:]
            fn = "quota_try_reserve" if try_form else "quota_reserve"
            r = self.call(f"SELECT * FROM quota.{fn}(%s::text, %s::text, %s::bigint, %s::interval, NULL, %s::jsonb)",
                          (s, metric, amount, ttl, meta))
            if r[0] == "ok" and r[1] and r[1][0][0] is not None:
                self.rids[n] = r[1][0][0]
                self.names[str(r[1][0][0])] = f"R{n}"
        elif kind == "settle":
            held, how, actual = step[2:]
            rid = self.rids.get(held)
            if rid is None:
                r = ["no reservation"]
            elif how == "commit":
                r = self.call("SELECT * FROM quota.quota_commit(%s::uuid, %s::bigint, %s::jsonb)", (rid, actual, meta))
            else:
                r = self.call("SELECT quota.quota_release(%s::uuid, %s::text)", (rid, f"step {n}"))
        elif kind in ("tick", "nudge"):
            r = self.call("SELECT set_config('quota.clock_override', %s, false) IS NOT NULL", (step[2],))
        elif kind == "override":
            r = self.call("SELECT quota.set_override(%s::text, %s::text, %s::text, %s::bigint, %s::text, %s::timestamptz)",
                          (s,) + tuple(step[2:]))
        elif kind == "unoverride":
            r = self.call("SELECT quota.remove_override(%s::text, %s::text, %s::text)", (s,) + tuple(step[2:]))
        elif kind == "schedule":
            r = self.call("SELECT quota.assign_plan(%s::text, %s::text, effective_at => %s::timestamptz, carry => %s::text)",
                          (s,) + tuple(step[2:]))
        elif kind == "cancel":
            r = self.call("SELECT quota.cancel_plan_change(%s::text)", (s,))
        elif kind == "assign":
            r = self.call("SELECT quota.assign_plan(%s::text, %s::text, carry => %s::text)", (s,) + tuple(step[2:]))
        elif kind == "notify":
            r = self.call("SELECT set_config('quota.notify_every_consume', %s, false)", (step[2],))
        elif kind == "status":
            r = self.call("SELECT * FROM quota.quota_status(%s::text) ORDER BY metric, period", (s,))
        elif kind == "unknown":
            if step[2] == "consume":
                r = self.call("SELECT * FROM quota.quota_consume(%s::text, 'nosuchmetric', 1)", (s,))
            else:
                r = self.call("SELECT * FROM quota.quota_check(%s::text, 'nosuchmetric', 1)", (s,))
        else:
            raise ValueError(kind)
        return self.norm(r)

    def step(self, n, step):
        """Run step n (a transaction: each statement until the first error, then its end)."""
        if step[0] != "txn":
            return self.one(n, step)
        _, p, body, end, isolation = step
        answers = [self.norm(self.call(f"BEGIN ISOLATION LEVEL {isolation}", None))]
        for inner in body:
            if inner[0] == "savepoint":
                _, inner, keep = inner
                answers.append(self.norm(self.call("SAVEPOINT d", None)))
                answers.append(self.one(n, inner))
                if answers[-1][0] == "ok":
                    answers.append(self.norm(self.call("RELEASE SAVEPOINT d" if keep else "ROLLBACK TO SAVEPOINT d", None)))
            else:
                answers.append(self.one(n, inner))
            if answers[-1][0] != "ok":
                break
        failed = answers[-1][0] != "ok"
        answers.append(self.norm(self.call("ROLLBACK" if failed or end == "rollback" else "COMMIT", None)))
        return answers

    def status(self):
        self.cur.execute("SELECT enabled, hot_calls, general_calls FROM quota.hot_path_status()")
        return self.cur.fetchone()


# The tables compared: each a query over one side's subjects (rows grouped by subject, in
# the query's order; those in DIFF_SORTED sorted after normalisation, their order being
# that of random ids).
DIFF_TABLES = {
    "counters": "SELECT subject, metric, period, window_start, window_end, used, bonus, reserved, alerted "
                "FROM quota.counters WHERE subject = ANY(%s) ORDER BY subject, metric, period, window_start",
    "ledger": "SELECT subject, tenant, metric, period, window_start, kind, amount, overage, idempotency_key, metadata "
              "FROM quota.usage_events WHERE subject = ANY(%s) ORDER BY subject, id",
    "events": "SELECT subject, type, metric, payload, acknowledged_at FROM quota.events WHERE subject = ANY(%s) "
              "ORDER BY subject, id",
    "reservations": "SELECT subject, id, metric, period, window_start, window_end, amount, status, expires_at, "
                    "actual_amount, idempotency_key, metadata, response FROM quota.reservations WHERE subject = ANY(%s)",
    "idempotency keys": "SELECT subject, idempotency_key, operation, response FROM quota.idempotency_keys "
                        "WHERE subject = ANY(%s) ORDER BY subject, idempotency_key",
    "bonus grants": "SELECT subject, metric, kind, reference, reference_scope, amount, window_start, local_day "
                    "FROM quota.bonus_grants WHERE subject = ANY(%s) ORDER BY subject, id",
    "subjects": "SELECT subject, plan, tenant, cycle_anchor, time_zone, next_plan, next_plan_at, carry "
                "FROM quota.subjects WHERE subject = ANY(%s) ORDER BY subject",
    "overrides": "SELECT subject, metric, period, mode, value, expires_at, created_at FROM quota.subject_overrides "
                 "WHERE subject = ANY(%s) ORDER BY subject, metric, period",
}
DIFF_SORTED = {"reservations"}
# Holds that lapse together expire in one statement, in an order PostgreSQL does not fix
# (equal expiry instants come in heap order, which differs between the sides): each run
# of consecutive expiry rows is compared sorted. (table: the column and its value)
DIFF_SIMULTANEOUS = {"ledger": (5, "expire"), "events": (1, "reservation_expired")}


def sort_runs(rows, col, value):
    """`rows` with each run of consecutive rows whose `col` is `value` sorted."""
    out, run = [], []
    for r in rows + [None]:
        if r is not None and r[col] == value:
            run.append(r)
            continue
        out.extend(sorted(run, key=repr))
        run = []
        if r is not None:
            out.append(r)
    return out


def diff_tables(c, sides, label, report):
    """Compare every table of DIFF_TABLES between the sides; the rows compared."""
    compared = 0
    for table, query in DIFF_TABLES.items():
        rows = {}
        for side in sides:
            c.execute(query, (side.subjects,))
            rows[side.side] = [side.norm(r) for r in c.fetchall()]
            if table in DIFF_SORTED:
                rows[side.side].sort(key=repr)
            if table in DIFF_SIMULTANEOUS:
                rows[side.side] = sort_runs(rows[side.side], *DIFF_SIMULTANEOUS[table])
        on, off = rows["on"], rows["off"]
        compared += len(on) + len(off)
        if on != off:
            at = next((k for k, (x, y) in enumerate(zip(on, off)) if x != y), min(len(on), len(off)))
            report(f"{label}: {table} differ: {len(on)} rows with the hot path, {len(off)} without; first difference "
                   f"at row {at}: on {short_repr(on[at:at + 1])} / off {short_repr(off[at:at + 1])}")
    return compared


def short_repr(v, n=400):
    text = repr(v)
    return text if len(text) <= n else text[:n] + f"...({len(text)} chars)"


def differential_phase(plan):
    started = time.monotonic()
    diff_setup()
    sides = [DiffSide(side) for side in DIFF_SIDES]
    reader = text_timestamps(connect(DIFF_DB, autocommit=True))
    c = cursor(reader)
    differences = [0]

    def report(msg):
        differences[0] += 1
        if differences[0] <= DIFF_REPORTED:
            violation(f"differential: {msg}")

    compared = 0
    kinds = Counter()
    for n, step in enumerate(plan):
        kinds[step[0]] += 1
        on, off = (side.step(n, step) for side in sides)
        if on != off:
            report(f"step {n} {short_repr(step, 200)}: with the hot path {short_repr(on)}; without {short_repr(off)}")
        for side in sides:
            for r in side.overs:
                violation(f"differential: step {n} {short_repr(step, 200)} (hot path {side.side}) admitted past a hard "
                          f"limit: {short_repr(r)}")
            side.overs.clear()
        if (n + 1) % DIFF_COMPARE_EVERY == 0 or n + 1 == len(plan):
            compared += diff_tables(c, sides, f"after step {n}", report)
    if differences[0] > DIFF_REPORTED:
        violation(f"differential: ... {differences[0]} differences in all")
    # Both sides keep the ledger invariant per window (subject, metric, period,
    # window_start), carries included. No hard limit whose value stayed put (the same in
    # DIFF and DIFF2, never overridden) was ever exceeded: the others moved under their
    # windows, and after a downgrade that keeps the usage, used above the new limit is
    # right (each admitted consume was checked against its own answer instead). The rate
    # of g admitted no more than the faster of its two rates allows.
    counters_match_ledger(c, "differential")
    moved = set(DIFF2_CHANGES) | set(DIFF_OVERRIDES)
    hard_limits_held(c, "differential", {(m, p): limit for m, limits in DIFF_METRICS.items()
                                         for p, limit, enforcement, _cap, _alerts in limits
                                         if enforcement == "hard" and (m, p) not in moved})
    gcra_held(c, "differential", {m: ("day", [DIFF_RATES[m], DIFF2_RATES[m]]) for m in DIFF_RATES})
    # The hot path must really have served the 'on' side, and never the 'off' side.
    (on_enabled, on_hot, on_general), (off_enabled, off_hot, off_general) = (side.status() for side in sides)
    share = on_hot / max(1, on_hot + on_general)
    if not on_enabled or share <= DIFF_HOT_SHARE:
        violation(f"differential: the hot path served {on_hot} of the {on_hot + on_general} checks and consumes of the "
                  f"connection with quota.hot_path on (enabled {on_enabled}); more than {DIFF_HOT_SHARE:.0%} expected")
    if off_enabled or off_hot != 0 or off_general == 0:
        violation(f"differential: the connection with quota.hot_path off reports enabled {off_enabled}, "
                  f"{off_hot} hot and {off_general} general calls (expected off, 0 hot, some general)")
    for side in sides:
        side.conn.close()
    reader.close()
    stats["differential_ops"] = len(plan)
    print(f"   {len(plan)} steps on {DIFF_PAIRS} subject pairs ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}); "
          f"hot path on: {on_hot} hot and {on_general} general calls ({share:.0%} hot); off: {off_hot} hot and "
          f"{off_general} general; {compared} table rows compared, {differences[0]} differences; "
          f"{time.monotonic() - started:.1f} s, {len(violations)} violations", flush=True)


# Bad input ------------------------------------------------------------------------------

ALLOWED_STATES = {"QT429", "QT413", "QT404", "22023", "22004", "22P02", "22003", "22007", "22008", "22015",
                  "42P01", "42501", "42804", "23001", "54000", "0A000", "2BP01", "42883", "22021",
                  # 0.9.0: a tenant the calls pause (pause_tenant with a drawn name) refuses later calls
                  "QT503"}


def allowed_states(name):
    """What a call may answer with: besides bad input, the documented prerequisites of the
    tenant move's steps and await_tenant_quiet (55000: the tenant is not paused for it)."""
    return ALLOWED_STATES | ({"55000"} if name.startswith("move_") or name == "await_tenant_quiet" else set())
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
                    if code is not None and code not in allowed_states(name):
                        violation(f"bad input: quota.{name} arg {i + 1} ({t}) = {str(bad)[:40]!r} gave SQLSTATE {code}")
        one_at_a_time = tried
        # Property test: a fixed number of random argument tuples, drawn from the seed.
        for k, picks in plan:
            name, types = sigs[k]
            values = [choices(t)[j] for t, j in zip(types, picks)]
            code = call(name, types, values)
            tried += 1
            outcomes[code or "ok"] += 1
            if code is not None and code not in allowed_states(name):
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
    unknown = [p for p in PHASES if p not in ALL_PHASES]
    if unknown:
        print(f"reliability: unknown phase {', '.join(unknown)} in QUOTA_PHASES (phases: {' '.join(ALL_PHASES)})",
              file=sys.stderr, flush=True)
        sys.exit(2)
    if PHASES != ALL_PHASES:
        print(f"   phases: {' '.join(p for p in ALL_PHASES if p in PHASES)} (QUOTA_PHASES)", flush=True)
    if os.environ.get("QUOTA_PROPERTY_SECONDS"):
        print("   note: QUOTA_PROPERTY_SECONDS is ignored; the property test makes QUOTA_PROPERTY_CALLS "
              f"({PROPERTY_CALLS}) calls", flush=True)
    print(f"   {CLIENTS} clients x {OPS_PER_CLIENT} operations, {CRASHES} crashes, "
          f"{PROPERTY_CALLS} property calls, server log {SERVER_LOG}", flush=True)
    mark = 0  # the cluster was started for this run: its whole log is ours
    setup()
    # Every plan is drawn before anything runs, so the digests say what this seed replays.
    stress_plans = phase_plans(SEED, "stress", OPS_PER_CLIENT)
    base = datetime.datetime.fromisoformat(CLOCK_AT)
    for k, phase in enumerate(["stress"] + [f"crash{k + 1}" for k in range(CRASHES)] + ["retention"]):
        PHASE_CLOCK[phase] = (base + datetime.timedelta(minutes=k)).isoformat()
    admin_plans = {phase: admin_plan(SEED, phase) for phase in PHASE_CLOCK}
    print(f"   plan admin: {ADMIN_ACTIONS} overrides and plan changes per phase, digest "
          f"{digest([admin_plans[p] for p in PHASE_CLOCK])}", flush=True)
    # Enough work per client that each kill lands in the middle of it.
    crash_plans = [phase_plans(SEED, f"crash{k + 1}", OPS_PER_CLIENT * 4) for k in range(CRASHES)]
    crash_delays = [random.Random(f"{SEED}-crash{k + 1}-delay").uniform(0.5, 3.0) for k in range(CRASHES)]
    retention_plans = phase_plans(SEED, "retention", OPS_PER_CLIENT // 2)
    part_plans = [partition_plan(SEED, i, PART_TXNS) for i in range(PART_CLIENTS)]
    show_plans(f"partition ({PART_TXNS} transactions each)", part_plans)
    ten_plans = [(t, tenant_plan(SEED, t, i, TENANT_OPS)) for t in TENANTS for i in range(TENANT_CLIENTS)]
    show_plans(f"tenants ({TENANT_OPS} ops each)", [p for _, p in ten_plans])
    old_version_plans = {v: old_plans(SEED, v) for v in OLD_VERSIONS}
    for v, (clients, changes) in old_version_plans.items():
        show_plans(f"old {v} ({OLD_OPS} ops each, admin {digest(changes)[:8]})", clients)
    pool_plans = {run: [pool_plan(SEED, run, i, n) for i in range(POOL_CLIENTS)] for run, n in POOL_RUN_OPS.items()}
    pool_admin = {run: pool_admin_plan(SEED, run) for run in POOL_RUN_OPS}
    pool_delay = random.Random(f"{SEED}-pools-crash-delay").uniform(0.5, 2.5)
    for run, plans in pool_plans.items():
        show_plans(f"pools {run} ({POOL_RUN_OPS[run]} transactions each, admin {digest(pool_admin[run])[:8]})", plans)
    diff_steps = diff_plan(SEED, DIFF_OPS)
    print(f"   plan differential: {DIFF_OPS} steps on {DIFF_PAIRS} subject pairs, digest {digest(diff_steps)}", flush=True)
    sigs = signatures()
    prop_plan = property_plan(SEED, sigs, PROPERTY_CALLS)

    log = Log()
    if "stress" in PHASES:
        print("-- stress", flush=True)
        threads, logs, stop, log = run_load(stress_plans, clock=PHASE_CLOCK["stress"], admin=admin_plans["stress"])
        log = join_load(threads, logs, log)
        check_invariants(log, "stress")
        mark = scan_log(mark, "setup and stress")
        print(f"   {stats['operations']} operations, {stats['aborts']} aborts, {log.admin['applied']} admin changes, "
              f"{len(violations)} violations", flush=True)

    if "crash" in PHASES:
        print("-- crash recovery", flush=True)
    total = log
    for k in range(CRASHES if "crash" in PHASES else 0):
        before = stats["operations"]
        crashed = crash_and_restart(crash_plans[k], crash_delays[k], PHASE_CLOCK[f"crash{k + 1}"],
                                    admin_plans[f"crash{k + 1}"])
        total.merge(crashed)
        check_invariants(total, f"crash {k + 1}")
        mark = scan_log(mark, f"crash {k + 1}")
        print(f"   crash {k + 1} after {crash_delays[k]:.2f} s survived after {stats['operations'] - before} "
              f"acknowledged operations ({len(crashed.in_doubt)} in doubt, {crashed.admin['applied']} admin changes), "
              f"{len(violations)} violations", flush=True)

    if "retention" in PHASES:
        print("-- retention: compaction during load", flush=True)
        compacted, admin_done = compaction_under_load(retention_plans, PHASE_CLOCK["retention"],
                                                      admin_plans["retention"])
        check_invariants(None, "retention", per_op=False)
        mark = scan_log(mark, "retention")
        print(f"   {compacted} events summarised while clients ran, {admin_done['applied']} admin changes, "
              f"{len(violations)} violations", flush=True)

    if "pools" in PHASES:
        print("-- pools with slices: load, kill -9, load after the restart", flush=True)
        pools_phase(pool_plans, pool_admin, pool_delay)
        mark = scan_log(mark, "pools")

    if "partition" in PHASES:
        print("-- partitioned table", flush=True)
        partition_setup()
        partition_phase(part_plans)
        mark = scan_log(mark, "partition")

    if "tenants" in PHASES:
        print("-- bound tenant roles", flush=True)
        tenant_phase(ten_plans, tenant_setup())
        mark = scan_log(mark, "tenants")

    if "old" in PHASES:
        print(f"-- old versions ({', '.join(OLD_VERSIONS)}), updated under load", flush=True)
        for v in OLD_VERSIONS:
            old_setup(v)
            old_version_phase(v, old_version_plans[v])
        mark = scan_log(mark, "old versions")

    if "differential" in PHASES:
        print("-- hot path against the general path (differential)", flush=True)
        if diff_steps:
            differential_phase(diff_steps)
            mark = scan_log(mark, "differential")
        else:
            print("   skipped (QUOTA_DIFF_OPS=0)", flush=True)

    if "bad_input" in PHASES:
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
          f"crashes_survived={stats['crashes_survived']} partition_txns={stats['partition_txns']} "
          f"tenant_ops={stats['tenant_ops']} cross_tenant_refused={stats['cross_tenant_refused']} "
          f"old_version_ops={stats['old_version_ops']} differential_ops={stats['differential_ops']} "
          f"pool_txns={stats['pool_txns']} pool_retries={stats['pool_retries']} bad_inputs={stats['bad_inputs']} "
          f"invariant_violations={len(violations)} server_log={size / MB:.1f}MB "
          f"peak_rss={peak_rss * 1024 / MB:.0f}MB seed={SEED}", flush=True)
    sys.exit(1 if violations else 0)


if __name__ == "__main__":
    main()
