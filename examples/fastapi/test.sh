#!/bin/bash
# Runs the FastAPI example's tests against the PostgreSQL 15 cluster given by PGHOST (socket
# directory) and PGPORT, superuser postgres with trust authentication.
set -euo pipefail
cd "$(dirname "$0")"
: "${PGHOST:?set PGHOST to the socket directory of the cluster}" "${PGPORT:?set PGPORT}"
export PGUSER=postgres PYTHONDONTWRITEBYTECODE=1 PGOPTIONS="-c client_min_messages=warning"
EXAMPLE_PORT="${EXAMPLE_PORT:-55711}"
DB=example_fastapi SNIPPET_DB=example_snippets_fastapi APP_ROLE=example_fastapi_app
[ -x .venv/bin/python ] || { echo "test.sh: run ./setup.sh first" >&2; exit 1; }
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
psql -d "$SNIPPET_DB" >/dev/null <<SQL
CREATE EXTENSION quota_ext;
SELECT quota.set_limit('SNIPPET', 'messages', 'day', 2, 'hard');
SELECT quota.assign_plan('snippet-user', 'SNIPPET');
SQL

# 2. The app, as the app role, stopped on exit whatever happens.
WORK="$(mktemp -d /tmp/example_fastapi.XXXXXX)"
APP_PID=""
cleanup() {
  if [ -n "$APP_PID" ]; then kill "$APP_PID" 2>/dev/null || true; wait "$APP_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
export APP_URL="http://127.0.0.1:$EXAMPLE_PORT" APP_LOG="$WORK/app.log"
DATABASE_URL="postgresql+psycopg://$APP_ROLE@/$DB?host=$PGHOST&port=$PGPORT" \
  .venv/bin/python -m uvicorn app.main:app --host 127.0.0.1 --port "$EXAMPLE_PORT" >"$APP_LOG" 2>&1 &
APP_PID=$!
for _ in $(seq 1 100); do
  curl -sf -o /dev/null "$APP_URL/" && break
  kill -0 "$APP_PID" 2>/dev/null || { cat "$APP_LOG"; echo "test.sh: the app did not start" >&2; exit 1; }
  sleep 0.1
done
curl -sf -o /dev/null "$APP_URL/" || { cat "$APP_LOG"; echo "test.sh: the app does not answer on $APP_URL" >&2; exit 1; }
echo "ok: app answers on $APP_URL"

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
