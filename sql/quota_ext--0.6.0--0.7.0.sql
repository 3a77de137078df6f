-- quota_ext 0.6.0 -> 0.7.0: limits v2 (in progress on branch limits-v2).
-- - quota.throttle(key, max_burst, count, period, quantity): GCRA rate limits on keys with
--   no plan, with redis-cell's CL.THROTTLE semantics; state in quota.throttles.
-- Every upgrade script ends with statements that fire the hot path's invalidation
-- triggers: other backends then drop what they cached and see the new version (see
-- src/pg/installed.rs).
\echo Use "ALTER EXTENSION quota_ext UPDATE TO '0.7.0'" to load this file. \quit

CREATE TABLE quota.throttles (
    tenant text NOT NULL DEFAULT '',
    key    text NOT NULL CHECK (key <> ''),
    tat    timestamptz NOT NULL,
    PRIMARY KEY (tenant, key)
) WITH (fillfactor = 70);
SELECT pg_catalog.pg_extension_config_dump('quota.throttles', '');
REVOKE ALL ON quota.throttles FROM PUBLIC;
GRANT SELECT ON quota.throttles TO quota_reader, quota_app, quota_admin;
ALTER TABLE quota.throttles ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON quota.throttles USING (quota.tenant_visible(NULLIF(tenant, '')));

CREATE FUNCTION quota."throttle"(
	"key" TEXT, /* Option < & str > */
	"max_burst" bigint, /* Option < i64 > */
	"count" bigint, /* Option < i64 > */
	"period" interval, /* Option < Interval > */
	"quantity" bigint DEFAULT 1 /* Option < i64 > */
) RETURNS TABLE (
	"limited" bool,  /* bool */
	"limit" bigint,  /* i64 */
	"remaining" bigint,  /* i64 */
	"retry_after" interval,  /* Option < Interval > */
	"reset_after" interval  /* Interval */
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'throttle_wrapper';
-- It switches to the owner in Rust, like the C forms of consume (not SECURITY DEFINER).
REVOKE ALL ON FUNCTION quota.throttle(text, bigint, bigint, interval, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota.throttle(text, bigint, bigint, interval, bigint) TO quota_app;

-- Drop what every backend cached before this version --------------------------------------
UPDATE quota.subjects SET plan = plan WHERE false;
UPDATE quota.plan_limits SET plan = plan WHERE false;
