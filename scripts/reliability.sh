#!/usr/bin/env bash
# The reliability suite (tests/reliability/reliability.py) on its own cluster:
# stress with an independent client log, kill -9 crash recovery, bad input.
# Assumes scripts/setup.sh ran and the extension is installed (scripts/test.sh does both).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cluster.sh
PORT="${QUOTA_RELIABILITY_PORT:-55436}"
cluster_start relstress "$PORT" "restart_after_crash = off" "log_line_prefix = '%m [%p] %e '" \
  "max_connections = 60" "shared_preload_libraries = 'quota_ext'"
trap 'cluster_stop relstress' EXIT
QUOTA_HOST="$QUOTA_RUN/relstress" QUOTA_PORT="$PORT" QUOTA_DATA="$QUOTA_RUN/relstress/data" PGBIN="$PGBIN" \
  /usr/bin/python3 tests/reliability/reliability.py
