#!/usr/bin/env bash
# The main job: set up the machine, build and install quota_ext, start a throwaway cluster,
# and play the chat-app scenario of the seeds. Leaves the cluster running.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
. scripts/cluster.sh
PORT="${QUOTA_DEMO_PORT:-55432}"

echo "== building and installing quota_ext (release)"
install_extension
echo "== starting a throwaway cluster on 127.0.0.1:$PORT"
cluster_start demo "$PORT" "shared_preload_libraries = 'quota_ext'"
cluster_psql demo "$PORT" -d postgres -q -c "CREATE DATABASE demo"
echo "== playing the chat scenario"
cluster_psql demo "$PORT" -d demo -f scripts/demo.sql
echo
echo "The demo cluster is still running. Connect with:"
echo "  psql -h $QUOTA_RUN/demo -p $PORT -U postgres demo"
echo "Stop it with:"
echo "  runuser -u postgres -- $PGBIN/pg_ctl -D $QUOTA_RUN/demo/data stop"
