#!/usr/bin/env bash
# Installs Debian's prometheus-postgres-exporter (0.11.1 on Debian 12) and curl, as root,
# only when missing. The package enables a system service (port 9187, with an empty
# DATA_SOURCE_NAME): the test starts its own exporter, so the service is kept from starting
# during the install and disabled afterwards, with or without a running systemd.
set -euo pipefail
SERVICE=prometheus-postgres-exporter
missing=()
for pkg in prometheus-postgres-exporter curl; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  # invoke-rc.d and deb-systemd-invoke ask policy-rc.d; 101 = "do not start services now".
  # Only a policy-rc.d this script wrote is removed again.
  own_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  trap 'if [ -n "$own_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi' EXIT
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Disable the service (idempotent; quick when already done).
if command -v systemctl >/dev/null 2>&1 && [ "$(systemctl is-enabled "$SERVICE" 2>/dev/null)" = enabled ]; then
  systemctl disable "$SERVICE" >/dev/null 2>&1 || true    # works without a running systemd too
fi
if [ -d /run/systemd/system ]; then
  systemctl stop "$SERVICE" >/dev/null 2>&1 || true
else
  # No systemd running (a container): the SysV links and a daemon the init script started.
  if ls /etc/rc[2-5].d/S*"$SERVICE" >/dev/null 2>&1; then
    update-rc.d "$SERVICE" disable >/dev/null 2>&1 || true
  fi
  if [ -f "/run/prometheus/$SERVICE.pid" ]; then
    "/etc/init.d/$SERVICE" stop >/dev/null 2>&1 || true
  fi
fi
echo "prometheus example: ready ($(/usr/bin/prometheus-postgres-exporter --version 2>&1 | head -1))"
