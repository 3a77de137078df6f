#!/usr/bin/env bash
# Every test, from a fresh machine: pure Rust logic, in-backend #[pg_test]s, the SQL
# contract (pg_regress), isolation specs (pg_isolation_regress), real-connection tests and
# the reliability suite (stress, crash recovery, bad input).
# .ci/run calls this script.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
. scripts/cluster.sh
PORT="${QUOTA_TEST_PORT:-55433}"
PGXS_TEST="$(pg_config --pkglibdir)/pgxs/src/test"
OUT="$QUOTA_RUN/test-output"
step() { printf '\n== %s\n' "$*"; }

step "1/6 pure logic: cargo test --lib (no server)"
cargo test --lib --quiet

step "2/6 in-backend tests: cargo pgrx test"
mkdir -p "$QUOTA_RUN/pgrx"; chown postgres "$QUOTA_RUN/pgrx" 2>/dev/null || true
cargo pgrx test pg15 --runas postgres --pgdata "$QUOTA_RUN/pgrx/data"

step "installing the extension and starting a test cluster on port $PORT"
install_extension
cluster_start test "$PORT" "max_prepared_transactions = 10" "shared_preload_libraries = 'quota_ext'"
trap 'cluster_stop test' EXIT
rm -rf "$OUT"; mkdir -p "$OUT"; chmod 777 "$OUT"
HOSTOPTS=(--host="$QUOTA_RUN/test" --port="$PORT" --user=postgres)

step "3/6 SQL contract: pg_regress"
regress_tests=$(cd tests/regress/sql && ls *.sql | sed 's/\.sql$//' | sort)
"$PGXS_TEST/regress/pg_regress" "${HOSTOPTS[@]}" --inputdir=tests/regress --outputdir="$OUT/regress" \
  --dbname=quota_regress $regress_tests || { cat "$OUT/regress/regression.diffs" 2>/dev/null | head -200; exit 1; }

step "4/6 concurrency: pg_isolation_regress"
cluster_psql test "$PORT" -d postgres -q -c "DROP DATABASE IF EXISTS quota_isolation" -c "CREATE DATABASE quota_isolation"
cluster_psql test "$PORT" -d quota_isolation -q -c "CREATE EXTENSION quota_ext"
specs=$(cd tests/isolation/specs && ls *.spec | sed 's/\.spec$//' | sort)
"$PGXS_TEST/isolation/pg_isolation_regress" "${HOSTOPTS[@]}" --use-existing --dbname=quota_isolation \
  --inputdir=tests/isolation --outputdir="$OUT/isolation" $specs \
  || { cat "$OUT/isolation/output_iso/regression.diffs" "$OUT/isolation/regression.diffs" 2>/dev/null | head -200; exit 1; }

step "5/6 real connections: tests/connections"
for t in tests/connections/test_*.py; do
  echo "-- $t"
  QUOTA_HOST="$QUOTA_RUN/test" QUOTA_PORT="$PORT" /usr/bin/python3 "$t"
done

step "6/6 reliability: stress, kill -9 recovery, bad input (scripts/reliability.sh)"
./scripts/reliability.sh

step "all tests passed"
