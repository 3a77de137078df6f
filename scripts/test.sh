#!/usr/bin/env bash
# Every test, from a fresh machine, on every PostgreSQL major quota_ext supports (15, 16, 18).
# .ci/run calls this script with no arguments: every step below on 15, then the steps that
# 16 and 18 run (lint, pgtest, regress, isolation, and the upgrade tests of connections),
# then the packages of all three.
#
# Usage: [QUOTA_PG="15 16 18"] ./scripts/test.sh [--reuse] [STEP [NAME...]]...
#   steps, in the order they run:  lint released unit pgtest regress isolation connections clients reliability scaleout package
#   (`lib` is another name for `unit`). Several steps may be given; they run in this order,
#   major by major, then `package` last.
#
#   QUOTA_PG=18 ./scripts/test.sh                     one major: its default steps (below), then its package
#   ./scripts/test.sh released unit                   two steps (on 15)
#   ./scripts/test.sh regress 07_enforce 14_hot_path  regress files (00_setup always runs first)
#   QUOTA_PG="15 16 18" ./scripts/test.sh isolation hot_path   specs (tests/isolation/specs/*.spec), on each major
#   ./scripts/test.sh connections test_hardening.py   connection test files
#   ./scripts/test.sh connections test_hardening.py:a3_,a5_   ... with the file's own name filters
#   ./scripts/test.sh unit period                     cargo test --lib filters
#   ./scripts/test.sh pgtest test_consume             one cargo pgrx test filter
#   ./scripts/test.sh clients node drivers            parts of the clients step: drivers readme fastapi django node java prometheus
# A NAME is a file name with or without its directory and extension; one that names no
# file exactly selects every file whose name contains it.
#
# Majors: QUOTA_PG lists the majors to run, in order: by default all of them ("15 16 18")
# when no STEP is given, and 15 when steps are. With no STEP, 15 runs every step; 16 and
# 18 run lint (clippy), pgtest, regress, isolation and connections (all but
# test_subject_cache; on 16 also not test_hot_path_eligibility, which needs amcheck);
# `clients` (drivers, examples, exporter) runs on 15 only by default.
# then `package` for each. A STEP given runs on every major
# listed, in full, but `released`, `unit` (no server, no major) and rustfmt run once, on
# the first major.
# `reliability` needs amcheck, which 16's wheel lacks: on 16 it is refused.
# `scaleout` (three nodes and a router on loopback, scripts/scaleout.sh, tests/scaleout/)
# runs on 15 only: PL/Proxy is packaged for 15; on 16 and 18 it says it is skipped.
#
# --reuse (or QUOTA_REUSE_BUILD=1): steps that need the installed extension (regress,
# isolation, connections, reliability) use the library already installed in PostgreSQL's
# directories, if there is one, instead of building and installing it first; the test
# cluster is (re)started either way. Not with `pgtest` (which installs a test build).
# QUOTA_ONLY=TEXT (older form): the regress, isolation and connections steps given no
# NAME run only their files whose name contains TEXT.
# docs/testing.md keeps the time budget of each step, per major.
set -euo pipefail
cd "$(dirname "$0")/.."

ALL_STEPS=(lint released unit pgtest regress isolation connections clients reliability scaleout package)
N=${#ALL_STEPS[@]}
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" >&2; exit 2; }

# Arguments: a step name starts a step; the names after it are its files.
declare -A NAMES=()
STEPS=()
REUSE="${QUOTA_REUSE_BUILD:-0}"
current=""
for arg in "$@"; do
  case "$arg" in
    --reuse) REUSE=1; continue ;;
    -h|--help) usage ;;
    -*) echo "test.sh: unknown option $arg" >&2; usage ;;
    lib) arg=unit ;;
  esac
  if [[ " ${ALL_STEPS[*]} " == *" $arg "* ]]; then
    current="$arg"
    [[ " ${STEPS[*]-} " == *" $arg "* ]] || STEPS+=("$arg")
  elif [ -z "$current" ]; then
    echo "test.sh: unknown step '$arg' (steps: ${ALL_STEPS[*]}; lib = unit)" >&2; exit 2
  else
    NAMES[$current]+="$arg"$'\n'
  fi
