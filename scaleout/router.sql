-- The scale-out router (issue 19, docs/scale-out.md): a database with quota_ext (its
-- configuration tables are the canonical configuration, its quota.tenant_bindings say which
-- router roles act for which tenants) and PL/Proxy. Not an extension: scripts/scaleout.sh
-- applies this file, then scaleout/router_api.sql (the generated mirror of the API), as a
-- superuser, once.
--
-- Schema cluster: the nodes, the shard map, the routing functions and the API; schema
-- cluster_proxy: the PL/Proxy functions behind it (internal; each checks the caller's
-- tenant bindings itself, in cluster.cluster_for, so calling one directly bypasses
-- nothing); schema plproxy: PL/Proxy's cluster configuration, read from the tables.

CREATE SCHEMA cluster;
CREATE SCHEMA cluster_proxy;
REVOKE ALL ON SCHEMA cluster, cluster_proxy FROM PUBLIC;
GRANT USAGE ON SCHEMA cluster, cluster_proxy TO quota_reader, quota_app, quota_admin;

-- Nodes. connstr says where a node is (host, port, dbname), without a user: the router adds
-- the role it connects as (cluster.proxy_roles), and an application that connects to the
-- node itself (cluster.node_for) brings its own. Exactly one node is home: untenanted
-- subjects live there.
CREATE TABLE cluster.nodes (
    node    text PRIMARY KEY CHECK (node <> ''),
    connstr text NOT NULL CHECK (connstr !~* '(^|\s)(user|password)\s*='),
    home    boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX nodes_one_home ON cluster.nodes (home) WHERE home;

-- The shard map, one table: explicit placements (tenant -> node) and hash partitions
-- (partition -> node). A tenant without a placement lives on the node of partition
-- hashtext(tenant) & (P - 1), P the number of partitions: a power of two (0 .. P-1, each
-- once), so that several partitions may share a node (4 partitions over 3 nodes).
CREATE TABLE cluster.shard_map (
    tenant    text UNIQUE CHECK (tenant <> ''),
    partition integer UNIQUE CHECK (partition >= 0),
    node      text NOT NULL REFERENCES cluster.nodes ON UPDATE CASCADE,
    CHECK ((tenant IS NULL) <> (partition IS NULL))
);

-- Tenant moves under way (scripts/move_tenant.sh), one per tenant: a second move of the
-- tenant to another node is refused while this row stands, and the source's state is
-- deleted only while it still has exactly the digest that was copied (also by a re-run).
CREATE TABLE cluster.moves (
    tenant  text PRIMARY KEY CHECK (tenant <> ''),
    source  text NOT NULL REFERENCES cluster.nodes ON UPDATE CASCADE,
    target  text NOT NULL REFERENCES cluster.nodes ON UPDATE CASCADE,
    -- quota.move_digest of what was copied, set once the copy is verified.
    digest  jsonb,
    started timestamptz NOT NULL DEFAULT now(),
    CHECK (source <> target)
);

-- The role the router connects to the nodes as, per PL/Proxy cluster: an application
-- role for calls by non-administrators (on the node, no tenant means untenanted subjects
-- only, as for the caller on the router), an administrator for administrators and for
-- configuration. Both must exist on every node (scripts/scaleout.sh creates them).
CREATE TABLE cluster.proxy_roles (
    cluster_name text PRIMARY KEY,
    node_role    text NOT NULL
);
INSERT INTO cluster.proxy_roles VALUES ('quota', 'quota_router'), ('quota_admin', 'quota_router_admin');

-- PL/Proxy reloads a cluster's partitions when its version changes: every change to the
-- nodes, the map or the roles bumps it.
CREATE TABLE cluster.map_version (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    version  bigint NOT NULL
);
INSERT INTO cluster.map_version VALUES (true, 1);

CREATE FUNCTION cluster.map_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    parts integer;
    top integer;
BEGIN
    SELECT count(*), max(partition) INTO parts, top FROM cluster.shard_map WHERE partition IS NOT NULL;
    IF parts > 0 AND (parts & (parts - 1) <> 0 OR top <> parts - 1) THEN
        RAISE EXCEPTION 'the shard map has % hash partitions numbered up to %: it needs a power of two, numbered 0 to count - 1', parts, top
            USING ERRCODE = '22023',
                  DETAIL = jsonb_build_object('code', 'invalid_argument', 'object', 'cluster.shard_map',
                                              'partitions', parts, 'highest', top)::text,
                  HINT = 'Change the partitions in one transaction (the check runs at COMMIT): 1, 2, 4, 8... rows numbered from 0.';
    END IF;
    IF (SELECT count(*) FROM cluster.nodes WHERE home) > 1 THEN
        RAISE EXCEPTION 'more than one home node' USING ERRCODE = '22023';
    END IF;
    UPDATE cluster.map_version SET version = version + 1;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER shard_map_changed AFTER INSERT OR UPDATE OR DELETE ON cluster.shard_map
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION cluster.map_changed();
CREATE CONSTRAINT TRIGGER nodes_changed AFTER INSERT OR UPDATE OR DELETE ON cluster.nodes
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION cluster.map_changed();
CREATE CONSTRAINT TRIGGER proxy_roles_changed AFTER INSERT OR UPDATE OR DELETE ON cluster.proxy_roles
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION cluster.map_changed();

-- The connection strings PL/Proxy knows, in node order (index = position), padded to a power
-- of two by repeating the first: RUN ON k reaches node k, and RUN ON ALL runs once per
-- distinct connection string, so once per node.
CREATE FUNCTION cluster.node_partitions()
RETURNS TABLE(node text, part integer)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT n.node, (row_number() OVER (ORDER BY n.node COLLATE "C"))::integer - 1 FROM cluster.nodes n
    ORDER BY 2
$$;

-- The node a tenant's quota state lives on: its explicit placement, else its hash
-- partition's node; NULL (untenanted) lives on the home node. The map names tenants, so
-- only administrators read it; this (and partition_for) reads it for the caller after
-- checking the caller may act for the tenant (cluster.admit): a role bound to tenants
-- learns nothing about another tenant's placement.
CREATE FUNCTION cluster.node_of(tenant text)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
    PERFORM cluster.admit($1);
    RETURN coalesce(
        (SELECT m.node FROM cluster.shard_map m WHERE $1 IS NOT NULL AND $1 <> '' AND m.tenant = $1),
        (SELECT m.node FROM cluster.shard_map m
         WHERE $1 IS NOT NULL AND $1 <> ''
           AND m.partition = (hashtext($1) & ((SELECT count(*) FROM cluster.shard_map WHERE partition IS NOT NULL)::integer - 1))),
        (SELECT n.node FROM cluster.nodes n WHERE n.home AND ($1 IS NULL OR $1 = '')));
END
$$;

-- RUN ON: the PL/Proxy partition of the tenant's node.
CREATE FUNCTION cluster.partition_for(tenant text)
RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    target text := cluster.node_of($1);
    result integer;
BEGIN
    SELECT p.part INTO result FROM cluster.node_partitions() p WHERE p.node = target;
    IF result IS NULL THEN
        RAISE EXCEPTION 'no node for tenant "%"', left(coalesce($1, '(none)'), 32)
            USING ERRCODE = '55000',
                  DETAIL = jsonb_build_object('code', 'not_available', 'object', 'cluster.shard_map',
                                              'tenant', left($1, 32))::text,
                  HINT = 'The shard map needs hash partitions (tenants) and a home node (untenanted subjects): see docs/scale-out.md.';
    END IF;
    RETURN result;
END
$$;

-- For an application that needs atomicity with its own tables: the node to connect to
-- for this tenant (add your own user). Checks the caller's bindings like a routed call.
CREATE FUNCTION cluster.node_for(tenant text)
RETURNS TABLE(node text, connstr text)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT n.node, n.connstr FROM cluster.nodes n WHERE n.node = cluster.node_of($1);
END
$$;

-- Explicit placement: the tenant lives on that node from the next call on. Moving a tenant's
-- state is the tenant move's business (docs/scale-out.md, "Moving a tenant"): this only
-- flips the map.
CREATE FUNCTION cluster.place_tenant(tenant text, node text)
RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
    IF $1 IS NULL OR $1 = '' OR $2 IS NULL THEN
        RAISE EXCEPTION 'place_tenant needs a tenant and a node' USING ERRCODE = '22004',
            DETAIL = jsonb_build_object('code', 'null_argument', 'argument', CASE WHEN $2 IS NULL THEN 'node' ELSE 'tenant' END)::text,
            HINT = 'Untenanted subjects live on the home node (cluster.nodes.home).';
    END IF;
    IF NOT EXISTS (SELECT FROM cluster.nodes n WHERE n.node = $2) THEN
        RAISE EXCEPTION 'unknown node "%"', left($2, 32) USING ERRCODE = '22023',
            DETAIL = jsonb_build_object('code', 'invalid_argument', 'argument', 'node', 'value', left($2, 32))::text,
            HINT = 'Nodes are listed in cluster.nodes.';
    END IF;
    INSERT INTO cluster.shard_map (tenant, node) VALUES ($1, $2)
    ON CONFLICT (tenant) DO UPDATE SET node = EXCLUDED.node;
END
$$;

-- The caller may act for this tenant: the router's own tenant bindings, checked the way a
-- node checks them (quota.tenant_visible under quota.tenant = tenant raises the node's
-- 42501 for a bound role naming another tenant). A bound role must name a tenant: with
-- none it would see untenanted subjects on the home node, which it cannot on a node.
CREATE FUNCTION cluster.admit(tenant text)
RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    previous text := current_setting('quota.tenant', true);
    visible boolean;
BEGIN
    PERFORM set_config('quota.tenant', coalesce($1, ''), true);
    visible := quota.tenant_visible(nullif($1, ''));
    PERFORM set_config('quota.tenant', coalesce(previous, ''), true);
    IF NOT visible THEN
        IF $1 IS NULL OR $1 = '' THEN
            RAISE EXCEPTION 'this session''s role is bound to tenants: a call through the router must name one'
                USING ERRCODE = '42501',
                      DETAIL = jsonb_build_object('code', 'forbidden', 'object', 'tenant', 'value', NULL)::text,
                      HINT = 'Pass one of the role''s tenants (see quota.tenant_bindings on the router) as the first argument.';
        END IF;
        RAISE EXCEPTION 'this session''s role may not act for tenant "%"', left($1, 32)
            USING ERRCODE = '42501',
                  DETAIL = jsonb_build_object('code', 'forbidden', 'object', 'tenant ' || left($1, 32))::text,
                  HINT = 'Name a tenant bound to this role (see quota.tenant_bindings), or ask an administrator to bind it with cluster.bind_tenant.';
    END IF;
END
$$;

-- CLUSTER: checks the caller (cluster.admit), then picks the role the call runs as on the
-- node: the administrator for superusers and members of quota_admin, else the application
-- role.
CREATE FUNCTION cluster.cluster_for(tenant text)
RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
    PERFORM cluster.admit($1);
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) OR pg_has_role(current_user, 'quota_admin', 'MEMBER') THEN
        RETURN 'quota_admin';
    END IF;
    RETURN 'quota';
