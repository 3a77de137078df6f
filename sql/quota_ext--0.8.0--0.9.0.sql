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
        RETURNING 1
    )
    SELECT count(*) INTO acked FROM done;
    RETURN acked;
END
$$;
ALTER FUNCTION quota.ack_events(bigint) SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
-- (end of Tenant pause)

-- Drop what every backend cached before this version --------------------------------------
UPDATE quota.subjects SET plan = plan WHERE false;
UPDATE quota.plan_limits SET plan = plan WHERE false;
