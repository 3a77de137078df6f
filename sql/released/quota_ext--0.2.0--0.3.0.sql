-- quota_ext 0.2.0 -> 0.3.0: the hot path (see src/fastpath.rs).
-- The hot path (direct index and heap access) needs no role switch: the C forms of
-- quota_check, quota_consume and quota_try_consume become SECURITY INVOKER and switch to
-- the extension's owner (with search_path pinned) in Rust, for their general path only.
-- See sql/security.sql and src/privilege.rs.
\echo Use "ALTER EXTENSION quota_ext UPDATE TO '0.3.0'" to load this file. \quit

DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_catalog.pg_proc p
             WHERE p.pronamespace = 'quota'::regnamespace
               AND p.proname IN ('quota_check', 'quota_consume', 'quota_try_consume')
               AND p.prolang = (SELECT oid FROM pg_catalog.pg_language WHERE lanname = 'c')
             ORDER BY p.oid
    LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SECURITY INVOKER RESET search_path', f);
    END LOOP;
END
$$;

-- The hot path caches subjects' rows and plan limits per backend; changes invalidate them
-- (sql/hotpath.sql).
CREATE FUNCTION quota."config_changed"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'config_changed_wrapper';
REVOKE ALL ON FUNCTION quota.config_changed() FROM PUBLIC;

CREATE TRIGGER subjects_changed AFTER UPDATE OR DELETE OR TRUNCATE ON quota.subjects
    FOR EACH STATEMENT EXECUTE FUNCTION quota.config_changed();
ALTER TABLE quota.subjects ENABLE ALWAYS TRIGGER subjects_changed;

CREATE TRIGGER plan_limits_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON quota.plan_limits
    FOR EACH STATEMENT EXECUTE FUNCTION quota.config_changed();
ALTER TABLE quota.plan_limits ENABLE ALWAYS TRIGGER plan_limits_changed;