END
$$;

-- PL/Proxy's prefixes off a remote error's message ("cluster_proxy.f(3): [n1] REMOTE ERROR: ",
-- "PL/Proxy function cluster_proxy.f(1): [quota] "), DETAIL ("Remote detail: ") and HINT
-- ("Remote hint: ").
CREATE FUNCTION cluster.strip_remote(message text)
RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT regexp_replace(regexp_replace($1, '^(PL/Proxy function )?[a-z_.]+\(\d+\): \[[^]]*\] (REMOTE [A-Z]+: )?', ''),
                          '^Remote (detail|hint|context): ', '')
$$;

-- PL/Proxy reports a node it cannot reach as XX000 ("PQconnectPoll: ...", "could not
-- connect"...): that is 08006 (connection_failure) here, not an internal error.
CREATE FUNCTION cluster.remote_state(state text, message text)
RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    -- Every error PL/Proxy raises itself (XX000, not a node's REMOTE ERROR): a connection
    -- refused or lost, a query timeout, a lost or unfinished result. The call may have run
    -- on the node (in doubt), so it is retried like a lost connection, never passed on as
    -- an internal error.
    SELECT CASE WHEN $1 = 'XX000' AND $2 ~ '^PL/Proxy function ' AND $2 !~ 'REMOTE ERROR'
                THEN '08006' ELSE $1 END
$$;

-- Raise a node's error again as the node raised it. A node that could not be reached
-- (node: the one the call was for, when known) is 08006 with a JSON DETAIL and a HINT.
CREATE FUNCTION cluster.reraise(state text, message text, detail text, hint text, node text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    m text := cluster.strip_remote(message);
    d text := nullif(cluster.strip_remote(detail), '');
    h text := nullif(cluster.strip_remote(hint), '');
    s text := cluster.remote_state(state, message);
BEGIN
    IF s = '08006' AND state = 'XX000' THEN
        RAISE EXCEPTION 'node % of the cluster is unavailable: %', coalesce(node, '(unknown)'), left(m, 200)
            USING ERRCODE = '08006',
                  DETAIL = jsonb_build_object('code', 'node_unavailable', 'node', node, 'message', m)::text,
                  HINT = 'Retry the call when the node is back (a call in doubt is safe to retry with the same idempotency key); cluster.nodes lists the nodes.';
    ELSIF d IS NOT NULL AND h IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = s, MESSAGE = m, DETAIL = d, HINT = h;
    ELSIF d IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = s, MESSAGE = m, DETAIL = d;
    ELSIF h IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = s, MESSAGE = m, HINT = h;
    ELSE
        RAISE EXCEPTION USING ERRCODE = s, MESSAGE = m;
    END IF;
END
$$;

-- After a configuration call went to every node: nothing when all applied it; else QT207
-- (applied on some nodes only), DETAIL {"code": "partially_applied", "function", "applied":
-- [nodes], "failed": [{node, sqlstate, message}]}. The router's own change rolls back with
-- the error; the nodes in "applied" keep theirs (cluster.config_drift shows them).
CREATE FUNCTION cluster.fan_out_done(func text, applied text[], failed jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
    IF jsonb_array_length(failed) = 0 THEN
        RETURN;
    END IF;
    RAISE EXCEPTION '% failed on % of % nodes (%); applied on: %', func, jsonb_array_length(failed),
                    jsonb_array_length(failed) + coalesce(array_length(applied, 1), 0),
                    (SELECT string_agg(f->>'node', ', ') FROM jsonb_array_elements(failed) f),
                    coalesce(nullif(array_to_string(applied, ', '), ''), 'none')
        USING ERRCODE = 'QT207',
              DETAIL = jsonb_build_object('code', 'partially_applied', 'function', func,
                                          'applied', to_jsonb(applied), 'failed', failed)::text,
              HINT = 'The router kept its old configuration; the nodes in "applied" have the change. '
                     'Retry the call once the failed nodes are back, or bring each node in line with '
                     'SELECT cluster.repair_config(node) (SELECT * FROM cluster.config_drift() shows the differences).';
END
$$;

-- One node's configuration snapshot, and applying the router's to a node.
CREATE FUNCTION cluster_proxy.config_snapshot(part integer)
RETURNS TABLE(kind text, key text, value jsonb)
LANGUAGE plproxy AS $$
    CLUSTER 'quota_admin';
    RUN ON part;
    SELECT kind, key, value FROM quota_node.config_snapshot();
$$;
CREATE FUNCTION cluster_proxy.config_apply(part integer, snapshot jsonb)
RETURNS integer
LANGUAGE plproxy AS $$
    CLUSTER 'quota_admin';
    RUN ON part;
    SELECT quota_node.config_apply(snapshot) AS config_apply;
$$;

-- Every difference between the router's configuration and each node's: one row per item
-- that differs (router_value or node_value NULL: missing there). A node that cannot be
-- reached gives one row of kind 'node' with the error as node_value.
CREATE FUNCTION cluster.config_drift()
RETURNS TABLE(node text, kind text, key text, router_value jsonb, node_value jsonb)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    n record;
    e_state text; e_message text;
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS pg_temp.router_config (kind text, key text, value jsonb) ON COMMIT DROP;
    TRUNCATE pg_temp.router_config;
    INSERT INTO pg_temp.router_config SELECT * FROM quota_node.config_snapshot();
    FOR n IN SELECT * FROM cluster.node_partitions() LOOP
        BEGIN
            RETURN QUERY
                SELECT n.node, coalesce(r.kind, x.kind), coalesce(r.key, x.key), r.value, x.value
                FROM pg_temp.router_config r
                FULL JOIN cluster_proxy.config_snapshot(n.part) x ON x.kind = r.kind AND x.key = r.key
                WHERE r.value IS DISTINCT FROM x.value
                ORDER BY coalesce(r.kind, x.kind), coalesce(r.key, x.key) COLLATE "C";
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_message = MESSAGE_TEXT;
            node := n.node; kind := 'node'; key := 'reachable'; router_value := 'true';
            node_value := jsonb_build_object('sqlstate', cluster.remote_state(e_state, e_message),
                                             'message', cluster.strip_remote(e_message));
            RETURN NEXT;
        END;
    END LOOP;
END
$$;

-- Bring one node's configuration in line with the router's, in one transaction on the
-- node. Returns the number of items it added, changed or removed.
CREATE FUNCTION cluster.repair_config(node text)
RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    part integer;
    e_state text; e_message text; e_detail text; e_hint text;
BEGIN
    SELECT p.part INTO part FROM cluster.node_partitions() p WHERE p.node = $1;
    IF part IS NULL THEN
        RAISE EXCEPTION 'unknown node "%"', left($1, 32) USING ERRCODE = '22023',
            DETAIL = jsonb_build_object('code', 'invalid_argument', 'argument', 'node', 'value', left($1, 32))::text,
            HINT = 'Nodes are listed in cluster.nodes.';
    END IF;
    BEGIN
        RETURN cluster_proxy.config_apply(part, (SELECT coalesce(jsonb_agg(to_jsonb(s)), '[]') FROM quota_node.config_snapshot() s));
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_message = MESSAGE_TEXT,
                                e_detail = PG_EXCEPTION_DETAIL, e_hint = PG_EXCEPTION_HINT;
        PERFORM cluster.reraise(e_state, e_message, e_detail, e_hint);
    END;
END
$$;

-- PL/Proxy's configuration, from the tables above.
CREATE SCHEMA plproxy;
REVOKE ALL ON SCHEMA plproxy FROM PUBLIC;
GRANT USAGE ON SCHEMA plproxy TO quota_reader, quota_app, quota_admin;

CREATE FUNCTION plproxy.get_cluster_version(cluster_name text)
RETURNS integer
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT version::integer FROM cluster.map_version
$$;

CREATE FUNCTION plproxy.get_cluster_partitions(cluster_name text)
RETURNS SETOF text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    role_name text;
    conns text[];
    size integer := 1;
BEGIN
    SELECT r.node_role INTO role_name FROM cluster.proxy_roles r WHERE r.cluster_name = $1;
    IF role_name IS NULL THEN
        RAISE EXCEPTION 'unknown PL/Proxy cluster "%"', left($1, 32) USING ERRCODE = '22023';
    END IF;
    conns := ARRAY(SELECT n.connstr || ' user=' || role_name FROM cluster.nodes n ORDER BY n.node COLLATE "C");
    WHILE size < coalesce(array_length(conns, 1), 1) LOOP
        size := size * 2;
    END LOOP;
    FOR i IN 1..size LOOP
        RETURN NEXT conns[CASE WHEN i <= array_length(conns, 1) THEN i ELSE 1 END];
    END LOOP;
END
$$;

CREATE FUNCTION plproxy.get_cluster_config(IN cluster_name text, OUT key text, OUT val text)
RETURNS SETOF record
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    -- A call waits at most this long for a node (seconds); a connection lives an hour.
    VALUES ('query_timeout', '60'), ('connection_lifetime', '3600')
$$;

-- Who may call what: the nodes are read by every quota role (the connection strings hold
-- no password), the map (it names tenants) by administrators, both written by them; the routing functions are called by the
-- wrappers in the caller's name.
GRANT SELECT ON cluster.nodes, cluster.proxy_roles, cluster.map_version TO quota_reader, quota_app, quota_admin;
GRANT SELECT ON cluster.shard_map TO quota_admin;
-- The nodes' connection strings are the owner's to change: the router connects to them
-- with its roles' credentials, so whoever edits them chooses where those go.
GRANT INSERT, UPDATE, DELETE ON cluster.shard_map, cluster.moves TO quota_admin;
GRANT SELECT ON cluster.moves TO quota_admin;
GRANT UPDATE ON cluster.map_version TO quota_admin;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA cluster, cluster_proxy, plproxy FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cluster.node_partitions(), cluster.node_of(text), cluster.partition_for(text),
    cluster.node_for(text), cluster.admit(text), cluster.cluster_for(text), cluster.strip_remote(text),
    cluster.reraise(text, text, text, text, text), cluster.remote_state(text, text), plproxy.get_cluster_version(text),
    plproxy.get_cluster_partitions(text), plproxy.get_cluster_config(text)
    TO quota_reader, quota_app, quota_admin;
GRANT EXECUTE ON FUNCTION cluster.place_tenant(text, text), cluster.fan_out_done(text, text[], jsonb),
    cluster.config_drift(), cluster.repair_config(text), cluster_proxy.config_snapshot(integer),
    cluster_proxy.config_apply(integer, jsonb), cluster.map_changed()
    TO quota_admin;
