#!/usr/bin/env bash
# The reliability suite (tests/reliability/reliability.py) on its own cluster:
# stress with an independent client log, kill -9 crash recovery, compaction under load,
# pools drawn from in slices (under load and through a kill -9), a partitioned enforced table, bound tenant roles (login roles; the cluster trusts local
# connections), databases created at 0.2.0 and 0.3.0 and updated under load, bad input.
# Assumes scripts/setup.sh ran and the extension is installed with the released install
# scripts (scripts/test.sh does both). Knobs: QUOTA_SEED (replay a run), QUOTA_CLIENTS,
# QUOTA_OPS, QUOTA_CRASHES, QUOTA_PROPERTY_CALLS, QUOTA_LOG_LIMIT_MB, QUOTA_PHASES (some
# phases only, e.g. QUOTA_PHASES=pools).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cluster.sh
/usr/bin/python3 -c 'import psycopg' 2>/dev/null \
  || { echo "reliability: python3-psycopg (psycopg 3) is missing; run scripts/setup.sh" >&2; exit 1; }
PORT="${QUOTA_RELIABILITY_PORT:-55436}"
# Values are bound parameters and never part of a statement; log_parameter_max_length_on_error
# (0: no parameter values in error reports) keeps them out of the log too. The suite fails
# if the log reaches QUOTA_LOG_LIMIT_MB (100 MB).
cluster_start relstress "$PORT" "restart_after_crash = off" "log_line_prefix = '%m [%p] %e '" \
  "log_parameter_max_length_on_error = 0" \
  "max_connections = 60" "shared_preload_libraries = 'quota_ext'"
trap 'cluster_stop relstress' EXIT
QUOTA_HOST="$QUOTA_RUN/relstress" QUOTA_PORT="$PORT" QUOTA_DATA="$QUOTA_RUN/relstress/data" \
  QUOTA_LOG="$QUOTA_RUN/relstress/server.log" PGBIN="$PGBIN" \
  /usr/bin/python3 tests/reliability/reliability.py