done
ALL_DEFAULT=0
[ "${#STEPS[@]}" -eq 0 ] && { STEPS=("${ALL_STEPS[@]}"); ALL_DEFAULT=1; }
for s in lint released reliability scaleout package; do
  [ -z "${NAMES[$s]:-}" ] || { echo "test.sh: the $s step takes no names (got: $(echo ${NAMES[$s]}))" >&2; exit 2; }
done
[ "$(printf '%s' "${NAMES[pgtest]:-}" | grep -c .)" -le 1 ] \
  || { echo "test.sh: cargo pgrx test takes one filter at most (got: $(echo ${NAMES[pgtest]}))" >&2; exit 2; }

wanted() { [[ " ${STEPS[*]} " == *" $1 "* ]]; }
STARTED=$SECONDS
# step K TEXT: step K of N (its place in ALL_STEPS), on the major being run.
step() {
  local k="$1"; shift
  printf '\n== %s%s (at %ds)\n' "${QUOTA_PG:+[pg$QUOTA_PG] }" "$k/$N $*" "$((SECONDS - STARTED))"
}
note() { printf '\n== %s (at %ds)\n' "$*" "$((SECONDS - STARTED))"; }

# The majors to run, in order (scripts/pg_versions.sh lists those quota_ext supports).
. scripts/pg_versions.sh
# shellcheck disable=SC2086  # a list
if [ "$ALL_DEFAULT" = 1 ]; then select_majors "test.sh: QUOTA_PG" ${QUOTA_PG:-}; else select_majors "test.sh: QUOTA_PG" ${QUOTA_PG:-15}; fi
unset QUOTA_PG

# Tests are named after their files: tests_in DIR GLOB EXT lists DIR's files GLOB without EXT.
tests_in() { (cd "$1" && ls -- $2) | sed "s/\\$3\$//" | sort; }

# resolve STEP DIR GLOB EXT NAME: the tests NAME selects, one a line: NAME's file (directory
# and extension optional), or else every file whose name contains NAME.
resolve() {
  local all name="$5"
  all=$(tests_in "$2" "$3" "$4")
  name="${name##*/}"; name="${name%"$4"}"
  if grep -qxF -- "$name" <<<"$all"; then
    echo "$name"
  else
    grep -F -- "$name" <<<"$all" \
      || { echo "test.sh: no $1 test is named or contains '$5' (in $2: $(echo $all))" >&2; return 1; }
  fi
}

# pick STEP DIR GLOB EXT: the tests the step runs: those its NAMEs select; with no NAME,
# those whose name contains $QUOTA_ONLY, or all.
pick() {
  local name
  if [ -n "${NAMES[$1]:-}" ]; then
    while IFS= read -r name; do
      [ -z "$name" ] || resolve "$@" "$name" || return 1
    done <<<"${NAMES[$1]}"
  elif [ -n "${QUOTA_ONLY:-}" ]; then
    tests_in "$2" "$3" "$4" | grep -F -- "$QUOTA_ONLY" || { echo "test.sh: no $1 test matches QUOTA_ONLY=$QUOTA_ONLY" >&2; return 1; }
  else
    tests_in "$2" "$3" "$4"
  fi
}

# The tests each step runs, resolved before anything is built: a misspelt name fails now.
# Files run in the order of their names (regress files depend on the ones before them);
# 00_setup creates what every regress file uses: it runs first, always.
if wanted regress; then
  regress_tests=$(pick regress tests/regress/sql '*.sql' .sql | sort -u)
  regress_tests="00_setup $(grep -vx 00_setup <<<"$regress_tests" | xargs || true)"
fi
if wanted isolation; then
  specs=$(pick isolation tests/isolation/specs '*.spec' .spec | sort -u | xargs)
