#!/usr/bin/env bash
# Idempotent set-up for the node example (Debian 12, as root): node + npm when missing,
# then `npm ci` from package-lock.json, skipped when node_modules matches the lock file.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  # Debian 12's nodejs is 18 (node 20 from elsewhere is fine too: then nothing is installed).
  missing=""
  for pkg in nodejs npm; do dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"; done
  if [ -n "$missing" ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  fi
fi
# test.sh uses psql to create its databases.
dpkg -s postgresql-client-15 >/dev/null 2>&1 || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-client-15 >/dev/null
}

stamp=node_modules/.setup-stamp
want="$(sha256sum package-lock.json | cut -d' ' -f1) $(node --version)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "setup: node_modules is up to date ($(node --version))"
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
echo "$want" >"$stamp"
echo "setup: npm ci done ($(node --version), npm $(npm --version))"
