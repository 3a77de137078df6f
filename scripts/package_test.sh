#!/usr/bin/env bash
# Installs each package that scripts/package.sh built, runs the whole SQL contract
# (tests/regress, pg_regress) against the installed files, and removes the package again.
#
# Usage: ./scripts/package_test.sh [MAJOR...]        (default: 15 16 18; as root)
#
#   15      installs the .deb for real (dpkg -i) into Debian's PostgreSQL 15. The files a
#           developer's `cargo pgrx install` put at the .deb's paths are backed up first and
#           put back at the end, after `dpkg --purge`, whatever happens (trap). Checks that dpkg
#           owns the library, that the installed files are the package's (dpkg --verify),
#           runs the suite on a throwaway cluster (port 55460) that preloads the library,
#           then purges and checks that no file of the .deb is left.
#   16, 18  never touch the wheel's installation: copies it (its pginstall directory and the
#           wheel's .libs directory beside it, where psql and initdb find libpq) into a
#           staging directory under /tmp, checks that the copy's pg_config reports the
#           copy's paths, takes the developer's quota_ext files out of the copy, runs the
#           tarball's install.sh against it (after checking that install.sh refuses another
#           major's pg_config), runs the suite on a cluster of the copy's binaries that
#           preloads the copy's library (ports 55461 and 55462), then `install.sh
#           --uninstall` and checks that the files are gone. The staging directory is
#           removed at the end (trap), and the wheel's own quota_ext files are checked to be
#           unchanged.
#
# A package missing or older than the sources (src/, sql/, Cargo.toml, Cargo.lock,
# quota_ext.control, META.json, scripts/package.sh, scripts/package/) is built first with
# scripts/package.sh. Clusters and regress output live under $QUOTA_RUN (default
# /tmp/quota_ext; scripts/cluster.sh). QUOTA_PKG_TEST_PORT moves the ports (default 55460;
# 16 and 18 use the next two). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
. scripts/pg_versions.sh

[ "$(id -u)" -eq 0 ] || { echo "package_test.sh: run it as root (dpkg -i, and clusters run as postgres)" >&2; exit 1; }
select_majors package_test.sh "$@"

VERSION="$(sed -n '/^\[package\]/,/^\[/{s/^version *= *"\(.*\)"$/\1/p}' Cargo.toml | head -1)"
OUT=target/packages
DEB_NAME=postgresql-15-quota-ext
DEB="$OUT/${DEB_NAME}_${VERSION}_$(dpkg --print-architecture).deb"
BASE_PORT="${QUOTA_PKG_TEST_PORT:-55460}"
export QUOTA_RUN="${QUOTA_RUN:-/tmp/quota_ext}"

tarball_of() { echo "$OUT/quota_ext-$VERSION-pg$1-linux-$(uname -m).tar.gz"; }
package_of() { if [ "$1" = 15 ]; then echo "$DEB"; else tarball_of "$1"; fi; }
port_of() { case "$1" in 15) echo "$BASE_PORT" ;; 16) echo $((BASE_PORT + 1)) ;; 18) echo $((BASE_PORT + 2)) ;; esac; }
fail() { echo "package_test.sh: FAIL: $*" >&2; exit 1; }
say() { echo "package_test.sh: $*"; }

# Build what is missing or stale.
stale=()
for major in "${MAJORS[@]}"; do
  pkg="$(package_of "$major")"
  if [ ! -f "$pkg" ] || [ -n "$(find src sql Cargo.toml Cargo.lock quota_ext.control META.json scripts/package.sh scripts/package \
                                   -newer "$pkg" -type f -print -quit)" ]; then
    stale+=("$major")
  fi
done
if [ "${#stale[@]}" -gt 0 ]; then
  say "building the packages of ${stale[*]} first (missing or older than the sources)"
  ./scripts/package.sh "${stale[@]}"
fi

# What the EXIT/INT/TERM trap undoes, whatever state a test stopped in.
CLUSTER=""          # the running cluster's name (stopped with cluster.sh's PGBIN)
DEB_BY_US=0         # the .deb is (maybe) installed by this script: purge it
BACKUP=""           # backup of the files at the .deb's paths, restored after the purge
BACKED_UP=()        # the paths backed up
STAGE=""            # a staging copy of a wheel's installation

purge_deb() {
  dpkg --purge "$DEB_NAME" >/dev/null
  DEB_BY_US=0
}

