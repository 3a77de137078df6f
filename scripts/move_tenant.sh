#!/usr/bin/env bash
# Move one tenant's quota state from the node the shard map names to TARGET_NODE
# (issue 19; docs/scale-out.md, "Moving a tenant").
#
#   scripts/move_tenant.sh [--router CONNSTR] [--node-user ROLE] [--abort] TENANT TARGET_NODE
#
# The router's connection string comes from --router, $QUOTA_ROUTER or $QUOTA_ROUTER_DSN
# (scripts/scaleout.sh's); the nodes' from the router's cluster.nodes, the source from
# cluster.node_for(TENANT). cluster.nodes names no user: the script connects to the nodes
# as --node-user or $QUOTA_MOVE_USER (else libpq's default, $PGUSER), a superuser there
# (quota.move_import and move_delete are a superuser's); to the router as a role that may
# write the shard map.
# $QUOTA_MOVE_QUIET_TIMEOUT (default '30 seconds'): how long to wait for the source's
# transactions that may still commit usage for the tenant.
#
# Steps (each prints what it does; any failure stops with a message and a non-zero exit):
#   1. invariants of the tenant on both nodes (quota.tenant_invariants); refuses when the
#      source's counters differ from its ledger or its holds
#   2. refuses when subject ids of the tenant already exist on the target (23505): nothing
#      changed on either node
#   3. pauses the tenant on the target ('moving': it takes no call for it before the flip),
#      then on the source ('moving'), and waits until no transaction on the source can
#      still commit usage for it (quota.await_tenant_quiet)
#   4. copies: one COPY stream from the source's quota.move_export into a temporary table
#      of one target transaction, which quota.move_import turns into the tenant's state
#      (ledger and event ids renumbered), all or nothing
#   5. verifies that the tenant's digest (rows and contents per table) on the target equals
#      the source's
#   6. flips the shard map (cluster.place_tenant), resumes the tenant on the target, marks
#      the source 'moved' (its calls for the tenant keep failing with QT503) and deletes
#      the tenant's state there, the ledger too, if it is still what was copied
#   7. invariants on both nodes after
#
# The router records the move in cluster.moves (source, target, and the digest of the copy
# once verified): while the row stands, a move of the tenant to another node is refused,
# and the source's state is deleted only if it still has that digest (a re-run after the
# flip included); the row goes when the move is done or aborted.
#
# Re-running after a failure is safe at every step:
#   - before 3 nothing changed; after a failure in 3 or 4 both pauses may stand (the tenant
#     gets QT503 on both nodes): a re-run pauses what is not paused yet and copies again
#     (an import failed as a whole, so the target has nothing);
#   - after 4, before 6 (the map still names the source): the target's copy is not in use
#     (the tenant is paused there and the router sends nothing to it); a re-run deletes
#     that copy and copies again;
#   - after the flip: a re-run finds the map naming the target, resumes it there, finds the
#     old node by its pause, marks it 'moved' and deletes what is left there.
# --abort (before the flip only): deletes the target's copy if any, and resumes the tenant
# on both nodes; the tenant stays where it was.
set -euo pipefail

say() { printf 'move_tenant: %s\n' "$*"; }
die() { printf 'move_tenant: ERROR: %s\n' "$*" >&2; exit 1; }

ROUTER="${QUOTA_ROUTER:-${QUOTA_ROUTER_DSN:-}}"
NODE_USER="${QUOTA_MOVE_USER:-}"
ABORT=0
while [ $# -gt 0 ]; do
  case "$1" in
    --router) ROUTER="${2:?--router needs a connection string}"; shift 2 ;;
    --router=*) ROUTER="${1#--router=}"; shift ;;
    --node-user) NODE_USER="${2:?--node-user needs a role}"; shift 2 ;;
    --abort) ABORT=1; shift ;;
    -h|--help) sed -n '2,40p' "$0"; exit 0 ;;
    --) shift; break ;;
    -*) die "unknown option $1 (usage: move_tenant.sh [--router CONNSTR] [--node-user ROLE] [--abort] TENANT TARGET_NODE)" ;;
    *) break ;;
  esac
