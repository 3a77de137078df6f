-- Windows that open at first use ('5 hours') and rate limits in plans ('per 1 minute').
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET quota.clock_override = '2026-11-23 12:00:00+00';

-- A first-use window: 100 tokens per 5 hours, beside a calendar week.
SELECT quota.set_limit('FU', 'tokens', '300 min', 100);
SELECT quota.set_limit('FU', 'tokens', 'week', 1000);
SELECT period FROM quota.plan_limits WHERE plan = 'FU' ORDER BY period;
SELECT quota.assign_plan('fu1', 'FU');
-- Nothing is open yet: a check, a status and a refused consume open nothing.
SELECT period, used, remaining, reset_at FROM quota.quota_status('fu1') ORDER BY period;
SELECT allowed, period, used FROM quota.quota_check('fu1', 'tokens', 10);
SELECT allowed, reason, period FROM quota.quota_try_consume('fu1', 'tokens', 150);
SELECT count(*) AS rows FROM quota.counters WHERE subject = 'fu1' AND period = '5 hours';
-- The first consume opens it: it closes exactly 5 hours later.
SET quota.clock_override = '2026-11-23 12:30:00+00';
SELECT allowed, period, used, remaining, reset_at FROM quota.quota_consume('fu1', 'tokens', 60);
SET quota.clock_override = '2026-11-23 16:00:00+00';
SELECT allowed, period, used, remaining, reset_at FROM quota.quota_consume('fu1', 'tokens', 30);
SELECT code, detail::jsonb -> 'period' AS named, detail::jsonb -> 'reset_at' AS reset_at FROM try($$ SELECT quota.quota_consume('fu1', 'tokens', 20) $$);
-- At its close it is over; a check sees none open (reset_at NULL) until the next use.
SET quota.clock_override = '2026-11-23 17:30:00+00';
SELECT period, used, reset_at FROM quota.quota_status('fu1') WHERE period = '5 hours';
SELECT allowed, period, used, reset_at FROM quota.quota_check('fu1', 'tokens', 20);
SET quota.clock_override = '2026-11-23 19:00:00+00';
SELECT allowed, period, used, reset_at FROM quota.quota_consume('fu1', 'tokens', 20);
SELECT period, window_start, window_end, used FROM quota.counters WHERE subject = 'fu1' ORDER BY period, window_start;
-- A refund gives back in the open window; a reset empties it (it stays open).
SELECT period, used FROM quota.quota_refund('fu1', 'tokens', 5);
SELECT quota.quota_reset('fu1', 'tokens') AS emptied;
SELECT period, used, reset_at FROM quota.quota_status('fu1') ORDER BY period;
-- The ledger proves each window; the overview shows when the open window opened.
SELECT count(*) AS mismatches FROM quota.ledger_check;
SELECT metric, period, window_start, reset_at, used FROM quota.usage_overview WHERE subject = 'fu1' ORDER BY period;

-- Two first uses racing open one window: see tests/isolation/specs/first_use.spec.

-- Days, weeks and months are calendar periods: '1 day' is refused with a hint.
SELECT code, message, hint FROM try($$ SELECT quota.set_limit('FU', 'tokens', '1 day', 5) $$);
SELECT code, message FROM try($$ SELECT quota.set_limit('FU', 'tokens', '0 hours', 5) $$);
SELECT code, message FROM try($$ SELECT quota.set_limit('FU', 'tokens', '8785 hours', 5) $$);

-- Rate limits: 30 per minute, burst 15 (redis-cell's example as a plan limit).
SELECT quota.set_rate_limit('RL', 'requests', 30, '1 minute', 15);
SELECT quota.set_limit('RL', 'requests', 'day', 1000);
SELECT period, limit_value, burst, enforcement FROM quota.plan_limits WHERE plan = 'RL' ORDER BY period;
SELECT quota.assign_plan('rl1', 'RL');
-- A fresh key takes 16 at once (burst 15 + 1), then one every 2 seconds.
SELECT allowed, period, used, limit_value, remaining, reset_at FROM quota.quota_consume('rl1', 'requests', 1);
SELECT allowed, period, remaining, reset_at FROM quota.quota_consume('rl1', 'requests', 15);
SELECT code, message, detail::jsonb - 'subject' AS detail, hint FROM try($$ SELECT quota.quota_consume('rl1', 'requests', 1) $$);
-- quota_try_consume answers the refusal; its reset_at is when to retry.
SELECT allowed, reason, period, remaining, reset_at FROM quota.quota_try_consume('rl1', 'requests', 1);
SET quota.clock_override = '2026-11-23 19:00:02+00';
SELECT allowed, period, remaining FROM quota.quota_consume('rl1', 'requests', 1);
SELECT code FROM try($$ SELECT quota.quota_consume('rl1', 'requests', 1) $$);
-- More than the burst ever admits: refused, with no retry time.
SELECT code, detail::jsonb -> 'retry_after' AS retry_after, hint FROM try($$ SELECT quota.quota_consume('rl1', 'requests', 17) $$);
-- The day limit counts every admitted unit; the rate's row keeps the pace (window_end).
SELECT period, window_start, window_end, used FROM quota.counters WHERE subject = 'rl1' ORDER BY period;
SELECT metric, period, kind, amount FROM quota.usage_events WHERE subject = 'rl1' ORDER BY id;
-- set_rate_limit replaces the rate of the same length; bad rates are 22023.
SELECT quota.set_rate_limit('RL', 'requests', 60, '60 seconds');
SELECT period, limit_value, burst FROM quota.plan_limits WHERE plan = 'RL' ORDER BY period;
SELECT code, message FROM try($$ SELECT quota.set_rate_limit('RL', 'requests', 0, '1 minute') $$);
SELECT code, message FROM try($$ SELECT quota.set_rate_limit('RL', 'requests', 10, '1 month') $$);
SELECT code, message FROM try($$ SELECT quota.set_rate_limit('RL', 'requests', 10, '1.5 seconds') $$);
SELECT code, message FROM try($$ SELECT quota.set_rate_limit('RL', 'requests', 10, '1 minute', -1) $$);
SELECT code, message FROM try($$ SELECT quota.set_limit('RL', 'requests', 'per 1 minute', 10) $$);
SELECT count(*) AS mismatches FROM quota.ledger_check;
