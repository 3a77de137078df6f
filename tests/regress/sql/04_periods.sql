-- Windows: day, week, month, billing_cycle and lifetime, in the subject's time zone,
-- crossed with quota.clock_override.
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET quota.clock_override = '2026-11-23 12:00:00+00';
SELECT 'ok' AS ok FROM quota.set_limit('CAL', 'd', 'day', 10);
SELECT 'ok' AS ok FROM quota.set_limit('CAL', 'w', 'week', 10);
SELECT 'ok' AS ok FROM quota.set_limit('CAL', 'm', 'month', 10);
SELECT 'ok' AS ok FROM quota.set_limit('CAL', 'b', 'billing_cycle', 10);
SELECT 'ok' AS ok FROM quota.set_limit('CAL', 'l', 'lifetime', 10);
SELECT 'ok' AS ok FROM quota.assign_plan('ny', 'CAL', time_zone => 'America/New_York', cycle_anchor => '2026-01-31 15:00:00+00');
SELECT 'ok' AS ok FROM quota.assign_plan('paris', 'CAL', time_zone => 'Europe/Paris');

SET TimeZone = 'UTC';
SET quota.clock_override = '2026-02-15 12:00:00+00';
SELECT metric, period, reset_at FROM quota.quota_status('ny') ORDER BY metric;

-- Billing cycles anchored on Jan 31 clamp to Feb 28, then return to Mar 31.
SET quota.clock_override = '2026-03-01 12:00:00+00';
SELECT reset_at AS cycle_end FROM quota.quota_check('ny', 'b');
SET quota.clock_override = '2026-04-01 12:00:00+00';
SELECT reset_at AS cycle_end FROM quota.quota_check('ny', 'b');

-- DST in New York (2026-03-08): that day is 23 hours long.
SET quota.clock_override = '2026-03-08 12:00:00+00';
SELECT reset_at, reset_at - '2026-03-08 05:00:00+00'::timestamptz AS day_length FROM quota.quota_check('ny', 'd');
-- DST in Paris (2026-10-25): that day is 25 hours long.
SET quota.clock_override = '2026-10-25 12:00:00+00';
SELECT reset_at, reset_at - '2026-10-24 22:00:00+00'::timestamptz AS day_length FROM quota.quota_check('paris', 'd');

-- Crossing midnight in the subject's zone starts a new window, with no reset job.
SET quota.clock_override = '2026-11-24 04:59:59+00';   -- 23:59:59 in New York
SELECT used FROM quota.quota_consume('ny', 'd', 10);
SELECT * FROM try($$ SELECT quota.quota_consume('ny', 'd') $$);
SET quota.clock_override = '2026-11-24 05:00:00+00';   -- midnight in New York
SELECT used, remaining FROM quota.quota_consume('ny', 'd');
SELECT window_start, window_end, used FROM quota.counters WHERE subject = 'ny' AND metric = 'd' ORDER BY window_start;

-- A lifetime window never resets; its reset_at is NULL, and so is the DETAIL's.
SELECT used, reset_at IS NULL AS never_resets FROM quota.quota_consume('ny', 'l', 10);
SET quota.clock_override = '2030-01-01 00:00:00+00';
SELECT * FROM try($$ SELECT quota.quota_consume('ny', 'l') $$);
SELECT window_start, window_end FROM quota.counters WHERE subject = 'ny' AND metric = 'l';

-- A plan change mid-window keeps the usage and applies the new limit at once.
SET quota.clock_override = '2026-12-01 12:00:00+00';
SELECT 'ok' AS ok FROM quota.set_limit('SMALL', 'd', 'day', 3);
SELECT used FROM quota.quota_consume('paris', 'd', 3);
SELECT 'ok' AS ok FROM quota.assign_plan('paris', 'SMALL');
SELECT used, limit_value, remaining, allowed FROM quota.quota_check('paris', 'd');
SELECT 'ok' AS ok FROM quota.set_limit('SMALL', 'd', 'day', 2);
SELECT used, limit_value, remaining, allowed FROM quota.quota_check('paris', 'd', 0);
SELECT 'ok' AS ok FROM quota.assign_plan('paris', 'CAL');
SELECT used, limit_value, remaining FROM quota.quota_consume('paris', 'd');

-- The override is checked at SET time, and only superusers may set or read it.
SELECT * FROM try($$ SET quota.clock_override = 'not a time' $$);
SELECT * FROM try($$ SET quota.clock_override = 'infinity' $$);
SET quota.clock_override = '';
SELECT reset_at > now() AS uses_now FROM quota.quota_check('paris', 'd');
CREATE ROLE quota_regress_nobody;
SET ROLE quota_regress_nobody;
SELECT * FROM try($$ SET quota.clock_override = '2026-01-01 00:00:00+00' $$);
SELECT * FROM try($$ SHOW quota.clock_override $$);
RESET ROLE;
DROP ROLE quota_regress_nobody;
SET quota.clock_override = '2026-11-23 12:00:00+00';
