-- In-place upgrade, as psql users see it: 0.1.0 with data, ALTER EXTENSION ... UPDATE, and
-- the data and behaviour survive (tests/connections/test_upgrade.py also compares the
-- whole catalog with a fresh install). Runs last: it recreates the extension.
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
DROP EXTENSION quota_ext CASCADE;
CREATE EXTENSION quota_ext VERSION '0.1.0';
SET quota.clock_override = '2026-11-23 12:00:00+00';
SELECT 'ok' AS ok FROM quota.set_limit('OLD', 'calls', 'day', 3);
SELECT 'ok' AS ok FROM quota.assign_plan('veteran', 'OLD', tenant => 'old_tenant');
SELECT used FROM quota.quota_consume('veteran', 'calls', 2);
-- 0.1.0 had no roles' grants, no row-level security, a PL/pgSQL ledger guard.
SELECT relrowsecurity FROM pg_class WHERE oid = 'quota.counters'::regclass;
SELECT l.lanname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang WHERE p.oid = 'quota.refuse_ledger_change'::regproc;

ALTER EXTENSION quota_ext UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'quota_ext';
SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'quota.counters'::regclass;
SELECT l.lanname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang WHERE p.oid = 'quota.refuse_ledger_change'::regproc;
SELECT count(*) AS security_definer_functions FROM pg_proc WHERE pronamespace = 'quota'::regnamespace AND prosecdef;

-- Data and behaviour.
SELECT subject, metric, used FROM quota.counters;
SELECT used, remaining FROM quota.quota_consume('veteran', 'calls');
SELECT code, message FROM try($$ SELECT quota.quota_consume('veteran', 'calls') $$);
SELECT code FROM try($$ DELETE FROM quota.usage_events $$);
BEGIN;
SET LOCAL quota.tenant = 'old_tenant';
SELECT subject, metric, used, limit_value FROM quota.usage_overview;
COMMIT;
BEGIN;
SET LOCAL quota.tenant = 'someone_else';
SELECT code FROM try($$ SELECT quota.quota_status('veteran') $$);
COMMIT;
SELECT quota.compact_ledger('0 seconds') AS summarised, (SELECT count(*) FROM quota.ledger_check) AS mismatches;
