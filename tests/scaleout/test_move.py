"""The tenant move (issue 19, item 4): scripts/move_tenant.sh and sql/move.sql, with real
separate connections. Prints its seed first:

  test_move: seed=N (replay with QUOTA_SEED=N)

and ends with one line:

  test_move: tests=N failed=N operations=N qt503_retries=N seed=N

Two ways to run it:
  - against a running loopback cluster (scripts/scaleout.sh: nodes and a router):
      /usr/bin/python3 tests/scaleout/test_move.py --router 'host=127.0.0.1 port=P dbname=router user=postgres'
    it needs at least two nodes in cluster.nodes;
  - standalone (default): starts two clusters of its own with scripts/cluster.sh
    ($QUOTA_RUN, ports $QUOTA_MOVE_PORT and the next, default 55780) and a router
    database holding only the shard map (tests/scaleout/router_stub.sql, R's contract).
The installed extension must have the tenant move (sql/move.sql) and the pause (0.9.0);
the test stops at once when it does not.

Tests (each can fail; a failure prints what differs):
  known_tables       every table registered for pg_dump is classified by quota.move_tables(),
                     and a new one makes the move refuse (55000)
  privileges         quota_app and quota_reader get 42501 from every move function
  clash              a subject id of the tenant already on the target refuses the move
                     (23505, JSON DETAIL naming it, HINT); both nodes and the map unchanged
  foreign_stage      quota_admin staging another tenant's state (digest and all) is refused
  midway             a copy that fails after both pauses (a plan missing on the target):
                     non-zero exit, paused on both, nothing on the target; --abort restores
  renumber           ledger and event ids come from the target's sequences, in the
                     source's order; every row's contents kept
  under_load         clients consume through the router and directly on the source node
                     (retrying QT503 by asking the router where the tenant lives) while the
                     script moves the tenant; invariants on both nodes before and after; the
                     acknowledged consumes equal the target's ledger, one row each; nothing
                     left on the source
  old_node           after the move, calls for the tenant on the old node fail with QT503
                     (hot path on and off)
  rerun              the script re-run after renumber's move does nothing harmful; --abort
                     before the flip resumes the tenant where it was
QUOTA_MOVE_OPS (default 600): the fixed number of consumes of under_load, over 4 clients.
"""
import json
import os
import random
import subprocess
import sys
import threading
import time

import psycopg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "scripts", "move_tenant.sh")
SEED = int(os.environ.get("QUOTA_SEED", random.randrange(1 << 31)))
OPS = int(os.environ.get("QUOTA_MOVE_OPS", "600"))
CLIENTS = 4
# Tenants of this run: the seed in their names, so that a run against a long-lived cluster
# (scripts/scaleout.sh keeps its state) meets no tenant of an earlier run.
T = {name: f"mv{SEED}-{name}" for name in ("clash", "elsewhere", "renum", "resident", "load", "again", "midway", "twice")}
results = {"tests": 0, "failed": 0, "operations": 0, "qt503": 0}
failures = []


def connect(conninfo):
    return psycopg.connect(conninfo, autocommit=True)


def one(conninfo, sql, args=()):
    with connect(conninfo) as c:
        row = c.execute(sql, args).fetchone()
        return row[0] if row else None


def one_all(conninfo, sql, args=()):
    with connect(conninfo) as c:
        return c.execute(sql, args).fetchall()


def check(cond, what):
    if not cond:
        failures.append(what)
        print(f"   FAIL: {what}", flush=True)
    return cond


class Cluster:
    """The router and the nodes, by name."""

    def __init__(self, router):
        self.router = router
        with connect(router) as c:
            # cluster.nodes names no user (R's router adds its own): the test's is postgres.
            self.nodes = {n: cs if "user=" in cs else f"{cs} user=postgres"
                          for n, cs in c.execute("SELECT node, connstr FROM cluster.nodes ORDER BY node").fetchall()}
            self.routed = c.execute("SELECT to_regprocedure('cluster.quota_try_consume(text, text, text, bigint, text, jsonb)') "
                                    "IS NOT NULL").fetchone()[0]
        for node, cs in self.nodes.items():
            ensure_move_sql(node, cs)
        if len(self.nodes) < 2:
            sys.exit("test_move: the router's cluster.nodes has fewer than two nodes")

    def node_for(self, tenant):
        return one(self.router, "SELECT node FROM cluster.node_for(%s)", (tenant,))

    def place(self, tenant, node):
        one(self.router, "SELECT cluster.place_tenant(%s, %s)", (tenant, node))

    def move(self, tenant, target, *extra):
        p = subprocess.run([SCRIPT, "--router", self.router, "--node-user", "postgres", *extra, tenant, target],
                           capture_output=True, text=True, timeout=300)
        return p.returncode, p.stdout, p.stderr


# Setting up ------------------------------------------------------------------------------

def sh(cmd):
    subprocess.run(["bash", "-c", cmd], cwd=ROOT, check=True)


def ensure_move_sql(node, cs):
    """The installed quota_ext must have the pause and the move (0.9.0): never a stand-in."""
    with connect(cs) as c:
        missing = c.execute("SELECT to_regproc('quota.pause_tenant') IS NULL OR to_regproc('quota.move_export') IS NULL").fetchone()[0]
    if missing:
        sys.exit(f"test_move: {node}: the installed quota_ext has no tenant pause or move (0.9.0 needed)")


