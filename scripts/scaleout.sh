#!/usr/bin/env bash
# A loopback scale-out cluster for tests and benchmarks (issue 19, docs/scale-out.md):
# three nodes (n1, n2, n3) and a router, each its own PostgreSQL 15 cluster and port, run as
# user postgres under $QUOTA_RUN/scaleout-* (scripts/cluster.sh), trust authentication on
# 127.0.0.1 only.
#
# Usage: scripts/scaleout.sh start [--fresh] | stop | env
#   start    starts whatever is not running and sets up what is missing (idempotent: a
#            cluster that runs and is set up is left as it is, state included); --fresh
#            (or QUOTA_SCALEOUT_FRESH=1) recreates all four from nothing
#   stop     stops the four servers (their data stays until the next --fresh start)
#   env      prints the environment (below) of a started cluster
# start and env print shell lines to eval: eval "$(scripts/scaleout.sh start | grep ^export)"
#   QUOTA_ROUTER_DSN     the router database (libpq keyword form, user postgres)
#   QUOTA_N1_DSN ...N3   each node's database (user postgres)
#   QUOTA_NODES          "n1 n2 n3"
#   QUOTA_SCALEOUT_HOST  the socket directory prefix: $QUOTA_SCALEOUT_HOST-NAME (router, n1...)
#   QUOTA_<NAME>_PORT    each server's port (QUOTA_ROUTER_PORT, QUOTA_N1_PORT...)
#   QUOTA_<NAME>_PGDATA  each server's data directory (for pg_ctl, kill -9 of its postmaster)
# The same lines are written to $QUOTA_RUN/scaleout.env.
#
# Settings: QUOTA_RUN (default /tmp/quota_ext), QUOTA_SCALEOUT_PORT (the router's port,
# default 55740; n1, n2, n3 take the next three). PostgreSQL 15 only: PL/Proxy is packaged
# for 15 (postgresql-15-plproxy). quota_ext 0.9.0 or later must be installed
# (scripts/cluster.sh install_extension): its schema quota_node holds the node entry points.
#
# What it sets up:
#   each node: cluster_name = the node's name, shared_preload_libraries = quota_ext,
#     database quota with quota_ext, login roles quota_router (in quota_app) and
#     quota_router_admin (in quota_admin): the router connects as them.
#   the router: database quota with quota_ext and plproxy, scaleout/router.sql and
#     scaleout/router_api.sql; cluster.nodes n1 (home), n2, n3; four hash partitions
#     0 -> n1, 1 -> n2, 2 -> n3, 3 -> n1.
set -euo pipefail
cd "$(dirname "$0")/.."
export QUOTA_PG=15
. scripts/cluster.sh

BASE="${QUOTA_SCALEOUT_PORT:-55740}"
NODES=(n1 n2 n3)
ENV_FILE="$QUOTA_RUN/scaleout.env"

