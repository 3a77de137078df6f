-- quota.stats (shared memory): consumed counts at commit, refusals count even when their
-- transaction rolls back; the admin views. The test cluster preloads quota_ext.
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET quota.clock_override = '2026-11-23 12:00:00+00';
SELECT quota.stats_reset();
SELECT count(*) AS metrics_after_reset FROM quota.stats WHERE consumed_total + exceeded_total + checks_total > 0;

SELECT 'ok' AS ok FROM quota.set_limit('STATS', 'st_msgs', 'day', 3);
SELECT 'ok' AS ok FROM quota.set_limit('STATS', 'st_imgs', 'day', 2, 'soft');
SELECT 'ok' AS ok FROM quota.set_limit('STATS', 'st_tokens', 'day', 100, per_request_max => 50);
SELECT 'ok' AS ok FROM quota.set_bonus_rule('STATS', 'st_msgs', 'questionnaire', 2, 'subject');
SELECT 'ok' AS ok FROM quota.assign_plan('st-a', 'STATS');
SELECT 'ok' AS ok FROM quota.assign_plan('st-b', 'STATS');

-- Committed: 2 + 1 messages, 3 images (one past the soft limit), 1 refund of 1.
SELECT used FROM quota.quota_consume('st-a', 'st_msgs', 2);
SELECT used FROM quota.quota_consume('st-b', 'st_msgs');
SELECT used FROM quota.quota_consume('st-a', 'st_imgs', 3);
SELECT used FROM quota.quota_refund('st-a', 'st_msgs', 1);
-- Rolled back: a consume and a refusal. The consume is not counted, the refusal is.
BEGIN;
SELECT used FROM quota.quota_consume('st-b', 'st_msgs', 2);
SELECT code FROM try($$ SELECT quota.quota_consume('st-b', 'st_msgs', 5) $$);
ROLLBACK;
-- A savepoint rolled back drops its consume; the outer one commits.
BEGIN;
SELECT used FROM quota.quota_consume('st-b', 'st_tokens', 10);
SAVEPOINT s;
SELECT used FROM quota.quota_consume('st-b', 'st_tokens', 20);
ROLLBACK TO SAVEPOINT s;
COMMIT;
-- Refusals: over the hard limit (raised), over the per-request cap, and an answered one.
SELECT code FROM try($$ SELECT quota.quota_consume('st-a', 'st_msgs', 3) $$);
SELECT code FROM try($$ SELECT quota.quota_consume('st-a', 'st_tokens', 60) $$);
SELECT allowed FROM quota.quota_try_consume('st-b', 'st_msgs', 9);
SELECT allowed FROM quota.quota_check('st-a', 'st_msgs');
SELECT applied FROM quota.apply_bonus('st-a', 'st_msgs', 'questionnaire', 'form-1');

SELECT * FROM quota.stats WHERE metric LIKE 'st\_%' ORDER BY metric;
-- The ledger agrees with consumed_total - refunded_total for messages (2 + 1 - 1).
SELECT sum(quota.used_change(kind, amount)) AS ledger_messages FROM quota.usage_events WHERE metric = 'st_msgs';

-- Who was refused or went over today (refusals of rolled-back transactions included).
SELECT subject, metric, what, amount, used, limit_value, overage
FROM quota.over_limit_today WHERE metric LIKE 'st\_%' ORDER BY at, subject, what, amount;
SELECT subject, metric, requested, reason FROM quota.recent_refusals() WHERE metric LIKE 'st\_%' ORDER BY refused_at, subject, requested;

-- Usage overview, top consumers, a subject's ledger.
SELECT subject, metric, period, used, limit_value, bonus, effective_limit, remaining, percent, reset_at
FROM quota.usage_overview WHERE subject LIKE 'st-%' ORDER BY subject, metric;
SELECT metric, rank, subject, used, percent FROM quota.top_consumers
WHERE current AND metric LIKE 'st\_%' ORDER BY metric, rank, subject;
SELECT kind, metric, amount, used_change, used_after, overage FROM quota.subject_ledger WHERE subject = 'st-a' ORDER BY id;

SELECT quota.stats_reset();
SELECT consumed_total, exceeded_total FROM quota.stats WHERE metric = 'st_msgs';
