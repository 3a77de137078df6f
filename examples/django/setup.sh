#!/usr/bin/env bash
# Installs what examples/django needs on Debian 12 (run as root; idempotent, quick the second time).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
missing=()
for pkg in python3 python3-venv postgresql-client-15; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
venv="$here/.venv"
[ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv "$venv"
# Reinstall only when requirements.txt changed since the last successful install.
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"
  echo "$want" >"$stamp"
fi
echo "examples/django: ready ($("$venv/bin/python" -m django --version 2>/dev/null | sed 's/^/Django /'))"
