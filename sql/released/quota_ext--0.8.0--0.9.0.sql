-- quota_ext 0.8.0 -> 0.9.0: scale-out (issue 19). Each part of this release has its own
-- block below, headed by a comment naming it.
--
-- Every upgrade script ends with statements that fire the hot path's invalidation
-- triggers: other backends then drop what they cached and see the new version (see
-- src/pg/installed.rs).
\echo Use "ALTER EXTENSION quota_ext UPDATE TO '0.9.0'" to load this file. \quit

-- Tenant pause (issue 19) -------------------------------------------------------------------
-- quota.tenant_pauses, quota.pause_tenant / resume_tenant / await_tenant_quiet, and
-- quota.ack_events refusing a paused tenant (QT503). As sql/pause.sql, sql/events.sql and
-- sql/security.sql give them at install.
CREATE TABLE quota.tenant_pauses (
    tenant text PRIMARY KEY CHECK (tenant <> ''),
    state  text NOT NULL CHECK (state IN ('moving', 'moved')),
    -- Where the tenant is going, or went (a node name the router knows).
    node   text NULL,
    since  timestamptz NOT NULL DEFAULT now()
);
SELECT pg_catalog.pg_extension_config_dump('quota.tenant_pauses', '');
CREATE TRIGGER tenant_pauses_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON quota.tenant_pauses
    FOR EACH STATEMENT EXECUTE FUNCTION quota.config_changed();
ALTER TABLE quota.tenant_pauses ENABLE ALWAYS TRIGGER tenant_pauses_changed;
ALTER TABLE quota.tenant_pauses ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON quota.tenant_pauses USING (quota.tenant_visible(tenant));
REVOKE ALL ON quota.tenant_pauses FROM PUBLIC;
GRANT SELECT ON quota.tenant_pauses TO quota_reader, quota_app, quota_admin;