restore_backups() {
  local f
  for f in "${BACKED_UP[@]}"; do
    mkdir -p "$(dirname "$f")"
    cp -a "$BACKUP$f" "$f"
  done
  [ "${#BACKED_UP[@]}" -eq 0 ] || say "restored ${#BACKED_UP[@]} files that were at the .deb's paths before"
  BACKED_UP=()
  rm -rf "$BACKUP"; BACKUP=""
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  if [ -n "$CLUSTER" ]; then cluster_stop "$CLUSTER"; CLUSTER=""; fi
  if [ "$DEB_BY_US" = 1 ]; then
    echo "package_test.sh: cleanup: dpkg --purge $DEB_NAME" >&2
    purge_deb || echo "package_test.sh: cleanup: dpkg --purge $DEB_NAME failed" >&2
  fi
  if [ -n "$BACKUP" ]; then restore_backups; fi
  if [ -n "$STAGE" ]; then rm -rf "$STAGE"; STAGE=""; fi
  [ "$rc" -eq 0 ] || echo "package_test.sh: FAILED (exit $rc)" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# cluster_for MAJOR [PG_CONFIG]: (re)load scripts/cluster.sh for that major (and installation).
cluster_for() {
  export QUOTA_PG="$1"
  if [ -n "${2:-}" ]; then export QUOTA_PG_CONFIG="$2"; else unset QUOTA_PG_CONFIG; fi
  . scripts/cluster.sh
}

# regress MAJOR LIBRARY: a throwaway cluster (cluster_for first) that preloads quota_ext,
# checked to have mapped LIBRARY, then the whole regress suite.
regress() {
  local major="$1" library="$2" name="package$1" port; port="$(port_of "$1")"
  local out="$QUOTA_RUN/$name-regress"
  CLUSTER="$name"
  cluster_start "$name" "$port" "shared_preload_libraries = 'quota_ext'" "max_prepared_transactions = 10"
  local pid; pid="$(head -1 "$QUOTA_RUN/$name/data/postmaster.pid")"
  grep -q " $library\$" "/proc/$pid/maps" \
    || fail "the PostgreSQL $major server did not load $library (it mapped: $(grep -o '/[^ ]*quota_ext[^ ]*' "/proc/$pid/maps" | sort -u | xargs))"
  say "PostgreSQL $major server ($PGBIN) preloads $library; regress suite:"
  rm -rf "$out"; mkdir -p "$out"; chmod 777 "$out"
  run_regress "$name" "$port" "$out" || fail "the regress suite failed against the installed PostgreSQL $major package (output: $out)"
  cluster_stop "$CLUSTER"; CLUSTER=""
}

test_deb() {
  [ -f "$DEB" ] || fail "no $DEB"
  # Read whole, not piped into grep -q: under pipefail, grep -q leaving early made
  # dpkg-deb die of SIGPIPE now and then, and the check fail on a good package.
  [ "$(dpkg-deb -f "$DEB" Depends)" = postgresql-15 ] || fail "$DEB does not say Depends: postgresql-15 ($(dpkg-deb -f "$DEB" Depends))"
  dpkg -s postgresql-15 >/dev/null 2>&1 || fail "postgresql-15 is not installed (scripts/setup.sh)"
  if dpkg -s "$DEB_NAME" >/dev/null 2>&1; then
    fail "$DEB_NAME is installed already (dpkg -s): this test would purge it; remove it first"
  fi
  cluster_for 15
  mkdir -p "$QUOTA_RUN"
  local -a files
  mapfile -t files < <(dpkg-deb --fsys-tarfile "$DEB" | tar -t | grep -v '/$' | sed 's|^\./|/|')
  [ "${#files[@]}" -gt 0 ] || fail "$DEB lists no file"
  local f owner
  for f in "${files[@]}"; do
    if owner="$(dpkg -S "$f" 2>/dev/null)"; then fail "$f belongs to another package already: $owner"; fi
  done

  # Back up whatever is at the .deb's paths (a developer's cargo pgrx install).
  BACKUP="$(mktemp -d /tmp/quota_ext-package15.XXXXXX)"
  for f in "${files[@]}"; do
    if [ -e "$f" ] || [ -L "$f" ]; then
      mkdir -p "$BACKUP$(dirname "$f")"
      cp -a "$f" "$BACKUP$f"
      BACKED_UP+=("$f")
    fi
  done
  say "backed up ${#BACKED_UP[@]} of the .deb's ${#files[@]} paths (files already there) into $BACKUP"

  DEB_BY_US=1
  dpkg -i "$DEB" >"$QUOTA_RUN/package15-dpkg-i.log" 2>&1 || { cat "$QUOTA_RUN/package15-dpkg-i.log"; fail "dpkg -i $DEB"; }
  say "dpkg -i $DEB: $(dpkg-query -W -f '${Package} ${Version} ${db:Status-Status}' "$DEB_NAME")"
  local lib; lib="$("$PG_CONFIG" --pkglibdir)/quota_ext.so"
  grep -qxF "$DEB_NAME: $lib" <<<"$(dpkg -S "$lib" 2>/dev/null)" || fail "dpkg -S $lib does not name $DEB_NAME: $(dpkg -S "$lib" 2>&1)"
  local changed; changed="$(dpkg --verify "$DEB_NAME" 2>&1)" || true
  [ -z "$changed" ] || fail "dpkg --verify $DEB_NAME: the installed files are not the package's: $changed"
  say "dpkg -S names $DEB_NAME for $lib; dpkg --verify: the installed files are the package's"

  regress 15 "$lib"

  purge_deb
  if dpkg -s "$DEB_NAME" >/dev/null 2>&1; then fail "$DEB_NAME is still known to dpkg after --purge: $(dpkg -s "$DEB_NAME" | grep ^Status)"; fi
  local left=()
  for f in "${files[@]}"; do if [ -e "$f" ] || [ -L "$f" ]; then left+=("$f"); fi; done
  [ "${#left[@]}" -eq 0 ] || fail "after dpkg --purge these remain: ${left[*]}"
  [ -z "$(dpkg -S quota_ext 2>/dev/null)" ] || fail "dpkg still owns quota_ext files: $(dpkg -S quota_ext)"
  say "dpkg --purge: $DEB_NAME not installed, none of its ${#files[@]} files remain"
  restore_backups
  say "PASS: PostgreSQL 15: $DEB installed with dpkg, regress suite passed, purged cleanly"
}

# test_tarball MAJOR: the tarball, installed into a staged copy of the wheel's installation.
test_tarball() {
  local major="$1" tarball; tarball="$(tarball_of "$1")"
  [ -f "$tarball" ] || fail "no $tarball"
  local wheel_pg_config pginstall wheel_pkg
  wheel_pg_config="$(pg_config_of "$major")"
  [ -x "$wheel_pg_config" ] || fail "no pg_config for PostgreSQL $major at $wheel_pg_config (scripts/setup.sh)"
  pginstall="$(dirname "$(dirname "$wheel_pg_config")")"   # .../site-packages/<package>/pginstall
  wheel_pkg="$(dirname "$pginstall")"                       # .../site-packages/<package>
  # The wheel's own quota_ext files (a developer's install), to check they are left alone.
  local before; before="$(find "$pginstall" -name 'quota_ext*' -type f -exec sha256sum {} + | sort)"

  # The copy keeps the wheel's layout: psql, initdb and pg_dump find libpq through
  # RPATH $ORIGIN/../../../<package>.libs (auditwheel), a sibling of <package>/.
  STAGE="$(mktemp -d "/tmp/quota_ext-package$major.XXXXXX")"
  chmod 755 "$STAGE"
  local pkgname; pkgname="$(basename "$wheel_pkg")"
  mkdir "$STAGE/$pkgname"
  cp -a "$pginstall" "$STAGE/$pkgname/"
  [ ! -d "$wheel_pkg.libs" ] || cp -a "$wheel_pkg.libs" "$STAGE/"
  local staged="$STAGE/$pkgname/pginstall"
  local pgc="$staged/bin/pg_config" opt orig want got
  for opt in --bindir --libdir --pkglibdir --sharedir --includedir-server; do
    orig="$("$wheel_pg_config" "$opt")"
    [[ "$orig/" == "$pginstall"/* ]] || fail "the wheel's pg_config $opt says $orig, outside $pginstall"
    want="$staged${orig#"$pginstall"}"
    got="$("$pgc" "$opt")"
    [ "$got" = "$want" ] || fail "the staged pg_config $opt says $got, not $want: the wheel is not relocatable"
  done
  if ldd "$staged/bin/psql" "$staged/bin/initdb" | grep 'not found' >/dev/null; then
    fail "the staged psql or initdb misses a library: $(ldd "$staged/bin/psql" "$staged/bin/initdb" | grep 'not found' | sort -u | xargs)"
  fi
  say "staged PostgreSQL $major in $STAGE: its pg_config reports the staged paths"

  local libdir extdir
  libdir="$("$pgc" --pkglibdir)"; extdir="$("$pgc" --sharedir)/extension"
  rm -f "$libdir/quota_ext.so" "$extdir/quota_ext.control" "$extdir"/quota_ext--*.sql
  tar -C "$STAGE" -xzf "$tarball"
  local top; top="$STAGE/$(basename "$tarball" .tar.gz)"
  [ -x "$top/install.sh" ] || fail "$tarball has no executable $(basename "$top")/install.sh"

  # install.sh refuses a pg_config of another major, and writes nothing. The other major
  # is a stand-in pg_config whose directories are in the staging dir: were the check to
  # regress, it would write there, not into a real installation.
  local other_major=15; [ "$major" != 15 ] || other_major=16
  local fake="$STAGE/other-major"
  mkdir -p "$fake/lib" "$fake/share/extension"
  cat >"$fake/pg_config" <<FAKE
#!/bin/sh
case "\$1" in
  --version) echo "PostgreSQL $other_major.99" ;;
  --pkglibdir) echo "$fake/lib" ;;
  --sharedir) echo "$fake/share" ;;
  *) echo "$fake" ;;
esac
FAKE
  chmod 0755 "$fake/pg_config"
  local refused
  if refused="$(PG_CONFIG="$fake/pg_config" "$top/install.sh" 2>&1)"; then fail "install.sh installed into a PostgreSQL $other_major pg_config: $refused"; fi
  grep -q "for PostgreSQL $major, but" <<<"$refused" || fail "install.sh refused PostgreSQL $other_major without saying why: $refused"
  [ -z "$(find "$fake/lib" "$fake/share" -type f)" ] || fail "install.sh refused PostgreSQL $other_major but wrote: $(find "$fake/lib" "$fake/share" -type f | xargs)"
  say "install.sh refuses another major's pg_config (PostgreSQL $other_major) and writes nothing"

  PG_CONFIG="$pgc" "$top/install.sh"
  local -a installed=("$libdir/quota_ext.so")
  local f
  for f in "$top"/extension/*; do installed+=("$extdir/$(basename "$f")"); done
  cmp -s "$top/lib/quota_ext.so" "$libdir/quota_ext.so" || fail "$libdir/quota_ext.so is not the tarball's"
  for f in "$top"/extension/*; do cmp -s "$f" "$extdir/$(basename "$f")" || fail "$extdir/$(basename "$f") is not the tarball's"; done

  cluster_for "$major" "$pgc"
  [ "$PGBIN" = "$staged/bin" ] || fail "cluster.sh would run $PGBIN, not the staged $staged/bin"
  regress "$major" "$libdir/quota_ext.so"

  PG_CONFIG="$pgc" "$top/install.sh" --uninstall
  local left=()
  for f in "${installed[@]}"; do if [ -e "$f" ]; then left+=("$f"); fi; done
  [ "${#left[@]}" -eq 0 ] || fail "after install.sh --uninstall these remain: ${left[*]}"
  [ -z "$(find "$staged" -name 'quota_ext*' -print -quit)" ] || fail "quota_ext files remain in the staged copy: $(find "$staged" -name 'quota_ext*')"
  say "install.sh --uninstall removed all ${#installed[@]} files"
  rm -rf "$STAGE"; STAGE=""

  [ "$(find "$pginstall" -name 'quota_ext*' -type f -exec sha256sum {} + | sort)" = "$before" ] \
    || fail "the wheel's own quota_ext files under $pginstall changed during the test"
  say "PASS: PostgreSQL $major: $tarball installed into a staged copy with install.sh, regress suite passed, uninstalled cleanly"
}

for major in "${MAJORS[@]}"; do
  started=$SECONDS
  if [ "$major" = 15 ]; then test_deb; else test_tarball "$major"; fi
  say "PostgreSQL $major tested in $((SECONDS - started)) s"
done
say "PASS: packages of PostgreSQL ${MAJORS[*]} (quota_ext $VERSION)"
