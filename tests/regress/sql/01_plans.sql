-- Plans, limits and subjects: set_limit, remove_limit, assign_plan and their errors.
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET quota.clock_override = '2026-11-23 12:00:00+00';

SELECT 'ok' AS ok FROM quota.set_limit('FREE', 'messages', 'day', 5);
SELECT 'ok' AS ok FROM quota.set_limit('FREE', 'tokens', 'month', 10000, 'hard', 2000);
SELECT 'ok' AS ok FROM quota.set_limit('PRO', 'messages', 'day', 100, 'soft');
SELECT 'ok' AS ok FROM quota.set_limit('PRO', 'tracked_products', 'lifetime', 3);

SELECT plan, metric, period, limit_value, enforcement, per_request_max FROM quota.plan_limits ORDER BY 1, 2;

-- set_limit replaces the limit of the same plan and metric.
SELECT 'ok' AS replaced FROM quota.set_limit('PRO', 'messages', 'day', 200, 'soft');
SELECT limit_value FROM quota.plan_limits WHERE plan = 'PRO' AND metric = 'messages';

-- assign_plan: new subjects default to UTC and the quota clock; NULL keeps a value.
SELECT 'ok' AS ok FROM quota.assign_plan('alice', 'FREE');
SELECT 'ok' AS ok FROM quota.assign_plan('bob', 'FREE', tenant => 'acme', time_zone => 'Europe/Paris',
                         cycle_anchor => '2026-01-31 10:00:00+00');
SELECT 'ok' AS ok FROM quota.assign_plan('bob', 'PRO');
SELECT subject, plan, tenant, cycle_anchor, time_zone FROM quota.subjects ORDER BY 1;

-- Bad arguments: 22023 for unknown names and bad values, 22004 for NULLs.
SELECT * FROM try($$ SELECT quota.set_limit('FREE', 'messages', 'daily', 5) $$);
SELECT * FROM try($$ SELECT quota.set_limit('FREE', 'messages', 'day', 5, 'strict') $$);
SELECT * FROM try($$ SELECT quota.set_limit('FREE', 'messages', 'day', -1) $$);
SELECT * FROM try($$ SELECT quota.set_limit('FREE', 'messages', 'day', 5, 'hard', 0) $$);
SELECT * FROM try($$ SELECT quota.set_limit('', 'messages', 'day', 5) $$);
SELECT * FROM try($$ SELECT quota.set_limit('FREE', NULL, 'day', 5) $$);
SELECT * FROM try($$ SELECT quota.set_limit('FREE', 'messages', 'day', NULL) $$);
SELECT * FROM try($$ SELECT quota.assign_plan('carol', 'GOLD') $$);
SELECT * FROM try($$ SELECT quota.assign_plan('carol', 'FREE', time_zone => 'Mars/Olympus') $$);
SELECT * FROM try($$ SELECT quota.assign_plan('carol', 'FREE', cycle_anchor => 'infinity') $$);
SELECT * FROM try($$ SELECT quota.assign_plan(NULL::text, 'FREE') $$);
-- Nothing was half-written by the failed calls.
SELECT count(*) AS carol_rows FROM quota.subjects WHERE subject = 'carol';
SELECT count(*) AS plans FROM quota.plans;

-- remove_limit says whether there was one.
SELECT 'ok' AS ok FROM quota.set_limit('TMP', 'x', 'day', 1);
SELECT quota.remove_limit('TMP', 'x') AS removed, quota.remove_limit('TMP', 'x') AS removed_again;