fi
# The clients step's parts: the drivers' ambiguity test, the README's snippets, then
# each example (examples/NAME/test.sh).
CLIENT_PARTS=(drivers readme fastapi django node java prometheus)
client_parts=""
if wanted clients; then
  client_parts="${CLIENT_PARTS[*]}"
  if [ -n "${NAMES[clients]:-}" ]; then
    for name in ${NAMES[clients]}; do
      [[ " ${CLIENT_PARTS[*]} " == *" $name "* ]] || { echo "test.sh: unknown part '$name' of clients (parts: ${CLIENT_PARTS[*]})" >&2; exit 2; }
    done
    client_parts=$(for p in "${CLIENT_PARTS[@]}"; do [[ " $(echo ${NAMES[clients]}) " != *" $p "* ]] || echo "$p"; done | xargs)
  fi
fi
declare -A FILTERS=()
conn_tests=""
if wanted connections; then
  # FILE:FILTER,FILTER runs FILE with those arguments (test_hardening.py a3_ a5_ runs the
  # tests whose name starts with one of them).
  if [ -n "${NAMES[connections]:-}" ]; then
    conn_tests=""
    while IFS= read -r name; do
      [ -n "$name" ] || continue
      files=$(resolve connections tests/connections 'test_*.py' .py "${name%%:*}")
      conn_tests+="$files"$'\n'
      if [[ "$name" == *:* ]]; then
        for f in $files; do FILTERS[$f]+="${name#*:},"; done
      fi
    done <<<"${NAMES[connections]}"
    conn_tests=$(grep . <<<"$conn_tests" | sort -u | xargs)
  else
    conn_tests=$(pick connections tests/connections 'test_*.py' .py | xargs)
  fi
fi

# Released install and upgrade scripts are frozen: sql/released/SHA256SUMS lists each file
# of sql/released/ with its checksum, and nothing else. No build, no server.
check_released() {
  local dir=sql/released manifest=SHA256SUMS listed present bad=0
  (cd "$dir" && sha256sum --check --strict --quiet "$manifest") \
    || { echo "released: a released script differs from its checksum in $dir/$manifest, or is missing." >&2; bad=1; }
  listed=$(sed -e '/^#/d' -e '/^[[:space:]]*$/d' -e 's/^[0-9a-f]\{64\} [ *]//' "$dir/$manifest" | sort)
  present=$(cd "$dir" && ls -A | grep -vxF "$manifest" | sort)
  if [ -n "$(uniq -d <<<"$listed")" ]; then
    echo "released: listed twice in $dir/$manifest: $(uniq -d <<<"$listed")" >&2; bad=1
  fi
  if [ -n "$(comm -13 <(uniq <<<"$listed") <(echo "$present"))" ]; then
    echo "released: in $dir/ but not in $manifest: $(comm -13 <(uniq <<<"$listed") <(echo "$present") | xargs)" >&2
    echo "  (a new release adds its line: see docs/testing.md, Releasing)" >&2; bad=1
  fi
  local twins; twins=$(cd sql && for f in quota_ext--*.sql; do [ ! -e "released/$f" ] || echo "$f"; done)
  if [ -n "$twins" ]; then
    echo "released: sql/ and sql/released/ both hold $(echo $twins): a released script is only in sql/released/" >&2; bad=1
  fi
  [ "$bad" -eq 0 ] && echo "released: $(grep -c . <<<"$present") frozen scripts match $dir/$manifest"
  return "$bad"
}

# By default 16 and 18 run every connection test but test_subject_cache (2 minutes of
# server restarts; the shared cache's lock index and hooks have their #[pg_test] on every
# major). 16 never runs test_hot_path_eligibility: it needs amcheck, which 16's wheel lacks.
conn_skipped_on() {
  [ "$1" = 15 ] || [ "$ALL_DEFAULT" != 1 ] || echo test_subject_cache
  [ "$1" != 16 ] || echo test_hot_path_eligibility
}

