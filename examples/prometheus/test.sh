#!/usr/bin/env bash
# Tests queries.yaml with Debian's prometheus-postgres-exporter against a running PostgreSQL
# 15 cluster started with shared_preload_libraries = 'quota_ext': PGHOST (socket directory),
# PGPORT, superuser postgres with trust authentication. The exporter watches database
# example_prometheus (quota.stats totals are per database), listens on 127.0.0.1:$EXPORTER_PORT
# (default 55742) and connects as example_prometheus_exporter, a member of quota_reader only.
set -euo pipefail
cd "$(dirname "$0")"
: "${PGHOST:?set PGHOST}" "${PGPORT:?set PGPORT}"
EXPORTER_PORT="${EXPORTER_PORT:-55742}"
EXPORTER=/usr/bin/prometheus-postgres-exporter
DB=example_prometheus
URL="http://127.0.0.1:$EXPORTER_PORT/metrics"
RUN="$(mktemp -d)"
start=$(date +%s)
psql_admin() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -o /dev/null -v ON_ERROR_STOP=1 -U postgres "$@"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

# 1. The database, a plan, the exporter's role and an app role for the consumes below.
psql_admin -d postgres <<SQL
DROP DATABASE IF EXISTS $DB WITH (FORCE);
CREATE DATABASE $DB;
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'example_prometheus_exporter') THEN
    CREATE ROLE example_prometheus_exporter LOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'example_prometheus_app') THEN
    CREATE ROLE example_prometheus_app LOGIN;
  END IF;
END \$\$;
SQL
psql_admin -d $DB <<SQL
CREATE EXTENSION quota_ext;
GRANT quota_reader TO example_prometheus_exporter;
GRANT quota_app TO example_prometheus_app;
SELECT quota.set_limit('PROM', 'messages', 'day', 3);
SELECT quota.set_limit('PROM', 'tokens', 'month', 1000, 'hard', 500);   -- at most 500 per request
SELECT quota.assign_plan('u1', 'PROM');
-- A pinned quota clock (superuser-set), so that no day boundary falls inside the test.
ALTER ROLE example_prometheus_app IN DATABASE $DB SET quota.clock_override = '2026-11-23 12:00:00+00';
SQL
psql -X -At -U postgres -d $DB -c "SELECT count(*) FROM quota.stats" >/dev/null \
  || fail "quota.stats is not readable: is shared_preload_libraries = 'quota_ext' set?"

# 2. The exporter, stopped on exit whatever happens.
exporter_pid=
stop_exporter() {
  if [ -n "$exporter_pid" ] && kill -0 "$exporter_pid" 2>/dev/null; then
    kill "$exporter_pid" 2>/dev/null || true
    wait "$exporter_pid" 2>/dev/null || true
  fi
  rm -rf "$RUN"
}
trap stop_exporter EXIT
trap 'exit 1' INT TERM HUP PIPE
if (exec 3<>"/dev/tcp/127.0.0.1/$EXPORTER_PORT") 2>/dev/null; then
  fail "port $EXPORTER_PORT is already in use (set EXPORTER_PORT)"
fi
# Only the custom queries: no default metrics, no settings, no database/bgwriter collectors.
DATA_SOURCE_NAME="host=$PGHOST port=$PGPORT user=example_prometheus_exporter dbname=$DB sslmode=disable" \
  "$EXPORTER" --web.listen-address="127.0.0.1:$EXPORTER_PORT" --extend.query-path=queries.yaml \
  --disable-default-metrics --disable-settings-metrics --no-collector.database --no-collector.bgwriter \
  >"$RUN/exporter.log" 2>&1 &
exporter_pid=$!

scrape() { curl -fsS --max-time 5 "$URL" >"$RUN/metrics"; }
# value NAME METRIC_LABEL: the sample's value in the last scrape; 0 when there is no sample
# (a metric this database never used has no row in quota.stats).
value() {
  awk -v name="$1" -v label="metric=\"$2\"" '
    index($0, name "{") == 1 && index($0, label) { v = $NF + 0 }
    END { print (v == "" ? 0 : v) }' "$RUN/metrics"
}
for _ in $(seq 1 100); do
  scrape 2>/dev/null && grep -qx 'pg_up 1' "$RUN/metrics" && break
  kill -0 "$exporter_pid" 2>/dev/null || { cat "$RUN/exporter.log" >&2; fail "the exporter exited"; }
  sleep 0.1
