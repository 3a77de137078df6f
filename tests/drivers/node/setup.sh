#!/usr/bin/env bash
# Idempotent: installs node-postgres (pinned in package-lock.json) for ambiguity.mjs.
# Needs node and npm (examples/node/setup.sh installs them on Debian 12 when missing).
set -euo pipefail
cd "$(dirname "$0")"
command -v npm >/dev/null 2>&1 || { echo "setup.sh: node and npm are needed (apt-get install nodejs npm)" >&2; exit 1; }
stamp=node_modules/.setup-stamp
want="$(sha256sum package-lock.json | cut -d' ' -f1) $(node --version)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
npm ci --no-audit --no-fund --loglevel=error
echo "$want" >"$stamp"
