-- quota_ext 0.2.0 -> 0.3.0
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