CREATE FUNCTION quota."pause_tenant"(
	"tenant" TEXT, /* Option < & str > */
	"node" TEXT DEFAULT NULL, /* Option < & str > */
	"moved" bool DEFAULT false /* Option < bool > */
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'pause_tenant_wrapper';
CREATE FUNCTION quota."resume_tenant"(
	"tenant" TEXT /* Option < & str > */
) RETURNS bool /* bool */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'resume_tenant_wrapper';
CREATE FUNCTION quota."await_tenant_quiet"(
	"tenant" TEXT, /* Option < & str > */
	"timeout" interval DEFAULT '30 seconds' /* Option < pgrx :: datum :: Interval > */
) RETURNS INT /* i32 */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'await_tenant_quiet_wrapper';
REVOKE ALL ON FUNCTION quota.pause_tenant(text, text, boolean), quota.resume_tenant(text),
    quota.await_tenant_quiet(text, interval) FROM PUBLIC;
ALTER FUNCTION quota.pause_tenant(text, text, boolean) SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
ALTER FUNCTION quota.resume_tenant(text) SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
ALTER FUNCTION quota.await_tenant_quiet(text, interval) SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
GRANT EXECUTE ON FUNCTION quota.pause_tenant(text, text, boolean), quota.resume_tenant(text),
    quota.await_tenant_quiet(text, interval) TO quota_admin;

-- ack_events refuses a paused tenant: CREATE OR REPLACE resets its settings, given again.
CREATE OR REPLACE FUNCTION quota.ack_events(up_to bigint) RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog AS $$
DECLARE
    t text := NULLIF(current_setting('quota.tenant', true), '');
    paused quota.tenant_pauses;
    acked bigint;
BEGIN
    -- A paused tenant (0.9.0, scale-out) is refused as by every quota call: QT503, worded
    -- as src/domain/pause.rs words it (tests/regress/sql/23_tenant_pause.sql compares).
    -- Only a tenant the session may act for: nothing about another tenant's pause leaks.
    SELECT * INTO paused FROM quota.tenant_pauses p WHERE p.tenant = t AND quota.tenant_visible(t);
    IF FOUND THEN
        t := CASE WHEN octet_length(t) > 512 THEN left(t, 32) || '…' ELSE t END;
        RAISE EXCEPTION USING ERRCODE = 'QT503',
            MESSAGE = CASE paused.state
                WHEN 'moving' THEN format('tenant "%s" is paused: it is being moved to %s', t,
                                          COALESCE(format('node "%s"', paused.node), 'another node'))
                ELSE format('tenant "%s" has moved to %s', t, COALESCE(format('node "%s"', paused.node), 'another node')) END,
            -- As serde_json writes it: keys in order, no spaces.
            DETAIL = format('{"code":"tenant_paused","error":"tenant_paused","node":%s,"state":%s,"tenant":%s}',
                            COALESCE(to_json(paused.node)::text, 'null'), to_json(paused.state)::text, to_json(t)::text),
            HINT = CASE paused.state
                WHEN 'moving' THEN format('Retry in a few seconds, through the router or on the node the router names (cluster.node_for(''%s'')): nothing of this call was counted.', replace(t, '''', ''''''))
                ELSE format('Connect to the tenant''s new node, which the router''s cluster.node_for(''%s'') names, and make the call there: this node no longer holds the tenant''s quota state.', replace(t, '''', '''''')) END;
    END IF;
    WITH done AS (
        UPDATE quota.events SET acknowledged_at = now()
        WHERE id <= up_to AND acknowledged_at IS NULL
          -- Only the session's tenant's events (this function runs as the owner).
          AND quota.tenant_visible((SELECT s.tenant FROM quota.subjects s WHERE s.subject = events.subject))
          -- A paused tenant's events stay pending (a session without quota.tenant acks
          -- every tenant's): a move copies them, and compares their digests before it
          -- deletes them here (docs/scale-out.md, "Pausing a tenant (node side)").
          AND NOT EXISTS (SELECT 1 FROM quota.tenant_pauses p
                          WHERE p.tenant = (SELECT s.tenant FROM quota.subjects s WHERE s.subject = events.subject))
        RETURNING 1
    )
    SELECT count(*) INTO acked FROM done;
    RETURN acked;
END
$$;
ALTER FUNCTION quota.ack_events(bigint) SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
-- (end of Tenant pause)

-- Tenant move (issue 19) -------------------------------------------------------------------
-- Functions that scripts/move_tenant.sh runs on the source and the target node to move one
-- tenant's quota state; superusers and quota_admin only; no table changes. As sql/move.sql
-- and sql/security.sql give them at install (keep the two equal: the upgrade test compares
-- an updated catalog with a fresh install).
--
-- What moves: every row of the tenant's state, in these tables (quota.move_tables() is
-- the one list; move_export and move_delete refuse to run when a table registered for
-- pg_dump is in neither list, so that a new state table cannot be forgotten silently):
--   subjects           the tenant's subjects (tenant = the tenant)
--   counters           keyed by subject
--   pool_slices        keyed by subject (a pool and its members share a tenant)
--   usage_events       the ledger, by subject or tenant: ids RENUMBERED on the target
--   usage_summaries    compacted ledger, by subject or tenant
--   reservations       keyed by subject (ids are uuids, kept)
--   idempotency_keys   keyed by subject
--   events             the outbox, keyed by subject: ids RENUMBERED on the target,
--                      acknowledged_at kept as it was
--   subject_overrides  keyed by subject
--   bonus_grants       keyed by subject: ids renumbered (nothing refers to them)
--   row_charges        keyed by subject; table_name travels as its name and must name
--                      the same table on the target (the app's schema is on every node)
--   throttles          keyed by tenant
-- What does not move: configuration, the same on every node (plans, plan_limits,
-- bonus_rules, enforcements, tenant_bindings), and the node's own bookkeeping of pauses
-- (tenant_pauses).
-- Nothing refers to a ledger id, an event id or a bonus grant id from another table (the
-- notification of an event carried its id, and was sent long ago), so renumbering
-- touches only those columns; the relative order of ids is kept (the reliability suite
-- replays a window's ledger in id order).
--
-- Transport: one COPY stream of (table, row as jsonb), not one jsonb document, and not a
-- COPY per table. One stream, because move_export is one STABLE function: every query in
-- it reads the snapshot of the one COPY statement, so the rows and the digest that ends
-- the stream agree even if compaction or maintenance ran meanwhile; a COPY per table
-- would read each table at another instant. Rows, not a document, because a big tenant's
-- ledger has millions of rows: the source spills its result to disk past work_mem, psql
-- passes it through as it comes, and the target stages it in a temporary table, inside
-- the transaction that imports it (all or nothing). jsonb rows, because jsonb_populate_record
-- matches columns by name: a node created at 0.9.0 and one updated from 0.8.0 may order
-- columns differently.

-- The tables of quota's state, and whether a move carries them.
CREATE FUNCTION quota.move_tables(OUT table_name regclass, OUT moves boolean)
RETURNS SETOF record LANGUAGE sql STABLE
SET search_path = pg_catalog, quota, pg_temp AS $$
    SELECT t::regclass, m FROM (VALUES
        ('quota.subjects', true), ('quota.counters', true), ('quota.pool_slices', true),
        ('quota.usage_events', true), ('quota.usage_summaries', true), ('quota.reservations', true),
        ('quota.idempotency_keys', true), ('quota.events', true), ('quota.subject_overrides', true),
        ('quota.bonus_grants', true), ('quota.row_charges', true), ('quota.throttles', true),
        ('quota.plans', false), ('quota.plan_limits', false), ('quota.bonus_rules', false),
        ('quota.enforcements', false), ('quota.tenant_bindings', false), ('quota.tenant_pauses', false)
    ) v (t, m)
    -- tenant_pauses comes with the pause (same release); absent tables are left out.
    WHERE to_regclass(t) IS NOT NULL
$$;

-- Refuses (55000) when a table of the extension registered for pg_dump (state or
-- configuration) is not in quota.move_tables(): moving without it would lose it.
CREATE FUNCTION quota.move_check_tables() RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, quota, pg_temp AS $$
DECLARE
    unknown text[];
BEGIN
    SELECT array_agg(c.oid::regclass::text ORDER BY c.relname) INTO unknown
    FROM pg_extension x, unnest(x.extconfig) AS r(oid) JOIN pg_class c ON c.oid = r.oid
    WHERE x.extname = 'quota_ext' AND c.relkind IN ('r', 'p')
      AND c.oid NOT IN (SELECT table_name FROM quota.move_tables());
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION 'tenant move does not know the table%: %', CASE WHEN cardinality(unknown) > 1 THEN 's' ELSE '' END,
                        array_to_string(unknown[1:5], ', ')
            USING ERRCODE = '55000',
                  DETAIL = jsonb_build_object('code', 'move_unknown_table', 'tables', to_jsonb(unknown[1:5]))::text,
                  HINT = 'A quota_ext table is not classified for tenant moves: add it to quota.move_tables() (sql/move.sql) and to move_rows/move_import/move_delete. Nothing was moved.';
    END IF;
END
$$;

-- Every row of the tenant's state on this node, as (table, row). ids are the node's own.
CREATE FUNCTION quota.move_rows(tenant text)
RETURNS TABLE (tbl text, rec jsonb)
LANGUAGE sql STABLE SET search_path = pg_catalog, quota, pg_temp SET TimeZone = 'UTC' AS $$
    WITH s AS (SELECT subject FROM quota.subjects WHERE subjects.tenant = move_rows.tenant)
    SELECT 'subjects', to_jsonb(x) FROM quota.subjects x WHERE x.tenant = move_rows.tenant
    UNION ALL SELECT 'counters', to_jsonb(x) FROM quota.counters x WHERE x.subject IN (SELECT subject FROM s)
    UNION ALL SELECT 'pool_slices', to_jsonb(x) FROM quota.pool_slices x WHERE x.subject IN (SELECT subject FROM s)
    UNION ALL SELECT 'subject_overrides', to_jsonb(x) FROM quota.subject_overrides x WHERE x.subject IN (SELECT subject FROM s)
    UNION ALL SELECT 'reservations', to_jsonb(x) FROM quota.reservations x WHERE x.subject IN (SELECT subject FROM s)
    UNION ALL SELECT 'idempotency_keys', to_jsonb(x) FROM quota.idempotency_keys x WHERE x.subject IN (SELECT subject FROM s)
    UNION ALL SELECT 'events', to_jsonb(x) FROM quota.events x WHERE x.subject IN (SELECT subject FROM s)
    UNION ALL SELECT 'bonus_grants', to_jsonb(x) FROM quota.bonus_grants x WHERE x.subject IN (SELECT subject FROM s)
    UNION ALL SELECT 'row_charges', to_jsonb(x) FROM quota.row_charges x WHERE x.subject IN (SELECT subject FROM s)
    UNION ALL SELECT 'throttles', to_jsonb(x) FROM quota.throttles x WHERE x.tenant = move_rows.tenant
    -- The ledger: also the rows of the tenant's deleted subjects (history stays with the
    -- tenant, and nothing is left behind to be counted on two nodes).
    UNION ALL SELECT 'usage_events', to_jsonb(x) FROM quota.usage_events x
              WHERE x.tenant = move_rows.tenant OR x.subject IN (SELECT subject FROM s)
    UNION ALL SELECT 'usage_summaries', to_jsonb(x) FROM quota.usage_summaries x
              WHERE x.tenant = move_rows.tenant OR x.subject IN (SELECT subject FROM s)
$$;

-- What a move must keep: per table, the rows and an md5 of their contents, ids that the
-- target renumbers left out (their order kept: those tables are hashed in id order, the
-- others in text order). Equal on source and target when the copy is exact. staged: of
-- the session's staged copy (pg_temp.quota_move_stage), else of quota.move_rows(tenant).
CREATE FUNCTION quota.move_digest_of(staged boolean, tenant text) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, quota, pg_temp SET TimeZone = 'UTC' AS $$
DECLARE
    d jsonb;
BEGIN
    PERFORM quota.move_require_scope(tenant);
    EXECUTE format($q$
        SELECT coalesce(jsonb_object_agg(tbl, jsonb_build_object('rows', n, 'md5', h)), '{}')
        FROM (SELECT tbl, count(*) AS n,
                     md5(string_agg(CASE WHEN tbl IN ('usage_events', 'events', 'bonus_grants') THEN rec - 'id' ELSE rec END::text, E'\n'
                                    ORDER BY CASE WHEN tbl IN ('usage_events', 'events', 'bonus_grants') THEN (rec->>'id')::bigint END,
                                             rec::text COLLATE "C")) AS h
              FROM %s AS r (tbl, rec) WHERE tbl <> 'digest' GROUP BY tbl) t$q$,
        CASE WHEN staged THEN 'pg_temp.quota_move_stage' ELSE 'quota.move_rows($1)' END) USING tenant INTO d;
    RETURN d;
END
$$;

-- The tenant's digest on this node (scripts/move_tenant.sh compares source and target).
CREATE FUNCTION quota.move_digest(tenant text) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, quota, pg_temp
RETURN quota.move_digest_of(false, tenant);

-- Refuses (42501) a session scoped to other tenants (quota.tenant, or a role's bindings):
-- an administrator who names a tenant acts for that one only, as quota.pause_tenant.
CREATE FUNCTION quota.move_require_scope(tenant text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, quota, pg_temp AS $$
BEGIN
    IF NOT quota.tenant_visible(tenant) THEN
        RAISE EXCEPTION 'this session may not move tenant "%": its quota.tenant or its role''s bindings name another tenant', left(tenant, 40)
            USING ERRCODE = '42501',
                  DETAIL = jsonb_build_object('code', 'forbidden', 'object', format('tenant %s', left(tenant, 40)))::text,
                  HINT = 'Run it as a quota_admin without quota.tenant (RESET quota.tenant), or with quota.tenant set to that tenant.';
    END IF;
END
$$;

-- The tenant's pause on this node ('moving', 'moved'), NULL when not paused.
CREATE FUNCTION quota.move_pause_state(tenant text) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, quota, pg_temp AS $$
DECLARE
    st text;
BEGIN
    PERFORM quota.move_require_scope(tenant);
    IF to_regclass('quota.tenant_pauses') IS NULL THEN
        RAISE EXCEPTION 'tenant pauses are not available in this database'
            USING ERRCODE = '55000',
                  DETAIL = jsonb_build_object('code', 'not_available', 'feature', 'tenant_pause')::text,
                  HINT = 'Update the extension on every node (ALTER EXTENSION quota_ext UPDATE) before moving tenants.';
    END IF;
    EXECUTE 'SELECT state FROM quota.tenant_pauses WHERE tenant = $1' INTO st USING tenant;
    RETURN st;
END
$$;

-- Refuses unless a tenant is named (22004) and it is paused here in one of the states
-- given (55000). Every step that reads or writes a tenant's state starts with it.
CREATE FUNCTION quota.move_require_pause(tenant text, states text[], step text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, quota, pg_temp AS $$
DECLARE
    st text;
BEGIN
    IF tenant IS NULL OR tenant = '' THEN
        RAISE EXCEPTION 'a tenant move needs a tenant'
            USING ERRCODE = '22004', DETAIL = '{"code":"null_argument","argument":"tenant"}',
                  HINT = 'Untenanted subjects live on the home node and are not moved.';
    END IF;
    PERFORM quota.move_require_scope(tenant);
    st := quota.move_pause_state(tenant);
    IF st IS NULL OR st <> ALL (states) THEN
        RAISE EXCEPTION 'tenant "%" is not paused for a move on this node (%)', left(tenant, 40), coalesce(st, 'not paused')
            USING ERRCODE = '55000',
                  DETAIL = jsonb_build_object('code', 'tenant_not_paused', 'tenant', left(tenant, 40), 'step', step,
                                              'state', st, 'expected', to_jsonb(states))::text,
                  HINT = format('Pause the tenant first: SELECT quota.pause_tenant(...) (state %s); scripts/move_tenant.sh does it in order.',
                                array_to_string(states, ' or '));
    END IF;
END
$$;

-- The source: the tenant's rows, then one ('digest', digest) row, all read in the one
-- snapshot of the calling COPY statement (STABLE). Refuses unless the tenant is paused.
--   COPY (SELECT * FROM quota.move_export('acme')) TO STDOUT
CREATE FUNCTION quota.move_export(tenant text)
RETURNS TABLE (tbl text, rec jsonb)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, quota, pg_temp SET TimeZone = 'UTC' AS $$
BEGIN
    PERFORM quota.move_check_tables();
    PERFORM quota.move_require_pause(tenant, ARRAY['moving', 'moved'], 'export');
    RETURN QUERY SELECT r.tbl, r.rec FROM quota.move_rows(tenant) r;
    RETURN QUERY SELECT 'digest'::text, quota.move_digest(tenant);
END
$$;

-- The target: refuses (23505) when the staged copy's subjects, or the tenant itself,
-- already have state here. Reads the session's staged copy, pg_temp.quota_move_stage.
CREATE FUNCTION quota.move_check_target(tenant text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, quota, pg_temp AS $$
DECLARE
    clash text[];
    n bigint;
BEGIN
    PERFORM quota.move_require_scope(tenant);
    IF to_regclass('pg_temp.quota_move_stage') IS NULL THEN
        RAISE EXCEPTION 'no staged copy in this session'
            USING ERRCODE = '55000', DETAIL = '{"code":"move_not_staged"}',
                  HINT = 'Stage the source''s quota.move_export(tenant) into a temporary table quota_move_stage (tbl text, rec jsonb) in this transaction first; scripts/move_tenant.sh does it.';
    END IF;
    -- The staged copy is read with the extension owner's rights (SECURITY DEFINER): it must
    -- be a plain temporary table of (text, jsonb) without row security or children. A view
    -- (or a policy) of the caller's would run the caller's functions with those rights.
    IF NOT EXISTS (SELECT 1 FROM pg_class c
                   WHERE c.oid = to_regclass('pg_temp.quota_move_stage') AND c.relkind = 'r' AND c.relpersistence = 't'
                     AND NOT c.relrowsecurity AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhparent = c.oid))
       OR ARRAY(SELECT a.atttypid FROM pg_attribute a
                WHERE a.attrelid = to_regclass('pg_temp.quota_move_stage') AND a.attnum > 0 AND NOT a.attisdropped
                ORDER BY a.attnum) IS DISTINCT FROM ARRAY['text'::regtype::oid, 'jsonb'::regtype::oid] THEN
        RAISE EXCEPTION 'pg_temp.quota_move_stage is not a plain temporary table (tbl text, rec jsonb)'
            USING ERRCODE = '55000', DETAIL = '{"code":"move_not_staged"}',
                  HINT = 'Create it with CREATE TEMP TABLE quota_move_stage (tbl text, rec jsonb) and fill it with COPY; scripts/move_tenant.sh does it. Nothing was moved.';
    END IF;
    -- Every subject id the copy carries (a pool, a deleted subject's ledger rows too).
    -- Any state of those ids here would mix with the copy's: the ledger of a subject
    -- deleted here long ago would not match the copied counters.
    WITH ids AS (SELECT DISTINCT rec->>'subject' AS subject FROM pg_temp.quota_move_stage
                 WHERE tbl NOT IN ('digest', 'throttles')),
         taken AS (SELECT i.subject FROM ids i
                   WHERE EXISTS (SELECT 1 FROM quota.subjects x WHERE x.subject = i.subject)
                      OR EXISTS (SELECT 1 FROM quota.usage_events x WHERE x.subject = i.subject)
                      OR EXISTS (SELECT 1 FROM quota.usage_summaries x WHERE x.subject = i.subject)
                      OR EXISTS (SELECT 1 FROM quota.counters x WHERE x.subject = i.subject)
                      OR EXISTS (SELECT 1 FROM quota.reservations x WHERE x.subject = i.subject)
                      OR EXISTS (SELECT 1 FROM quota.idempotency_keys x WHERE x.subject = i.subject)
                      OR EXISTS (SELECT 1 FROM quota.events x WHERE x.subject = i.subject)
                      OR EXISTS (SELECT 1 FROM quota.bonus_grants x WHERE x.subject = i.subject)
                      OR EXISTS (SELECT 1 FROM quota.row_charges x WHERE x.subject = i.subject))
    SELECT (SELECT array_agg(left(subject, 40) ORDER BY subject) FROM (SELECT subject FROM taken ORDER BY subject LIMIT 5) f),
           (SELECT count(*) FROM taken)
    INTO clash, n;
    IF n > 0 THEN
        RAISE EXCEPTION 'tenant "%" cannot move here: % of its subject ids already exist on this node (%)',
                        left(tenant, 40), n, array_to_string(clash, ', ')
            USING ERRCODE = '23505',
                  DETAIL = jsonb_build_object('code', 'subject_exists', 'tenant', left(tenant, 40), 'count', n,
                                              'subjects', to_jsonb(clash))::text,
                  HINT = 'Subject ids are unique per node: rename or delete the clashing subjects on one side (quota.delete_subject), or choose another target node. Nothing was moved.';
    END IF;
    -- The tenant's own state under other subject ids (a throttle key, another subject).
    IF EXISTS (SELECT 1 FROM quota.subjects x WHERE x.tenant = move_check_target.tenant)
       OR EXISTS (SELECT 1 FROM quota.throttles x WHERE x.tenant = move_check_target.tenant) THEN
        RAISE EXCEPTION 'tenant "%" already has quota state on this node', left(tenant, 40)
            USING ERRCODE = '23505',
                  DETAIL = jsonb_build_object('code', 'tenant_exists', 'tenant', left(tenant, 40))::text,
                  HINT = 'A tenant lives on one node: if an earlier move left a copy here, re-run scripts/move_tenant.sh (it removes a copy the shard map does not point to); otherwise move to another node.';
    END IF;
    -- The app's rows charged per insert, keyed by the row's primary key: a key of the
    -- tenant's rows that a row on this node already has (the app's rows could not move
    -- here either).
    SELECT array_agg(DISTINCT left(s.rec->>'table_name', 60)) INTO clash
    FROM pg_temp.quota_move_stage s JOIN quota.row_charges r
      ON s.tbl = 'row_charges' AND r.table_name = to_regclass(s.rec->>'table_name') AND r.row_key = s.rec->>'row_key'
     AND r.metric = s.rec->>'metric' AND r.period = s.rec->>'period';
    IF clash IS NOT NULL THEN
        RAISE EXCEPTION 'tenant "%" cannot move here: rows of % have primary keys that rows on this node already have',
                        left(tenant, 40), array_to_string(clash[1:5], ', ')
            USING ERRCODE = '23505',
                  DETAIL = jsonb_build_object('code', 'row_charge_exists', 'tenant', left(tenant, 40), 'tables', to_jsonb(clash[1:5]))::text,
                  HINT = 'The app''s rows of the tenant could not move here either: give rows keys unique across nodes (uuids, or the tenant in the key). Nothing was moved.';
    END IF;
    -- A payment reference (bonus scope global) used on both nodes.
    SELECT array_agg(DISTINCT left(g.reference, 40)) INTO clash
    FROM pg_temp.quota_move_stage s JOIN quota.bonus_grants g
      ON s.tbl = 'bonus_grants' AND s.rec->>'reference_scope' = 'global' AND g.reference_scope = 'global'
     AND g.kind = s.rec->>'kind' AND g.reference = s.rec->>'reference';
    IF clash IS NOT NULL THEN
        RAISE EXCEPTION 'tenant "%" cannot move here: bonus references already used on this node (%)',
                        left(tenant, 40), array_to_string(clash[1:5], ', ')
            USING ERRCODE = '23505',
                  DETAIL = jsonb_build_object('code', 'bonus_reference_exists', 'tenant', left(tenant, 40),
                                              'references', to_jsonb(clash[1:5]))::text,
                  HINT = 'A global bonus reference (a payment id) counts once per node: resolve the duplicate on one side first. Nothing was moved.';
    END IF;
END
$$;

-- The target: imports the staged copy (pg_temp.quota_move_stage, filled from the
-- source's move_export in this transaction), all or nothing: ledger, event and bonus
-- grant ids come from this node's sequences, in the source's order. Refuses unless the
-- tenant is paused here as 'moving', when ids clash (23505), when the copy is incomplete
-- or a plan or an app table it names is missing (55000). Checks that the digest of what
-- it wrote equals the source's. Returns the rows per table and the id ranges.
CREATE FUNCTION quota.move_import(tenant text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, quota, pg_temp SET TimeZone = 'UTC' AS $$
DECLARE
    source_digest jsonb;
    staged jsonb;
    mine jsonb;
    missing text[];
    ranges jsonb := '{}';
    t text;
    seq regclass;
BEGIN
    PERFORM quota.move_check_tables();
    PERFORM quota.move_require_pause(tenant, ARRAY['moving'], 'import');
    PERFORM quota.move_check_target(tenant);
    SELECT rec INTO source_digest FROM pg_temp.quota_move_stage WHERE tbl = 'digest';
    staged := quota.move_digest_of(true, tenant);
    IF source_digest IS NULL OR staged <> source_digest THEN
        RAISE EXCEPTION 'the staged copy of tenant "%" is incomplete', left(tenant, 40)
            USING ERRCODE = '55000',
                  DETAIL = jsonb_build_object('code', 'move_incomplete', 'tenant', left(tenant, 40),
                                              'source', source_digest, 'staged', staged)::text,
                  HINT = 'The stream from the source ended early or was not its move_export(tenant). Re-run scripts/move_tenant.sh. Nothing was moved.';
    END IF;
    -- Only this tenant's state: its subjects, rows keyed by them, its ledger and throttle
    -- keys. (move_import is quota_admin's: what it stages must not reach other tenants.)
    IF EXISTS (SELECT 1 FROM pg_temp.quota_move_stage s
               WHERE CASE s.tbl
                     WHEN 'digest' THEN false
                     WHEN 'subjects' THEN s.rec->>'tenant' IS DISTINCT FROM move_import.tenant
                     WHEN 'throttles' THEN s.rec->>'tenant' IS DISTINCT FROM move_import.tenant
                     ELSE NOT EXISTS (SELECT 1 FROM pg_temp.quota_move_stage m
                                      WHERE m.tbl = 'subjects' AND m.rec->>'subject' = s.rec->>'subject')
                          AND NOT (s.tbl IN ('usage_events', 'usage_summaries') AND s.rec->>'tenant' = move_import.tenant)
                     END) THEN
        RAISE EXCEPTION 'the staged copy holds state of another tenant'
            USING ERRCODE = '55000', DETAIL = jsonb_build_object('code', 'move_incomplete', 'tenant', left(tenant, 40))::text,
                  HINT = 'Stage the source''s quota.move_export of this same tenant. Nothing was moved.';
    END IF;
    -- Configuration and the app's schema must be here already.
    SELECT array_agg(DISTINCT p) INTO missing
    FROM (SELECT rec->>'plan' AS p FROM pg_temp.quota_move_stage WHERE tbl = 'subjects'
          UNION SELECT rec->>'next_plan' FROM pg_temp.quota_move_stage WHERE tbl = 'subjects') x
    WHERE p IS NOT NULL AND NOT EXISTS (SELECT 1 FROM quota.plans WHERE plan = p);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'plans of tenant "%" are missing on this node: %', left(tenant, 40), array_to_string(missing[1:5], ', ')
            USING ERRCODE = '55000',
                  DETAIL = jsonb_build_object('code', 'move_plan_missing', 'plans', to_jsonb(missing[1:5]))::text,
                  HINT = 'Bring the node''s configuration in line first (configuration goes to every node through the router). Nothing was moved.';
    END IF;
    SELECT array_agg(DISTINCT n) INTO missing
    FROM (SELECT rec->>'table_name' AS n FROM pg_temp.quota_move_stage WHERE tbl = 'row_charges') x
    WHERE to_regclass(n) IS NULL;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'tables charged per row for tenant "%" are missing on this node: %', left(tenant, 40), array_to_string(missing[1:5], ', ')
            USING ERRCODE = '55000',
                  DETAIL = jsonb_build_object('code', 'move_table_missing', 'tables', to_jsonb(missing[1:5]))::text,
                  HINT = 'Every node has the app''s schema: create the table here (its rows are the app''s to move). Nothing was moved.';
    END IF;

    INSERT INTO quota.subjects SELECT r.* FROM pg_temp.quota_move_stage s, jsonb_populate_record(NULL::quota.subjects, s.rec) r WHERE s.tbl = 'subjects';
    INSERT INTO quota.counters SELECT r.* FROM pg_temp.quota_move_stage s, jsonb_populate_record(NULL::quota.counters, s.rec) r WHERE s.tbl = 'counters';
    INSERT INTO quota.pool_slices SELECT r.* FROM pg_temp.quota_move_stage s, jsonb_populate_record(NULL::quota.pool_slices, s.rec) r WHERE s.tbl = 'pool_slices';
    INSERT INTO quota.subject_overrides SELECT r.* FROM pg_temp.quota_move_stage s, jsonb_populate_record(NULL::quota.subject_overrides, s.rec) r WHERE s.tbl = 'subject_overrides';
    INSERT INTO quota.reservations SELECT r.* FROM pg_temp.quota_move_stage s, jsonb_populate_record(NULL::quota.reservations, s.rec) r WHERE s.tbl = 'reservations';
    INSERT INTO quota.idempotency_keys SELECT r.* FROM pg_temp.quota_move_stage s, jsonb_populate_record(NULL::quota.idempotency_keys, s.rec) r WHERE s.tbl = 'idempotency_keys';
    INSERT INTO quota.usage_summaries SELECT r.* FROM pg_temp.quota_move_stage s, jsonb_populate_record(NULL::quota.usage_summaries, s.rec) r WHERE s.tbl = 'usage_summaries';
    INSERT INTO quota.row_charges SELECT r.* FROM pg_temp.quota_move_stage s, jsonb_populate_record(NULL::quota.row_charges, s.rec) r WHERE s.tbl = 'row_charges';
    INSERT INTO quota.throttles SELECT r.* FROM pg_temp.quota_move_stage s, jsonb_populate_record(NULL::quota.throttles, s.rec) r WHERE s.tbl = 'throttles';

    -- Renumbered tables: new ids from this node's sequence, drawn in the source's id
    -- order (the sorted subquery feeds nextval row by row; checked below, not assumed).
    FOREACH t IN ARRAY ARRAY['usage_events', 'events', 'bonus_grants'] LOOP
        seq := pg_get_serial_sequence('quota.' || t, 'id')::regclass;
        IF to_regclass('pg_temp.quota_move_ids') IS NOT NULL THEN
            DROP TABLE pg_temp.quota_move_ids;
        END IF;
        CREATE TEMP TABLE quota_move_ids ON COMMIT DROP AS
            SELECT old_id, nextval(seq) AS new_id
            FROM (SELECT (rec->>'id')::bigint AS old_id FROM pg_temp.quota_move_stage WHERE tbl = t ORDER BY 1) o;
        IF EXISTS (SELECT 1 FROM (SELECT new_id, lag(new_id) OVER (ORDER BY old_id) AS prev FROM pg_temp.quota_move_ids) x
                   WHERE new_id <= prev) THEN
            RAISE EXCEPTION 'renumbering % did not keep the source''s order', t
                USING ERRCODE = 'XX001', DETAIL = jsonb_build_object('code', 'data_corrupted', 'table', t)::text,
                      HINT = 'Not expected: report it as a bug. Nothing was moved.';
        END IF;
        EXECUTE format('INSERT INTO quota.%I OVERRIDING SYSTEM VALUE
                        SELECT r.* FROM pg_temp.quota_move_stage s
                        JOIN pg_temp.quota_move_ids m ON m.old_id = (s.rec->>''id'')::bigint,
                        jsonb_populate_record(NULL::quota.%I, s.rec || jsonb_build_object(''id'', m.new_id)) r
                        WHERE s.tbl = $1', t, t) USING t;
        ranges := ranges || jsonb_build_object(t, (SELECT jsonb_build_object('rows', count(*), 'source_ids', jsonb_build_array(min(old_id), max(old_id)),
                                                                             'target_ids', jsonb_build_array(min(new_id), max(new_id)))
                                                   FROM pg_temp.quota_move_ids));
    END LOOP;

    -- What is here now must be what the source had.
    mine := quota.move_digest(tenant);
    IF mine <> source_digest THEN
        RAISE EXCEPTION 'the imported state of tenant "%" differs from the source''s', left(tenant, 40)
            USING ERRCODE = 'XX001',
                  DETAIL = jsonb_build_object('code', 'data_corrupted', 'tenant', left(tenant, 40), 'source', source_digest, 'target', mine)::text,
                  HINT = 'Not expected: report it as a bug with both digests. Nothing was moved.';
    END IF;
    RETURN jsonb_build_object('tenant', tenant, 'digest', mine, 'renumbered', ranges);
END
$$;

-- Removes every row of the tenant's state on this node, the ledger too (so that nothing
-- is counted on two nodes): on the source after the copy, or a stale copy on the target.
-- Refuses unless the tenant is paused here; with expected, unless the state is still the
-- digest given (what was copied). Returns the rows removed per table.
CREATE FUNCTION quota.move_delete(tenant text, expected jsonb DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, quota, pg_temp SET TimeZone = 'UTC' AS $$
DECLARE
    now_digest jsonb;
    gone jsonb := '{}';
    n bigint;
    subs text[];
    role_before text;
BEGIN
    PERFORM quota.move_check_tables();
    PERFORM quota.move_require_pause(tenant, ARRAY['moving', 'moved'], 'delete');
    -- Lock the tenant's subjects (and so their counters' writers) before comparing.
    SELECT array_agg(subject) INTO subs FROM (SELECT subject FROM quota.subjects x WHERE x.tenant = move_delete.tenant FOR UPDATE) f;
    subs := coalesce(subs, '{}');
    IF expected IS NOT NULL THEN
        now_digest := quota.move_digest(tenant);
        IF now_digest <> expected THEN
            RAISE EXCEPTION 'the state of tenant "%" changed since it was copied', left(tenant, 40)
                USING ERRCODE = '55000',
                      DETAIL = jsonb_build_object('code', 'move_state_changed', 'tenant', left(tenant, 40), 'expected', expected, 'now', now_digest)::text,
                      HINT = 'Something wrote the tenant''s state while it was paused (maintenance, an admin). Nothing was deleted: compare both nodes before deleting by hand.';
        END IF;
    END IF;
    -- The ledger is append-only (sql/ledger.sql): its guard is an ordinary trigger, which
    -- does not fire under session_replication_role = replica. Only this one statement runs
    -- so (a superuser setting; this function runs as the extension's owner), transaction-
    -- local and set back right after; the rest below fires triggers as usual.
    role_before := current_setting('session_replication_role');
    PERFORM set_config('session_replication_role', 'replica', true);
    DELETE FROM quota.usage_events x WHERE x.tenant = move_delete.tenant OR x.subject = ANY (subs);
    GET DIAGNOSTICS n = ROW_COUNT; gone := gone || jsonb_build_object('usage_events', n);
    PERFORM set_config('session_replication_role', role_before, true);
    DELETE FROM quota.usage_summaries x WHERE x.tenant = move_delete.tenant OR x.subject = ANY (subs);
    GET DIAGNOSTICS n = ROW_COUNT; gone := gone || jsonb_build_object('usage_summaries', n);
    DELETE FROM quota.pool_slices x WHERE x.subject = ANY (subs);
    GET DIAGNOSTICS n = ROW_COUNT; gone := gone || jsonb_build_object('pool_slices', n);
    DELETE FROM quota.counters x WHERE x.subject = ANY (subs);
    GET DIAGNOSTICS n = ROW_COUNT; gone := gone || jsonb_build_object('counters', n);
    DELETE FROM quota.subject_overrides x WHERE x.subject = ANY (subs);
    GET DIAGNOSTICS n = ROW_COUNT; gone := gone || jsonb_build_object('subject_overrides', n);
    DELETE FROM quota.reservations x WHERE x.subject = ANY (subs);
    GET DIAGNOSTICS n = ROW_COUNT; gone := gone || jsonb_build_object('reservations', n);
    DELETE FROM quota.idempotency_keys x WHERE x.subject = ANY (subs);
    GET DIAGNOSTICS n = ROW_COUNT; gone := gone || jsonb_build_object('idempotency_keys', n);
    DELETE FROM quota.events x WHERE x.subject = ANY (subs);
    GET DIAGNOSTICS n = ROW_COUNT; gone := gone || jsonb_build_object('events', n);
    DELETE FROM quota.bonus_grants x WHERE x.subject = ANY (subs);
    GET DIAGNOSTICS n = ROW_COUNT; gone := gone || jsonb_build_object('bonus_grants', n);
    DELETE FROM quota.row_charges x WHERE x.subject = ANY (subs);
    GET DIAGNOSTICS n = ROW_COUNT; gone := gone || jsonb_build_object('row_charges', n);
    DELETE FROM quota.throttles x WHERE x.tenant = move_delete.tenant;
    GET DIAGNOSTICS n = ROW_COUNT; gone := gone || jsonb_build_object('throttles', n);
    -- Last, so that its trigger (subjects_forget) finds nothing left and the hot path's
    -- caches hear of it (subjects_changed).
    DELETE FROM quota.subjects x WHERE x.subject = ANY (subs);
    GET DIAGNOSTICS n = ROW_COUNT; gone := gone || jsonb_build_object('subjects', n);
    IF quota.move_digest(tenant) <> '{}' THEN
        RAISE EXCEPTION 'tenant "%" still has state after its deletion', left(tenant, 40)
            USING ERRCODE = 'XX001', DETAIL = jsonb_build_object('code', 'data_corrupted', 'tenant', left(tenant, 40), 'left', quota.move_digest(tenant))::text,
                  HINT = 'Not expected: report it as a bug. Nothing was deleted.';
    END IF;
    RETURN gone;
END
$$;

-- The reliability suite's invariants for one tenant on this node (tests/reliability/
-- reliability.py: counters_match_ledger, the holds check, hard_limits_held's state part),
-- plus totals per metric. ok is NULL for the totals (information, not a check).
--   SELECT * FROM quota.tenant_invariants('acme');
CREATE FUNCTION quota.tenant_invariants(tenant text)
RETURNS TABLE (invariant text, ok boolean, detail text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, quota, pg_temp SET TimeZone = 'UTC' AS $$
BEGIN
    PERFORM quota.move_require_scope(tenant);
    RETURN QUERY
    WITH s AS (SELECT subject FROM quota.subjects x WHERE x.tenant = tenant_invariants.tenant),
    ledger AS (SELECT count(*) AS n FROM quota.ledger_check c WHERE c.subject IN (SELECT subject FROM s)),
    holds AS (SELECT count(*) AS n FROM quota.window_usage k
              WHERE k.subject IN (SELECT subject FROM s)
                AND k.reserved <> (SELECT coalesce(sum(amount), 0) FROM quota.reservations r
                                   WHERE r.subject = k.subject AND r.metric = k.metric AND r.period = k.period
                                     AND r.window_start = k.window_start AND r.status = 'held')),
    hard AS (SELECT count(*) AS n FROM quota.usage_overview o
             WHERE o.subject IN (SELECT subject FROM s) AND o.enforcement = 'hard' AND o.used + o.reserved > o.effective_limit)
    SELECT 'counters equal the ledger', (SELECT n = 0 FROM ledger),
           format('%s windows differ (quota.ledger_check)', (SELECT n FROM ledger))
    UNION ALL
    SELECT 'reserved equals held reservations', (SELECT n = 0 FROM holds), format('%s windows differ', (SELECT n FROM holds))
    UNION ALL
    -- A downgrade that keeps the usage may leave a window above its new limit rightly.
    SELECT 'hard limits held (current windows)', (SELECT n = 0 FROM hard), format('%s windows over', (SELECT n FROM hard))
    UNION ALL
    SELECT 'subjects', NULL, format('%s subjects', (SELECT count(*) FROM s))
    UNION ALL
    (SELECT format('total %s', k.metric), NULL::boolean,
            format('used %s, reserved %s, bonus %s in %s windows', sum(k.used), sum(k.reserved), sum(k.bonus), count(*))
     FROM quota.window_usage k WHERE k.subject IN (SELECT subject FROM s) GROUP BY k.metric ORDER BY k.metric)
    UNION ALL
    SELECT 'ledger', NULL, format('%s rows, %s summary rows, used change %s',
           (SELECT count(*) FROM quota.usage_events e WHERE e.tenant = tenant_invariants.tenant OR e.subject IN (SELECT subject FROM s)),
           (SELECT count(*) FROM quota.usage_summaries e WHERE e.tenant = tenant_invariants.tenant OR e.subject IN (SELECT subject FROM s)),
           (SELECT coalesce(sum(quota.used_change(e.kind, e.amount)), 0) FROM quota.usage_events e
             WHERE e.tenant = tenant_invariants.tenant OR e.subject IN (SELECT subject FROM s)))
    UNION ALL
    SELECT 'events', NULL, format('%s events, %s pending',
           (SELECT count(*) FROM quota.events e WHERE e.subject IN (SELECT subject FROM s)),
           (SELECT count(*) FROM quota.events e WHERE e.subject IN (SELECT subject FROM s) AND e.acknowledged_at IS NULL));
END
$$;

REVOKE ALL ON FUNCTION quota.move_tables(), quota.move_check_tables(), quota.move_rows(text), quota.move_digest_of(boolean, text), quota.move_digest(text), quota.move_pause_state(text), quota.move_require_scope(text), quota.move_require_pause(text, text[], text), quota.move_export(text), quota.move_check_target(text), quota.move_import(text), quota.move_delete(text, jsonb), quota.tenant_invariants(text) FROM PUBLIC;
ALTER FUNCTION quota.move_tables() SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
ALTER FUNCTION quota.move_check_tables() SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
ALTER FUNCTION quota.move_rows(text) SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
ALTER FUNCTION quota.move_digest_of(boolean, text) SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
ALTER FUNCTION quota.move_digest(text) SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
ALTER FUNCTION quota.move_pause_state(text) SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
ALTER FUNCTION quota.move_require_scope(text) SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
ALTER FUNCTION quota.move_require_pause(text, text[], text) SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
ALTER FUNCTION quota.move_export(text) SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
ALTER FUNCTION quota.move_check_target(text) SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
ALTER FUNCTION quota.move_import(text) SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
ALTER FUNCTION quota.move_delete(text, jsonb) SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
ALTER FUNCTION quota.tenant_invariants(text) SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
-- move_check_target, move_import and move_delete are a superuser's (sql/security.sql says why).
GRANT EXECUTE ON FUNCTION quota.move_tables(), quota.move_digest(text), quota.move_pause_state(text), quota.move_export(text), quota.tenant_invariants(text) TO quota_admin;
-- (end of Tenant move)

-- Node entry points for the router (issue 19)
-- Node entry points for the scale-out router (issue 19, docs/scale-out.md).
--
-- PL/Proxy forwards no session setting: a routed call names its tenant as its first
-- argument, and quota_node.<name>(tenant, <the API function's arguments>) sets
-- quota.tenant for that call only (the previous value comes back afterwards; NULL or ''
-- means unset, as for the session: untenanted subjects for an application role,
-- everything for an administrator). The wrappers are SECURITY INVOKER: the role the
-- router connects as keeps its own grants and tenant bindings on the node, and they have
-- the grants of the function they wrap. They return exactly what it returns.
--
-- quota_node.<name>_or_error(tenant, args), what the router calls, returns the wrapper's
-- result, or its error as a row (SQLSTATE, message, DETAIL, HINT) that the router raises
-- again: PL/Proxy drops its connection to a node after a remote error, so that a refusal
-- would otherwise cost the next call a new connection (a backend start on the node).
--
-- Also here: the configuration snapshot the router compares and applies (drift and
-- repair), and the reads of the cluster-wide views, each row naming the node
-- (cluster_name).
--
-- The wrappers are generated from pg_proc by scaleout/generate.py (the block between its
-- markers); the rest is written by hand. The 0.8.0--0.9.0 upgrade script carries this
-- file as it is (the generator copies it there).

CREATE SCHEMA quota_node;
REVOKE ALL ON SCHEMA quota_node FROM PUBLIC;
GRANT USAGE ON SCHEMA quota_node TO quota_reader, quota_app, quota_admin;

-- The node's configuration, one row per item, in a stable order: plans (bonus cap),
-- limits (rate limits included, alert thresholds with them), bonus rules, tenant
-- bindings. key is a JSON array of the item's identifying values (no separator can clash
-- with a name); value is the rest, as jsonb.
CREATE FUNCTION quota_node.config_snapshot()
RETURNS TABLE(kind text, key text, value jsonb)
LANGUAGE sql STABLE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $$
    SELECT s.kind, s.key, s.value FROM (
        SELECT 1 AS ord, 'plan' AS kind, jsonb_build_array(p.plan)::text AS key,
               jsonb_build_object('bonus_cap_per_day', p.bonus_cap_per_day) AS value
        FROM quota.plans p
        UNION ALL
        SELECT 2, 'limit', jsonb_build_array(l.plan, l.metric, l.period)::text,
               jsonb_build_object('limit_value', l.limit_value, 'enforcement', l.enforcement,
                                  'per_request_max', l.per_request_max, 'burst', l.burst,
                                  'alert_thresholds', to_jsonb(l.alert_thresholds))
        FROM quota.plan_limits l
        UNION ALL
        SELECT 3, 'bonus_rule', jsonb_build_array(b.plan, b.metric, b.kind)::text,
               jsonb_build_object('amount', b.amount, 'reference_scope', b.reference_scope)
        FROM quota.bonus_rules b
        UNION ALL
        SELECT 4, 'tenant_binding', jsonb_build_array(t.role_name, t.tenant)::text, 'true'::jsonb
        FROM quota.tenant_bindings t
    ) s
    ORDER BY s.ord, s.key COLLATE "C"
$$;
REVOKE ALL ON FUNCTION quota_node.config_snapshot() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.config_snapshot() TO quota_admin;

-- Make this node's configuration equal to a snapshot (a jsonb array of {kind, key, value}
-- objects, as config_snapshot returns them), in the caller's transaction: through the API
-- functions, so that their validation applies and their caches are told; plans and bonus
-- rules that the API cannot remove are deleted directly (quota_admin may). A plan that
-- subjects still use cannot be deleted: the call fails (23503) and changes nothing.
-- Returns the number of items added, changed or removed.
CREATE FUNCTION quota_node.config_apply(snapshot jsonb)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    item record;
    k jsonb;
    v jsonb;
    changes integer := 0;
    rate text[];
BEGIN
    IF snapshot IS NULL OR jsonb_typeof(snapshot) <> 'array' THEN
        RAISE EXCEPTION 'config_apply: the snapshot must be a jsonb array'
            USING ERRCODE = '22023',
                  DETAIL = jsonb_build_object('code', 'invalid_argument', 'argument', 'snapshot')::text,
                  HINT = 'Pass the router''s configuration as jsonb_agg(quota_node.config_snapshot()), as cluster.repair_config does.';
    END IF;
    -- What differs: items of the snapshot that are missing here or have another value,
    -- and items here that the snapshot does not have.
    FOR item IN
        WITH want AS (SELECT e->>'kind' AS kind, e->>'key' AS key, e->'value' AS value
                      FROM jsonb_array_elements(snapshot) e),
             have AS (SELECT * FROM quota_node.config_snapshot())
        SELECT coalesce(w.kind, h.kind) AS kind, coalesce(w.key, h.key) AS key, w.value AS want, h.value AS have
        FROM want w FULL JOIN have h ON h.kind = w.kind AND h.key = w.key
        WHERE w.value IS DISTINCT FROM h.value
        -- plans first (limits and rules need them), their removal last
        ORDER BY CASE WHEN w.kind = 'plan' THEN 0 WHEN w.kind IS NULL AND h.kind = 'plan' THEN 9 ELSE 5 END,
                 w.kind IS NULL, 1, 2
    LOOP
        k := item.key::jsonb;
        v := item.want;
        changes := changes + 1;
        IF item.kind = 'plan' THEN
            IF v IS NULL THEN
                DELETE FROM quota.plans WHERE plan = k->>0;
            ELSE
                INSERT INTO quota.plans (plan) VALUES (k->>0) ON CONFLICT (plan) DO NOTHING;
                PERFORM quota.set_bonus_cap(k->>0, (v->>'bonus_cap_per_day')::integer);
            END IF;
        ELSIF item.kind = 'limit' THEN
            IF v IS NULL THEN
                PERFORM quota.remove_limit(k->>0, k->>1, k->>2);
            ELSE
                rate := regexp_match(k->>2, '^per ([0-9]+ [a-z]+)$');
                IF rate IS NOT NULL THEN
                    PERFORM quota.set_rate_limit(k->>0, k->>1, (v->>'limit_value')::bigint, rate[1]::interval,
                                                 coalesce((v->>'burst')::bigint, 0));
                ELSE
                    PERFORM quota.set_limit(k->>0, k->>1, k->>2, (v->>'limit_value')::bigint, v->>'enforcement',
                                            (v->>'per_request_max')::bigint);
                END IF;
                PERFORM quota.set_alerts(k->>0, k->>1,
                                         ARRAY(SELECT jsonb_array_elements_text(v->'alert_thresholds'))::integer[], k->>2);
            END IF;
        ELSIF item.kind = 'bonus_rule' THEN
            IF v IS NULL THEN
                DELETE FROM quota.bonus_rules WHERE plan = k->>0 AND metric = k->>1 AND kind = k->>2;
            ELSE
                PERFORM quota.set_bonus_rule(k->>0, k->>1, k->>2, (v->>'amount')::bigint, v->>'reference_scope');
            END IF;
        ELSIF item.kind = 'tenant_binding' THEN
            IF v IS NULL THEN
                PERFORM quota.unbind_tenant(k->>0, k->>1);
            ELSE
                PERFORM quota.bind_tenant(k->>0, k->>1);
            END IF;
        ELSE
            RAISE EXCEPTION 'config_apply: unknown kind "%"', left(item.kind, 32)
                USING ERRCODE = '22023',
                      DETAIL = jsonb_build_object('code', 'invalid_argument', 'argument', 'snapshot',
                                                  'value', left(item.kind, 32))::text,
                      HINT = 'Kinds are plan, limit, bonus_rule and tenant_binding (quota_node.config_snapshot).';
        END IF;
    END LOOP;
    RETURN changes;
END
$$;
REVOKE ALL ON FUNCTION quota_node.config_apply(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.config_apply(jsonb) TO quota_admin;

-- BEGIN GENERATED by scaleout/generate.py: do not edit by hand
CREATE FUNCTION quota_node.ack_events(tenant text, up_to bigint) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result bigint;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.ack_events($2);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.ack_events(text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.ack_events(text, bigint) TO quota_app;

CREATE FUNCTION quota_node.ack_events_or_error(text, bigint) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, result bigint)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.ack_events($1, $2) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.ack_events_or_error(text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.ack_events_or_error(text, bigint) TO quota_app;

CREATE FUNCTION quota_node.apply_bonus(tenant text, subject inet, metric text, kind text, reference text DEFAULT NULL::text) RETURNS quota.bonus_result
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result quota.bonus_result;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.apply_bonus($2, $3, $4, $5);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.apply_bonus(text, inet, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.apply_bonus(text, inet, text, text, text) TO quota_admin;

CREATE FUNCTION quota_node.apply_bonus_or_error(text, inet, text, text, text) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, applied boolean, reason text, amount bigint, new_limit bigint, bonuses_today integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.apply_bonus($1, $2, $3, $4, $5) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.apply_bonus_or_error(text, inet, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.apply_bonus_or_error(text, inet, text, text, text) TO quota_admin;

CREATE FUNCTION quota_node.apply_bonus(tenant text, subject text, metric text, kind text, reference text DEFAULT NULL::text) RETURNS quota.bonus_result
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result quota.bonus_result;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.apply_bonus($2, $3, $4, $5);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.apply_bonus(text, text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.apply_bonus(text, text, text, text, text) TO quota_admin;

CREATE FUNCTION quota_node.apply_bonus_or_error(text, text, text, text, text) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, applied boolean, reason text, amount bigint, new_limit bigint, bonuses_today integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.apply_bonus($1, $2, $3, $4, $5) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.apply_bonus_or_error(text, text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.apply_bonus_or_error(text, text, text, text, text) TO quota_admin;

CREATE FUNCTION quota_node.assign_plan(tenant text, subject inet, plan text, subject_tenant text DEFAULT NULL::text, cycle_anchor timestamp with time zone DEFAULT NULL::timestamp with time zone, time_zone text DEFAULT NULL::text, effective_at timestamp with time zone DEFAULT NULL::timestamp with time zone, carry text DEFAULT 'usage'::text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    PERFORM quota.assign_plan($2, $3, $4, $5, $6, $7, $8);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.assign_plan(text, inet, text, text, timestamp with time zone, text, timestamp with time zone, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.assign_plan(text, inet, text, text, timestamp with time zone, text, timestamp with time zone, text) TO quota_admin;

CREATE FUNCTION quota_node.assign_plan_or_error(text, inet, text, text, timestamp with time zone, text, timestamp with time zone, text) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    PERFORM quota_node.assign_plan($1, $2, $3, $4, $5, $6, $7, $8);
    RETURN NEXT;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.assign_plan_or_error(text, inet, text, text, timestamp with time zone, text, timestamp with time zone, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.assign_plan_or_error(text, inet, text, text, timestamp with time zone, text, timestamp with time zone, text) TO quota_admin;

CREATE FUNCTION quota_node.assign_plan(tenant text, subject text, plan text, subject_tenant text DEFAULT NULL::text, cycle_anchor timestamp with time zone DEFAULT NULL::timestamp with time zone, time_zone text DEFAULT NULL::text, effective_at timestamp with time zone DEFAULT NULL::timestamp with time zone, carry text DEFAULT 'usage'::text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    PERFORM quota.assign_plan($2, $3, $4, $5, $6, $7, $8);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.assign_plan(text, text, text, text, timestamp with time zone, text, timestamp with time zone, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.assign_plan(text, text, text, text, timestamp with time zone, text, timestamp with time zone, text) TO quota_admin;

CREATE FUNCTION quota_node.assign_plan_or_error(text, text, text, text, timestamp with time zone, text, timestamp with time zone, text) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    PERFORM quota_node.assign_plan($1, $2, $3, $4, $5, $6, $7, $8);
    RETURN NEXT;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.assign_plan_or_error(text, text, text, text, timestamp with time zone, text, timestamp with time zone, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.assign_plan_or_error(text, text, text, text, timestamp with time zone, text, timestamp with time zone, text) TO quota_admin;

CREATE FUNCTION quota_node.cancel_plan_change(tenant text, subject text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result boolean;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.cancel_plan_change($2);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.cancel_plan_change(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.cancel_plan_change(text, text) TO quota_admin;

CREATE FUNCTION quota_node.cancel_plan_change_or_error(text, text) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, result boolean)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.cancel_plan_change($1, $2) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.cancel_plan_change_or_error(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.cancel_plan_change_or_error(text, text) TO quota_admin;

CREATE FUNCTION quota_node.delete_subject(tenant text, subject text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result boolean;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.delete_subject($2);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.delete_subject(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.delete_subject(text, text) TO quota_admin;

CREATE FUNCTION quota_node.delete_subject_or_error(text, text) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, result boolean)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.delete_subject($1, $2) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.delete_subject_or_error(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.delete_subject_or_error(text, text) TO quota_admin;

CREATE FUNCTION quota_node.quota_check(tenant text, subject inet, metric text, amount bigint DEFAULT 1) RETURNS quota.decision
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result quota.decision;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.quota_check($2, $3, $4);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_check(text, inet, text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_check(text, inet, text, bigint) TO quota_app;

CREATE FUNCTION quota_node.quota_check_or_error(text, inet, text, bigint) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, allowed boolean, subject text, metric text, period text, used bigint, limit_value bigint, bonus bigint, remaining bigint, requested bigint, reset_at timestamp with time zone, enforcement text, reason text, reserved bigint, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_check($1, $2, $3, $4) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_check_or_error(text, inet, text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_check_or_error(text, inet, text, bigint) TO quota_app;

CREATE FUNCTION quota_node.quota_check(tenant text, subject text, amounts jsonb) RETURNS SETOF quota.decision
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    RETURN QUERY SELECT * FROM quota.quota_check($2, $3);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_check(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_check(text, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_check_or_error(text, text, jsonb) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, allowed boolean, subject text, metric text, period text, used bigint, limit_value bigint, bonus bigint, remaining bigint, requested bigint, reset_at timestamp with time zone, enforcement text, reason text, reserved bigint, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_check($1, $2, $3) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_check_or_error(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_check_or_error(text, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_check(tenant text, subject text, metric text, amount bigint DEFAULT 1) RETURNS quota.decision
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result quota.decision;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.quota_check($2, $3, $4);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_check(text, text, text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_check(text, text, text, bigint) TO quota_app;

CREATE FUNCTION quota_node.quota_check_or_error(text, text, text, bigint) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, allowed boolean, subject text, metric text, period text, used bigint, limit_value bigint, bonus bigint, remaining bigint, requested bigint, reset_at timestamp with time zone, enforcement text, reason text, reserved bigint, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_check($1, $2, $3, $4) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_check_or_error(text, text, text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_check_or_error(text, text, text, bigint) TO quota_app;

CREATE FUNCTION quota_node.quota_commit(tenant text, reservation uuid, actual_amount bigint DEFAULT NULL::bigint, metadata jsonb DEFAULT NULL::jsonb) RETURNS quota.decision
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result quota.decision;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.quota_commit($2, $3, $4);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_commit(text, uuid, bigint, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_commit(text, uuid, bigint, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_commit_or_error(text, uuid, bigint, jsonb) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, allowed boolean, subject text, metric text, period text, used bigint, limit_value bigint, bonus bigint, remaining bigint, requested bigint, reset_at timestamp with time zone, enforcement text, reason text, reserved bigint, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_commit($1, $2, $3, $4) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_commit_or_error(text, uuid, bigint, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_commit_or_error(text, uuid, bigint, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_consume(tenant text, subject inet, metric text, amount bigint DEFAULT 1, idempotency_key text DEFAULT NULL::text, metadata jsonb DEFAULT NULL::jsonb) RETURNS quota.decision
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result quota.decision;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.quota_consume($2, $3, $4, $5, $6);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_consume(text, inet, text, bigint, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_consume(text, inet, text, bigint, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_consume_or_error(text, inet, text, bigint, text, jsonb) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, allowed boolean, subject text, metric text, period text, used bigint, limit_value bigint, bonus bigint, remaining bigint, requested bigint, reset_at timestamp with time zone, enforcement text, reason text, reserved bigint, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_consume($1, $2, $3, $4, $5, $6) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_consume_or_error(text, inet, text, bigint, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_consume_or_error(text, inet, text, bigint, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_consume(tenant text, subject text, amounts jsonb) RETURNS SETOF quota.decision
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    RETURN QUERY SELECT * FROM quota.quota_consume($2, $3);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_consume(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_consume(text, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_consume_or_error(text, text, jsonb) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, allowed boolean, subject text, metric text, period text, used bigint, limit_value bigint, bonus bigint, remaining bigint, requested bigint, reset_at timestamp with time zone, enforcement text, reason text, reserved bigint, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_consume($1, $2, $3) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_consume_or_error(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_consume_or_error(text, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_consume(tenant text, subject text, metric text, amount bigint DEFAULT 1, idempotency_key text DEFAULT NULL::text, metadata jsonb DEFAULT NULL::jsonb) RETURNS quota.decision
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result quota.decision;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.quota_consume($2, $3, $4, $5, $6);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_consume(text, text, text, bigint, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_consume(text, text, text, bigint, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_consume_or_error(text, text, text, bigint, text, jsonb) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, allowed boolean, subject text, metric text, period text, used bigint, limit_value bigint, bonus bigint, remaining bigint, requested bigint, reset_at timestamp with time zone, enforcement text, reason text, reserved bigint, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_consume($1, $2, $3, $4, $5, $6) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_consume_or_error(text, text, text, bigint, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_consume_or_error(text, text, text, bigint, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_consume_many(tenant text, subject text, amounts jsonb, idempotency_key text DEFAULT NULL::text, metadata jsonb DEFAULT NULL::jsonb) RETURNS SETOF quota.decision
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    RETURN QUERY SELECT * FROM quota.quota_consume_many($2, $3, $4, $5);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_consume_many(text, text, jsonb, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_consume_many(text, text, jsonb, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_consume_many_or_error(text, text, jsonb, text, jsonb) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, allowed boolean, subject text, metric text, period text, used bigint, limit_value bigint, bonus bigint, remaining bigint, requested bigint, reset_at timestamp with time zone, enforcement text, reason text, reserved bigint, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_consume_many($1, $2, $3, $4, $5) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_consume_many_or_error(text, text, jsonb, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_consume_many_or_error(text, text, jsonb, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_refund(tenant text, subject inet, metric text, amount bigint, idempotency_key text DEFAULT NULL::text) RETURNS quota.decision
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result quota.decision;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.quota_refund($2, $3, $4, $5);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_refund(text, inet, text, bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_refund(text, inet, text, bigint, text) TO quota_app;

CREATE FUNCTION quota_node.quota_refund_or_error(text, inet, text, bigint, text) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, allowed boolean, subject text, metric text, period text, used bigint, limit_value bigint, bonus bigint, remaining bigint, requested bigint, reset_at timestamp with time zone, enforcement text, reason text, reserved bigint, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_refund($1, $2, $3, $4, $5) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_refund_or_error(text, inet, text, bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_refund_or_error(text, inet, text, bigint, text) TO quota_app;

CREATE FUNCTION quota_node.quota_refund(tenant text, subject text, metric text, amount bigint, idempotency_key text DEFAULT NULL::text) RETURNS quota.decision
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result quota.decision;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.quota_refund($2, $3, $4, $5);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_refund(text, text, text, bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_refund(text, text, text, bigint, text) TO quota_app;

CREATE FUNCTION quota_node.quota_refund_or_error(text, text, text, bigint, text) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, allowed boolean, subject text, metric text, period text, used bigint, limit_value bigint, bonus bigint, remaining bigint, requested bigint, reset_at timestamp with time zone, enforcement text, reason text, reserved bigint, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_refund($1, $2, $3, $4, $5) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_refund_or_error(text, text, text, bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_refund_or_error(text, text, text, bigint, text) TO quota_app;

CREATE FUNCTION quota_node.quota_release(tenant text, reservation uuid, reason text DEFAULT NULL::text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result boolean;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.quota_release($2, $3);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_release(text, uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_release(text, uuid, text) TO quota_app;

CREATE FUNCTION quota_node.quota_release_or_error(text, uuid, text) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, result boolean)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_release($1, $2, $3) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_release_or_error(text, uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_release_or_error(text, uuid, text) TO quota_app;

CREATE FUNCTION quota_node.quota_reserve(tenant text, subject text, metric text, amount bigint, ttl interval DEFAULT '00:15:00'::interval, idempotency_key text DEFAULT NULL::text, metadata jsonb DEFAULT NULL::jsonb) RETURNS quota.reservation
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result quota.reservation;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.quota_reserve($2, $3, $4, $5, $6, $7);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_reserve(text, text, text, bigint, interval, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_reserve(text, text, text, bigint, interval, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_reserve_or_error(text, text, text, bigint, interval, text, jsonb) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, reservation uuid, expires_at timestamp with time zone, allowed boolean, subject text, metric text, period text, used bigint, reserved bigint, limit_value bigint, bonus bigint, remaining bigint, requested bigint, reset_at timestamp with time zone, enforcement text, reason text, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_reserve($1, $2, $3, $4, $5, $6, $7) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_reserve_or_error(text, text, text, bigint, interval, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_reserve_or_error(text, text, text, bigint, interval, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_reset(tenant text, subject text, metric text DEFAULT NULL::text) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result integer;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.quota_reset($2, $3);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_reset(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_reset(text, text, text) TO quota_admin;

CREATE FUNCTION quota_node.quota_reset_or_error(text, text, text) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, result integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_reset($1, $2, $3) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_reset_or_error(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_reset_or_error(text, text, text) TO quota_admin;

CREATE FUNCTION quota_node.quota_status(tenant text, subject inet) RETURNS TABLE(metric text, period text, limit_value bigint, bonus bigint, used bigint, remaining bigint, reset_at timestamp with time zone, enforcement text, reserved bigint, source text, next_plan text, next_plan_at timestamp with time zone, pool text, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    RETURN QUERY SELECT * FROM quota.quota_status($2);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_status(text, inet) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_status(text, inet) TO quota_app;

CREATE FUNCTION quota_node.quota_status_or_error(text, inet) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, metric text, period text, limit_value bigint, bonus bigint, used bigint, remaining bigint, reset_at timestamp with time zone, enforcement text, reserved bigint, source text, next_plan text, next_plan_at timestamp with time zone, pool text, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_status($1, $2) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_status_or_error(text, inet) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_status_or_error(text, inet) TO quota_app;

CREATE FUNCTION quota_node.quota_status(tenant text, subject text) RETURNS TABLE(metric text, period text, limit_value bigint, bonus bigint, used bigint, remaining bigint, reset_at timestamp with time zone, enforcement text, reserved bigint, source text, next_plan text, next_plan_at timestamp with time zone, pool text, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    RETURN QUERY SELECT * FROM quota.quota_status($2);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_status(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_status(text, text) TO quota_app;

CREATE FUNCTION quota_node.quota_status_or_error(text, text) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, metric text, period text, limit_value bigint, bonus bigint, used bigint, remaining bigint, reset_at timestamp with time zone, enforcement text, reserved bigint, source text, next_plan text, next_plan_at timestamp with time zone, pool text, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_status($1, $2) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_status_or_error(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_status_or_error(text, text) TO quota_app;

CREATE FUNCTION quota_node.quota_try_consume(tenant text, subject inet, metric text, amount bigint DEFAULT 1, idempotency_key text DEFAULT NULL::text, metadata jsonb DEFAULT NULL::jsonb) RETURNS quota.decision
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result quota.decision;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.quota_try_consume($2, $3, $4, $5, $6);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_try_consume(text, inet, text, bigint, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_try_consume(text, inet, text, bigint, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_try_consume_or_error(text, inet, text, bigint, text, jsonb) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, allowed boolean, subject text, metric text, period text, used bigint, limit_value bigint, bonus bigint, remaining bigint, requested bigint, reset_at timestamp with time zone, enforcement text, reason text, reserved bigint, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_try_consume($1, $2, $3, $4, $5, $6) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_try_consume_or_error(text, inet, text, bigint, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_try_consume_or_error(text, inet, text, bigint, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_try_consume(tenant text, subject text, amounts jsonb) RETURNS SETOF quota.decision
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    RETURN QUERY SELECT * FROM quota.quota_try_consume($2, $3);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_try_consume(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_try_consume(text, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_try_consume_or_error(text, text, jsonb) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, allowed boolean, subject text, metric text, period text, used bigint, limit_value bigint, bonus bigint, remaining bigint, requested bigint, reset_at timestamp with time zone, enforcement text, reason text, reserved bigint, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_try_consume($1, $2, $3) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_try_consume_or_error(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_try_consume_or_error(text, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_try_consume(tenant text, subject text, metric text, amount bigint DEFAULT 1, idempotency_key text DEFAULT NULL::text, metadata jsonb DEFAULT NULL::jsonb) RETURNS quota.decision
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result quota.decision;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.quota_try_consume($2, $3, $4, $5, $6);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_try_consume(text, text, text, bigint, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_try_consume(text, text, text, bigint, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_try_consume_or_error(text, text, text, bigint, text, jsonb) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, allowed boolean, subject text, metric text, period text, used bigint, limit_value bigint, bonus bigint, remaining bigint, requested bigint, reset_at timestamp with time zone, enforcement text, reason text, reserved bigint, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_try_consume($1, $2, $3, $4, $5, $6) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_try_consume_or_error(text, text, text, bigint, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_try_consume_or_error(text, text, text, bigint, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_try_consume_many(tenant text, subject text, amounts jsonb, idempotency_key text DEFAULT NULL::text, metadata jsonb DEFAULT NULL::jsonb) RETURNS SETOF quota.decision
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    RETURN QUERY SELECT * FROM quota.quota_try_consume_many($2, $3, $4, $5);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_try_consume_many(text, text, jsonb, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_try_consume_many(text, text, jsonb, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_try_consume_many_or_error(text, text, jsonb, text, jsonb) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, allowed boolean, subject text, metric text, period text, used bigint, limit_value bigint, bonus bigint, remaining bigint, requested bigint, reset_at timestamp with time zone, enforcement text, reason text, reserved bigint, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_try_consume_many($1, $2, $3, $4, $5) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_try_consume_many_or_error(text, text, jsonb, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_try_consume_many_or_error(text, text, jsonb, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_try_reserve(tenant text, subject text, metric text, amount bigint, ttl interval DEFAULT '00:15:00'::interval, idempotency_key text DEFAULT NULL::text, metadata jsonb DEFAULT NULL::jsonb) RETURNS quota.reservation
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result quota.reservation;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.quota_try_reserve($2, $3, $4, $5, $6, $7);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_try_reserve(text, text, text, bigint, interval, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_try_reserve(text, text, text, bigint, interval, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_try_reserve_or_error(text, text, text, bigint, interval, text, jsonb) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, reservation uuid, expires_at timestamp with time zone, allowed boolean, subject text, metric text, period text, used bigint, reserved bigint, limit_value bigint, bonus bigint, remaining bigint, requested bigint, reset_at timestamp with time zone, enforcement text, reason text, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_try_reserve($1, $2, $3, $4, $5, $6, $7) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_try_reserve_or_error(text, text, text, bigint, interval, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_try_reserve_or_error(text, text, text, bigint, interval, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.remove_override(tenant text, subject text, metric text, period text DEFAULT NULL::text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result boolean;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.remove_override($2, $3, $4);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.remove_override(text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.remove_override(text, text, text, text) TO quota_admin;

CREATE FUNCTION quota_node.remove_override_or_error(text, text, text, text) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, result boolean)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.remove_override($1, $2, $3, $4) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.remove_override_or_error(text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.remove_override_or_error(text, text, text, text) TO quota_admin;

CREATE FUNCTION quota_node.set_override(tenant text, subject text, metric text, period text, value bigint, mode text DEFAULT 'max'::text, expires_at timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    PERFORM quota.set_override($2, $3, $4, $5, $6, $7);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.set_override(text, text, text, text, bigint, text, timestamp with time zone) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.set_override(text, text, text, text, bigint, text, timestamp with time zone) TO quota_admin;

CREATE FUNCTION quota_node.set_override_or_error(text, text, text, text, bigint, text, timestamp with time zone) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    PERFORM quota_node.set_override($1, $2, $3, $4, $5, $6, $7);
    RETURN NEXT;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.set_override_or_error(text, text, text, text, bigint, text, timestamp with time zone) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.set_override_or_error(text, text, text, text, bigint, text, timestamp with time zone) TO quota_admin;

CREATE FUNCTION quota_node.set_pool(tenant text, subject text, pool text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    PERFORM quota.set_pool($2, $3);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.set_pool(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.set_pool(text, text, text) TO quota_admin;

CREATE FUNCTION quota_node.set_pool_or_error(text, text, text) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    PERFORM quota_node.set_pool($1, $2, $3);
    RETURN NEXT;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.set_pool_or_error(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.set_pool_or_error(text, text, text) TO quota_admin;

CREATE FUNCTION quota_node.throttle(tenant text, key text, max_burst bigint, count bigint, period interval, quantity bigint DEFAULT 1) RETURNS TABLE(limited boolean, "limit" bigint, remaining bigint, retry_after interval, reset_after interval)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    RETURN QUERY SELECT * FROM quota.throttle($2, $3, $4, $5, $6);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.throttle(text, text, bigint, bigint, interval, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.throttle(text, text, bigint, bigint, interval, bigint) TO quota_app;

CREATE FUNCTION quota_node.throttle_or_error(text, text, bigint, bigint, interval, bigint) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, limited boolean, "limit" bigint, remaining bigint, retry_after interval, reset_after interval)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.throttle($1, $2, $3, $4, $5, $6) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.throttle_or_error(text, text, bigint, bigint, interval, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.throttle_or_error(text, text, bigint, bigint, interval, bigint) TO quota_app;

CREATE FUNCTION quota_node.usage_overview(for_tenant text DEFAULT NULL) RETURNS TABLE(node text, subject text, tenant text, plan text, metric text, period text, used bigint, reserved bigint, limit_value bigint, bonus bigint, effective_limit bigint, remaining bigint, percent numeric, enforcement text, window_start timestamp with time zone, reset_at timestamp with time zone, source text)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    RETURN QUERY SELECT pg_catalog.current_setting('cluster_name')::text, s.* FROM quota.usage_overview s;
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.usage_overview(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.usage_overview(text) TO quota_reader, quota_app;

CREATE FUNCTION quota_node.top_consumers(for_tenant text DEFAULT NULL) RETURNS TABLE(node text, metric text, period text, window_start timestamp with time zone, window_end timestamp with time zone, current boolean, rank bigint, subject text, tenant text, used bigint, effective_limit bigint, percent numeric)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    RETURN QUERY SELECT pg_catalog.current_setting('cluster_name')::text, s.* FROM quota.top_consumers s;
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.top_consumers(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.top_consumers(text) TO quota_reader, quota_app;

CREATE FUNCTION quota_node.stats_totals(for_tenant text DEFAULT NULL) RETURNS TABLE(node text, metric text, consumed_total bigint, consumes_total bigint, exceeded_total bigint, soft_overages_total bigint, checks_total bigint, refunded_total bigint, bonuses_total bigint)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    RETURN QUERY SELECT pg_catalog.current_setting('cluster_name')::text, s.* FROM quota.stats_totals() s;
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.stats_totals(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.stats_totals(text) TO quota_app, quota_reader;

CREATE FUNCTION quota_node.recent_refusals(for_tenant text DEFAULT NULL) RETURNS TABLE(node text, refused_at timestamp with time zone, subject text, tenant text, metric text, requested bigint, used bigint, limit_value bigint, reason text)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    RETURN QUERY SELECT pg_catalog.current_setting('cluster_name')::text, s.* FROM quota.recent_refusals() s;
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.recent_refusals(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.recent_refusals(text) TO quota_app, quota_reader;
-- END GENERATED
-- End of node entry points for the router (issue 19)

-- Drop what every backend cached before this version --------------------------------------
UPDATE quota.subjects SET plan = plan WHERE false;
UPDATE quota.plan_limits SET plan = plan WHERE false;