def standalone():
    run = os.environ.get("QUOTA_RUN", "/tmp/quota_move")
    port = int(os.environ.get("QUOTA_MOVE_PORT", "55780"))
    env = f"export QUOTA_RUN={run}; . scripts/cluster.sh; "
    for i in (1, 2):
        sh(env + f"cluster_start move{i} {port + i - 1} \"shared_preload_libraries = 'quota_ext'\"")
    nodes = {f"n{i}": f"host=127.0.0.1 port={port + i - 1} dbname=quota user=postgres" for i in (1, 2)}
    listed = {n: cs.replace(" user=postgres", "") for n, cs in nodes.items()}
    for i, (node, cs) in enumerate(nodes.items()):
        admin = cs.replace("dbname=quota", "dbname=postgres")
        with connect(admin) as c:
            c.execute("CREATE DATABASE quota")
        with connect(cs) as c:
            c.execute("CREATE EXTENSION quota_ext")
            c.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
    router = nodes["n1"].replace("dbname=quota", "dbname=router")
    with connect(nodes["n1"].replace("dbname=quota", "dbname=postgres")) as c:
        c.execute("CREATE DATABASE router")
    with connect(router) as c:
        c.execute(open(os.path.join(ROOT, "tests/scaleout/router_stub.sql")).read())
        for node, cs in nodes.items():
            c.execute("INSERT INTO cluster.nodes VALUES (%s, %s, %s)", (node, listed[node], node == "n1"))
    return router


CONFIG = ["set_limit('MOVE', 'tokens', 'day', 1000000)", "set_limit('MOVE', 'calls', 'day', 40)",
          "set_bonus_rule('MOVE', 'tokens', 'payment', 100)", "set_alerts('MOVE', 'calls', ARRAY[50])",
          "set_limit('MOVE_TEAM', 'tokens', 'day', 10000000)"]


def configure(cl):
    """The same plans on every node: through the router's fan-out when it has one (so that
    its canonical configuration and the nodes' agree), else on each node."""
    fan_out = one(cl.router, "SELECT to_regproc('cluster.set_limit') IS NOT NULL")
    if fan_out:
        with connect(cl.router) as c:
            for call in CONFIG:
                c.execute(f"SELECT cluster.{call}")
    for cs in cl.nodes.values():
        with connect(cs) as c:
            if not fan_out:
                for call in CONFIG:
                    c.execute(f"SELECT quota.{call}")
            # The app's schema is on every node, and so is its quota (configuration).
            # Keys unique across nodes (the owner, prefixed with the tenant, in the key): a
            # bigserial key would clash on the target (row_charge_exists).
            c.execute("CREATE TABLE IF NOT EXISTS public.mv_docs (owner text, n integer, PRIMARY KEY (owner, n))")
            c.execute("SELECT quota.enforce_on_insert('public.mv_docs', subject_column => 'owner', metric => 'tokens', "
                      "amount => 3, refund_on_delete => true)")


def populate(cs, tenant, n, rng):
    """Subjects of tenant on node cs with some of every kind of state."""
    with connect(cs) as c:
        c.execute("SELECT set_config('quota.tenant', %s, false)", (tenant,))
        for i in range(n):
            s = f"{tenant}:u{i}"
            c.execute("SELECT quota.assign_plan(%s, 'MOVE', %s)", (s, tenant))
            for k in range(rng.randrange(1, 6)):
                c.execute("SELECT quota.quota_consume(%s, 'tokens', %s, %s, %s)",
                          (s, rng.randrange(1, 500), f"{s}-k{k}", json.dumps({"seed": k})))
            c.execute("SELECT quota.quota_try_consume(%s, 'calls', %s)", (s, rng.randrange(10, 30)))
        # A pool (its members draw from slices: quota.pool_slices), rows charged per insert
        # (quota.row_charges), part of the ledger compacted (quota.usage_summaries).
        c.execute("SELECT quota.assign_plan(%s, 'MOVE_TEAM', %s)", (f"{tenant}:team", tenant))
        for i in range(n):
            c.execute("SELECT quota.set_pool(%s, %s)", (f"{tenant}:u{i}", f"{tenant}:team"))
            c.execute("SELECT quota.quota_consume(%s, 'tokens', %s)", (f"{tenant}:u{i}", rng.randrange(1, 50)))
        c.execute("INSERT INTO public.mv_docs VALUES (%s, 1), (%s, 2)", (f"{tenant}:u0", f"{tenant}:u0"))
        c.execute("SELECT quota.compact_ledger(%s::interval)", ("0 seconds",))
        c.execute("SELECT quota.quota_consume(%s, 'tokens', 7)", (f"{tenant}:u0",))
        s0 = f"{tenant}:u0"
        r = c.execute("SELECT reservation FROM quota.quota_reserve(%s, 'tokens', 77)", (s0,)).fetchone()[0]
        if n > 1:
            c.execute("SELECT quota.quota_commit(reservation, 5) FROM quota.quota_reserve(%s, 'tokens', 9)", (f"{tenant}:u1",))
        c.execute("SELECT quota.apply_bonus(%s, 'tokens', 'payment', %s)", (s0, f"pay-{tenant}"))
        c.execute("SELECT quota.set_override(%s, 'tokens', 'day', 5000000)", (s0,))
        c.execute("SELECT * FROM quota.throttle(%s, 5, 10, '60 seconds')", (f"ip:{tenant}",))
        c.execute("SELECT quota.ack_events((SELECT min(id) FROM quota.events))")
        return r


def node_state(cs, tenant):
    """Everything a move could change on a node, for 'unchanged' checks."""
    with connect(cs) as c:
        return (c.execute("SELECT quota.move_digest(%s)", (tenant,)).fetchone()[0],
                c.execute("SELECT quota.move_pause_state(%s)", (tenant,)).fetchone()[0],
                c.execute("SELECT count(*), max(id) FROM quota.usage_events").fetchone(),
                c.execute("SELECT count(*) FROM quota.subjects").fetchone()[0])


