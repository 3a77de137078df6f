#!/usr/bin/env bash
# Tests the Java example (seed 001) over real HTTP against a running PostgreSQL 15 cluster:
# PGHOST (socket directory), PGPORT, superuser postgres with trust authentication,
# QUOTA_TCP_HOST (127.0.0.1) for JDBC, EXAMPLE_PORT (default 55741).
# Also runs examples/snippets/Jdbc.java against database example_snippets_java.
set -euo pipefail
cd "$(dirname "$0")"
: "${PGHOST:?set PGHOST}" "${PGPORT:?set PGPORT}"
export QUOTA_TCP_HOST="${QUOTA_TCP_HOST:-127.0.0.1}" EXAMPLE_PORT="${EXAMPLE_PORT:-55741}"
JDBC=/usr/share/java/postgresql.jar
DB=example_java
APP_ROLE=java_app
start=$(date +%s)
psql_admin() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -o /dev/null -v ON_ERROR_STOP=1 -U postgres "$@"; }

# 1. The database, the extension, the plans and the app's role (a member of quota_app only).
psql_admin -d postgres <<SQL
DROP DATABASE IF EXISTS $DB WITH (FORCE);
CREATE DATABASE $DB;
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$APP_ROLE') THEN CREATE ROLE $APP_ROLE LOGIN; END IF;
END \$\$;
DROP DATABASE IF EXISTS example_snippets_java WITH (FORCE);
CREATE DATABASE example_snippets_java;
SQL
psql_admin -d $DB <<SQL
CREATE EXTENSION quota_ext;
GRANT quota_app TO $APP_ROLE;
-- Seed 001's plans: tokens per month with a per-message cap, and messages per day.
SELECT quota.set_limit('FREE', 'tokens',   'month', 1000, 'hard', 400);
SELECT quota.set_limit('FREE', 'messages', 'day',   5);
SELECT quota.set_limit('PLUS', 'tokens',   'month', 200000, 'hard', 8000);
SELECT quota.set_limit('PLUS', 'messages', 'day',   100);
SELECT quota.assign_plan('carol', 'PLUS');
-- Subscriptions on first use: unknown users join FREE. quota.default_plan is superuser-set,
-- so postgres sets it for the app's role (in this database only).
ALTER ROLE $APP_ROLE IN DATABASE $DB SET quota.default_plan = 'FREE';
-- The test pins the quota clock of the app's sessions (superuser-set too), so that every
-- window and reset date is known and a run across midnight cannot change the answers.
ALTER ROLE $APP_ROLE IN DATABASE $DB SET quota.clock_override = '2026-11-23 12:00:00+00';
SQL
psql_admin -d example_snippets_java <<SQL
CREATE EXTENSION quota_ext;
SELECT quota.set_limit('SNIPPET', 'messages', 'day', 2);
SELECT quota.assign_plan('snippet-user', 'SNIPPET');
ALTER DATABASE example_snippets_java SET quota.clock_override = '2026-11-23 12:00:00+00';
SQL

# 2. Build the app, the test and the snippet with one javac (build/ is git-ignored).
# Short-lived JVMs start faster with the C1 compiler only.
FAST=(-XX:TieredStopAtLevel=1 -XX:+UseSerialGC)
rm -rf build && mkdir -p build
javac -J-XX:TieredStopAtLevel=1 -d build -cp "$JDBC" src/*.java test/*.java ../snippets/Jdbc.java

# 3. The snippet: a third consume must raise QT429.
PGDATABASE=example_snippets_java PGUSER=$APP_ROLE java "${FAST[@]}" -cp "build:$JDBC" Jdbc \
  || { echo "FAIL: snippets/Jdbc.java" >&2; exit 1; }
echo "ok - snippets/Jdbc.java: the third consume raised QT429"

# 4. The app, stopped on exit whatever happens.
app_pid=
stop_app() {
  if [ -n "$app_pid" ] && kill -0 "$app_pid" 2>/dev/null; then
    kill "$app_pid" 2>/dev/null || true
    wait "$app_pid" 2>/dev/null || true
  fi
}
trap stop_app EXIT
trap 'exit 1' INT TERM HUP PIPE
if (exec 3<>"/dev/tcp/127.0.0.1/$EXAMPLE_PORT") 2>/dev/null; then
  echo "FAIL: port $EXAMPLE_PORT is already in use (set EXAMPLE_PORT)" >&2; exit 1
fi
PGDATABASE=$DB PGUSER=$APP_ROLE java -cp "build:$JDBC" QuotaApp >build/app.log 2>&1 &
app_pid=$!
# /health answers the app's pid: the answer must come from this app, not from another process.
health=
for _ in $(seq 1 100); do
  health=$(curl -fsS "http://127.0.0.1:$EXAMPLE_PORT/health" 2>/dev/null) && break
  kill -0 "$app_pid" 2>/dev/null || { cat build/app.log >&2; echo "FAIL: the app exited" >&2; exit 1; }
  sleep 0.1
done
[ "$health" = "{\"status\":\"ok\",\"pid\":$app_pid}" ] \
  || { cat build/app.log >&2; echo "FAIL: /health answered '$health', expected the app's pid $app_pid" >&2; exit 1; }
echo "ok - the app answers on port $EXAMPLE_PORT"

# 5. The assertions.
java "${FAST[@]}" -cp "build:$JDBC" ApiTest || { echo "--- app log:" >&2; cat build/app.log >&2; exit 1; }
echo "java example: all checks passed in $(( $(date +%s) - start )) s"
