-- IP-address subjects (seed 002): inet overloads store host(inet) as the subject id.
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET quota.clock_override = '2026-11-23 12:00:00+00';
SET quota.default_plan = 'ANON';
SELECT subject, used, remaining FROM quota.quota_consume('192.168.1.10'::inet, 'uses');
SELECT subject, used, remaining FROM quota.quota_consume('192.168.1.10/32'::inet, 'uses');
SELECT subject, used FROM quota.quota_check('::ffff:10.0.0.1'::inet, 'uses');
SELECT subject, used FROM quota.quota_consume('2001:db8::0:1'::inet, 'uses');
SELECT applied, new_limit FROM quota.apply_bonus('192.168.1.10'::inet, 'uses', 'questionnaire', 'q-1');
SELECT used, remaining FROM quota.quota_refund('192.168.1.10'::inet, 'uses', 1);
SELECT metric, used, remaining FROM quota.quota_status('192.168.1.10'::inet);
SELECT allowed FROM quota.quota_try_consume('192.168.1.10'::inet, 'uses', 100);
SELECT subject FROM quota.subjects WHERE plan = 'ANON' AND (subject LIKE '%:%' OR subject LIKE '192.%') ORDER BY 1;
-- A malformed address fails in PostgreSQL's own inet cast.
SELECT * FROM try($$ SELECT quota.quota_consume('999.1.1.1'::inet, 'uses') $$);
SELECT * FROM try($$ SELECT quota.quota_consume('not-an-ip'::inet, 'uses') $$);
RESET quota.default_plan;