def invariants_hold(cs, tenant, label):
    ok = True
    with connect(cs) as c:
        for inv, good, detail in c.execute("SELECT * FROM quota.tenant_invariants(%s)", (tenant,)).fetchall():
            if good is False and inv != "hard limits held (current windows)":
                ok = check(False, f"{label}: {inv}: {detail}") and ok
        n = c.execute("SELECT count(*) FROM quota.ledger_check").fetchone()[0]
        ok = check(n == 0, f"{label}: quota.ledger_check has {n} rows on the whole node") and ok
    return ok


# Tests -----------------------------------------------------------------------------------

def test_known_tables(cl):
    cs = next(iter(cl.nodes.values()))
    with connect(cs) as c:
        c.execute("SELECT quota.move_check_tables()")
        unknown = c.execute("""
            SELECT array_agg(c.oid::regclass::text) FROM pg_extension x, unnest(x.extconfig) r(oid)
            JOIN pg_class c ON c.oid = r.oid
            WHERE x.extname = 'quota_ext' AND c.relkind IN ('r', 'p')
              AND c.oid NOT IN (SELECT table_name FROM quota.move_tables())""").fetchone()[0]
        check(unknown is None, f"tables registered for pg_dump that the move does not know: {unknown}")
        # A new state table must make the move refuse, not be left behind.
        c.execute("CREATE TABLE quota.zz_new_state (subject text)")
        c.execute("ALTER EXTENSION quota_ext ADD TABLE quota.zz_new_state")
        # pg_extension_config_dump works only in an extension's script: register it as it does.
        c.execute("""UPDATE pg_extension SET extconfig = extconfig || 'quota.zz_new_state'::regclass::oid,
                                             extcondition = extcondition || ''::text WHERE extname = 'quota_ext'""")
        try:
            c.execute("SELECT quota.move_check_tables()")
            check(False, "a new table registered for pg_dump did not make move_check_tables refuse")
        except psycopg.Error as e:
            check(e.sqlstate == "55000" and "zz_new_state" in (e.diag.message_detail or ""),
                  f"new table: {e.sqlstate} {e.diag.message_detail}")
        finally:
            c.execute("""UPDATE pg_extension SET extconfig = extconfig[1:cardinality(extconfig) - 1],
                                                 extcondition = extcondition[1:cardinality(extcondition) - 1]
                         WHERE extname = 'quota_ext' AND extconfig[cardinality(extconfig)] = 'quota.zz_new_state'::regclass""")
            c.execute("ALTER EXTENSION quota_ext DROP TABLE quota.zz_new_state")
            c.execute("DROP TABLE quota.zz_new_state")


def test_privileges(cl):
    cs = next(iter(cl.nodes.values()))
    calls = ["quota.move_export('t')", "quota.move_import('t')", "quota.move_delete('t')", "quota.move_digest('t')",
             "quota.tenant_invariants('t')", "quota.move_tables()", "quota.move_check_target('t')",
             "quota.move_rows('t')", "quota.move_digest_of(false, 't')", "quota.move_check_tables()",
             "quota.move_pause_state('t')", "quota.move_require_pause('t', '{moving}', 'x')",
             "quota.move_require_scope('t')"]
    with connect(cs) as c:
        for role in ("quota_app", "quota_reader"):
            c.execute(f"SET ROLE {role}")
            for call in calls:
                try:
                    c.execute(f"SELECT * FROM {call}")
                    check(False, f"{role} may call {call}")
                except psycopg.Error as e:
                    check(e.sqlstate == "42501", f"{role} {call}: {e.sqlstate} (42501 expected)")
            c.execute("RESET ROLE")
        # quota_admin may read a digest (and so run the script), but one who names a tenant
        # in quota.tenant acts for that tenant only (as quota.pause_tenant).
        c.execute("SET ROLE quota_admin")
        check(c.execute("SELECT quota.move_digest('nobody')").fetchone()[0] == {}, "quota_admin: digest of nobody")
        c.execute("SET quota.tenant = 'somebody'")
        check(c.execute("SELECT quota.move_digest('somebody')").fetchone()[0] == {}, "quota_admin: digest of its own tenant")
        for call in ("quota.move_digest('nobody')", "quota.tenant_invariants('nobody')", "quota.move_export('nobody')",
                     "quota.move_pause_state('nobody')"):
            try:
                c.execute(f"SELECT * FROM {call}")
                check(False, f"quota_admin scoped to another tenant may call {call}")
            except psycopg.Error as e:
                check(e.sqlstate == "42501" and e.diag.message_hint, f"scoped quota_admin {call}: {e.sqlstate} {e.diag.message_primary}")
        c.execute("RESET quota.tenant")
        # The steps that write a tenant's state wholesale are a superuser's, even for an
        # unscoped administrator (PostgreSQL's own permission error).
        for call in ("quota.move_import('nobody')", "quota.move_delete('nobody')", "quota.move_check_target('nobody')"):
            try:
                c.execute(f"SELECT * FROM {call}")
                check(False, f"quota_admin may call {call}")
            except psycopg.Error as e:
                check(e.sqlstate == "42501", f"quota_admin {call}: {e.sqlstate} (42501 expected)")
        c.execute("RESET ROLE")