port_of() {
  case "$1" in router) echo "$BASE" ;; n1) echo $((BASE + 1)) ;; n2) echo $((BASE + 2)) ;; n3) echo $((BASE + 3)) ;; esac
}
dir_of() { echo "$QUOTA_RUN/scaleout-$1"; }
running() { [ -f "$(dir_of "$1")/data/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$(dir_of "$1")/data" status >/dev/null 2>&1; }
psql_on() { local name="$1"; shift; cluster_psql "scaleout-$name" "$(port_of "$name")" -q "$@"; }

print_env() {
  {
    echo "export QUOTA_SCALEOUT_HOST=$QUOTA_RUN/scaleout"
    echo "export QUOTA_NODES=\"${NODES[*]}\""
    for name in router "${NODES[@]}"; do
      local up; up=$(tr '[:lower:]' '[:upper:]' <<<"$name")
      echo "export QUOTA_${up}_DSN=\"host=$(dir_of "$name") port=$(port_of "$name") user=postgres dbname=quota\""
      echo "export QUOTA_${up}_PORT=$(port_of "$name")"
      echo "export QUOTA_${up}_PGDATA=$(dir_of "$name")/data"
    done
  } | tee "$ENV_FILE"
}

# A server that is set up has database quota (the router: with schema cluster).
set_up() {
  local name="$1" want="quota_node"
  [ "$name" = router ] && want="cluster"
  running "$name" && [ "$(psql_on "$name" -d quota -Atc "SELECT count(*) FROM pg_namespace WHERE nspname = '$want'" 2>/dev/null)" = 1 ]
}

start_server() {
  local name="$1" dir; dir="$(dir_of "$name")"
  if [ -f "$dir/data/PG_VERSION" ] && [ "${FRESH:-0}" != 1 ]; then
    running "$name" || as_pg env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
      || { tail -20 "$dir/server.log"; return 1; }
    return 0
  fi
  cluster_start "scaleout-$name" "$(port_of "$name")" "shared_preload_libraries = 'quota_ext'" "cluster_name = '$name'" \
    "max_connections = 60" "shared_buffers = 32MB" "track_functions = 'pl'"
}

setup_node() {
  local name="$1"
  psql_on "$name" -d postgres -c "DROP DATABASE IF EXISTS quota" -c "CREATE DATABASE quota"
  psql_on "$name" -d quota -c "CREATE EXTENSION quota_ext"
  [ "$(psql_on "$name" -d quota -Atc "SELECT count(*) FROM pg_namespace WHERE nspname = 'quota_node'")" = 1 ] \
    || { echo "scaleout.sh: the installed quota_ext has no node entry points (schema quota_node): install 0.9.0 or later" >&2; exit 1; }
  psql_on "$name" -d quota <<'SQL'
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'quota_router') THEN
        CREATE ROLE quota_router LOGIN IN ROLE quota_app;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'quota_router_admin') THEN
        CREATE ROLE quota_router_admin LOGIN IN ROLE quota_admin;
    END IF;
END
$$;
SQL
}

setup_router() {
  psql_on router -d postgres -c "DROP DATABASE IF EXISTS quota" -c "CREATE DATABASE quota"
  psql_on router -d quota -c "CREATE EXTENSION quota_ext" -c "CREATE EXTENSION plproxy"
  psql_on router -d quota -1 -f scaleout/router.sql >/dev/null
  psql_on router -d quota -1 -f scaleout/router_api.sql >/dev/null
  psql_on router -d quota <<SQL
INSERT INTO cluster.nodes VALUES
    ('n1', 'host=127.0.0.1 port=$(port_of n1) dbname=quota', true),
    ('n2', 'host=127.0.0.1 port=$(port_of n2) dbname=quota', false),
    ('n3', 'host=127.0.0.1 port=$(port_of n3) dbname=quota', false);
INSERT INTO cluster.shard_map (partition, node) VALUES (0, 'n1'), (1, 'n2'), (2, 'n3'), (3, 'n1');
SQL
}

cmd="${1:-}"; shift || true
FRESH="${QUOTA_SCALEOUT_FRESH:-0}"
[ "${1:-}" = --fresh ] && FRESH=1
case "$cmd" in
  start)
    [ -f "$("$PG_CONFIG" --pkglibdir)/plproxy.so" ] \
      || { echo "scaleout.sh: PL/Proxy is missing (apt-get install postgresql-15-plproxy; scripts/setup.sh does it)" >&2; exit 1; }
    mkdir -p "$QUOTA_RUN"
    fresh_nodes=0
    for name in "${NODES[@]}"; do
      start_server "$name"
      if [ "$FRESH" = 1 ] || ! set_up "$name"; then setup_node "$name"; fresh_nodes=1; fi
    done
    start_server router
    # New nodes need the router's configuration and map again: set the router up anew.
    if [ "$FRESH" = 1 ] || [ "$fresh_nodes" = 1 ] || ! set_up router; then setup_router; fi
    print_env
    ;;
  stop)
    for name in router "${NODES[@]}"; do cluster_stop "scaleout-$name"; done
    ;;
  env)
    print_env
    ;;
  *)
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" >&2; exit 2 ;;
esac
