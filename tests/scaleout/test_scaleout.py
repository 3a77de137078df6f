"""The scale-out cluster (issue 19): three nodes and a router on loopback, started by
scripts/scaleout.sh (its environment: QUOTA_ROUTER_DSN, QUOTA_N1_DSN...). psycopg2, real
separate connections.

Sections (QUOTA_SCALEOUT_ONLY=name,name runs some): routing, catalog, reach, errors,
bindings, exactness, config, views, kill. Fixed operation counts; the seed
(QUOTA_SEED) picks tenant names, amounts and the moment of the kill, and is printed.
The last line has the reliability suite's summary format:
    scaleout: operations=... acknowledged=... lost=0 ... invariant_violations=0 seed=...
"""
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import psycopg2

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scaleout"))
import generate  # noqa: E402  (the classification of the API, shared with the generator)

SEED = int(os.environ.get("QUOTA_SEED") or random.SystemRandom().randrange(1, 2**31))
RND = random.Random(SEED)
ONLY = [s for s in os.environ.get("QUOTA_SCALEOUT_ONLY", "").split(",") if s]
ROUTER = os.environ["QUOTA_ROUTER_DSN"]
NODES = os.environ.get("QUOTA_NODES", "n1 n2 n3").split()
NODE_DSN = {n: os.environ[f"QUOTA_{n.upper()}_DSN"] for n in NODES}
PGBIN = os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin")
THREADS = int(os.environ.get("QUOTA_SCALEOUT_THREADS", "6"))
OPS = int(os.environ.get("QUOTA_SCALEOUT_OPS", "120"))

FAILURES = []
STATS = {"operations": 0, "acknowledged": 0, "lost": 0, "in_doubt": 0, "routed_functions": 0,
         "errors_compared": 0, "refused_cross_tenant": 0, "fan_out_calls": 0, "drift_rows": 0,
         "crashes_survived": 0, "over_limit": 0}
LOCK = threading.Lock()


def check(condition, message):
    print(f"  {'ok  ' if condition else 'FAIL'} {message}", flush=True)
    if not condition:
        FAILURES.append(message)


def count(key, n=1):
    with LOCK:
        STATS[key] += n


def dsn_as(dsn, user):
    return dsn.replace("user=postgres", f"user={user}")


def connect(dsn, user=None, autocommit=True):
    conn = psycopg2.connect(dsn_as(dsn, user) if user else dsn)
    conn.autocommit = autocommit
    return conn


def q(conn, sql, params=None):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else None


def error_of(conn, sql, params=None):
    """The error sql raises: (sqlstate, message, detail, hint), or None."""
    try:
        q(conn, sql, params)
        return None
    except psycopg2.Error as e:
        return (e.pgcode, e.diag.message_primary, e.diag.message_detail, e.diag.message_hint)


def section(name):
    if ONLY and name not in ONLY:
        return False
    print(f"-- {name}", flush=True)
    return True


def name(prefix):
    return f"{prefix}{RND.randrange(10**6):06d}"


# Set-up ------------------------------------------------------------------------------------

router = connect(ROUTER)
nodes = {n: connect(d) for n, d in NODE_DSN.items()}
ROLES = {"so_app": "quota_app", "so_reader": "quota_reader", "so_admin": "quota_admin",
         "so_acme": "quota_app", "so_none": None}
for conn in [router] + list(nodes.values()):
    for role, member in ROLES.items():
        q(conn, f"""DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
                      CREATE ROLE {role} LOGIN{' IN ROLE ' + member if member else ''}; END IF; END $$""")
q(router, "SELECT cluster.set_limit('free', 'tok', 'day', 1000)")
q(router, "SELECT cluster.set_bonus_rule('free', 'tok', 'gift', 5, 'none')")
q(router, "SELECT cluster.bind_tenant('so_acme', 'acme')")


def node_of(tenant):
    return q(router, "SELECT cluster.node_of(%s)", (tenant,))[0][0]


def tenant_on(node, prefix):
    """A fresh tenant name that hashes to node (no explicit placement)."""
    while True:
        t = name(prefix)
        if node_of(t) == node:
            return t


def subjects_on(node):
    return {r[0]: r[1] for r in q(nodes[node], "SELECT subject, tenant FROM quota.subjects")}


# Routing -----------------------------------------------------------------------------------