def test_clash(cl, rng):
    (a, a_cs), (b, b_cs) = list(cl.nodes.items())[:2]
    tenant = T["clash"]
    cl.place(tenant, a)
    populate(a_cs, tenant, 3, rng)
    with connect(b_cs) as c:   # the same subject id, another tenant, on the target
        c.execute("SELECT quota.assign_plan(%s, 'MOVE', %s)", (f"{tenant}:u1", T["elsewhere"]))
    before = (node_state(a_cs, tenant), node_state(b_cs, tenant), cl.node_for(tenant))
    rc, out, err = cl.move(tenant, b)
    check(rc != 0, f"clash: the script succeeded:\n{out}")
    check("23505" in err or "already exist" in err, f"clash: no 23505 in the message:\n{err}")
    check(f"{tenant}:u1" in err and "HINT" in err, f"clash: the DETAIL or HINT is missing:\n{err}")
    after = (node_state(a_cs, tenant), node_state(b_cs, tenant), cl.node_for(tenant))
    check(before == after, f"clash: something changed: {before} -> {after}")
    # The import refuses by itself too (a subject created after the script's check).
    with connect(b_cs) as c:
        c.execute("SELECT quota.pause_tenant(%s, %s)", (tenant, b))
        try:
            c.execute("BEGIN")
            c.execute("CREATE TEMP TABLE quota_move_stage (tbl text, rec jsonb) ON COMMIT DROP")
            c.execute("INSERT INTO quota_move_stage VALUES ('subjects', %s)",
                      (json.dumps({"subject": f"{tenant}:u1", "tenant": tenant}),))
            c.execute("SELECT quota.move_check_target(%s)", (tenant,))
            check(False, "move_check_target accepted a clashing subject")
        except psycopg.Error as e:
            d = json.loads(e.diag.message_detail or "{}")
            check(e.sqlstate == "23505" and d.get("subjects") == [f"{tenant}:u1"] and d.get("code") == "subject_exists"
                  and e.diag.message_hint, f"move_check_target: {e.sqlstate} {d} {e.diag.message_hint}")
        finally:
            c.execute("ROLLBACK")
        # A charged row whose key the target already has (the app's keys clash).
        try:
            c.execute("BEGIN")
            c.execute("""INSERT INTO quota.row_charges VALUES ('public.mv_docs', 'k1', 'tokens', 'someone', now(), 3, now(), 'day')""")
            c.execute("CREATE TEMP TABLE quota_move_stage (tbl text, rec jsonb) ON COMMIT DROP")
            c.execute("INSERT INTO quota_move_stage VALUES ('row_charges', %s)",
                      (json.dumps({"table_name": "public.mv_docs", "row_key": "k1", "metric": "tokens", "period": "day",
                                   "subject": f"{tenant}:u0"}),))
            c.execute("SELECT quota.move_check_target(%s)", (tenant,))
            check(False, "move_check_target accepted a charged row whose key the target has")
        except psycopg.Error as e:
            d = json.loads(e.diag.message_detail or "{}")
            check(e.sqlstate == "23505" and d.get("code") == "row_charge_exists" and d.get("tables") == ["public.mv_docs"],
                  f"move_check_target, row charges: {e.sqlstate} {d}")
        finally:
            c.execute("ROLLBACK")
            c.execute("SELECT quota.resume_tenant(%s)", (tenant,))


def test_foreign_stage(cl):
    """A stage (with a matching digest) holding a subject of another tenant and a ledger row
    of a subject the tenant does not have: move_import refuses (55000), nothing is written
    (move_import is a superuser's, and even a superuser's stage holds one tenant only)."""
    (a, a_cs), (b, b_cs) = list(cl.nodes.items())[:2]
    tenant = T["clash"] + "-x"
    with connect(b_cs) as c:
        c.execute("SELECT quota.assign_plan(%s, 'MOVE', %s)", (f"{tenant}-victim", T["elsewhere"]))
        c.execute("SELECT quota.pause_tenant(%s, %s)", (tenant, b))
        before = node_state(b_cs, T["elsewhere"])
        for rows in ([("subjects", {"subject": f"{tenant}-evil", "tenant": T["elsewhere"], "plan": "MOVE",
                                    "cycle_anchor": "2026-01-01T00:00:00+00:00", "time_zone": "UTC",
                                    "created_at": "2026-01-01T00:00:00+00:00"})],
                     [("usage_events", {"id": 1, "subject": f"{tenant}-ghost", "tenant": T["elsewhere"], "metric": "tokens",
                                        "window_start": "2026-01-01T00:00:00+00:00", "kind": "consume", "amount": 5,
                                        "overage": 0, "created_at": "2026-01-01T00:00:00+00:00", "period": "day"})]):
            try:
                c.execute("BEGIN")
                c.execute("CREATE TEMP TABLE quota_move_stage (tbl text, rec jsonb) ON COMMIT DROP")
                for t, r in rows:
                    c.execute("INSERT INTO quota_move_stage VALUES (%s, %s)", (t, json.dumps(r)))
                c.execute("INSERT INTO quota_move_stage SELECT 'digest', quota.move_digest_of(true, %s)", (tenant,))
                c.execute("SELECT quota.move_import(%s)", (tenant,))
                check(False, f"foreign stage: move_import accepted {rows[0][0]} of another tenant")
            except psycopg.Error as e:
                check(e.sqlstate == "55000" and "another tenant" in e.diag.message_primary,
                      f"foreign stage: {e.sqlstate} {e.diag.message_primary}")
            finally:
                c.execute("ROLLBACK")
        c.execute("SELECT quota.resume_tenant(%s)", (tenant,))
        check(node_state(b_cs, T["elsewhere"]) == before, "foreign stage: the other tenant changed")


