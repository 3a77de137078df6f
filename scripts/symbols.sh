#!/usr/bin/env bash
# Every C symbol that a released install or upgrade script refers to
# (AS 'MODULE_PATHNAME', 'symbol') must still be defined by the library: a database
# created with any released version keeps working after the library is replaced.
# Usage: scripts/symbols.sh [LIBRARY]   (default: the installed quota_ext.so)
set -euo pipefail
cd "$(dirname "$0")/.."
lib="${1:-$(pg_config --pkglibdir)/quota_ext.so}"
dir=sql/released
[ -d "$dir" ] || dir=sql
wanted=$(grep -ho "'MODULE_PATHNAME', *'[A-Za-z0-9_]*'" "$dir"/quota_ext--*.sql | sed "s/.*, *'\(.*\)'/\1/" | sort -u)
defined=$(nm -D --defined-only "$lib" | awk '{print $3}' | sort -u)
missing=$(comm -23 <(echo "$wanted") <(echo "$defined"))
if [ -n "$missing" ]; then
  echo "symbols.sh: $lib lacks symbols that released scripts use:" >&2
  echo "$missing" >&2
  exit 1
fi
echo "symbols.sh: all $(echo "$wanted" | wc -l) symbols of the released scripts are defined in $lib"