if section("routing"):
    tenants = [name("rt") for _ in range(24)]
    first = {t: node_of(t) for t in tenants}
    check(all(node_of(t) == first[t] for t in tenants), "node_of is stable for 24 tenants")
    check(set(first.values()) == set(NODES), f"24 tenants spread over every node: {sorted(set(first.values()))}")
    for t in tenants:
        q(router, "SELECT cluster.assign_plan(%s, %s, 'free')", (t, f"{t}:1"))
        q(router, "SELECT * FROM cluster.quota_try_consume(%s, %s, 'tok', 1)", (t, f"{t}:1"))
        count("operations", 2)
    placed = {n: subjects_on(n) for n in NODES}
    wrong = [t for t in tenants if placed[first[t]].get(f"{t}:1") != t
             or any(f"{t}:1" in placed[n] for n in NODES if n != first[t])]
    check(not wrong, f"each tenant's subject is on its node only ({len(wrong)} misplaced: {wrong[:3]})")
    node_rows = {n: p for n, p in q(router, "SELECT node, part FROM cluster.node_partitions()")}
    check(all(q(router, "SELECT cluster.partition_for(%s)", (t,))[0][0] == node_rows[first[t]] for t in tenants),
          "partition_for is the partition of node_of")
    big = name("big")
    target = next(n for n in NODES if n != node_of(big))
    q(router, "SELECT cluster.place_tenant(%s, %s)", (big, target))
    q(router, "SELECT cluster.assign_plan(%s, %s, 'free')", (big, f"{big}:1"))
    check(subjects_on(target).get(f"{big}:1") == big, f"explicit placement is honoured ({big} -> {target})")
    home = q(router, "SELECT node FROM cluster.nodes WHERE home")[0][0]
    untenanted = name("u")
    q(router, "SELECT cluster.assign_plan(NULL, %s, 'free')", (untenanted,))
    check(untenanted in subjects_on(home) and subjects_on(home)[untenanted] is None,
          f"an untenanted subject lives on the home node ({home})")
    check(q(router, "SELECT node FROM cluster.node_for(%s)", (big,))[0][0] == target, "node_for names the placed node")
    err = error_of(router, "INSERT INTO cluster.shard_map (partition, node) VALUES (4, 'n1')")
    check(err is not None and err[0] == "22023", f"a shard map of 5 partitions is refused at commit ({err and err[0]})")


# The pg_proc comparison --------------------------------------------------------------------

def functions(conn, schema):
    return {(r[0], r[1]) for r in q(conn, """SELECT proname, pg_get_function_identity_arguments(oid) FROM pg_proc
                                             WHERE pronamespace = %s::regnamespace""", (schema,))}


if section("catalog"):
    node_api = functions(nodes["n1"], "quota")
    node_wrappers = functions(nodes["n1"], "quota_node")
    mirror = functions(router, "cluster")
    missing, unclassified = [], []
    for fname, args in sorted(node_api):
        tenant_args = "tenant text" + (", " + args.replace("tenant text", "subject_tenant text") if args else "")
        if fname in generate.ROUTED:
            if (fname, tenant_args) not in mirror:
                missing.append(f"cluster.{fname}({tenant_args})")
            if (fname, tenant_args) not in node_wrappers:
                missing.append(f"quota_node.{fname}({tenant_args})")
            envelope_args = ", ".join(["text"] + [a.split(" ", 1)[1] for a in args.split(", ") if a])
            if (f"{fname}_or_error", envelope_args) not in node_wrappers:
                missing.append(f"quota_node.{fname}_or_error({envelope_args})")
        elif fname in generate.FAN_OUT or fname in generate.ON_ALL:
            if (fname, args) not in mirror:
                missing.append(f"cluster.{fname}({args})")
        elif fname in generate.READS:
            if (generate.READS[fname], "for_tenant text") not in mirror:
                missing.append(f"cluster.{generate.READS[fname]}(for_tenant text)")
        elif fname not in generate.LOCAL_ONLY:
            unclassified.append(f"quota.{fname}({args})")
    for view in generate.VIEWS:
        if (view, "for_tenant text") not in mirror:
            missing.append(f"cluster.{view}(for_tenant text)")
    check(not unclassified, f"every quota function on a node is routed or in the local-only list "
                            f"(docs/scale-out.md); unclassified: {unclassified}")
    check(not missing, f"every routed quota function has its router and node counterpart; missing: {missing}")
    check(len(node_api) >= 55, f"the comparison saw the node's API ({len(node_api)} functions)")
    root = os.path.join(os.path.dirname(__file__), "..", "..")
    gen = subprocess.run([sys.executable, "scaleout/generate.py", "--check", NODE_DSN["n1"]], cwd=root,
                         capture_output=True, text=True)
    check(gen.returncode == 0, f"the committed wrappers are what scaleout/generate.py gives from n1's pg_proc "
                               f"({(gen.stderr or gen.stdout).strip()[-200:]})")


# Every routed function reaches the tenant's node -------------------------------------------

def function_calls(conn):
    q(conn, "SELECT pg_stat_clear_snapshot()")
    return {r[0]: r[1] for r in q(conn, """SELECT p.oid::regprocedure::text, coalesce(s.calls, 0)
                                           FROM pg_proc p LEFT JOIN pg_stat_user_functions s ON s.funcid = p.oid
                                           WHERE p.pronamespace = 'quota_node'::regnamespace""")}


