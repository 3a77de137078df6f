#!/usr/bin/env bash
# The drivers tests/drivers/run.sh uses: asyncpg in a virtualenv (.venv), node-postgres
# (node/, npm ci) and the tokio-postgres client (built into target/drivers). Idempotent.
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || /usr/bin/python3 -m venv .venv
if ! sha256sum --status -c .venv/.requirements.sha256 2>/dev/null; then
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
  sha256sum requirements.txt >.venv/.requirements.sha256
fi
./node/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --quiet --release --locked --manifest-path tokio/Cargo.toml --target-dir "${QUOTA_DRIVERS_TARGET:-../../target/drivers}"
