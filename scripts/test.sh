#!/usr/bin/env bash
# Every test, from a fresh machine: pure Rust logic, in-backend #[pg_test]s, the SQL
# contract (pg_regress), isolation specs (pg_isolation_regress), real-connection tests and
# the reliability suite (stress, crash recovery, bad input).
# .ci/run calls this script with no arguments (every step).
#
# One step, or a few:   ./scripts/test.sh lib | pgtest | regress | isolation | connections | reliability
# One file of a step:   QUOTA_ONLY=07_enforce ./scripts/test.sh regress
#                       QUOTA_ONLY=hot_path ./scripts/test.sh isolation
#                       QUOTA_ONLY=test_hardening ./scripts/test.sh connections
# Steps after `pgtest` build and install the extension first. docs/testing.md keeps the
# time budget of each step.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
. scripts/cluster.sh
PORT="${QUOTA_TEST_PORT:-55433}"
PGXS_TEST="$(pg_config --pkglibdir)/pgxs/src/test"
OUT="$QUOTA_RUN/test-output"
STEPS=("$@")
[ "${#STEPS[@]}" -eq 0 ] && STEPS=(lib pgtest regress isolation connections reliability)
ONLY="${QUOTA_ONLY:-}"
wanted() { local s; for s in "${STEPS[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }
STARTED=$SECONDS
step() { printf '\n== %s (at %ds)\n' "$*" "$((SECONDS - STARTED))"; }
pick() { # the names (one per line) that contain $ONLY, or all
  if [ -n "$ONLY" ]; then grep -F -- "$ONLY" || { echo "no test matches QUOTA_ONLY=$ONLY" >&2; return 1; }; else cat; fi
}

if wanted lib; then
  step "1/6 pure logic: cargo test --lib (no server)"
  cargo test --lib --quiet
fi

if wanted pgtest; then
  step "2/6 in-backend tests: cargo pgrx test"
  mkdir -p "$QUOTA_RUN/pgrx"; chown postgres "$QUOTA_RUN/pgrx" 2>/dev/null || true
  cargo pgrx test pg15 --runas postgres --pgdata "$QUOTA_RUN/pgrx/data"
fi

if wanted regress || wanted isolation || wanted connections || wanted reliability; then
  step "installing the extension and starting a test cluster on port $PORT"
  install_extension
fi

if wanted regress || wanted isolation || wanted connections; then
  cluster_start test "$PORT" "max_prepared_transactions = 10" "shared_preload_libraries = 'quota_ext'"
  trap 'cluster_stop test' EXIT
  rm -rf "$OUT"; mkdir -p "$OUT"; chmod 777 "$OUT"
  HOSTOPTS=(--host="$QUOTA_RUN/test" --port="$PORT" --user=postgres)
fi

if wanted regress; then
  step "3/6 SQL contract: pg_regress"
  regress_tests=$(cd tests/regress/sql && ls *.sql | sed 's/\.sql$//' | sort | pick)
  # 00_setup creates what every file uses.
  case "$regress_tests" in 00_setup*) ;; *) regress_tests="00_setup $regress_tests" ;; esac
  "$PGXS_TEST/regress/pg_regress" "${HOSTOPTS[@]}" --inputdir=tests/regress --outputdir="$OUT/regress" \
    --dbname=quota_regress $regress_tests || { cat "$OUT/regress/regression.diffs" 2>/dev/null | head -200; exit 1; }
fi

if wanted isolation; then
  step "4/6 concurrency: pg_isolation_regress"
  cluster_psql test "$PORT" -d postgres -q -c "DROP DATABASE IF EXISTS quota_isolation" -c "CREATE DATABASE quota_isolation"
  cluster_psql test "$PORT" -d quota_isolation -q -c "CREATE EXTENSION quota_ext"
  specs=$(cd tests/isolation/specs && ls *.spec | sed 's/\.spec$//' | sort | pick)
  "$PGXS_TEST/isolation/pg_isolation_regress" "${HOSTOPTS[@]}" --use-existing --dbname=quota_isolation \
    --inputdir=tests/isolation --outputdir="$OUT/isolation" $specs \
    || { cat "$OUT/isolation/output_iso/regression.diffs" "$OUT/isolation/regression.diffs" 2>/dev/null | head -200; exit 1; }
fi

if wanted connections; then
  step "5/6 real connections: tests/connections"
  for t in $(ls tests/connections/test_*.py | pick); do
    echo "-- $t (at $((SECONDS - STARTED))s)"
    QUOTA_HOST="$QUOTA_RUN/test" QUOTA_PORT="$PORT" /usr/bin/python3 "$t"
  done
fi

if wanted reliability; then
  step "6/6 reliability: stress, kill -9 recovery, bad input (scripts/reliability.sh)"
  ./scripts/reliability.sh
fi

step "all tests passed (${STEPS[*]})"
