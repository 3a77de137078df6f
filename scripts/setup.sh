#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine (run as root, or with sudo available).
# Installs PostgreSQL 15 + headers, clang, sudo, the test tools, rustfmt and clippy, cargo-pgrx 0.18.1,
# and registers the system pg_config with pgrx.
set -euo pipefail

PGRX_VERSION=0.18.1
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need_pkgs=()
for p in postgresql-15 postgresql-server-dev-15 postgresql-contrib libclang-dev clang sudo \
         pkg-config python3-psycopg2 python3-psycopg python3-matplotlib; do
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

PG_CONFIG="$(command -v pg_config)"
if ! grep -qs "pg15 *= *\"${PG_CONFIG}\"" "$HOME/.pgrx/config.toml"; then
  cargo pgrx init --pg15 "${PG_CONFIG}"
fi
echo "setup: ok (cargo-pgrx $(cargo pgrx --version | awk '{print $2}'), $(${PG_CONFIG} --version))"