done
[ $# -eq 2 ] || die "usage: move_tenant.sh [--router CONNSTR] [--node-user ROLE] [--abort] TENANT TARGET_NODE"
TENANT="$1"; TARGET="$2"
[ -n "$TENANT" ] || die "TENANT is empty (untenanted subjects live on the home node and are not moved)"
[ -n "$ROUTER" ] || die "no router: give --router CONNSTR or set QUOTA_ROUTER"
QUIET_TIMEOUT="${QUOTA_MOVE_QUIET_TIMEOUT:-30 seconds}"
PSQL="${PSQL:-$(command -v psql || echo /usr/lib/postgresql/15/bin/psql)}"

# q CONNSTR SQL: one statement (or several, one transaction each), unaligned, tuples only.
# The tenant, the target and the timeout travel as psql variables (:'tenant'), never
# spliced into the SQL text.
q() {
  local conn="$1"; shift
  printf '%s\n' "$*" | "$PSQL" -X -q -At -v ON_ERROR_STOP=1 -v tenant="$TENANT" -v target="$TARGET" \
    -v source="${SOURCE:-}" -v quiet_timeout="$QUIET_TIMEOUT" -d "$conn" -f -
}

with_user() { if [ -n "$NODE_USER" ]; then printf '%s user=%s' "$1" "$NODE_USER"; else printf '%s' "$1"; fi; }
conn_of() {
  local c
  c="$(printf '%s\n' "SELECT connstr FROM cluster.nodes WHERE node = :'n'" \
       | "$PSQL" -X -q -At -v ON_ERROR_STOP=1 -v n="$1" -d "$ROUTER" -f -)" \
    || die "cannot read cluster.nodes on the router"
  [ -n "$c" ] || die "node \"$1\" is not in the router's cluster.nodes"
  with_user "$c"
}

invariants() {  # invariants LABEL NODE CONN: prints them; returns 1 when a check failed
  local label="$1" node="$2" conn="$3" out
  out="$(q "$conn" "SELECT format('%-36s %-4s %s', invariant, CASE ok WHEN true THEN 'ok' WHEN false THEN 'FAIL' ELSE '' END, detail)
                    FROM quota.tenant_invariants(:'tenant')")" || die "cannot read the invariants on $node"
  say "invariants $label on $node:"
  printf '%s\n' "$out" | sed 's/^/    /'
  ! printf '%s\n' "$out" | grep -Eq '^(counters equal the ledger|reserved equals held reservations) +FAIL'
}

pause_state() { q "$1" "SELECT coalesce(quota.move_pause_state(:'tenant'), 'none')"; }
has_state() { q "$1" "SELECT quota.move_digest(:'tenant') <> '{}'"; }
# The node a 'moving' pause on the source names ('' when none): another node means another
# run's move of the tenant (under way, or left unfinished).
moving_to() { q "$1" "SELECT coalesce(node, '') FROM quota.tenant_pauses WHERE tenant = :'tenant' AND state = 'moving'"; }
# One move of a tenant at a time: two runs to two targets would both copy, both flip and
# leave a resumed full copy on the loser's target (counted twice).
one_move() {
  local to
  to="$(moving_to "$SOURCE_CONN")" || die "cannot read the tenant's pause on $SOURCE"
  [ -z "$to" ] || [ "$to" = "$TARGET" ] \
    || die "the tenant is paused on $SOURCE for a move to $to: finish that move (move_tenant.sh $TENANT $to) or abort it (move_tenant.sh --abort $TENANT $to) first"
}

# The router's record of this move (cluster.moves): "source|target|digest", '' when none.
move_record() { q "$ROUTER" "SELECT source || '|' || target || '|' || coalesce(digest::text, '') FROM cluster.moves WHERE tenant = :'tenant'"; }
# claim: records this move, or finds it recorded by an earlier run of the same move; a move
# of the tenant to another node refuses this one.
claim() {
  local rec
  q "$ROUTER" "INSERT INTO cluster.moves (tenant, source, target) VALUES (:'tenant', :'source', :'target') ON CONFLICT (tenant) DO NOTHING" >/dev/null \
    || die "cannot record the move on the router (cluster.moves)"
  rec="$(move_record)" || die "cannot read cluster.moves on the router"
  IFS='|' read -r rec_source rec_target _ <<<"$rec"
  { [ "$rec_target" = "$TARGET" ] && [ "$rec_source" = "$SOURCE" ]; } \
    || die "a move of \"$TENANT\" from $rec_source to $rec_target is under way (cluster.moves on the router): finish it (move_tenant.sh $TENANT $rec_target) or abort it (move_tenant.sh --abort $TENANT $rec_target) first"
}

SOURCE="$(q "$ROUTER" "SELECT node FROM cluster.node_for(:'tenant')")" || die "cannot ask the router where tenant \"$TENANT\" lives (cluster.node_for)"
[ -n "$SOURCE" ] || die "the router names no node for tenant \"$TENANT\""
TARGET_CONN="$(conn_of "$TARGET")"
SOURCE_CONN="$(conn_of "$SOURCE")"
say "tenant \"$TENANT\": the shard map names $SOURCE; target $TARGET"

# After the flip (or nothing to move) -------------------------------------------------------
if [ "$SOURCE" = "$TARGET" ]; then
  [ "$ABORT" = 0 ] || die "--abort: the shard map already names $TARGET (the flip happened); re-run without --abort to finish the move"
  if [ "$(pause_state "$TARGET_CONN")" = moving ]; then
    q "$TARGET_CONN" "SELECT quota.resume_tenant(:'tenant')" >/dev/null
    say "resumed the tenant on $TARGET"
  fi
  found=0
  while IFS='|' read -r node conn; do
    [ "$node" != "$TARGET" ] || continue
    conn="$(with_user "$conn")"
    st="$(pause_state "$conn")" || die "cannot read the pause of the tenant on $node"
    [ "$st" = moving ] || [ "$st" = moved ] || continue
    found=1
    [ "$st" = moved ] || { q "$conn" "SELECT quota.pause_tenant(:'tenant', :'target', moved => true)" >/dev/null; say "marked the tenant 'moved' on $node"; }
    if [ "$(has_state "$conn")" = t ]; then
      # Only what was copied goes: the digest recorded when the copy was verified.
      rec="$(move_record)" || die "cannot read cluster.moves on the router"
      IFS='|' read -r _ rec_target rec_digest <<<"$rec"
      { [ "$rec_target" = "$TARGET" ] && [ -n "$rec_digest" ]; } \
        || die "$node still holds state of the tenant, and the router has no verified copy of it on record (cluster.moves): compare quota.move_digest('$TENANT') on $node and $TARGET by hand; nothing deleted"
      gone="$(printf '%s\n' "SELECT quota.move_delete(:'tenant', :'digest'::jsonb)" \
        | "$PSQL" -X -q -At -v ON_ERROR_STOP=1 -v tenant="$TENANT" -v digest="$rec_digest" -d "$conn" -f -)" \
        || die "deleting the tenant's state on $node failed: it is not what was copied to $TARGET (quota.move_digest differs), so it stays; compare both nodes' digests by hand"
      say "deleted the tenant's state on $node: $gone"
    fi
    invariants after "$node" "$conn" || true
  done < <(q "$ROUTER" "SELECT node, connstr FROM cluster.nodes ORDER BY node")
  [ "$found" = 1 ] || say "the tenant lives on $TARGET and no other node holds a move of it: nothing to do"
  q "$ROUTER" "DELETE FROM cluster.moves WHERE tenant = :'tenant' AND target = :'target'" >/dev/null || die "cannot clear cluster.moves"
  invariants after "$TARGET" "$TARGET_CONN" || die "the tenant's invariants do not hold on $TARGET"
  exit 0
fi

# --abort ---------------------------------------------------------------------------------
if [ "$ABORT" = 1 ]; then
  one_move
  rec="$(move_record)" || die "cannot read cluster.moves on the router"
  IFS='|' read -r _ rec_target _ <<<"$rec"
  [ -z "$rec" ] || [ "$rec_target" = "$TARGET" ] \
    || die "--abort: the move under way goes to $rec_target, not $TARGET (cluster.moves): abort that one"
  if [ "$(pause_state "$TARGET_CONN")" = moving ]; then
    if [ "$(has_state "$TARGET_CONN")" = t ]; then
      q "$TARGET_CONN" "SELECT quota.move_delete(:'tenant')" >/dev/null || die "deleting the copy on $TARGET failed"
      say "deleted the unused copy on $TARGET"
    fi
    q "$TARGET_CONN" "SELECT quota.resume_tenant(:'tenant')" >/dev/null
    say "resumed on $TARGET"
  fi
  if [ "$(pause_state "$SOURCE_CONN")" = moving ]; then
    q "$SOURCE_CONN" "SELECT quota.resume_tenant(:'tenant')" >/dev/null
    say "resumed on $SOURCE: the tenant stays there"
  fi
  q "$ROUTER" "DELETE FROM cluster.moves WHERE tenant = :'tenant'" >/dev/null || die "cannot clear cluster.moves"
  exit 0
fi

# 1. Invariants before -------------------------------------------------------------------
invariants before "$SOURCE" "$SOURCE_CONN" || die "the tenant's counters or holds on $SOURCE disagree with its ledger or reservations: fix that first (SELECT * FROM quota.ledger_check); nothing changed"
invariants before "$TARGET" "$TARGET_CONN" || true
one_move
claim

tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT

# A copy left on the target by an earlier run (the map still names the source, so it is
# not in use): it goes, and the copy is made again.
if [ "$(pause_state "$TARGET_CONN")" = moving ] && [ "$(has_state "$TARGET_CONN")" = t ]; then
  gone="$(q "$TARGET_CONN" "SELECT quota.move_delete(:'tenant')")" || die "deleting the earlier copy on $TARGET failed"
  say "deleted an unused copy left on $TARGET by an earlier run: $gone"
fi

# export.sh streams the source's state; $1: the SQL file to run there. bash, for %q's quoting.
# shellcheck disable=SC2016 # "$1" is export.sh's own argument, expanded when it runs
printf '#!/bin/bash\nexec %q -X -q -v ON_ERROR_STOP=1 -v tenant=%q -d %q -f "$1"\n' "$PSQL" "$TENANT" "$SOURCE_CONN" >"$tmp/export.sh"

# stage_and CHECK_SQL EXPORT_SQL: runs CHECK_SQL in a target transaction holding the
# source's stream in pg_temp.quota_move_stage; commits only when CHECK_SQL succeeds.
stage_and() {
  printf '%s\n' "$2" >"$tmp/export.sql"
  "$PSQL" -X -q -At -v ON_ERROR_STOP=1 -v tenant="$TENANT" -d "$TARGET_CONN" -f - <<EOF
\\set VERBOSITY verbose
BEGIN;
CREATE TEMP TABLE quota_move_stage (tbl text, rec jsonb) ON COMMIT DROP;
\\copy quota_move_stage FROM PROGRAM 'bash $tmp/export.sh $tmp/export.sql'
$1
COMMIT;
EOF
}

# 2. Clashing subject ids: staged from the source's subject ids alone, checked, rolled back.
if ! err="$(stage_and "SELECT quota.move_check_target(:'tenant'); ROLLBACK;" \
  "COPY (SELECT 'subjects', jsonb_build_object('subject', subject, 'tenant', tenant) FROM quota.subjects WHERE tenant = :'tenant'
         UNION SELECT 'usage_events', jsonb_build_object('subject', subject) FROM quota.usage_events WHERE tenant = :'tenant') TO STDOUT" 2>&1)"; then
  die "the move of \"$TENANT\" to $TARGET is refused; nothing changed on either node:
$err"
fi
say "no subject id of the tenant exists on $TARGET"

# 3. Pauses, then quiet -------------------------------------------------------------------
paused_at=$SECONDS
[ "$(pause_state "$TARGET_CONN")" = moving ] \
  || { q "$TARGET_CONN" "SELECT quota.pause_tenant(:'tenant', :'target')" >/dev/null; say "paused the tenant on $TARGET ('moving')"; }
[ "$(pause_state "$SOURCE_CONN")" = moving ] \
  || { q "$SOURCE_CONN" "SELECT quota.pause_tenant(:'tenant', :'target')" >/dev/null; say "paused the tenant on $SOURCE ('moving')"; }
waited="$(q "$SOURCE_CONN" "SELECT quota.await_tenant_quiet(:'tenant', :'quiet_timeout'::interval)")" \
  || die "the tenant's transactions on $SOURCE did not finish within $QUIET_TIMEOUT; it stays paused on both nodes: re-run, or --abort"
say "no transaction on $SOURCE can still commit usage for the tenant (await_tenant_quiet: $waited)"
one_move

# 4. Copy ---------------------------------------------------------------------------------
if ! out="$(stage_and "SELECT j->>'renumbered', j->>'digest' FROM (SELECT quota.move_import(:'tenant') AS j) r;" \
  "COPY (SELECT tbl, rec FROM quota.move_export(:'tenant')) TO STDOUT" 2>&1)"; then
  if printf '%s' "$out" | grep -q 'ERROR:  23505:'; then
    # A subject created on the source after step 2: undo the pauses, nothing was moved.
    q "$TARGET_CONN" "SELECT quota.resume_tenant(:'tenant')" >/dev/null || true
    q "$SOURCE_CONN" "SELECT quota.resume_tenant(:'tenant')" >/dev/null || true
    die "the move is refused (resumed on both nodes; nothing moved):
$out"
  fi
  die "the copy to $TARGET failed; nothing was imported and the tenant stays paused on both nodes: re-run, or --abort:
$out"
fi
out="$(printf '%s' "$out" | tail -1)"
say "copied (ids renumbered from $TARGET's sequences): ${out%%|*}"

# 5. Verify -------------------------------------------------------------------------------
# The source's digest came with the copy (the same snapshot as its rows; move_import
# compared it with what it wrote, in its transaction); this compares again, from outside,
# after the commit. The source is paused: move_delete checks below that it still has it.
src_digest="${out#*|}"
tgt_digest="$(q "$TARGET_CONN" "SELECT quota.move_digest(:'tenant')")" || die "cannot read the digest on $TARGET"
[ "$src_digest" = "$tgt_digest" ] || die "the tenant's state on $TARGET differs from $SOURCE's (still paused on both; re-run copies again):
  $SOURCE: $src_digest
  $TARGET: $tgt_digest"
say "verified: rows and contents per table are equal on both nodes"
printf '%s\n' "UPDATE cluster.moves SET digest = :'digest'::jsonb WHERE tenant = :'tenant' AND target = :'target'" \
  | "$PSQL" -X -q -At -v ON_ERROR_STOP=1 -v tenant="$TENANT" -v target="$TARGET" -v digest="$src_digest" -d "$ROUTER" -f - >/dev/null \
  || die "cannot record the copy's digest on the router (cluster.moves); still paused on both: re-run"
invariants copied "$TARGET" "$TARGET_CONN" || die "the copy's invariants do not hold on $TARGET (still paused on both; the map names $SOURCE)"

# 6. Flip, resume, retire the source ------------------------------------------------------
one_move
q "$ROUTER" "SELECT cluster.place_tenant(:'tenant', :'target')" >/dev/null || die "the shard map flip failed (still paused on both; re-run)"
say "flipped the shard map: $TENANT -> $TARGET"
q "$TARGET_CONN" "SELECT quota.resume_tenant(:'tenant')" >/dev/null || die "resuming on $TARGET failed: re-run"
say "resumed the tenant on $TARGET (paused for about $((SECONDS - paused_at)) s)"
q "$SOURCE_CONN" "SELECT quota.pause_tenant(:'tenant', :'target', moved => true)" >/dev/null || die "marking $SOURCE 'moved' failed: re-run"
say "marked the tenant 'moved' on $SOURCE"
printf '%s\n' "$src_digest" >"$tmp/digest"
gone="$(printf '%s\n' "SELECT quota.move_delete(:'tenant', :'digest'::jsonb)" \
  | "$PSQL" -X -q -At -v ON_ERROR_STOP=1 -v tenant="$TENANT" -v digest="$src_digest" -d "$SOURCE_CONN" -f -)" \
  || die "deleting the tenant's state on $SOURCE failed: re-run (the map names $TARGET already)"
say "deleted the tenant's state on $SOURCE: $gone"

# 7. Invariants after ---------------------------------------------------------------------
invariants after "$SOURCE" "$SOURCE_CONN" || true
invariants after "$TARGET" "$TARGET_CONN" || die "the tenant's invariants do not hold on $TARGET after the move"
q "$ROUTER" "DELETE FROM cluster.moves WHERE tenant = :'tenant' AND target = :'target'" >/dev/null || die "cannot clear cluster.moves (the move itself is done)"
say "done: tenant \"$TENANT\" lives on $TARGET"
