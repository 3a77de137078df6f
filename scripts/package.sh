#!/usr/bin/env bash
# Builds quota_ext's binary packages, one per PostgreSQL major, into target/packages/:
#   15:      postgresql-15-quota-ext_<version>_<arch>.deb (Debian 12's postgresql-15)
#   16, 18:  quota_ext-<version>-pg<NN>-linux-<machine>.tar.gz: lib/quota_ext.so,
#            extension/ (control file, every install and upgrade script), install.sh, README.txt
#
# Usage: ./scripts/package.sh [MAJOR...]        (default: 15 16 18)
#   ./scripts/package.sh 15                      the .deb only
#
# Each major is built with `cargo pgrx package` (release; 15 in target/, 16 and 18 in
# target/pg<NN>, with --no-default-features --features pg<NN>), against the pg_config that
# scripts/pg_versions.sh names (scripts/setup.sh installs them). The generated install
# script of the current version must be the frozen sql/released/ one (as in install_extension,
# scripts/cluster.sh), and every sql/released/quota_ext--*.sql goes into the package.
# META.json's version must be Cargo.toml's. Re-running replaces the outputs. Writes nothing
# outside target/ (cargo's own caches aside). scripts/package_test.sh installs and tests them.
#
# Environment: QUOTA_PKG_MAINTAINER ("Name <email>") for the .deb's Maintainer field,
# QUOTA_PKG_HOMEPAGE for its Homepage field (none by default: the project has no public URL).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
. scripts/pg_versions.sh

select_majors package.sh "$@"

# cargo_field NAME: a string field of Cargo.toml's [package] section.
cargo_field() { sed -n '/^\[package\]/,/^\[/{s/^'"$1"' *= *"\(.*\)"$/\1/p}' Cargo.toml | head -1; }
VERSION="$(cargo_field version)"
DESCRIPTION="$(cargo_field description)"
LICENSE="$(cargo_field license)"
if [ -z "$VERSION" ] || [ -z "$DESCRIPTION" ]; then echo "package.sh: no version or description in Cargo.toml" >&2; exit 1; fi
[ "$LICENSE" = PostgreSQL ] || { echo "package.sh: Cargo.toml's license is '$LICENSE'; the copyright file written here is the PostgreSQL license's" >&2; exit 1; }
DEB_ARCH="$(dpkg --print-architecture)"
MACHINE="$(uname -m)"
MAINTAINER="${QUOTA_PKG_MAINTAINER:-quota_ext maintainers <maintainers@quota-ext.invalid>}"
OUT=target/packages
WORK="$OUT/build"

# META.json (PGXN) carries the version twice; both must be Cargo.toml's.
meta_versions="$(/usr/bin/python3 -c '
import json, sys
m = json.load(open("META.json"))
print(m.get("version"), m.get("provides", {}).get("quota_ext", {}).get("version"))')"
if [ "$meta_versions" != "$VERSION $VERSION" ]; then
  echo "package.sh: META.json says version/provides.quota_ext.version = $meta_versions, Cargo.toml says $VERSION." >&2
  echo "  Update META.json (\"version\" and \"provides\".\"quota_ext\".\"version\") to $VERSION." >&2
  exit 1
fi

mkdir -p "$OUT" "$WORK"