def settled_function_calls():
    """Each node's calls of each quota_node function, all reported: a backend reports its
    counts when it goes idle (at most every second, or after 10 s idle), and when it exits.
    The router's connections to the nodes are ended (the router's session too, whose
    PL/Proxy connections they are), so that nothing is left unreported."""
    global router
    router.close()
    for c in nodes.values():
        q(c, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename LIKE 'quota_router%%'")
    for c in nodes.values():
        for _ in range(100):
            if q(c, "SELECT count(*) FROM pg_stat_activity WHERE usename LIKE 'quota_router%%'")[0][0] == 0:
                break
            time.sleep(0.05)
    router = connect(ROUTER)
    return {n: function_calls(c) for n, c in nodes.items()}


if section("reach"):
    home = q(router, "SELECT node FROM cluster.nodes WHERE home")[0][0]
    target = next(n for n in NODES if n != home)
    t = name("reach")
    q(router, "SELECT cluster.place_tenant(%s, %s)", (t, target))
    before = settled_function_calls()
    s1, s2, pool, gone = f"{t}:1", f"{t}:2", f"{t}:pool", f"{t}:gone"
    ip = f"10.{RND.randrange(256)}.{RND.randrange(256)}.{RND.randrange(1, 255)}"
    calls = [
        ("SELECT cluster.assign_plan(%s, %s, 'free')", (t, s1)),
        ("SELECT cluster.assign_plan(%s, %s, 'free')", (t, s2)),
        ("SELECT cluster.assign_plan(%s, %s, 'free')", (t, pool)),
        ("SELECT cluster.assign_plan(%s, %s, 'free')", (t, gone)),
        ("SELECT cluster.assign_plan(%s, %s::inet, 'free')", (t, ip)),
        ("SELECT * FROM cluster.quota_check(%s, %s, 'tok', 1)", (t, s1)),
        ("SELECT * FROM cluster.quota_check(%s, %s::inet, 'tok', 1)", (t, ip)),
        ("SELECT * FROM cluster.quota_check(%s, %s, '{\"tok\": 1}'::jsonb)", (t, s1)),
        ("SELECT * FROM cluster.quota_consume(%s, %s, 'tok', 1)", (t, s1)),
        ("SELECT * FROM cluster.quota_consume(%s, %s::inet, 'tok', 1)", (t, ip)),
        ("SELECT * FROM cluster.quota_consume(%s, %s, '{\"tok\": 1}'::jsonb)", (t, s1)),
        ("SELECT * FROM cluster.quota_try_consume(%s, %s, 'tok', 1)", (t, s1)),
        ("SELECT * FROM cluster.quota_try_consume(%s, %s::inet, 'tok', 1)", (t, ip)),
        ("SELECT * FROM cluster.quota_try_consume(%s, %s, '{\"tok\": 1}'::jsonb)", (t, s1)),
        ("SELECT * FROM cluster.quota_consume_many(%s, %s, '{\"tok\": 1}'::jsonb)", (t, s1)),
        ("SELECT * FROM cluster.quota_try_consume_many(%s, %s, '{\"tok\": 1}'::jsonb)", (t, s1)),
        ("SELECT * FROM cluster.quota_refund(%s, %s, 'tok', 1)", (t, s1)),
        ("SELECT * FROM cluster.quota_refund(%s, %s::inet, 'tok', 1)", (t, ip)),
        ("SELECT * FROM cluster.quota_status(%s, %s)", (t, s1)),
        ("SELECT * FROM cluster.quota_status(%s, %s::inet)", (t, ip)),
        ("SELECT * FROM cluster.throttle(%s, %s, 10, 1, '1 second')", (t, f"{t}:key")),
        ("SELECT cluster.ack_events(%s, 0)", (t,)),
        ("SELECT * FROM cluster.apply_bonus(%s, %s, 'tok', 'gift')", (t, s1)),
        ("SELECT * FROM cluster.apply_bonus(%s, %s::inet, 'tok', 'gift')", (t, ip)),
        ("SELECT cluster.cancel_plan_change(%s, %s)", (t, s1)),
        ("SELECT cluster.set_override(%s, %s, 'tok', 'day', 500)", (t, s1)),
        ("SELECT cluster.remove_override(%s, %s, 'tok')", (t, s1)),
        ("SELECT cluster.set_pool(%s, %s, %s)", (t, s2, pool)),
        ("SELECT cluster.quota_reset(%s, %s)", (t, s2)),
        ("SELECT cluster.delete_subject(%s, %s)", (t, gone)),
    ]
    for sql, params in calls:
        q(router, sql, params)
        count("operations")
    rid = q(router, "SELECT reservation FROM cluster.quota_reserve(%s, %s, 'tok', 2)", (t, s1))[0][0]
    q(router, "SELECT * FROM cluster.quota_commit(%s, %s::uuid, 1)", (t, rid))
    rid = q(router, "SELECT reservation FROM cluster.quota_try_reserve(%s, %s, 'tok', 2)", (t, s1))[0][0]
    q(router, "SELECT cluster.quota_release(%s, %s::uuid)", (t, rid))
    count("operations", 4)
    routed = {k for k in before[target] if k.split("(")[0].split(".")[1] in generate.ROUTED}
    after = settled_function_calls()
    unreached = sorted(k for k in routed if after[target][k] <= before[target][k])
    strayed = sorted(f"{n}:{k}" for n in NODES if n != target for k in routed if after[n][k] != before[n][k])
    STATS["routed_functions"] = len(routed) - len(unreached)
    api = [f for f in functions(nodes[target], "quota") if f[0] in generate.ROUTED]
    check(len(routed) == len(api) > 0, f"one wrapper per routed API function on the node ({len(routed)} of {len(api)})")
    check(not unreached, f"every routed function reached {target}; not reached: {unreached}")
    check(not strayed, f"no routed call reached another node; strayed: {strayed[:5]}")
    on_target = subjects_on(target)
    check(s1 in on_target and ip in on_target and gone not in on_target, "the calls' effects are on the tenant's node")
    check(q(nodes[target], "SELECT pool FROM quota.subjects WHERE subject = %s", (s2,))[0][0] == pool,
          "set_pool through the router set the pool on the node")


# Errors keep their SQLSTATE, DETAIL and HINT ---------------------------------------------

if section("errors"):
    t = name("err")
    n = node_of(t)
    s = f"{t}:1"
    q(router, "SELECT cluster.assign_plan(%s, %s, 'free')", (t, s))
    q(router, "SELECT * FROM cluster.quota_consume(%s, %s, 'tok', 990)", (t, s))
    direct = connect(NODE_DSN[n], "so_app")
    app = connect(ROUTER, "so_app")
    cases = [
        ("quota_consume over the limit", "quota_consume(%s, %s, 'tok', 50)", (s,)),
        ("quota_consume of an unknown subject", "quota_consume(%s, %s, 'tok', 1)", (f"{t}:nobody",)),
        ("quota_consume of amount 0", "quota_consume(%s, %s, 'tok', 0)", (s,)),
        ("quota_consume of an unknown metric", "quota_consume(%s, %s, 'nometric', 1)", (s,)),
        ("quota_refund with a NULL amount", "quota_refund(%s, %s, 'tok', NULL)", (s,)),
        ("quota_commit of an unknown reservation", "quota_commit(%s, %s::uuid)", ("00000000-0000-4000-8000-000000000000",)),
        ("quota_consume_many with bad amounts", "quota_consume_many(%s, %s, '[1]'::jsonb)", (s,)),
    ]
    for what, call, params in cases:
        via_router = error_of(app, f"SELECT * FROM cluster.{call}", (t,) + params)
        q(direct, "SELECT set_config('quota.tenant', %s, false)", (t,))
        on_node = error_of(direct, "SELECT * FROM quota." + call.replace("(%s, ", "(", 1), params)
        count("errors_compared")
        check(via_router is not None and via_router == on_node,
              f"{what}: the router raises the node's error ({via_router and via_router[0]}): "
              f"{via_router if via_router != on_node else 'same SQLSTATE, message, DETAIL, HINT'}"
              + ("" if via_router == on_node else f" vs {on_node}"))
        if via_router and via_router[2]:
            try:
                json.loads(via_router[2])
                ok = True
            except ValueError:
                ok = False
            check(ok, f"{what}: DETAIL through the router is one JSON object")
    # A refusal comes back from the node as a row (quota_node.<name>_or_error), so PL/Proxy
    # keeps its connection: ten refusals, one node backend, no "dropping stale conn".
    pids = lambda: sorted(r[0] for r in q(nodes[n], "SELECT pid FROM pg_stat_activity WHERE usename = 'quota_router'"))
    before = pids()
    del app.notices[:]
    for _ in range(10):
        error_of(app, "SELECT * FROM cluster.quota_consume(%s, %s, 'tok', 50)", (t, s))
        count("operations")
    check(len(before) == 1 and pids() == before and not any("stale" in x for x in app.notices),
          f"ten refusals through the router reuse one connection to {n} ({before} -> {pids()}; {app.notices[:1]})")
    direct.close()
    app.close()


# Tenant bindings and hostile roles --------------------------------------------------------

if section("bindings"):
    acme = connect(ROUTER, "so_acme")
    q(router, "SELECT cluster.assign_plan('acme', 'acme:1', 'free')")
    got = q(acme, "SELECT allowed FROM cluster.quota_try_consume('acme', 'acme:1', 'tok', 1)")
    check(got == [(True,)], "a bound role acts for its own tenant through the router")
    other = name("other")
    q(router, "SELECT cluster.assign_plan(%s, %s, 'free')", (other, f"{other}:1"))
    for what, sql in [
        ("cluster.quota_consume for another tenant", f"SELECT * FROM cluster.quota_consume('{other}', '{other}:1', 'tok', 1)"),
        ("cluster_proxy.quota_consume for another tenant (the PL/Proxy function itself)",
         f"SELECT * FROM cluster_proxy.quota_consume('{other}', '{other}:1', 'tok', 1, NULL, NULL)"),
        ("cluster.quota_status for another tenant", f"SELECT * FROM cluster.quota_status('{other}', '{other}:1')"),
        ("cluster.usage_overview of another tenant", f"SELECT * FROM cluster.usage_overview('{other}')"),
        ("cluster.node_for another tenant", f"SELECT * FROM cluster.node_for('{other}')"),
        ("cluster.quota_consume with no tenant", "SELECT * FROM cluster.quota_consume(NULL, 'acme:1', 'tok', 1)"),
        ("cluster.node_of another tenant", f"SELECT cluster.node_of('{other}')"),
        ("cluster.partition_for another tenant", f"SELECT cluster.partition_for('{other}')"),
    ]:
        err = error_of(acme, sql)
        count("refused_cross_tenant")
        detail_ok = False
        if err and err[2]:
            try:
                detail_ok = json.loads(err[2]).get("code") == "forbidden"
            except ValueError:
                pass
        check(err is not None and err[0] == "42501" and detail_ok and bool(err[3]),
              f"bound role: {what}: 42501 with JSON DETAIL and HINT ({err and err[0]})")
    used = q(nodes[node_of(other)], "SELECT coalesce(sum(used), 0) FROM quota.counters WHERE subject = %s", (f"{other}:1",))[0][0]
    check(used == 0, "the refused calls changed nothing on the other tenant's node")
    app = connect(ROUTER, "so_app")
    none = connect(ROUTER, "so_none")
    reader = connect(ROUTER, "so_reader")
    for who, conn, sql in [
        ("quota_app", app, "SELECT cluster.set_limit('free', 'tok', 'day', 1)"),
        ("quota_app", app, "SELECT cluster_proxy.set_limit(0, 'free', 'tok', 'day', 1, 'hard', NULL)"),
        ("quota_app", app, "SELECT cluster.place_tenant('x', 'n1')"),
        ("quota_app", app, "INSERT INTO cluster.shard_map (tenant, node) VALUES ('x', 'n1')"),
        ("quota_app", app, "SELECT cluster.repair_config('n1')"),
        ("quota_app", app, "SELECT * FROM cluster.shard_map"),
        ("bound role", acme, "SELECT * FROM cluster.shard_map"),
        ("quota_app", app, "SELECT * FROM cluster.config_drift()"),
        ("quota_app", app, "SELECT cluster.assign_plan('x', 'x:1', 'free')"),
        ("quota_app", app, "SELECT * FROM cluster.stats_reset()"),
        ("quota_reader", reader, "SELECT * FROM cluster.quota_consume('x', 'x:1', 'tok', 1)"),
        ("no quota role", none, "SELECT * FROM cluster.quota_consume('x', 'x:1', 'tok', 1)"),
        ("no quota role", none, "SELECT * FROM cluster.usage_overview()"),
    ]:
        err = error_of(conn, sql)
        check(err is not None and err[0] == "42501", f"{who}: {sql[:60]}: 42501 ({err and err[0]})")
    # An unbound application role with no tenant sees untenanted subjects only, on the home
    # node too (the router connects as an application role for it, not as an administrator).
    home = q(router, "SELECT node FROM cluster.nodes WHERE home")[0][0]
    at_home = tenant_on(home, "home")
    q(router, "SELECT cluster.assign_plan(%s, %s, 'free')", (at_home, f"{at_home}:1"))
    err = error_of(app, "SELECT * FROM cluster.quota_status(NULL, %s)", (f"{at_home}:1",))
    check(err is not None and err[0] == "QT404",
          f"an app role with no tenant does not see a tenanted subject on the home node ({err and err[0]})")
    plain = name("plain")
    q(router, "SELECT cluster.assign_plan(NULL, %s, 'free')", (plain,))
    q(router, "SELECT * FROM cluster.quota_try_consume(NULL, %s, 'tok', 1)", (plain,))
    q(router, "SELECT * FROM cluster.quota_try_consume(%s, %s, 'tok', 1)", (at_home, f"{at_home}:1"))
    rows = q(reader, "SELECT subject, tenant FROM cluster.usage_overview()")
    check((plain, None) in rows and all(r[1] is None for r in rows),
          f"a reader with no tenant sees untenanted rows only, on the home node too ({len(rows)} rows)")
    rows = q(router, "SELECT DISTINCT tenant FROM cluster.usage_overview()")
    check((at_home,) in rows and (None,) in rows, "an administrator with no tenant sees every tenant's rows")
    for c in (acme, app, none, reader):
        c.close()
    # On a node: the wrappers are SECURITY INVOKER, so the node's own bindings and grants
    # hold for whoever calls them there, and quota.tenant is the caller's again afterwards.
    n = node_of(other)
    node_acme = connect(NODE_DSN[n], "so_acme")
    err = error_of(node_acme, "SELECT * FROM quota_node.quota_consume(%s, %s, 'tok', 1)", (other, f"{other}:1"))
    check(err is not None and err[0] == "42501", f"on {n}, a bound role calling quota_node for another tenant: 42501 ({err and err[0]})")
    node_app = connect(NODE_DSN[n], "so_app", autocommit=False)
    for sql in ["SELECT * FROM quota_node.config_snapshot()", "SELECT quota_node.config_apply('[]')",
                f"SELECT quota_node.assign_plan('{other}', 'x:1', 'free')"]:
        err = error_of(node_app, sql)
        node_app.rollback()
        check(err is not None and err[0] == "42501", f"on {n}, quota_app: {sql[:50]}: 42501 ({err and err[0]})")
    q(node_app, "SET LOCAL quota.tenant = 'before'")
    q(node_app, "SELECT * FROM quota_node.quota_status(%s, %s)", (other, f"{other}:1"))
    after = q(node_app, "SHOW quota.tenant")[0][0]
    node_app.rollback()
    check(after == "before", f"quota_node restores the caller's quota.tenant ({after!r})")
    rows = q(node_app, "SELECT * FROM quota_node.quota_status(%s, %s)", (other, f"{other}:1"))
    none_rows = error_of(node_app, "SELECT * FROM quota.quota_status(%s)", (f"{other}:1",))
    node_app.rollback()
    check(len(rows) == 1 and none_rows is not None and none_rows[0] == "QT404",
          "quota_node's tenant lasts for its call only (the next plain call sees no tenant)")
    node_acme.close()
    node_app.close()


# Exactness under concurrency, through the router and directly on a node -----------------------

def hammer(path, tenant, subject, node, limit):
    """THREADS clients, OPS calls each of quota_try_consume (amounts 1..5): used == sum of
    acknowledged amounts == ledger, never over the limit."""
    q(router, "SELECT cluster.assign_plan(%s, %s, 'exact')", (tenant, subject))
    acked = [0] * THREADS
    errors = []
    seeds = [RND.randrange(2**31) for _ in range(THREADS)]

    def client(i):
        rnd = random.Random(seeds[i])
        try:
            conn = connect(ROUTER, "so_app") if path == "router" else connect(NODE_DSN[node], "so_app")
            if path == "direct":
                q(conn, "SELECT set_config('quota.tenant', %s, false)", (tenant,))
            for _ in range(OPS):
                amount = rnd.randint(1, 5)
                if path == "router":
                    row = q(conn, "SELECT allowed, used FROM cluster.quota_try_consume(%s, %s, 'tok', %s)",
                            (tenant, subject, amount))[0]
                else:
                    row = q(conn, "SELECT allowed, used FROM quota.quota_try_consume(%s, 'tok', %s)", (subject, amount))[0]
                count("operations")
                if row[0]:
                    acked[i] += amount
                    count("acknowledged")
                if row[1] > limit:
                    count("over_limit")
            conn.close()
        except Exception as e:  # noqa: BLE001 (reported as a failed check)
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    check(not errors, f"{path}: no client failed ({errors[:2]})")
    used = q(nodes[node], "SELECT coalesce(sum(used), 0) FROM quota.counters WHERE subject = %s", (subject,))[0][0]
    ledger = q(nodes[node], "SELECT coalesce(sum(amount), 0) FROM quota.usage_events WHERE subject = %s AND kind = 'consume'",
               (subject,))[0][0]
    bad = q(nodes[node], "SELECT count(*) FROM quota.ledger_check")[0][0]
    total = sum(acked)
    lost = total - used
    if lost:
        count("lost", abs(lost))
    check(used == total == ledger and used <= limit and bad == 0,
          f"{path} on {node}: used {used} == acknowledged {total} == ledger {ledger} <= limit {limit}, ledger_check empty ({bad})")


if section("exactness"):
    limit = THREADS * OPS * 2  # about two thirds of the demand (amounts average 3)
    q(router, "SELECT cluster.set_limit('exact', 'tok', 'day', %s)", (limit,))
    t = name("exr")
    hammer("router", t, f"{t}:1", node_of(t), limit)
    t = name("exd")
    hammer("direct", t, f"{t}:1", node_of(t), limit)
    check(STATS["over_limit"] == 0, "no answer ever showed usage over the limit")


# Configuration fan-out, a node down mid-change, drift and repair ------------------------------

def drift():
    return q(router, "SELECT node, kind, key, router_value, node_value FROM cluster.config_drift()")


def stop_node(n, mode="fast"):
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run(as_pg + [f"{PGBIN}/pg_ctl", "-D", os.environ[f"QUOTA_{n.upper()}_PGDATA"], "-m", mode, "-w", "stop"],
                   check=True, stdout=subprocess.DEVNULL)


def start_node(n):
    data = os.environ[f"QUOTA_{n.upper()}_PGDATA"]
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run(as_pg + [f"{PGBIN}/pg_ctl", "-D", data, "-l", os.path.join(os.path.dirname(data), "server.log"),
                            "-w", "-t", "120", "start"], check=True, stdout=subprocess.DEVNULL)


if section("config"):
    for sql in ["SELECT cluster.set_limit('pro', 'tok', 'day', 5000, 'soft', 100)",
                "SELECT cluster.set_rate_limit('pro', 'req', 10, '1 minute', 5)",
                "SELECT cluster.set_alerts('pro', 'tok', '{50,90}', 'day')",
                "SELECT cluster.set_bonus_rule('pro', 'tok', 'referral', 50)",
                "SELECT cluster.set_bonus_cap('pro', 3)",
                "SELECT cluster.set_limit('pro', 'img', 'month', 10)",
                "SELECT cluster.remove_limit('pro', 'img', 'month')",
                "SELECT cluster.bind_tenant('so_acme', 'acme2')",
                "SELECT cluster.unbind_tenant('so_acme', 'acme2')"]:
        q(router, sql)
        count("fan_out_calls")
        d = drift()
        check(d == [], f"{sql[7:60]}...: every node has the router's configuration ({len(d)} differences)")
    limits = {n: q(c, "SELECT limit_value, enforcement, per_request_max FROM quota.plan_limits WHERE plan = 'pro' AND metric = 'tok'")
              for n, c in nodes.items()}
    check(all(v == [(5000, "soft", 100)] for v in limits.values()), f"the limit is on every node: {limits}")
    victim = NODES[-1]
    stop_node(victim)
    err = error_of(router, "SELECT cluster.set_limit('pro', 'tok', 'day', 7000)")
    detail = json.loads(err[2]) if err and err[2] else {}
    check(err is not None and err[0] == "QT207", f"a node down mid-change: QT207 ({err and err[0]})")
    check(detail.get("applied") == [n for n in NODES if n != victim]
          and [f["node"] for f in detail.get("failed", [])] == [victim] and all(f.get("message") for f in detail["failed"]),
          f"the DETAIL lists the nodes that applied it and the failure: {detail}")
    check(bool(err and err[3] and "repair_config" in err[3]), "the HINT says to retry or repair")
    router_value = q(router, "SELECT limit_value FROM quota.plan_limits WHERE plan = 'pro' AND metric = 'tok'")[0][0]
    check(router_value == 5000, "the router kept its configuration (the call failed)")
    d = drift()
    unreachable = [r for r in d if r[0] == victim and r[1] == "node"]
    check(len(unreachable) == 1, f"drift names the unreachable node ({unreachable})")
    start_node(victim)
    nodes[victim] = connect(NODE_DSN[victim])
    d = drift()
    count("drift_rows", len(d))
    want = sorted(n for n in NODES if n != victim)
    named = sorted(r[0] for r in d if r[1] == "limit" and r[2] == '["pro", "tok", "day"]'
                   and r[3]["limit_value"] == 5000 and r[4]["limit_value"] == 7000)
    check(named == want and len(d) == len(want), f"drift names the difference on each node that applied it: {d}")
    # A change made on a node by hand, and a missing rule: drift names them, one call repairs.
    q(nodes[victim], "SELECT quota.set_limit('pro', 'img', 'week', 9)")
    q(nodes[victim], "DELETE FROM quota.bonus_rules WHERE plan = 'pro'")
    q(nodes[victim], "SELECT quota.set_bonus_cap('pro', NULL)")
    q(nodes[victim], "SELECT quota.remove_limit('pro', 'req', 'per 1 minute')")
    q(nodes[victim], "SELECT quota.unbind_tenant('so_acme', 'acme')")
    d = [r for r in drift() if r[0] == victim]
    count("drift_rows", len(d))
    kinds = sorted((r[1], r[2]) for r in d)
    check(kinds == [("bonus_rule", '["pro", "tok", "referral"]'), ("limit", '["pro", "img", "week"]'),
                    ("limit", '["pro", "req", "per 1 minute"]'), ("plan", '["pro"]'), ("tenant_binding", '["so_acme", "acme"]')],
          f"drift names each hand-made difference on {victim}: {kinds}")
    for n in NODES:
        fixed = q(router, "SELECT cluster.repair_config(%s)", (n,))[0][0]
        check(fixed == (5 if n == victim else 1), f"repair_config({n}) fixed {fixed} items")
    check(drift() == [], "after the repairs no node differs from the router")
    rate = q(nodes[victim], "SELECT limit_value, burst FROM quota.plan_limits WHERE plan = 'pro' AND period = 'per 1 minute'")
    check(rate == [(10, 5)], f"the repair restored the rate limit with its burst ({rate})")
    q(router, "SELECT cluster.set_limit('pro', 'tok', 'day', 7000)")
    check(drift() == [], "the retried call reaches every node")


# Cluster-wide views ----------------------------------------------------------------------

if section("views"):
    per_node = {}
    for n in NODES:
        t = tenant_on(n, "view")
        q(router, "SELECT cluster.assign_plan(%s, %s, 'free')", (t, f"{t}:1"))
        q(router, "SELECT * FROM cluster.quota_try_consume(%s, %s, 'tok', 7)", (t, f"{t}:1"))
        q(router, "SELECT * FROM cluster.quota_try_consume(%s, %s, 'tok', 100000)", (t, f"{t}:1"))
        per_node[n] = t
    overview = q(router, "SELECT node, subject, used FROM cluster.usage_overview()")
    for n, t in per_node.items():
        check((n, f"{t}:1", 7) in overview, f"usage_overview names {n} for {t}:1")
        rows = q(router, "SELECT node, subject FROM cluster.usage_overview(%s)", (t,))
        check(rows == [(n, f"{t}:1")], f"usage_overview({t}) shows that tenant's row only, on {n}")
    top = q(router, "SELECT node, subject FROM cluster.top_consumers()")
    check(all((n, f"{t}:1") in top for n, t in per_node.items()), "top_consumers names each node")
    stats = q(router, "SELECT DISTINCT node FROM cluster.stats()")
    check(sorted(r[0] for r in stats) == sorted(NODES), f"stats has rows of every node ({stats})")
    refusals = q(router, "SELECT node, subject FROM cluster.recent_refusals()")
    check(all((n, f"{t}:1") in refusals for n, t in per_node.items()), "recent_refusals names the refusing node")
    status = q(router, "SELECT node FROM cluster.hot_path_status()")
    check(sorted(r[0] for r in status) == sorted(NODES), "hot_path_status: one row per node")
    for sql in ["SELECT node, result FROM cluster.maintenance()",
                "SELECT node, result FROM cluster.compact_ledger('3650 days')",
                "SELECT node, result FROM cluster.stats_reset()"]:
        rows = q(router, sql)
        check(sorted(r[0] for r in rows) == sorted(NODES), f"{sql[25:]}: one row per node")
    left = q(router, "SELECT coalesce(sum(consumes_total), 0) FROM cluster.stats()")[0][0]
    check(left == 0, f"cluster.stats_reset() reset every node's stats ({left} consumes left)")


# kill -9 of one node mid-load -----------------------------------------------------------------

def postmaster_pid(n):
    with open(os.path.join(os.environ[f"QUOTA_{n.upper()}_PGDATA"], "postmaster.pid")) as f:
        return int(f.readline())


def kill_node(n):
    pid = postmaster_pid(n)
    children = [int(x) for x in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]
    os.kill(pid, signal.SIGKILL)
    for c in children:
        try:
            os.kill(c, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for p in [pid] + children:
        for _ in range(200):
            try:
                with open(f"/proc/{p}/status") as f:
                    if "State:\tZ" in f.read():
                        break
            except FileNotFoundError:
                break
            time.sleep(0.05)
    data = os.environ[f"QUOTA_{n.upper()}_PGDATA"]
    lock = os.path.join(data, "postmaster.pid")
    if os.path.exists(lock):
        os.remove(lock)
    sock = os.path.join(os.path.dirname(data), f".s.PGSQL.{os.environ[f'QUOTA_{n.upper()}_PORT']}.lock")
    if os.path.exists(sock):
        os.remove(sock)


if section("kill"):
    victim = NODES[1]
    limit = 10**9
    q(router, "SELECT cluster.set_limit('kill', 'tok', 'day', %s)", (limit,))
    work = []  # (path, tenant, subject, node)
    for i in range(4):
        t = tenant_on(victim if i < 3 else NODES[0], "kill")
        q(router, "SELECT cluster.assign_plan(%s, %s, 'kill')", (t, f"{t}:1"))
        work.append(("router" if i % 2 == 0 else "direct", t, f"{t}:1", node_of(t)))
    acked = {w[2]: 0 for w in work}
    doubts = {w[2]: 0 for w in work}
    errors = []
    ops_each = OPS * 2
    seeds = [RND.randrange(2**31) for _ in work]
    progress = [0] * len(work)

    def client(i):
        path, tenant, subject, node = work[i]
        rnd = random.Random(seeds[i])
        conn = None
        k = 0
        try:
            while k < ops_each:
                key = f"{subject}:op{k}"
                amount = rnd.randint(1, 5)
                deadline = time.time() + 120
                while True:  # the same key until an answer: a call in doubt is retried, never counted twice
                    try:
                        if conn is None:
                            conn = connect(ROUTER, "so_app") if path == "router" else connect(NODE_DSN[node], "so_app")
                            if path == "direct":
                                q(conn, "SELECT set_config('quota.tenant', %s, false)", (tenant,))
                        if path == "router":
                            row = q(conn, "SELECT allowed FROM cluster.quota_try_consume(%s, %s, 'tok', %s, %s)",
                                    (tenant, subject, amount, key))[0]
                        else:
                            row = q(conn, "SELECT allowed FROM quota.quota_try_consume(%s, 'tok', %s, %s)",
                                    (subject, amount, key))[0]
                        break
                    except psycopg2.Error:
                        with LOCK:
                            doubts[subject] += 1
                        if conn is not None and (conn.closed or path == "direct"):
                            try:
                                conn.close()
                            except psycopg2.Error:
                                pass
                            conn = None
                        if time.time() > deadline:
                            raise
                        time.sleep(0.05)
                count("operations")
                if row[0]:
                    with LOCK:
                        acked[subject] += amount
                    count("acknowledged")
                k += 1
                progress[i] = k
        except Exception as e:  # noqa: BLE001
            errors.append(f"{subject}: {e!r}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(work))]
    for th in threads:
        th.start()
    kill_at = RND.randint(ops_each // 5, ops_each // 2)
    while min(progress) < kill_at and any(th.is_alive() for th in threads):
        time.sleep(0.01)
    kill_node(victim)
    time.sleep(RND.uniform(0.2, 1.0))
    start_node(victim)
    STATS["crashes_survived"] += 1
    for th in threads:
        th.join()
    check(not errors, f"every client finished its {ops_each} calls ({errors[:2]})")
    STATS["in_doubt"] = sum(doubts.values())
    nodes = {n: connect(d) for n, d in NODE_DSN.items()}  # the victim's connection died with it
    for path, tenant, subject, node in work:
        used = q(nodes[node], "SELECT coalesce(sum(used), 0) FROM quota.counters WHERE subject = %s", (subject,))[0][0]
        ledger = q(nodes[node], "SELECT coalesce(sum(amount), 0) FROM quota.usage_events WHERE subject = %s AND kind = 'consume'",
                   (subject,))[0][0]
        if used != acked[subject]:
            count("lost", abs(acked[subject] - used))
        check(used == acked[subject] == ledger,
              f"kill -9 of {victim}, {path} client on {node}: used {used} == acknowledged {acked[subject]} == ledger {ledger}")
    for n, c in nodes.items():
        bad = q(c, "SELECT count(*) FROM quota.ledger_check")[0][0]
        check(bad == 0, f"{n}: quota.ledger_check is empty after the crash")
    check(STATS["in_doubt"] > 0, f"the kill landed mid-load ({STATS['in_doubt']} calls retried)")


print(f"scaleout: operations={STATS['operations']} acknowledged={STATS['acknowledged']} lost={STATS['lost']} "
      f"in_doubt_retried={STATS['in_doubt']} crashes_survived={STATS['crashes_survived']} "
      f"routed_functions={STATS['routed_functions']} errors_compared={STATS['errors_compared']} "
      f"refused_cross_tenant={STATS['refused_cross_tenant']} fan_out_calls={STATS['fan_out_calls']} "
      f"drift_rows={STATS['drift_rows']} over_limit={STATS['over_limit']} "
      f"invariant_violations={len(FAILURES)} seed={SEED}", flush=True)
if FAILURES:
    print(f"{len(FAILURES)} check(s) failed (replay with QUOTA_SEED={SEED})")
    sys.exit(1)
print("all checks passed")
