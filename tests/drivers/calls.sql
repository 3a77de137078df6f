-- Every positional call a driver can send to a quota function with untyped parameters:
-- one row per function name and argument count (from pronargs - pronargdefaults to
-- pronargs, over all overloads), read from pg_proc so that functions added later are
-- covered without editing the drivers' tests. Trigger functions and functions taking
-- `internal` are not callable from SQL and are left out. Every schema of the extension
-- (quota, and the node entry points in quota_node since 0.9.0), each call schema-qualified.
-- Columns: call (the statement, parameters $1..$n), args (n).
WITH fns AS (
  SELECT p.oid, p.pronamespace::regnamespace::text AS nsp, p.proname, p.prokind, p.pronargs, p.pronargdefaults
  FROM pg_proc p
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'quota_ext'
  WHERE p.prokind IN ('f', 'p')
    AND p.prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype, 'internal'::regtype)
    AND NOT ('internal'::regtype = ANY (p.proargtypes::oid[]))
), calls AS (
  SELECT DISTINCT f.nsp, f.proname, f.prokind, n
  FROM fns f, generate_series((f.pronargs - f.pronargdefaults)::int, f.pronargs::int) AS n
)
SELECT CASE prokind WHEN 'p' THEN 'CALL ' ELSE 'SELECT * FROM ' END
       || nsp || '.' || quote_ident(proname)
       || '(' || coalesce((SELECT string_agg('$' || i, ', ' ORDER BY i) FROM generate_series(1, n) i), '') || ')' AS call,
       n AS args
FROM calls
ORDER BY nsp, proname, n;
