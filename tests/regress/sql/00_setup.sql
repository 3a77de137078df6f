-- Set-up shared by the contract tests: the extension and a helper that runs a statement
-- and shows the error it raises as one row (SQLSTATE, message, DETAIL, HINT).
CREATE EXTENSION quota_ext;
SET quota.clock_override = '2026-11-23 12:00:00+00';

CREATE FUNCTION public.try(statement text)
RETURNS TABLE (code text, message text, detail text, hint text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE statement;
    RETURN QUERY SELECT 'ok'::text, NULL::text, NULL::text, NULL::text;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
                            detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
END
$$;

SELECT extname, extversion, nspname AS schema, extrelocatable
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE extname = 'quota_ext';