def test_stage_view(cl):
    """The staged copy is read by SECURITY DEFINER functions: a temporary view named
    quota_move_stage, whose function would run as the extension's owner, is refused (55000
    move_not_staged) before it is read (a second line of defence: only a superuser may
    call these steps at all, test_privileges)."""
    (a, a_cs), (b, b_cs) = list(cl.nodes.items())[:2]
    tenant = T["clash"] + "-view"
    with connect(b_cs) as c:
        c.execute("SELECT quota.pause_tenant(%s, %s)", (tenant, b))
        for call in ("move_check_target", "move_import"):
            try:
                c.execute("BEGIN")
                c.execute("CREATE FUNCTION pg_temp.who() RETURNS text LANGUAGE plpgsql AS "
                          "$f$BEGIN RAISE EXCEPTION 'the stage ran as %', current_user; END$f$")
                c.execute("CREATE TEMP VIEW quota_move_stage AS SELECT 'digest'::text AS tbl, jsonb_build_object('who', pg_temp.who()) AS rec")
                c.execute(f"SELECT quota.{call}(%s)", (tenant,))
                check(False, f"stage view: {call} accepted a view")
            except psycopg.Error as e:
                d = json.loads(e.diag.message_detail or "{}")
                check(e.sqlstate == "55000" and d.get("code") == "move_not_staged",
                      f"stage view: {call}: {e.sqlstate} {e.diag.message_primary}")
            finally:
                c.execute("ROLLBACK")
        c.execute("SELECT quota.resume_tenant(%s)", (tenant,))


def test_midway(cl, rng):
    """The copy fails after both pauses (a plan the source has and the target lacks): the
    script exits non-zero and says what to do, the tenant stays paused on both nodes and
    the target holds nothing; --abort then resumes it where it was, unchanged."""
    (a, a_cs), (b, b_cs) = list(cl.nodes.items())[:2]
    tenant = T["midway"]
    plan = f"{tenant}-ONLY-A"
    cl.place(tenant, a)
    populate(a_cs, tenant, 2, rng)
    with connect(a_cs) as c:
        c.execute("SELECT quota.set_limit(%s, 'tokens', 'day', 100)", (plan,))
        c.execute("SELECT quota.assign_plan(%s, %s, %s)", (f"{tenant}:u1", plan, tenant))
    before = node_state(a_cs, tenant)
    rc, out, err = cl.move(tenant, b)
    check(rc != 0 and "move_plan_missing" in err and "--abort" in err, f"midway: {rc}\n{out}\n{err}")
    check(one(a_cs, "SELECT quota.move_pause_state(%s)", (tenant,)) == "moving"
          and one(b_cs, "SELECT quota.move_pause_state(%s)", (tenant,)) == "moving", "midway: not paused on both")
    check(one(b_cs, "SELECT quota.move_digest(%s)", (tenant,)) == {}, "midway: the target holds a partial copy")
    check(cl.node_for(tenant) == a, "midway: the map flipped")
    rc, out, err = cl.move(tenant, b, "--abort")
    check(rc == 0 and node_state(a_cs, tenant)[0] == before[0] and node_state(a_cs, tenant)[1] is None
          and one(b_cs, "SELECT quota.move_pause_state(%s)", (tenant,)) is None, f"midway --abort: {rc}\n{out}\n{err}")
    # The plan only one node has goes, so that no configuration drift stays behind.
    with connect(a_cs) as c:
        c.execute("SELECT quota.assign_plan(%s, 'MOVE', %s)", (f"{tenant}:u1", tenant))
        c.execute("DELETE FROM quota.plans WHERE plan = %s", (plan,))


def ledger_in_order(cs, tenant):
    with connect(cs) as c:
        c.execute("SET TimeZone = 'UTC'")
        led = c.execute("""SELECT id, subject, metric, period, window_start::text, kind, amount, idempotency_key, metadata
                           FROM quota.usage_events WHERE tenant = %s ORDER BY id""", (tenant,)).fetchall()
        ev = c.execute("""SELECT e.id, e.type, e.subject, e.payload, e.acknowledged_at IS NOT NULL FROM quota.events e
                          JOIN quota.subjects s USING (subject) WHERE s.tenant = %s ORDER BY e.id""", (tenant,)).fetchall()
        return led, ev