done
grep -qx 'pg_up 1' "$RUN/metrics" || { cat "$RUN/exporter.log" >&2; fail "the exporter does not reach the database"; }
kill -0 "$exporter_pid" 2>/dev/null || { cat "$RUN/exporter.log" >&2; fail "the exporter exited (another one answers?)"; }
echo "ok - the exporter answers on $URL with pg_up 1"
grep -q '^pg_exporter_user_queries_load_error{filename="queries.yaml",.*} 0$' "$RUN/metrics" \
  || fail "queries.yaml did not load: $(grep user_queries "$RUN/metrics")"
echo "ok - queries.yaml loaded"

declare -A before
for m in messages tokens; do
  before[consumed_$m]=$(value quota_consumed_total $m)
  before[exceeded_$m]=$(value quota_exceeded_total $m)
done

# 3. Consumes and refusals, as the app role would send them (psql, one session each).
app() { psql -X -q -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -U example_prometheus_app -d $DB "$@"; }
expect_ok() {  # SQL EXPECTED_OUTPUT
  local out
  out=$(app -c "$1" 2>&1) || fail "$1: $out"
  [ "$out" = "$2" ] || fail "$1: expected '$2', got '$out'"
  echo "ok - $1 -> $out"
}
expect_refused() {  # SQL SQLSTATE
  local out
  if out=$(app -c "$1" 2>&1); then fail "$1 was not refused: $out"; fi
  grep -q "^ERROR:  $2:" <<<"$out" || fail "$1: expected $2, got: $out"
  echo "ok - $1 -> $2"
}
expect_ok      "SELECT used FROM quota.quota_consume('u1', 'messages', 1)" 1
expect_ok      "SELECT used FROM quota.quota_consume('u1', 'messages', 1)" 2
expect_ok      "SELECT used FROM quota.quota_consume('u1', 'messages', 1)" 3
expect_refused "SELECT used FROM quota.quota_consume('u1', 'messages', 1)" QT429
expect_ok      "SELECT allowed FROM quota.quota_try_consume('u1', 'messages', 1)" f  # a refusal too
expect_ok      "SELECT used FROM quota.quota_consume('u1', 'tokens', 400)" 400
expect_ok      "SELECT used FROM quota.quota_consume('u1', 'tokens', 400)" 800
expect_refused "SELECT used FROM quota.quota_consume('u1', 'tokens', 300)" QT429        # 200 left
expect_refused "SELECT used FROM quota.quota_consume('u1', 'tokens', 600)" QT413        # over 500 per request
# Rolled back: the units do not count (consumed counts at COMMIT).
expect_ok      "BEGIN; SELECT used FROM quota.quota_consume('u1', 'tokens', 100); ROLLBACK" 900

# 4. Scrape until the counters moved (they do at once; the loop only absorbs scheduling),
#    then assert the exact deltas.
declare -A want=([consumed_messages]=3 [exceeded_messages]=2 [consumed_tokens]=800 [exceeded_tokens]=2)
delta() { local kind=${1%%_*} m=${1#*_}; echo $(( $(value "quota_${kind}_total" "$m") - ${before[$1]} )); }
for _ in $(seq 1 50); do
  scrape
  done_=1
  for k in "${!want[@]}"; do [ "$(delta "$k")" = "${want[$k]}" ] || done_=0; done
  [ $done_ = 1 ] && break
  sleep 0.1
done
for k in consumed_messages exceeded_messages consumed_tokens exceeded_tokens; do
  got=$(delta "$k")
  [ "$got" = "${want[$k]}" ] || fail "quota_${k%%_*}_total{metric=\"${k#*_}\"} moved by $got, expected ${want[$k]}"
  echo "ok - quota_${k%%_*}_total{metric=\"${k#*_}\"} moved by $got"
done
echo "prometheus example: all checks passed in $(( $(date +%s) - start )) s"
