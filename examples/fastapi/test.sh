#!/bin/bash
# Runs the FastAPI example's tests against the PostgreSQL 15 cluster given by PGHOST (socket
# directory) and PGPORT, superuser postgres with trust authentication.
set -euo pipefail
cd "$(dirname "$0")"
: "${PGHOST:?set PGHOST to the socket directory of the cluster}" "${PGPORT:?set PGPORT}"
export PGUSER=postgres PYTHONDONTWRITEBYTECODE=1 PGOPTIONS="-c client_min_messages=warning"
EXAMPLE_PORT="${EXAMPLE_PORT:-55711}"
DB=example_fastapi SNIPPET_DB=example_snippets_fastapi APP_ROLE=example_fastapi_app
# quota's clock is pinned in both databases (quota.clock_override, superuser-set), so that
# every window, reset_at and Retry-After is known and a run across midnight changes nothing.
# The tests compute their expectations from this instant (QUOTA_CLOCK).
export QUOTA_CLOCK="2026-11-23 12:00:00+00"
[ -x .venv/bin/python ] || { echo "test.sh: run ./setup.sh first" >&2; exit 1; }
# No screenshot of an earlier run may survive a failed one.
rm -f artifacts/status-page.png
psql() { command psql -X -q -v ON_ERROR_STOP=1 "$@"; }

# 1. Databases, app role, tables and plans.
psql -d postgres <<SQL
DROP DATABASE IF EXISTS $DB WITH (FORCE);
DROP DATABASE IF EXISTS $SNIPPET_DB WITH (FORCE);
CREATE DATABASE $DB;
CREATE DATABASE $SNIPPET_DB;
SELECT 'CREATE ROLE $APP_ROLE LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$APP_ROLE') \gexec
GRANT quota_app TO $APP_ROLE;
SQL
echo "ok: databases $DB and $SNIPPET_DB created, app role $APP_ROLE"
psql -d "$DB" -f schema.sql >/dev/null
# The app's sessions (the tests' admin connection sets the same instant itself).
psql -d "$DB" -c "ALTER ROLE $APP_ROLE IN DATABASE $DB SET quota.clock_override = '$QUOTA_CLOCK'"
psql -d "$SNIPPET_DB" >/dev/null <<SQL
CREATE EXTENSION quota_ext;
SELECT quota.set_limit('SNIPPET', 'messages', 'day', 2, 'hard');
SELECT quota.assign_plan('snippet-user', 'SNIPPET');
ALTER DATABASE $SNIPPET_DB SET quota.clock_override = '$QUOTA_CLOCK';
SQL

# 2. The app, as the app role, stopped on exit whatever happens.
WORK="$(mktemp -d /tmp/example_fastapi.XXXXXX)"
APP_PID=""
cleanup() {
  if [ -n "$APP_PID" ]; then kill "$APP_PID" 2>/dev/null || true; wait "$APP_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
export APP_URL="http://127.0.0.1:$EXAMPLE_PORT" APP_LOG="$WORK/app.log"
if (exec 3<>"/dev/tcp/127.0.0.1/$EXAMPLE_PORT") 2>/dev/null; then
  echo "test.sh: port $EXAMPLE_PORT is already in use (set EXAMPLE_PORT)" >&2; exit 1
fi
DATABASE_URL="postgresql+psycopg://$APP_ROLE@/$DB?host=$PGHOST&port=$PGPORT" \
  .venv/bin/python -m uvicorn app.main:app --host 127.0.0.1 --port "$EXAMPLE_PORT" >"$APP_LOG" 2>&1 &
APP_PID=$!
# /health answers the app's pid: the answer must come from the process started here.
health=""
for _ in $(seq 1 100); do
  health="$(curl -sf "$APP_URL/health" 2>/dev/null)" && break
  kill -0 "$APP_PID" 2>/dev/null || { cat "$APP_LOG"; echo "test.sh: the app did not start" >&2; exit 1; }
  sleep 0.1
done
[ "$health" = "{\"status\":\"ok\",\"pid\":$APP_PID}" ] \
  || { cat "$APP_LOG"; echo "test.sh: $APP_URL/health answered '$health', expected the app's pid $APP_PID" >&2; exit 1; }
echo "ok: app (pid $APP_PID) answers on $APP_URL"

# 3. API and page tests over real HTTP.
export EXAMPLE_DB="$DB"
if ! .venv/bin/python -m pytest -v -p no:cacheprovider tests; then
  echo "--- app log ---"; tail -n 50 "$APP_LOG"
  echo "test.sh: FAILED" >&2; exit 1
fi

# 4. The driver snippets, as the app role, each from a fresh day for snippet-user.
for snippet in quota_psycopg quota_sqlalchemy quota_asyncpg; do
  psql -d "$SNIPPET_DB" -c "SELECT quota.quota_reset('snippet-user')" >/dev/null
  PGDATABASE="$SNIPPET_DB" PGUSER="$APP_ROLE" .venv/bin/python "../snippets/$snippet.py" \
    || { echo "test.sh: FAILED: snippet $snippet.py" >&2; exit 1; }
  echo "ok: snippet $snippet.py: 2 consumed, the third refused with QT429"
done
echo "test.sh: all checks passed"