# build MAJOR: cargo pgrx package for that major; sets PG_CONFIG, TREE (the package tree,
# absolute install paths under it), LIBDIR and EXTDIR (inside TREE). The tree then holds
# every released script too.
build() {
  local major="$1" target features
  PG_CONFIG="$(pg_config_of "$major")"
  [ -x "$PG_CONFIG" ] || { echo "package.sh: no pg_config for PostgreSQL $major at $PG_CONFIG (run scripts/setup.sh)" >&2; return 1; }
  local reported; reported="$("$PG_CONFIG" --version | sed -n 's/^PostgreSQL \([0-9]*\).*/\1/p')"
  [ "$reported" = "$major" ] || { echo "package.sh: $PG_CONFIG is PostgreSQL $reported, not $major" >&2; return 1; }
  if [ "$major" = 15 ]; then
    target="$PWD/target"; features=()
  else
    target="$PWD/target/pg$major"; features=(--no-default-features --features "pg$major")
  fi
  TREE="$target/release/quota_ext-pg$major"
  rm -rf "$TREE"   # cargo pgrx package adds to what is there
  echo "package.sh: cargo pgrx package for PostgreSQL $major ($PG_CONFIG)"
  CARGO_TARGET_DIR="$target" cargo pgrx package --pg-config "$PG_CONFIG" "${features[@]}" >"$WORK/cargo-pgrx-package-pg$major.log" 2>&1 \
    || { tail -40 "$WORK/cargo-pgrx-package-pg$major.log"; echo "package.sh: cargo pgrx package failed for PostgreSQL $major (log: $WORK/cargo-pgrx-package-pg$major.log)" >&2; return 1; }
  LIBDIR="$TREE$("$PG_CONFIG" --pkglibdir)"
  EXTDIR="$TREE$("$PG_CONFIG" --sharedir)/extension"
  local f
  for f in "$LIBDIR/quota_ext.so" "$EXTDIR/quota_ext.control" "$EXTDIR/quota_ext--$VERSION.sql"; do
    [ -f "$f" ] || { echo "package.sh: cargo pgrx package made no $f" >&2; return 1; }
  done
  # The same rule as install_extension: a released version's install script is frozen.
  if [ -f "sql/released/quota_ext--$VERSION.sql" ] \
     && ! /usr/bin/python3 -B scripts/same_sql.py "sql/released/quota_ext--$VERSION.sql" "$EXTDIR/quota_ext--$VERSION.sql"; then
    echo "package.sh: the generated install script differs from the released sql/released/quota_ext--$VERSION.sql." >&2
    echo "Released scripts are never edited: release the change as the next version (Cargo.toml, upgrade script, CHANGELOG)." >&2
    return 1
  fi
  cp sql/released/quota_ext--*.sql "$EXTDIR/"
  # Nothing but the extension's own files may be in the tree.
  local other; other="$(cd "$TREE" && find . -type f ! -name 'quota_ext.so' ! -name 'quota_ext.control' ! -name 'quota_ext--*.sql')"
  [ -z "$other" ] || { echo "package.sh: unexpected files in $TREE: $other" >&2; return 1; }
}

