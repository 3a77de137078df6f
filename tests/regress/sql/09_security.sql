-- Roles and privileges: nothing for PUBLIC, each role its functions, SECURITY DEFINER
-- functions with a pinned search_path, and a hostile role that plants objects in public
-- and pg_temp and shadows operators, without effect.
SET TimeZone = 'UTC';
SET quota.clock_override = '2026-11-23 12:00:00+00';
DROP ROLE IF EXISTS regress_quota_hostile, regress_quota_app, regress_quota_admin;
CREATE ROLE regress_quota_hostile;
CREATE ROLE regress_quota_app IN ROLE quota_app;
CREATE ROLE regress_quota_admin IN ROLE quota_admin;
GRANT CREATE ON SCHEMA public TO regress_quota_hostile, regress_quota_app;

SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname IN ('quota_admin', 'quota_app', 'quota_reader') ORDER BY 1;
SELECT pg_has_role('quota_admin', 'quota_app', 'MEMBER') AS admin_is_app,
       pg_has_role('quota_admin', 'quota_reader', 'MEMBER') AS admin_is_reader,
       pg_has_role('quota_app', 'quota_reader', 'MEMBER') AS app_is_reader;

-- Nothing in the schema is granted to PUBLIC.
SELECT count(*) AS public_functions FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
WHERE p.pronamespace = 'quota'::regnamespace AND a.grantee = 0;
SELECT count(*) AS public_relations FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
WHERE c.relnamespace = 'quota'::regnamespace AND a.grantee = 0;
SELECT has_schema_privilege('public', 'quota', 'USAGE') AS public_usage;

-- Every function that touches a table is SECURITY DEFINER with the pinned search_path;
-- the others are listed.
SELECT DISTINCT proname FROM pg_proc
WHERE pronamespace = 'quota'::regnamespace
  AND NOT (prosecdef AND proconfig = ARRAY['search_path=pg_catalog, quota, pg_temp'])
ORDER BY 1;

-- Who may call what.
SELECT r AS role, string_agg(DISTINCT p.proname, ', ' ORDER BY p.proname) AS functions
FROM unnest(ARRAY['quota_reader', 'quota_app', 'quota_admin']) r
JOIN pg_proc p ON p.pronamespace = 'quota'::regnamespace AND has_function_privilege(r, p.oid, 'EXECUTE')
GROUP BY r ORDER BY r;

SELECT 'ok' AS ok FROM quota.set_limit('SEC', 'messages', 'day', 3);
SELECT 'ok' AS ok FROM quota.assign_plan('sec-user', 'SEC');

-- A role with no quota role can do nothing.
SET ROLE regress_quota_hostile;
SELECT code, message FROM try($$ SELECT quota.quota_consume('sec-user', 'messages') $$);
SELECT code, message FROM try($$ SELECT * FROM quota.counters $$);
RESET ROLE;

-- quota_app: the app functions, reads under RLS, and no direct writes (42501).
SET ROLE regress_quota_app;
SELECT allowed, used FROM quota.quota_consume('sec-user', 'messages');
SELECT code, message FROM try($$ INSERT INTO quota.counters (subject, metric, window_start, used) VALUES ('sec-user', 'messages', now(), 0) $$);
SELECT code, message FROM try($$ UPDATE quota.counters SET used = 0 $$);
SELECT code, message FROM try($$ DELETE FROM quota.usage_events $$);
SELECT code, message FROM try($$ UPDATE quota.subjects SET plan = 'SEC' $$);
SELECT code, message FROM try($$ INSERT INTO quota.plan_limits VALUES ('SEC', 'x', 'day', 1) $$);
SELECT code, message FROM try($$ SELECT quota.quota_reset('sec-user') $$);
SELECT code, message FROM try($$ SELECT quota.set_limit('SEC', 'messages', 'day', 1000) $$);
SELECT code, message FROM try($$ SELECT quota.assign_plan('sec-user', 'SEC') $$);
SELECT code, message FROM try($$ SELECT quota.compact_ledger('0 days') $$);
SELECT code, message FROM try($$ SELECT quota.stats_reset() $$);
SELECT subject, metric, used FROM quota.counters WHERE subject LIKE 'sec-%';

