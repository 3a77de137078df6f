#!/usr/bin/env bash
# Tests of the node example against a running PostgreSQL 15 cluster (PGHOST, PGPORT; superuser
# postgres, trust). (Re)creates databases example_node and example_snippets_node, builds the
# TypeScript, starts both apps on 127.0.0.1 (EXAMPLE_PORT, default 55731: generation, seed 000;
# EXAMPLE_PORT_2, default 55732: anonymous, seed 002), runs `node --test` against them over
# HTTP and the snippet examples/snippets/node-postgres.mjs, and always stops the apps.
set -euo pipefail
cd "$(dirname "$0")"
: "${PGHOST:?set PGHOST (the Unix socket directory of the server)}" "${PGPORT:?set PGPORT}"
export PGUSER=postgres
unset PGDATABASE PGPASSWORD PGSERVICE PGOPTIONS
GEN_PORT="${EXAMPLE_PORT:-55731}"
ANON_PORT="${EXAMPLE_PORT_2:-55732}"
DB=example_node
SNIPPET_DB=example_snippets_node

fail() { echo "FAILED: $*" >&2; exit 1; }
[ -x node_modules/.bin/tsc ] || fail "node_modules missing: run examples/node/setup.sh first"

# Refuse to start when a port is taken: the tests would talk to whatever listens there.
[ "$GEN_PORT" != "$ANON_PORT" ] || fail "EXAMPLE_PORT and EXAMPLE_PORT_2 are both $GEN_PORT"
for port in "$GEN_PORT" "$ANON_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    fail "port $port is already in use on 127.0.0.1 (set EXAMPLE_PORT / EXAMPLE_PORT_2)"
  fi
done

# The plans have daily UTC windows and the tests assert exact counts in one window: do not
# start within a minute of UTC midnight.
left=$(( 86400 - $(date -u +%s) % 86400 ))
if [ "$left" -lt 60 ]; then echo "waiting ${left}s for UTC midnight to pass"; sleep $((left + 1)); fi

rm -rf dist
node_modules/.bin/tsc -p . || fail "TypeScript build"

psql_() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
psql_ -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" \
      -c "DROP DATABASE IF EXISTS $SNIPPET_DB WITH (FORCE)" -c "CREATE DATABASE $SNIPPET_DB"
psql_ -d "$DB" -f schema.sql >/dev/null || fail "schema.sql"
psql_ -d "$SNIPPET_DB" >/dev/null <<'SQL' || fail "snippet database"
CREATE EXTENSION quota_ext;
SELECT quota.set_limit('SNIPPET', 'messages', 'day', 2, 'hard');
SELECT quota.assign_plan('snippet-user', 'SNIPPET');
SQL
echo "✔ databases $DB and $SNIPPET_DB created"

logs="$(mktemp -d)"
pids=()
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$rc" -ne 0 ]; then
    for f in "$logs"/*.log; do [ -s "$f" ] && { echo "--- $(basename "$f")"; cat "$f"; }; done >&2
    echo "test.sh: FAILED (exit $rc)" >&2
  fi
  rm -rf "$logs"
}
trap cleanup EXIT

admin_token="$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
PGDATABASE=$DB PGUSER=example_node_gen ADMIN_PGUSER=example_node_admin ADMIN_TOKEN=$admin_token \
  EXAMPLE_PORT=$GEN_PORT node dist/src/generation.js >"$logs/generation.log" 2>&1 &
pids+=($!)
# The anonymous app runs as if behind one proxy of ours (TRUSTED_PROXY_HOPS=1), so the tests
# choose the client address with X-Forwarded-For (its rightmost entry).
PGDATABASE=$DB PGUSER=example_node_anon EXAMPLE_PORT_2=$ANON_PORT TRUSTED_PROXY_HOPS=1 \
  node dist/src/anonymous.js >"$logs/anonymous.log" 2>&1 &
pids+=($!)

# Poll GET /health until each app answers (at most 15 s). /health answers the app's pid: the
# answer must come from the process started above, not from another one on the same port.
health() {
  local port=$1 answer
  exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
  printf 'GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
  answer="$(cat <&3)"; exec 3<&-
  printf '%s' "${answer#*$'\r\n\r\n'}"
}
for i in 0 1; do
  port=$([ $i = 0 ] && echo "$GEN_PORT" || echo "$ANON_PORT")
  pid=${pids[$i]}
  answer=
  for _ in $(seq 150); do
    kill -0 "$pid" 2>/dev/null || fail "the app on port $port exited"
    answer="$(health "$port" 2>/dev/null)" && [ -n "$answer" ] && break
    sleep 0.1
  done
  [ -n "$answer" ] || fail "the app on port $port did not answer"
  [ "$answer" = "{\"ok\":true,\"pid\":$pid}" ] \
    || fail "GET /health on port $port answered '$answer', expected the started app's pid $pid"
done
echo "✔ apps answer on 127.0.0.1:$GEN_PORT (generation) and 127.0.0.1:$ANON_PORT (anonymous)"

GEN_URL="http://127.0.0.1:$GEN_PORT" ANON_URL="http://127.0.0.1:$ANON_PORT" ADMIN_TOKEN=$admin_token \
  PGDATABASE=$DB APP_PGUSER=example_node_gen ANON_PGUSER=example_node_anon ADMIN_PGUSER=example_node_admin \
  node --test --test-reporter=spec dist/test/*.test.js || fail "node --test (see the failures above)"

# The snippet, run from dist/ so that it finds this project's node_modules (pg).
mkdir -p dist/snippets
cp ../snippets/node-postgres.mjs dist/snippets/
PGDATABASE=$SNIPPET_DB PGUSER=example_node_gen node dist/snippets/node-postgres.mjs \
  || fail "snippets/node-postgres.mjs did not end with the third consume refused"
echo "✔ snippets/node-postgres.mjs: two consumes, the third refused with QT429"
echo "test.sh: all node example checks passed"