def test_renumber(cl, rng):
    (a, a_cs), (b, b_cs) = list(cl.nodes.items())[:2]
    tenant = T["renum"]
    cl.place(tenant, a)
    populate(a_cs, tenant, 4, rng)
    populate(b_cs, T["resident"], 2, rng)   # the target's own ids move on
    led_a, ev_a = ledger_in_order(a_cs, tenant)
    # Every table the move carries holds rows of the tenant, so that each is exercised.
    carried = {t for (t, moves) in (one_all(a_cs, "SELECT table_name::text, moves FROM quota.move_tables()")) if moves}
    digest = one(a_cs, "SELECT quota.move_digest(%s)", (tenant,))
    check({f"quota.{t}" for t in digest} == carried,
          f"renumber: tables without rows of the tenant: {sorted(carried - {f'quota.{t}' for t in digest})}")
    # The target's sequences past every source id, so that kept ids cannot pass for new ones.
    with connect(b_cs) as c:
        for table, rows in (("usage_events", led_a), ("events", ev_a)):
            c.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), greatest(%s, (SELECT coalesce(max(id), 0) FROM quota."
                      + table + ")) + 1000)", (f"quota.{table}", max([r[0] for r in rows], default=0)))
    max_b = one(b_cs, "SELECT max(id) FROM quota.usage_events")
    max_ev_b = one(b_cs, "SELECT max(id) FROM quota.events")
    rc, out, err = cl.move(tenant, b)
    if not check(rc == 0, f"renumber: the move failed:\n{out}\n{err}"):
        return
    check("invariants before" in out and "invariants after" in out, "renumber: invariants not printed")
    led_b, ev_b = ledger_in_order(b_cs, tenant)
    check([r[1:] for r in led_a] == [r[1:] for r in led_b], "renumber: the ledger's rows or order changed")
    check([r[1:] for r in ev_a] == [r[1:] for r in ev_b], "renumber: the events' rows, order or acks changed")
    check(all(r[0] > max_b for r in led_b), f"renumber: ledger ids not from the target's sequence ({max_b})")
    check(all(r[0] > (max_ev_b or 0) for r in ev_b), "renumber: event ids not from the target's sequence")
    check(len(led_b) > 0 and min(r[0] for r in led_b) > max(r[0] for r in led_a) + 999
          and min(r[0] for r in ev_b) > max(r[0] for r in ev_a) + 999, "renumber: ids were not renumbered")
    check(one(a_cs, "SELECT quota.move_digest(%s)", (tenant,)) == {}, "renumber: state left on the source")
    check(cl.node_for(tenant) == b, "renumber: the map was not flipped")
    # New rows after the move get the target's next ids.
    with connect(b_cs) as c:
        c.execute("SELECT quota.quota_consume(%s, 'tokens', 1)", (f"{tenant}:u0",))
        nid = c.execute("SELECT max(id) FROM quota.usage_events").fetchone()[0]
        check(nid > led_b[-1][0], "renumber: the sequence did not move past the imported ids")
    invariants_hold(a_cs, tenant, "renumber source")
    invariants_hold(b_cs, tenant, "renumber target")


class Client(threading.Thread):
    """Consumes for the tenant: through the router when it has routed calls, else (and for
    the direct clients) on the node the router names, with quota.tenant set as an app does.
    QT503: asks the router again, retries the same operation (same idempotency key)."""

    def __init__(self, cl, tenant, idx, n_ops, direct, started, gate):
        super().__init__(daemon=True)
        self.cl, self.tenant, self.idx, self.direct = cl, tenant, idx, direct
        rng = random.Random(f"{SEED}-load-{idx}")
        self.plan = [(f"{tenant}:u{rng.randrange(6)}", rng.randrange(1, 50)) for _ in range(n_ops)]
        self.acked = {}       # op -> amount
        self.refused = 0
        self.qt503 = 0
        self.errors = []
        self.done = 0
        self.started = started
        self.gate = gate

    def run(self):
        conn, node = None, None
        try:
            for k, (subject, amount) in enumerate(self.plan):
                op = f"c{self.idx}-{k}"
                if k == len(self.plan) // 3 and not self.gate.wait(timeout=300):
                    self.errors.append(f"client {self.idx}: the move never paused the source")
                for attempt in range(1500):
                    try:
                        if self.direct or not self.cl.routed:
                            want = self.cl.node_for(self.tenant)
                            if conn is None or want != node:
                                if conn is not None:
                                    conn.close()
                                node, conn = want, connect(self.cl.nodes[want])
                                conn.execute("SELECT set_config('quota.tenant', %s, false)", (self.tenant,))
                                # Client 3 takes the general path, client 1 the hot path.
                                conn.execute(f"SET quota.hot_path = {'off' if self.idx == 3 else 'on'}")
                            row = conn.execute("SELECT allowed FROM quota.quota_try_consume(%s, 'tokens', %s, %s, %s)",
                                               (subject, amount, op, json.dumps({"op": op}))).fetchone()
                        else:
                            if conn is None:
                                conn = connect(self.cl.router)
                            row = conn.execute("SELECT allowed FROM cluster.quota_try_consume(%s::text, %s::text, 'tokens', "
                                               "%s::bigint, %s::text, %s::jsonb)",
                                               (self.tenant, subject, amount, op, json.dumps({"op": op}))).fetchone()
                        if row[0]:
                            self.acked[op] = amount
                        else:
                            self.refused += 1
                        break
                    except psycopg.Error as e:
                        if e.sqlstate == "QT503":
                            self.qt503 += 1
                            time.sleep(0.02)
                            continue
                        raise
                else:
                    self.errors.append(f"{op}: still QT503 after 1500 tries")
                self.done = k + 1
                self.started.set()
        except Exception as e:  # noqa: BLE001 - reported as a failure
            self.errors.append(f"client {self.idx}: {e!r}")


def test_under_load(cl, rng):
    (a, a_cs), (b, b_cs) = list(cl.nodes.items())[:2]
    tenant = T["load"]
    cl.place(tenant, a)
    populate(a_cs, tenant, 6, rng)
    base = one(a_cs, """SELECT coalesce(sum(amount), 0) FROM quota.usage_events
                         WHERE tenant = %s AND metric = 'tokens' AND kind IN ('consume', 'commit') AND via IS NULL""", (tenant,))
    invariants_hold(a_cs, tenant, "under_load source before")
    invariants_hold(b_cs, tenant, "under_load target before")
    started = threading.Event()
    per = OPS // CLIENTS
    gate = threading.Event()
    clients = [Client(cl, tenant, i, per, direct=(i % 2 == 1), started=started, gate=gate) for i in range(CLIENTS)]
    for t in clients:
        t.start()
    # A third of each client's operations, then the move; the rest only once the source is
    # paused, so that they meet the pause (QT503) and the flip, whatever the machine's speed.
    while sum(t.done for t in clients) < CLIENTS * (per // 3) and any(t.is_alive() for t in clients):
        time.sleep(0.01)
    p = subprocess.Popen([SCRIPT, "--router", cl.router, "--node-user", "postgres", tenant, b], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    lines = []
    for line in p.stdout:
        lines.append(line)
        if line.startswith(f"move_tenant: paused the tenant on {a}"):
            gate.set()
    gate.set()
    err = p.stderr.read()
    rc = p.wait(timeout=300)
    out = "".join(lines)
    print("\n".join("     " + l for l in out.splitlines() if "invariants" in l or "    " in l[:6]), flush=True)
    for t in clients:
        t.join(timeout=300)
    for t in clients:
        for e in t.errors:
            check(False, f"under_load: {e}")
    check(rc == 0, f"under_load: the move failed:\n{out}\n{err}")
    qt503 = sum(t.qt503 for t in clients)
    results["operations"] += sum(t.done for t in clients)
    results["qt503"] += qt503
    check(qt503 > 0, "under_load: no client met QT503 while the tenant moved (the pause was not seen)")
    acked = {op: amt for t in clients for op, amt in t.acked.items()}
    with connect(b_cs) as c:
        rows = c.execute("""SELECT metadata->>'op', count(*), sum(amount) FROM quota.usage_events
                            WHERE tenant = %s AND metadata ? 'op' AND kind = 'consume' AND via IS NULL GROUP BY 1""", (tenant,)).fetchall()
        total = c.execute("""SELECT coalesce(sum(amount), 0) FROM quota.usage_events
                             WHERE tenant = %s AND metric = 'tokens' AND kind IN ('consume', 'commit') AND via IS NULL""", (tenant,)).fetchone()[0]
    ledger = {op: (n, s) for op, n, s in rows}
    check(set(ledger) == set(acked), f"under_load: ops acknowledged but not in the target's ledger: "
          f"{sorted(set(acked) - set(ledger))[:5]}; in the ledger, never acknowledged: {sorted(set(ledger) - set(acked))[:5]}")
    check(all(ledger[op] == (1, acked[op]) for op in acked if op in ledger), "under_load: an op counted twice or wrong")
    check(total == base + sum(acked.values()),
          f"under_load: target ledger {total} != before {base} + acknowledged {sum(acked.values())}")
    check(one(a_cs, "SELECT quota.move_digest(%s)", (tenant,)) == {}, "under_load: state left on the source")
    check(one(a_cs, "SELECT count(*) FROM quota.usage_events WHERE tenant = %s", (tenant,)) == 0,
          "under_load: ledger left on the source")
    invariants_hold(a_cs, tenant, "under_load source after")
    invariants_hold(b_cs, tenant, "under_load target after")
    print(f"   under_load: {len(acked)} consumes acknowledged ({sum(acked.values())} tokens), "
          f"{sum(t.refused for t in clients)} refused, {qt503} QT503 retries; clients 0 and 2 "
          f"{'through the router (cluster.quota_try_consume, PL/Proxy)' if cl.routed else 'on the node node_for names (no routed calls on this router)'}, "
          "1 (hot path) and 3 (quota.hot_path off) on the node node_for names", flush=True)
    # Each path met the pause: the direct clients, and the routed ones when there are any.
    check(any(t.qt503 for t in clients if t.direct), "under_load: no direct client met QT503")
    check(not cl.routed or any(t.qt503 for t in clients if not t.direct), "under_load: no routed client met QT503")


def test_old_node(cl):
    """After under_load: the old node refuses the tenant's calls, hot path on and off."""
    (a, a_cs), (b, _) = list(cl.nodes.items())[:2]
    with connect(a_cs) as c:
        tenant = T["load"]
        c.execute("SELECT set_config('quota.tenant', %s, false)", (tenant,))
        for hot in ("on", "off"):
            c.execute(f"SET quota.hot_path = {hot}")
            for call in ("SELECT quota.quota_consume(%s::text, 'tokens', 1)",
                         "SELECT quota.quota_try_consume(%s::text, 'tokens', 1)",
                         "SELECT quota.quota_check(%s::text, 'tokens', 1)",
                         "SELECT * FROM quota.quota_status(%s::text)",
                         "SELECT quota.quota_consume(%s::text || '-new', 'tokens', 1)"):
                try:
                    c.execute(call, (f"{tenant}:u1",))
                    check(False, f"old node, hot path {hot}: {call} succeeded")
                except psycopg.Error as e:
                    check(e.sqlstate == "QT503" and e.diag.message_hint,
                          f"old node, hot path {hot}: {call}: {e.sqlstate} {e.diag.message_primary}")
    check(one(a_cs, "SELECT quota.move_pause_state(%s)", (T["load"],)) == "moved", "old node: not marked moved")


def test_one_move(cl, rng):
    """One move of a tenant at a time: while the source is paused for a move to another
    node (another run's, under way or left unfinished), a move to this target and an
    --abort of it are refused, and neither changes anything."""
    (a, a_cs), (b, b_cs) = list(cl.nodes.items())[:2]
    tenant = T["twice"]
    cl.place(tenant, a)
    populate(a_cs, tenant, 2, rng)
    digest = one(a_cs, "SELECT quota.move_digest(%s)", (tenant,))
    with connect(a_cs) as c:
        c.execute("SELECT quota.pause_tenant(%s, 'elsewhere')", (tenant,))
    for extra in ((), ("--abort",)):
        rc, out, err = cl.move(tenant, b, *extra)
        check(rc != 0 and "for a move to elsewhere" in err, f"one_move {extra}: not refused: {rc}\n{out}\n{err}")
        check(one(b_cs, "SELECT quota.move_pause_state(%s)", (tenant,)) is None
              and one(b_cs, "SELECT quota.move_digest(%s)", (tenant,)) == {}, f"one_move {extra}: the target changed")
        check(one(a_cs, "SELECT quota.move_pause_state(%s)", (tenant,)) == "moving"
              and one(a_cs, "SELECT quota.move_digest(%s)", (tenant,)) == digest and cl.node_for(tenant) == a,
              f"one_move {extra}: the source or the map changed")
    with connect(a_cs) as c:
        c.execute("SELECT quota.resume_tenant(%s)", (tenant,))


def test_rerun(cl, rng):
    (a, a_cs), (b, b_cs) = list(cl.nodes.items())[:2]
    # After a finished move: nothing to do, nothing changes.
    before = (node_state(a_cs, T["renum"]), node_state(b_cs, T["renum"]))
    rc, out, err = cl.move(T["renum"], b)
    check(rc == 0, f"rerun after the move: {rc}\n{out}\n{err}")
    check((node_state(a_cs, T["renum"]), node_state(b_cs, T["renum"])) == before, "rerun after the move changed something")
    # A failure after the copy, before the flip: the map still names the source. Simulated
    # by an import done by hand; a re-run removes that copy and moves again.
    tenant = T["again"]
    cl.place(tenant, a)
    populate(a_cs, tenant, 2, rng)
    digest = one(a_cs, "SELECT quota.move_digest(%s)", (tenant,))
    with connect(b_cs) as c:
        c.execute("SELECT quota.pause_tenant(%s, %s)", (tenant, b))
    with connect(a_cs) as c:
        c.execute("SELECT quota.pause_tenant(%s, %s)", (tenant, b))
        rows = c.execute("SELECT tbl, rec FROM quota.move_export(%s)", (tenant,)).fetchall()
    with connect(b_cs) as c:
        with c.transaction():
            c.execute("CREATE TEMP TABLE quota_move_stage (tbl text, rec jsonb) ON COMMIT DROP")
            with c.cursor().copy("COPY quota_move_stage FROM STDIN") as cp:
                for r in rows:
                    cp.write_row((r[0], json.dumps(r[1])))
            c.execute("SELECT quota.move_import(%s)", (tenant,))
    check(one(b_cs, "SELECT quota.move_digest(%s)", (tenant,)) == digest, "rerun: the hand import differs")
    # --abort: the copy goes, both resume, the tenant stays.
    rc, out, err = cl.move(tenant, b, "--abort")
    check(rc == 0 and one(b_cs, "SELECT quota.move_digest(%s)", (tenant,)) == {}
          and one(a_cs, "SELECT quota.move_pause_state(%s)", (tenant,)) is None
          and one(b_cs, "SELECT quota.move_pause_state(%s)", (tenant,)) is None
          and one(a_cs, "SELECT quota.move_digest(%s)", (tenant,)) == digest, f"--abort: {rc}\n{out}\n{err}")
    # Again, left half done, then a plain re-run finishes the move.
    with connect(b_cs) as c:
        c.execute("SELECT quota.pause_tenant(%s, %s)", (tenant, b))
        with c.transaction():
            c.execute("CREATE TEMP TABLE quota_move_stage (tbl text, rec jsonb) ON COMMIT DROP")
            with connect(a_cs) as s:
                s.execute("SELECT quota.pause_tenant(%s, %s)", (tenant, b))
                rows = s.execute("SELECT tbl, rec FROM quota.move_export(%s)", (tenant,)).fetchall()
            with c.cursor().copy("COPY quota_move_stage FROM STDIN") as cp:
                for r in rows:
                    cp.write_row((r[0], json.dumps(r[1])))
            c.execute("SELECT quota.move_import(%s)", (tenant,))
    rc, out, err = cl.move(tenant, b)
    check(rc == 0 and "deleted an unused copy" in out, f"rerun half done: {rc}\n{out}\n{err}")
    check(one(b_cs, "SELECT quota.move_digest(%s)", (tenant,)) == digest
          and one(a_cs, "SELECT quota.move_digest(%s)", (tenant,)) == {} and cl.node_for(tenant) == b,
          "rerun half done: not moved exactly once")


def main():
    print(f"test_move: seed={SEED} (replay with QUOTA_SEED={SEED})", flush=True)
    rng = random.Random(f"{SEED}-setup")
    router = None
    if "--router" in sys.argv:
        router = sys.argv[sys.argv.index("--router") + 1]
    router = router or os.environ.get("QUOTA_ROUTER") or standalone()
    cl = Cluster(router)
    configure(cl)
    tests = [("known_tables", lambda: test_known_tables(cl)),
             ("privileges", lambda: test_privileges(cl)),
             ("clash", lambda: test_clash(cl, rng)),
             ("foreign_stage", lambda: test_foreign_stage(cl)),
             ("stage_view", lambda: test_stage_view(cl)),
             ("midway", lambda: test_midway(cl, rng)),
             ("renumber", lambda: test_renumber(cl, rng)),
             ("under_load", lambda: test_under_load(cl, rng)),
             ("old_node", lambda: test_old_node(cl)),
             ("one_move", lambda: test_one_move(cl, rng)),
             ("rerun", lambda: test_rerun(cl, rng))]
    only = os.environ.get("QUOTA_MOVE_TESTS")
    for name, fn in tests:
        if only and name not in only.split(","):
            continue
        results["tests"] += 1
        n = len(failures)
        t0 = time.time()
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - a crash is a failure
            check(False, f"{name}: {e!r}")
        ok = len(failures) == n
        results["failed"] += 0 if ok else 1
        print(f"-- {name}: {'ok' if ok else 'FAILED'} ({time.time() - t0:.1f} s)", flush=True)
    print(f"test_move: tests={results['tests']} failed={results['failed']} "
          f"operations={results['operations']} qt503_retries={results['qt503']} seed={SEED}", flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
