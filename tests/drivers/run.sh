#!/usr/bin/env bash
# Every quota function at every arity it accepts (calls.sql reads them from pg_proc),
# prepared with untyped parameters, as drivers send them, through psql PREPARE, asyncpg,
# node-postgres and tokio-postgres. Each must resolve to exactly one function: 42725 (not
# unique), 42883 (none) or 42P18 (a type it cannot decide) fails the test.
# Against the server given by PGHOST and PGPORT (superuser postgres), in a database of its
# own. tests/drivers/setup.sh installs the clients.
set -euo pipefail
cd "$(dirname "$0")"
export PGUSER=postgres PGDATABASE=quota_drivers
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS quota_drivers WITH (FORCE)" -c "CREATE DATABASE quota_drivers"
psql -X -q -c "CREATE EXTENSION quota_ext"

status=0
# psql: one PREPARE per call in one session; an error names the call it failed on.
calls=$(psql -X -At -F'|' -f calls.sql)
n=$(grep -c . <<<"$calls")
script=$(awk -F'|' '{ printf "PREPARE call_%d AS %s;\n", NR, $1 }' <<<"$calls")
errors=$(psql -X -q -v ON_ERROR_STOP=0 <<<"$script" 2>&1 | grep -A2 'ERROR' || true)
failed=$(grep -c 'ERROR' <<<"$errors" || true)
[ -z "$errors" ] || { echo "$errors"; status=1; }
echo "psql PREPARE: $((n - failed)) of $n calls resolve"
[ "$n" -gt 0 ] || status=1
# calls.sql finds every function by itself; these must be among them (a query that lost
# the newest would still pass): 0.8.0's set_pool, and quota_status with its pool rows;
# 0.9.0's tenant pause.
for call in 'quota.set_pool($1, $2)' 'quota.quota_status($1)' 'quota.pause_tenant($1, $2, $3)' 'quota.await_tenant_quiet($1)'; do
  grep -qF "$call" <<<"$calls" || { echo "calls.sql: no call $call" >&2; status=1; }
done

.venv/bin/python asyncpg_calls.py || status=1
node node/ambiguity.mjs || status=1
bin="${QUOTA_DRIVERS_TARGET:-../../target/drivers}/release"
"$bin/ambiguity" || status=1

# The README's tokio-postgres snippet (examples/snippets/tokio_postgres.rs; the other
# snippets run in their examples' tests): 2 messages a day, the third consume is QT429.
psql -X -q -c "SELECT quota.set_limit('SNIPPET', 'messages', 'day', 2)" -c "SELECT quota.assign_plan('snippet-user', 'SNIPPET')" >/dev/null
DATABASE_URL="host=$PGHOST port=$PGPORT user=postgres dbname=quota_drivers" "$bin/snippet" \
  || { echo "tokio-postgres snippet: the third consume was not refused with QT429" >&2; status=1; }
exit "$status"
