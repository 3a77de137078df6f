-- Ledger retention: quota.compact_ledger rolls old events up into quota.usage_summaries
-- and removes them. Counters stay provable (quota.ledger_check stays empty), and the
-- ledger still refuses every ordinary UPDATE, DELETE and TRUNCATE.
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SELECT 'ok' AS ok FROM quota.set_limit('KEEP', 'kp_msgs', 'month', 100);
SELECT 'ok' AS ok FROM quota.set_bonus_rule('KEEP', 'kp_msgs', 'referral', 5, 'none');
SELECT 'ok' AS ok FROM quota.assign_plan('kp-1', 'KEEP');

SET quota.clock_override = '2026-09-10 12:00:00+00';
SELECT used FROM quota.quota_consume('kp-1', 'kp_msgs', 10);
SELECT used FROM quota.quota_refund('kp-1', 'kp_msgs', 3);
SET quota.clock_override = '2026-10-05 12:00:00+00';
SELECT used FROM quota.quota_consume('kp-1', 'kp_msgs', 4);
SELECT applied FROM quota.apply_bonus('kp-1', 'kp_msgs', 'referral');
SELECT used FROM quota.quota_reset('kp-1', 'kp_msgs') AS used;
SELECT used FROM quota.quota_consume('kp-1', 'kp_msgs', 2);
SET quota.clock_override = '2026-11-02 12:00:00+00';
SELECT used FROM quota.quota_consume('kp-1', 'kp_msgs', 1);
SET quota.clock_override = '2026-11-23 12:00:00+00';
SELECT used FROM quota.quota_consume('kp-1', 'kp_msgs', 6);

SELECT count(*) AS mismatches_before FROM quota.ledger_check;
SELECT count(*) AS events_before FROM quota.usage_events WHERE subject = 'kp-1';

-- Arguments.
SELECT code, message FROM try($$ SELECT quota.compact_ledger('-1 day') $$);
SELECT code, message FROM try($$ SELECT quota.compact_ledger(NULL) $$);

-- Everything older than 20 days (before 2026-11-03) goes into the summaries, also the
-- first event of the current window.
SELECT quota.compact_ledger('20 days') >= 7 AS compacted;
SELECT kind, window_start, amount, overage, events, first_at, last_at
FROM quota.usage_summaries WHERE subject = 'kp-1' ORDER BY window_start, kind;
SELECT kind, amount, created_at FROM quota.usage_events WHERE subject = 'kp-1' ORDER BY id;
SELECT count(*) AS mismatches_after FROM quota.ledger_check;
-- Compacting again finds nothing new; the summaries do not double.
SELECT quota.compact_ledger('20 days') AS compacted_again;
SELECT sum(amount) AS consumed_in_summaries FROM quota.usage_summaries WHERE subject = 'kp-1' AND kind = 'consume';
-- The running balance of the remaining events starts from the summaries.
SELECT kind, used_after FROM quota.subject_ledger WHERE subject = 'kp-1' ORDER BY id;

-- A counter that disagrees is reported.
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE quota.counters SET used = used + 1 WHERE subject = 'kp-1' AND window_start = '2026-10-01 00:00:00+00';
SELECT subject, metric, window_start, counter_used, ledger_used FROM quota.ledger_check;
ROLLBACK;

-- The guard is as strict as before.
SELECT code, message FROM try($$ UPDATE quota.usage_events SET amount = 0 $$);
SELECT code, message FROM try($$ DELETE FROM quota.usage_events WHERE subject = 'kp-1' $$);
SELECT code, message FROM try($$ TRUNCATE quota.usage_events $$);
-- A cutoff before the start of time is PostgreSQL's own range error.
SELECT code FROM try($$ SELECT quota.compact_ledger('300000 years') $$);