if wanted released && [ "${STEPS[*]}" = released ]; then
  step 2 "released scripts unchanged (sql/released/SHA256SUMS)"
  check_released
  note "all tests passed (released)"
  exit 0
fi

./scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

# run_major MAJOR FIRST: the steps of one major (in a subshell: its cluster, PATH and
# target directory stay its own). FIRST is 1 for the first major run (rustfmt, released
# and unit run there only).
run_major() {
  QUOTA_PG="$1"; local first="$2"
  . scripts/cluster.sh
  export QUOTA_RUN QUOTA_PG
  local steps=() s
  for s in "${STEPS[@]}"; do
    case "$s" in
      package) continue ;;  # last, for every major (below)
      released|unit) [ "$first" = 1 ] || continue ;;  # no server, no major: once
    esac
    if [ "$QUOTA_PG" != 15 ] && [ "$ALL_DEFAULT" = 1 ]; then
      case "$s" in reliability|clients) continue ;; esac
    fi
    if [ "$QUOTA_PG" != 15 ] && [ "$s" = scaleout ]; then
      echo "test.sh: scaleout skipped on $QUOTA_PG: PL/Proxy is packaged for PostgreSQL 15 only (postgresql-15-plproxy)" >&2; continue
    fi
    if [ "$QUOTA_PG" = 16 ] && [ "$s" = reliability ]; then
      echo "test.sh: reliability cannot run on 16: the pgserver wheel has no amcheck (run it on 15 or 18)" >&2; exit 2
    fi
    steps+=("$s")
  done
  STEPS=("${steps[@]}")
  [ "${#STEPS[@]}" -gt 0 ] || return 0
  local skipped; skipped=" $(conn_skipped_on "$QUOTA_PG" | xargs) "
  if [ "$ALL_DEFAULT" != 1 ] && [ "$QUOTA_PG" = 16 ] && [[ " $conn_tests " == *" test_hot_path_eligibility "* ]]; then
    echo "test.sh: skipping test_hot_path_eligibility on 16: it needs amcheck, which the pgserver wheel lacks (run it on 15 or 18)" >&2
  fi
  conn_tests=$(for t in $conn_tests; do [[ "$skipped" == *" $t "* ]] || echo "$t"; done | xargs)
  note "[pg$QUOTA_PG] $("$PG_CONFIG" --version) ($PG_CONFIG): ${STEPS[*]}"

  # One build directory per major, so that switching majors does not rebuild everything
  # (15 keeps target/).
  local FEATURES=(--features pg_test)
  if [ "$QUOTA_PG" != 15 ]; then
    export CARGO_TARGET_DIR="${QUOTA_TARGET_BASE:-$PWD/target}/pg$QUOTA_PG"
    FEATURES=(--no-default-features --features "pg$QUOTA_PG,pg_test")
    # The tests' own pg_config, pg_dump, initdb and pg_ctl calls find this major's.
    export PATH="$PGBIN:$PATH"
  fi
  PORT="${QUOTA_TEST_PORT:-55433}"
  # The other clusters the tests start, at fixed offsets from PORT unless set.
  export QUOTA_RELIABILITY_PORT="${QUOTA_RELIABILITY_PORT:-$((PORT + 3))}" \
         QUOTA_NOPRELOAD_PORT="${QUOTA_NOPRELOAD_PORT:-$((PORT + 4))}" \
         QUOTA_NOCACHE_PORT="${QUOTA_NOCACHE_PORT:-$((PORT + 5))}" \
         QUOTA_STANDBY_PORT="${QUOTA_STANDBY_PORT:-$((PORT + 6))}" \
         QUOTA_BT_PORT="${QUOTA_BT_PORT:-$((PORT + 58))}"
  PGXS_TEST="$("$PG_CONFIG" --pkglibdir)/pgxs/src/test"
  OUT="$QUOTA_RUN/test-output"; [ "$QUOTA_PG" = 15 ] || OUT+="-$QUOTA_PG"

  if wanted lint; then
    if [ "$first" = 1 ]; then
      step 1 "lint: cargo fmt --check; cargo clippy --all-targets ${FEATURES[*]} -D warnings"
    else
      step 1 "lint: cargo clippy --all-targets ${FEATURES[*]} -D warnings"
    fi
    local lint_failed=""
    mkdir -p "$QUOTA_RUN"
    if [ "$first" = 1 ] && ! cargo fmt --check >"$QUOTA_RUN/rustfmt.diff" 2>&1; then
      head -150 "$QUOTA_RUN/rustfmt.diff"
      echo "rustfmt: $(grep -c '^Diff in' "$QUOTA_RUN/rustfmt.diff") places to format in $(grep '^Diff in' "$QUOTA_RUN/rustfmt.diff" | sed 's/^Diff in \(.*\):[0-9]*:$/\1/' | sort -u | wc -l) files (all of it: $QUOTA_RUN/rustfmt.diff)"
      lint_failed+=" rustfmt"
    fi
    cargo clippy --quiet --all-targets "${FEATURES[@]}" -- -D warnings || lint_failed+=" clippy"
    [ -z "$lint_failed" ] || { echo "lint failed on $QUOTA_PG:$lint_failed (cargo fmt formats; rustfmt.toml holds the style)" >&2; exit 1; }
  fi

  if wanted released; then
    step 2 "released scripts unchanged (sql/released/SHA256SUMS)"
    check_released
  fi

  if wanted unit; then
    step 3 "pure logic: cargo test --lib (no server; the same on every major)"
    local unit_filters unit_features=()
    mapfile -t unit_filters < <(printf '%s' "${NAMES[unit]:-}" | grep . || true)
    [ "$QUOTA_PG" = 15 ] || unit_features=(--no-default-features --features "pg$QUOTA_PG")
    cargo test --lib --quiet "${unit_features[@]}" -- "${unit_filters[@]}"
  fi

  if wanted pgtest; then
    step 4 "in-backend tests: cargo pgrx test pg$QUOTA_PG"
    # A data directory per major (pgrx initdb's it once; another major's would not start).
    local pgrx_dir="$QUOTA_RUN/pgrx"; [ "$QUOTA_PG" = 15 ] || pgrx_dir+="-$QUOTA_PG"
    mkdir -p "$pgrx_dir"; chown postgres "$pgrx_dir" 2>/dev/null || true
    # shellcheck disable=SC2046  # zero or one filter
    cargo pgrx test "pg$QUOTA_PG" $(printf '%s' "${NAMES[pgtest]:-}") --runas postgres --pgdata "$pgrx_dir/data"
  fi

  if wanted regress || wanted isolation || wanted connections || wanted clients || wanted reliability || wanted scaleout; then
    local reuse="$REUSE"
    if [ "$reuse" = 1 ] && wanted pgtest; then
      echo "test.sh: --reuse ignored: pgtest just installed its test build" >&2; reuse=0
    fi
    if [ "$reuse" = 1 ]; then
      note "${QUOTA_PG:+[pg$QUOTA_PG] }reusing the installed extension; starting a test cluster on port $PORT"
    else
      note "${QUOTA_PG:+[pg$QUOTA_PG] }installing the extension (release) and starting a test cluster on port $PORT"
    fi
    QUOTA_REUSE_BUILD="$reuse" install_extension
  fi

  if wanted regress || wanted isolation || wanted connections || wanted clients; then
    cluster_start test "$PORT" "max_prepared_transactions = 10" "shared_preload_libraries = 'quota_ext'"
    trap 'cluster_stop test' EXIT
    rm -rf "$OUT"; mkdir -p "$OUT"; chmod 777 "$OUT"
    # --bindir: a wheel's pg_regress has its build machine's psql path compiled in.
    HOSTOPTS=(--host="$QUOTA_RUN/test" --port="$PORT" --user=postgres --bindir="$PGBIN")
  fi

  if wanted regress; then
    step 5 "SQL contract: pg_regress"
    # shellcheck disable=SC2086
    run_regress test "$PORT" "$OUT/regress" $regress_tests
  fi

  if wanted isolation; then
    step 6 "concurrency: pg_isolation_regress"
    cluster_psql test "$PORT" -d postgres -q -c "DROP DATABASE IF EXISTS quota_isolation" -c "CREATE DATABASE quota_isolation"
    cluster_psql test "$PORT" -d quota_isolation -q -c "CREATE EXTENSION quota_ext"
    # shellcheck disable=SC2086
    "$PGXS_TEST/isolation/pg_isolation_regress" "${HOSTOPTS[@]}" --use-existing --dbname=quota_isolation \
      --inputdir=tests/isolation --outputdir="$OUT/isolation" $specs \
      || { cat "$OUT/isolation/output_iso/regression.diffs" "$OUT/isolation/regression.diffs" 2>/dev/null | head -200; exit 1; }
  fi

  if wanted connections; then
    step 7 "real connections: tests/connections ($(echo $conn_tests))"
    local t filters
    for t in $conn_tests; do
      filters=()
      [ -z "${FILTERS[$t]:-}" ] || IFS=, read -r -a filters <<<"${FILTERS[$t]%,}"
      echo "-- tests/connections/$t.py${filters[*]:+ ${filters[*]}} (at $((SECONDS - STARTED))s)"
      QUOTA_HOST="$QUOTA_RUN/test" QUOTA_PORT="$PORT" /usr/bin/python3 "tests/connections/$t.py" "${filters[@]}"
    done
  fi

  if wanted clients; then
    step 8 "clients: drivers' untyped calls, README snippets, examples/ ($(echo $client_parts))"
    local part
    for part in $client_parts; do
      echo "-- $part (at $((SECONDS - STARTED))s)"
      case "$part" in
        drivers) PGHOST="$QUOTA_RUN/test" PGPORT="$PORT" tests/drivers/run.sh ;;
        readme) /usr/bin/python3 tests/drivers/readme_snippets.py ;;
        *) PGHOST="$QUOTA_RUN/test" PGPORT="$PORT" QUOTA_TCP_HOST=127.0.0.1 "examples/$part/test.sh" ;;
      esac
    done
  fi

  if wanted reliability; then
    step 9 "reliability: stress, kill -9 recovery, bad input (scripts/reliability.sh)"
    ./scripts/reliability.sh
  fi

  if wanted scaleout; then
    step 10 "scale-out: three nodes and a router on loopback (scripts/scaleout.sh, tests/scaleout/)"
    export QUOTA_SCALEOUT_PORT="${QUOTA_SCALEOUT_PORT:-$((PORT + 7))}"
    scripts/scaleout.sh start --fresh >"$QUOTA_RUN/scaleout-start.log" 2>&1 || { cat "$QUOTA_RUN/scaleout-start.log"; exit 1; }
    trap 'cluster_stop test; scripts/scaleout.sh stop' EXIT
    eval "$(grep '^export' "$QUOTA_RUN/scaleout.env")"
    PGBIN="$PGBIN" /usr/bin/python3 tests/scaleout/test_scaleout.py
    # The tenant move, on the same cluster (scripts/move_tenant.sh; tests/scaleout/test_move.py).
    /usr/bin/python3 tests/scaleout/test_move.py --router "$QUOTA_ROUTER_DSN"
    scripts/scaleout.sh stop
  fi
}

first=1
for m in "${MAJORS[@]}"; do
  (run_major "$m" "$first")
  first=0
done

if wanted package; then
  QUOTA_PG=""
  step 11 "packages: build (scripts/package.sh ${MAJORS[*]}), install, regress, remove (scripts/package_test.sh)"
  ./scripts/package.sh "${MAJORS[@]}"
  ./scripts/package_test.sh "${MAJORS[@]}"
fi

note "all tests passed (PostgreSQL ${MAJORS[*]}; each major's steps are listed where it starts)"
