#!/bin/sh
# Installs quota_ext @VERSION@ for PostgreSQL @MAJOR@ into the PostgreSQL installation that
# pg_config describes: lib/quota_ext.so into its --pkglibdir, extension/* into its
# --sharedir/extension.
#
#   PG_CONFIG=/path/to/pg_config ./install.sh               install (default: pg_config in PATH)
#   PG_CONFIG=/path/to/pg_config ./install.sh --uninstall   remove exactly the files it installs
#
# Run it as a user who may write to those directories (often root).
set -eu
# (Template: scripts/package/install.sh; scripts/package.sh fills in the version and the major.)

MAJOR=@MAJOR@
VERSION=@VERSION@
PG_CONFIG="${PG_CONFIG:-pg_config}"

usage() {
  sed -n '2,/^[^#]/{/^#/{s/^# \{0,1\}//;p;};}' "$0"
}

mode=install
case "${1-}" in
  "") ;;
  --uninstall) mode=uninstall ;;
  -h|--help) usage; exit 0 ;;
  *) echo "install.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
esac
[ "$#" -le 1 ] || { echo "install.sh: one argument at most" >&2; usage >&2; exit 2; }

here="$(cd "$(dirname "$0")" && pwd)"

if ! command -v "$PG_CONFIG" >/dev/null 2>&1; then
  echo "install.sh: no pg_config found ('$PG_CONFIG'). Set PG_CONFIG=/path/to/pg_config of a PostgreSQL $MAJOR installation." >&2
  exit 1
fi
server="$("$PG_CONFIG" --version)"
major="$(echo "$server" | sed -n 's/^PostgreSQL \([0-9][0-9]*\).*/\1/p')"
if [ "$major" != "$MAJOR" ]; then
  echo "install.sh: this package is quota_ext $VERSION for PostgreSQL $MAJOR, but $PG_CONFIG is $server." >&2
  echo "  A library built for one PostgreSQL major does not load into another. Use the package for" >&2
  echo "  PostgreSQL ${major:-?}, or set PG_CONFIG to the pg_config of a PostgreSQL $MAJOR installation." >&2
  exit 1
fi
libdir="$("$PG_CONFIG" --pkglibdir)"
extdir="$("$PG_CONFIG" --sharedir)/extension"

# each_file ACTION: runs ACTION SOURCE DESTINATION for each file this package holds.
each_file() {
  "$1" "$here/lib/quota_ext.so" "$libdir/quota_ext.so"
  for f in "$here"/extension/*; do
    "$1" "$f" "$extdir/${f##*/}"
  done
}

remove_one() {
  if [ -e "$2" ]; then
    rm -f "$2"
    echo "removed   $2"
  else
    echo "not there $2"
  fi
}

# Each file is copied next to its destination and renamed over it: a running server that
# has the old library mapped keeps its copy intact.
install_one() {
  cp "$1" "$2.install.$$"
  chmod 644 "$2.install.$$"
  mv -f "$2.install.$$" "$2"
  echo "installed $2"
}

if [ "$mode" = uninstall ]; then
  each_file remove_one
  echo "install.sh: quota_ext $VERSION removed from PostgreSQL $MAJOR ($PG_CONFIG)."
  echo "  A server that loads the library (shared_preload_libraries) needs it taken out of"
  echo "  that setting and a restart."
  exit 0
fi

[ -d "$libdir" ] || { echo "install.sh: $PG_CONFIG's --pkglibdir $libdir is not a directory" >&2; exit 1; }
mkdir -p "$extdir"
each_file install_one
echo "install.sh: quota_ext $VERSION installed for PostgreSQL $MAJOR ($PG_CONFIG)."
echo "  Next: shared_preload_libraries = 'quota_ext' in postgresql.conf (recommended), restart"
echo "  the server, then as a superuser: CREATE EXTENSION quota_ext;"
echo "  (or ALTER EXTENSION quota_ext UPDATE; in a database that has an older version)."
