#!/usr/bin/env bash
# Installs what the Java example needs on Debian 12, as root, only when missing:
# Java 17 (javac, java), Debian's PostgreSQL JDBC driver (/usr/share/java/postgresql.jar)
# and curl (test.sh polls the app with it). No Maven or Gradle: test.sh compiles with javac.
set -euo pipefail
missing=()
for pkg in default-jdk-headless libpostgresql-jdbc-java curl; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
javac -version >/dev/null 2>&1 || { echo "javac is missing" >&2; exit 1; }
[ -f /usr/share/java/postgresql.jar ] || { echo "/usr/share/java/postgresql.jar is missing" >&2; exit 1; }
echo "java example: ready ($(javac -version 2>&1), $(dpkg-query -W -f='libpostgresql-jdbc-java ${Version}' libpostgresql-jdbc-java))"
