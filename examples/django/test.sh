#!/usr/bin/env bash
# Tests examples/django against a running PostgreSQL 15 (PGHOST, PGPORT; superuser postgres,
# trust). Starts the app with gunicorn on 127.0.0.1:$EXAMPLE_PORT and stops it on exit.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
: "${PGHOST:?PGHOST (socket directory) required}" "${PGPORT:?PGPORT required}"
export PGHOST PGPORT
export EXAMPLE_PORT="${EXAMPLE_PORT:-55721}"
DB=example_django SNIPPET_DB=example_snippets_django ROLE=django_meter
# quota's clock is pinned for the app (quota.clock_override, superuser-set): every billing
# cycle, reset_at and Retry-After is known, and a run across the 15th or midnight changes
# nothing. tests/test_http.py computes its expectations from this instant.
export QUOTA_CLOCK="2026-11-23 12:00:00+00"
PY="$here/.venv/bin/python"
[ -x "$PY" ] || { echo "FAIL: $here/.venv missing: run setup.sh first" >&2; exit 1; }
psql_pg() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 -U postgres "$@"; }

# 1. Database, role, extension, app tables (Django migrations, run as the owner), plans.
psql_pg -d postgres >/dev/null <<SQL
DROP DATABASE IF EXISTS $DB WITH (FORCE);
CREATE DATABASE $DB;
DROP DATABASE IF EXISTS $SNIPPET_DB WITH (FORCE);
CREATE DATABASE $SNIPPET_DB;
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') THEN CREATE ROLE $ROLE LOGIN; END IF;
END \$\$;
SQL
psql_pg -d "$DB" -c "CREATE EXTENSION quota_ext" -c "GRANT quota_app TO $ROLE" >/dev/null
PGDATABASE=$DB DJANGO_DB_USER=postgres "$PY" manage.py migrate --noinput >/dev/null
psql_pg -d "$DB" -f setup.sql >/dev/null
psql_pg -d "$DB" -c "ALTER ROLE $ROLE IN DATABASE $DB SET quota.clock_override = '$QUOTA_CLOCK'" >/dev/null
echo "ok: database $DB, role $ROLE (quota_app), plan STARTER, tenants acme/globex/umbrella"

# 2. The app, as the non-superuser role.
log="$(mktemp /tmp/example_django.XXXXXX.log)"
app_pid=""
cleanup() {
  rc=$?
  if [ -n "$app_pid" ] && kill -0 "$app_pid" 2>/dev/null; then
    kill -TERM "$app_pid" 2>/dev/null || true
    wait "$app_pid" 2>/dev/null || true
  fi
  if [ "$rc" -ne 0 ]; then echo "--- app log ($log) ---" >&2; tail -n 40 "$log" >&2; else rm -f "$log"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
if (exec 3<>"/dev/tcp/127.0.0.1/$EXAMPLE_PORT") 2>/dev/null; then
  echo "FAIL: port $EXAMPLE_PORT is already in use (set EXAMPLE_PORT)" >&2; exit 1
fi
PGDATABASE=$DB DJANGO_DB_USER=$ROLE "$here/.venv/bin/gunicorn" meter.wsgi \
  --bind "127.0.0.1:$EXAMPLE_PORT" --workers 1 --graceful-timeout 5 --no-control-socket >"$log" 2>&1 &
app_pid=$!
# /health/ answers its worker's parent pid: the answer must come from the gunicorn started
# here (the master, $app_pid), not from another process on the port.
health=""
for _ in $(seq 300); do
  health="$(curl -sf "http://127.0.0.1:$EXAMPLE_PORT/health/" 2>/dev/null)" && break
  kill -0 "$app_pid" 2>/dev/null || { echo "FAIL: the app exited at start" >&2; exit 1; }
  sleep 0.1
done
"$PY" -c 'import json, sys; h = json.loads(sys.argv[1] or "{}"); sys.exit(h.get("status") != "ok" or h.get("parent_pid") != int(sys.argv[2]))' \
  "$health" "$app_pid" || { echo "FAIL: /health/ answered '$health', expected parent_pid $app_pid" >&2; exit 1; }
echo "ok: the app (gunicorn pid $app_pid) answers on 127.0.0.1:$EXAMPLE_PORT"

# 3. Assertions over HTTP (the test polls until the app answers).
"$PY" tests/test_http.py
# 4. The pitfall, shown with Django itself: no savepoint, no request log.
PGDATABASE=$DB DJANGO_DB_USER=$ROLE "$PY" tests/pitfall.py
# 5. The ledger is immutable, even for the app's role.
if out="$(psql -X -q -v VERBOSITY=verbose -U "$ROLE" -d "$DB" -c "UPDATE quota.usage_events SET amount = 0" 2>&1)"; then
  echo "FAIL: the app role could update the ledger" >&2; exit 1
fi
grep -q "ERROR:  42501" <<<"$out" || { echo "FAIL: unexpected error: $out" >&2; exit 1; }
echo "ok: UPDATE of the ledger by $ROLE refused (42501)"
if out="$(psql -X -q -v VERBOSITY=verbose -U postgres -d "$DB" -c "DELETE FROM quota.usage_events" 2>&1)"; then
  echo "FAIL: the superuser could delete ledger rows" >&2; exit 1
fi
grep -q "ERROR:  23001" <<<"$out" || { echo "FAIL: unexpected error: $out" >&2; exit 1; }
echo "ok: DELETE of the ledger by postgres refused (23001, append-only)"

# 6. The snippet examples/snippets/django_orm.py, in its own database.
psql_pg -d "$SNIPPET_DB" >/dev/null <<SQL
CREATE EXTENSION quota_ext;
GRANT quota_app TO $ROLE;
SELECT quota.set_limit('SNIPPET', 'messages', 'day', 2, 'hard');
SELECT quota.assign_plan('snippet-user', 'SNIPPET');
ALTER DATABASE $SNIPPET_DB SET quota.clock_override = '$QUOTA_CLOCK';
SQL
# -P: the snippets folder also holds psycopg.py and asyncpg.py, which would shadow the
# driver packages if the script's own folder were put first on sys.path.
PGDATABASE=$SNIPPET_DB PGUSER=$ROLE "$PY" -P ../snippets/django_orm.py >/dev/null \
  || { echo "FAIL: snippets/django_orm.py did not end with QT429" >&2; exit 1; }
echo "ok: snippets/django_orm.py: 2 messages, the third refused with QT429"
echo "examples/django: all checks passed"
