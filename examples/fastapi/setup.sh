#!/bin/bash
# Installs what the FastAPI example needs on Debian 12 (run as root; idempotent, quick the second time).
set -euo pipefail
cd "$(dirname "$0")"

missing=()
for pkg in python3-venv chromium chromium-driver fonts-liberation postgresql-client-15; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || /usr/bin/python3 -m venv .venv
stamp=.venv/.requirements.sha256
if ! sha256sum --status -c "$stamp" 2>/dev/null; then
  echo "setup: pip install -r requirements.txt"
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
  sha256sum requirements.txt >"$stamp"
fi
echo "setup: ok"