# deb: the Debian package for 15 from TREE.
deb() {
  local name=postgresql-15-quota-ext
  local root="$WORK/deb-pg15" file="$OUT/${name}_${VERSION}_${DEB_ARCH}.deb"
  rm -rf "$root"
  mkdir -p "$root/DEBIAN" "$root/usr/share/doc/$name"
  cp -a "$TREE/." "$root/"
  cat >"$root/usr/share/doc/$name/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: quota_ext

Files: *
Copyright: 2026 quota_ext authors
License: PostgreSQL

License: PostgreSQL
 Permission to use, copy, modify, and distribute this software and its
 documentation for any purpose, without fee, and without a written agreement
 is hereby granted, provided that the above copyright notice and this
 paragraph and the following two paragraphs appear in all copies.
 .
 IN NO EVENT SHALL QUOTA_EXT AUTHORS BE LIABLE TO ANY PARTY FOR DIRECT,
 INDIRECT, SPECIAL, INCIDENTAL, OR CONSEQUENTIAL DAMAGES, INCLUDING LOST
 PROFITS, ARISING OUT OF THE USE OF THIS SOFTWARE AND ITS DOCUMENTATION, EVEN
 IF QUOTA_EXT AUTHORS HAVE BEEN ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.
 .
 QUOTA_EXT AUTHORS SPECIFICALLY DISCLAIM ANY WARRANTIES, INCLUDING, BUT NOT
 LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A
 PARTICULAR PURPOSE. THE SOFTWARE PROVIDED HEREUNDER IS ON AN "AS IS" BASIS,
 AND QUOTA_EXT AUTHORS HAVE NO OBLIGATIONS TO PROVIDE MAINTENANCE, SUPPORT,
 UPDATES, ENHANCEMENTS, OR MODIFICATIONS.
EOF
  # A native package's changelog.gz is in Debian's format: one entry for this version,
  # pointing at the project's own CHANGELOG.md, shipped beside it.
  gzip -9n <CHANGELOG.md >"$root/usr/share/doc/$name/CHANGELOG.md.gz"
  {
    echo "$name ($VERSION) unstable; urgency=medium"
    echo
    echo "  * quota_ext $VERSION for PostgreSQL 15. What changed in each version:"
    echo "    /usr/share/doc/$name/CHANGELOG.md.gz"
    echo
    echo " -- $MAINTAINER  $(LC_ALL=C date -R)"
  } | gzip -9n >"$root/usr/share/doc/$name/changelog.gz"
  find "$root" -type d -exec chmod 0755 {} +
  find "$root" -type f -exec chmod 0644 {} +
  (cd "$root" && find usr -type f | sort | xargs md5sum) >"$root/DEBIAN/md5sums"
  local size; size="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
  {
    echo "Package: $name"
    echo "Version: $VERSION"
    echo "Architecture: $DEB_ARCH"
    echo "Maintainer: $MAINTAINER"
    echo "Installed-Size: $size"
    echo "Depends: postgresql-15"
    echo "Section: database"
    echo "Priority: optional"
    [ -z "${QUOTA_PKG_HOMEPAGE:-}" ] || echo "Homepage: $QUOTA_PKG_HOMEPAGE"
    echo "Description: ${DESCRIPTION%.}"
    echo " quota_ext $VERSION for PostgreSQL 15: usage quotas kept in the database and"
    echo " checked in the caller's own transaction: plans, limits, usage windows, bonuses,"
    echo " reservations and an append-only ledger. Usage that rolls back is never"
    echo " counted, and a refusal is an ordinary PostgreSQL error (SQLSTATE QT429)."
    echo " ."
    echo " Add shared_preload_libraries = 'quota_ext' to postgresql.conf (for the shared"
    echo " subject cache and the statistics), restart the server, then run"
    echo " CREATE EXTENSION quota_ext; as a superuser. After upgrading this package,"
    echo " restart the server and run ALTER EXTENSION quota_ext UPDATE."
  } >"$root/DEBIAN/control"
  chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"
  rm -f "$file"
  dpkg-deb --build --root-owner-group "$root" "$file" >/dev/null
  echo "package.sh: $file"
}

# tarball MAJOR: quota_ext-<version>-pg<MAJOR>-linux-<machine>.tar.gz from TREE.
tarball() {
  local major="$1" name="quota_ext-$VERSION-pg$1-linux-$MACHINE"
  local top="$WORK/$name" file="$OUT/$name.tar.gz"
  rm -rf "$top"
  mkdir -p "$top/lib" "$top/extension"
  cp "$LIBDIR/quota_ext.so" "$top/lib/"
  cp "$EXTDIR"/quota_ext.control "$EXTDIR"/quota_ext--*.sql "$top/extension/"
  sed -e "s/@MAJOR@/$major/g" -e "s/@VERSION@/$VERSION/g" scripts/package/install.sh >"$top/install.sh"
  sed -e "s/@MAJOR@/$major/g" -e "s/@VERSION@/$VERSION/g" -e "s/@NAME@/$name/g" scripts/package/README.txt >"$top/README.txt"
  find "$top" -type d -exec chmod 0755 {} +
  find "$top" -type f -exec chmod 0644 {} +
  chmod 0755 "$top/install.sh"
  rm -f "$file"
  tar -C "$WORK" --sort=name --owner=0 --group=0 --numeric-owner -czf "$file" "$name"
  echo "package.sh: $file"
}

for major in "${MAJORS[@]}"; do
  started=$SECONDS
  build "$major"
  # 15: the .deb (Debian 12's PostgreSQL 15). 16, 18: a tarball (no Debian server package).
  if [ "$major" = 15 ]; then deb; else tarball "$major"; fi
  echo "package.sh: PostgreSQL $major packaged in $((SECONDS - started)) s"
done
