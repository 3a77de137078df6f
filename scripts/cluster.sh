# Throwaway PostgreSQL clusters for the demo, the SQL tests and benchmarks: PostgreSQL
# $QUOTA_PG (15, the default, 16 or 18; scripts/pg_versions.sh says where each comes from).
# Source this file. PostgreSQL refuses to run as root, so as root the server runs as the
# "postgres" user; clusters live under $QUOTA_RUN (default /tmp/quota_ext), on loopback
# and a private Unix socket directory.

QUOTA_RUN="${QUOTA_RUN:-/tmp/quota_ext}"
QUOTA_PG="${QUOTA_PG:-15}"
. "$(dirname "${BASH_SOURCE[0]}")/pg_versions.sh"
# QUOTA_PG_CONFIG: another installation of that major (the package test's staged copy).
PG_CONFIG="${QUOTA_PG_CONFIG:-$(pg_config_of "$QUOTA_PG")}"
PGBIN="$("$PG_CONFIG" --bindir)"

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# cluster_start NAME PORT [postgresql.conf lines...]
cluster_start() {
  local name="$1" port="$2"; shift 2
  local dir="$QUOTA_RUN/$name"
  cluster_stop "$name" "$port"
  mkdir -p "$QUOTA_RUN"; chmod 755 "$QUOTA_RUN"
  rm -rf "$dir"; mkdir -p "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
  as_pg "$PGBIN/initdb" -D "$dir/data" -U postgres -A trust --no-sync -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log"; return 1; }
  {
    echo "port = $port"
    echo "listen_addresses = '127.0.0.1'"
    echo "unix_socket_directories = '$dir'"
    echo "max_connections = 100"
    echo "fsync = on"
    for line in "$@"; do echo "$line"; done
  } >>"$dir/data/postgresql.conf"
  # Rust backtraces in error DETAILs would make test output depend on the environment.
  as_pg env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
    || { cat "$dir/server.log"; return 1; }
}

cluster_stop() {
  local dir="$QUOTA_RUN/$1"
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

# cluster_psql NAME PORT [psql args...]
cluster_psql() {
  local name="$1" port="$2"; shift 2
  "$PGBIN/psql" -X -v ON_ERROR_STOP=1 -h "$QUOTA_RUN/$name" -p "$port" -U postgres "$@"
}

# Build and install the extension into PostgreSQL $QUOTA_PG's directories (15: the system's;
# 16, 18: the wheel's, under /opt/quota_ext) (release unless
# QUOTA_PROFILE=debug), check the frozen install script of the current version, and copy
# the released scripts (sql/released/) next to it.
# QUOTA_REUSE_BUILD=1: no build when a library and this version's install script are
# installed already (whatever build put them there); the scripts are checked and copied.
install_extension() {
  local flags="--release"
  [ "${QUOTA_PROFILE:-release}" = "debug" ] && flags=""
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="--sudo"
  local extdir libdir version
  extdir="$("$PG_CONFIG" --sharedir)/extension"
  libdir="$("$PG_CONFIG" --pkglibdir)"
  version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
  local installed="$libdir/quota_ext.so"
  if [ "${QUOTA_REUSE_BUILD:-0}" = 1 ] && [ -f "$installed" ] && [ -f "$extdir/quota_ext.control" ] \
     && [ -f "$extdir/quota_ext--$version.sql" ]; then
    echo "install_extension: reusing $installed ($(date -r "$installed" '+%F %T'), no build)"
    if [ -n "$(find src sql Cargo.toml -newer "$installed" -type f -print -quit)" ]; then
      echo "install_extension: note: src/, sql/ or Cargo.toml changed since it was installed" >&2
    fi
  else
    [ "${QUOTA_REUSE_BUILD:-0}" = 1 ] && echo "install_extension: nothing installed at version $version to reuse: building"
    cargo pgrx install $flags $sudo --pg-config "$PG_CONFIG" >/dev/null
  fi
  # The current version's install script, once released (frozen in sql/released/), must
  # be what the code generates: a change to the SQL needs the next version.
  # pgrx orders independent blocks differently from one build to the next, and its
  # comments name Rust source lines and module paths: compare the blocks as a set,
  # without those comments.
  if [ -f "sql/released/quota_ext--$version.sql" ] \
     && ! /usr/bin/python3 scripts/same_sql.py "sql/released/quota_ext--$version.sql" "$extdir/quota_ext--$version.sql"; then
    echo "install_extension: the generated install script differs from the released sql/released/quota_ext--$version.sql." >&2
    echo "Released scripts are never edited: release the change as the next version (Cargo.toml, upgrade script, CHANGELOG)." >&2
    return 1
  fi
  # Released install scripts (quota_ext--A.sql) and upgrade scripts (quota_ext--A--B.sql),
  # for old versions and upgrades. cargo pgrx install generates the current version's
  # script and copies only sql/quota_ext--A--B.sql (an upgrade script not released yet),
  # not sql/released/.
  ${sudo:+sudo} cp sql/released/quota_ext--*.sql "$extdir/"
}

# run_regress NAME PORT OUTDIR [TEST...]: pg_regress, tests/regress/, against cluster NAME
# (every file when no TEST is given; 00_setup first).
run_regress() {
  local name="$1" port="$2" out="$3"; shift 3
  local tests=("$@")
  [ "${#tests[@]}" -gt 0 ] || mapfile -t tests < <(cd tests/regress/sql && ls -- *.sql | sed 's/\.sql$//' | sort)
  # --bindir: a wheel's pg_regress has its build machine's psql path compiled in.
  "$("$PG_CONFIG" --pkglibdir)/pgxs/src/test/regress/pg_regress" --host="$QUOTA_RUN/$name" --port="$port" --user=postgres \
    --bindir="$PGBIN" --inputdir=tests/regress --outputdir="$out" --dbname=quota_regress "${tests[@]}" \
    || { cat "$out/regression.diffs" 2>/dev/null | head -200; return 1; }
}