-- The hostile app plants look-alikes in public and pg_temp and shadows text = text.
-- The quota functions find none of them: their search_path is pg_catalog, quota, pg_temp.
CREATE FUNCTION public.hijacked(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'hijacked: %', $1; END $$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.hijacked);
CREATE OPERATOR public.< (LEFTARG = text, RIGHTARG = text, FUNCTION = public.hijacked);
CREATE FUNCTION public.coalesce_hijack(bigint) RETURNS bigint LANGUAGE sql AS 'SELECT 999';
CREATE FUNCTION public.greatest(bigint, bigint) RETURNS bigint LANGUAGE sql AS 'SELECT 999::bigint';
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT '2000-01-01'::timestamptz $$;
CREATE TABLE public.counters (subject text, metric text, window_start timestamptz, used bigint);
CREATE TEMP TABLE subjects (subject text, plan text, tenant text, cycle_anchor timestamptz, time_zone text);
CREATE TEMP TABLE plan_limits (plan text, metric text, period text, limit_value bigint);
CREATE FUNCTION pg_temp.tenant_visible(text) RETURNS boolean LANGUAGE sql AS 'SELECT true';
SET search_path = pg_temp, public;
SELECT 'sec-user' = 'x' AS shadowed_here;
SELECT allowed, used, remaining FROM quota.quota_consume('sec-user', 'messages');
SELECT allowed, used, remaining FROM quota.quota_check('sec-user', 'messages');
SELECT metric, used FROM quota.quota_status('sec-user');
SELECT allowed, used FROM quota.quota_consume('sec-user', '{"messages": 1}'::jsonb);
SELECT code, message FROM try($$ SELECT quota.quota_consume('sec-user', 'messages') $$);
SELECT quota.ack_events(0) AS acked;
RESET search_path;
DROP OPERATOR public.= (text, text);
DROP OPERATOR public.< (text, text);
RESET ROLE;

-- quota_admin: configuration, resets and bonuses; enforced tables only where it holds
-- the TRIGGER right (the function runs as the owner, so it checks for the caller).
CREATE TABLE public.not_admins (user_id text);
SET ROLE regress_quota_admin;
SELECT 'ok' AS ok FROM quota.set_limit('SEC', 'messages', 'day', 4);
SELECT quota.quota_reset('sec-user') AS windows_reset;
SELECT code, message FROM try($$ SELECT quota.enforce_on_insert('public.not_admins', subject_column => 'user_id', metric => 'messages') $$);
SELECT code, message FROM try($$ SELECT quota.enforce_off('public.not_admins', 'messages') $$);
SELECT code, message FROM try($$ UPDATE quota.counters SET used = 0 $$);
UPDATE quota.plan_limits SET limit_value = 5 WHERE plan = 'SEC' AND metric = 'messages';
RESET ROLE;
GRANT TRIGGER ON public.not_admins TO regress_quota_admin;
SET ROLE regress_quota_admin;
SELECT 'ok' AS enforced FROM quota.enforce_on_insert('public.not_admins', subject_column => 'user_id', metric => 'messages');
RESET ROLE;
-- Any role that may insert into the table is held to the quota by the trigger.
GRANT INSERT ON public.not_admins TO regress_quota_hostile;
SET ROLE regress_quota_hostile;
INSERT INTO public.not_admins SELECT 'sec-user' FROM generate_series(1, 5);
SELECT code, message FROM try($$ INSERT INTO public.not_admins VALUES ('sec-user') $$);
RESET ROLE;
SELECT used FROM quota.quota_check('sec-user', 'messages', 0);

DROP TABLE public.not_admins;
DROP OWNED BY regress_quota_hostile, regress_quota_app, regress_quota_admin;
DROP ROLE regress_quota_hostile, regress_quota_app, regress_quota_admin;
