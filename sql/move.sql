-- Tenant move (issue 19): what scripts/move_tenant.sh needs on the source and the target
-- node to move one tenant's quota state. Superusers and quota_admin only
-- (sql/security.sql). The steps and guarantees are in docs/scale-out.md ("Moving a tenant").
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
