-- quota_check, quota_consume, quota_try_consume, quota_refund, quota_reset.
-- Plans come from 01_plans: FREE has messages 5/day (hard) and tokens 10000/month
-- (hard, at most 2000 per request); PRO has messages 200/day (soft) and
-- tracked_products 3 (lifetime). alice is on FREE, bob on PRO (Europe/Paris).
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET quota.clock_override = '2026-11-23 12:00:00+00';

-- A check writes nothing; used and remaining are the state before the request.
SELECT * FROM quota.quota_check('alice', 'messages', 2);
SELECT count(*) AS counters FROM quota.counters;

-- Five messages fit, the sixth is refused with QT429 and consumes nothing.
SELECT allowed, used, remaining, reason FROM quota.quota_consume('alice', 'messages');
SELECT allowed, used, remaining FROM quota.quota_consume('alice', 'messages', 3);
SELECT allowed, used, remaining, reset_at FROM quota.quota_consume('alice', 'messages');
SELECT * FROM try($$ SELECT quota.quota_consume('alice', 'messages') $$);
SELECT * FROM try($$ SELECT quota.quota_consume('alice', 'messages', 2) $$);
SELECT used FROM quota.counters WHERE subject = 'alice' AND metric = 'messages';
-- The non-raising form answers allowed = false instead.
SELECT allowed, used, remaining, requested, reason FROM quota.quota_try_consume('alice', 'messages');
-- The check agrees: NOT allowed is the seeds' would_exceed.
SELECT NOT allowed AS would_exceed, remaining FROM quota.quota_check('alice', 'messages');
SELECT allowed, reason FROM quota.quota_check('alice', 'messages', 0);

-- Per-request cap: QT413 whatever the remaining quota.
SELECT * FROM try($$ SELECT quota.quota_consume('alice', 'tokens', 2001) $$);
SELECT allowed, reason FROM quota.quota_try_consume('alice', 'tokens', 2001);
SELECT allowed, used, remaining FROM quota.quota_consume('alice', 'tokens', 2000);
SELECT allowed, reason FROM quota.quota_check('alice', 'tokens', 2001);

-- Soft limit: allowed past the limit, overage reported and recorded, remaining >= 0.
SELECT allowed, used, limit_value, remaining, reason FROM quota.quota_consume('bob', 'messages', 150);
SELECT allowed, used, limit_value, remaining, reason FROM quota.quota_consume('bob', 'messages', 70);
SELECT allowed, used, remaining, reason FROM quota.quota_consume('bob', 'messages', 5);
SELECT amount, overage FROM quota.usage_events WHERE subject = 'bob' AND metric = 'messages' ORDER BY id;

-- Several metrics, all or nothing: the ledger and counters move together or not at all.
SELECT 'ok' AS ok FROM quota.set_limit('FREE', 'tokens_day', 'day', 500);
SELECT 'ok' AS ok FROM quota.assign_plan('dave', 'FREE');
SELECT metric, allowed, used, remaining FROM quota.quota_consume('dave', '{"messages": 1, "tokens": 350, "tokens_day": 350}'::jsonb) ORDER BY metric;
SELECT * FROM try($$ SELECT quota.quota_consume('dave', '{"messages": 1, "tokens": 200, "tokens_day": 200}'::jsonb) $$);
SELECT metric, used FROM quota.counters WHERE subject = 'dave' ORDER BY metric;
SELECT metric, allowed, used, reason FROM quota.quota_try_consume('dave', '{"messages": 1, "tokens": 200, "tokens_day": 200}'::jsonb) ORDER BY metric;
SELECT * FROM try($$ SELECT quota.quota_consume('dave', '{"messages": 1, "tokens": 2500}'::jsonb) $$);
SELECT metric, allowed, remaining FROM quota.quota_check('dave', '{"messages": 1, "tokens_day": 151}'::jsonb) ORDER BY metric;

-- Idempotency keys are per subject; a retry returns the first decision and consumes nothing.
SELECT allowed, used, reason FROM quota.quota_consume('dave', 'messages', 1, 'req-1');
SELECT allowed, used, reason FROM quota.quota_consume('dave', 'messages', 1, 'req-1');
SELECT used FROM quota.counters WHERE subject = 'dave' AND metric = 'messages';
SELECT count(*) AS ledger_rows FROM quota.usage_events WHERE subject = 'dave' AND idempotency_key = 'req-1';
-- The same key for another metric is a different request: 22023, nothing consumed.
SELECT * FROM try($$ SELECT quota.quota_consume('dave', 'tokens', 1, 'req-1') $$);
-- The same key for another subject is independent.
SELECT allowed, used, reason FROM quota.quota_consume('bob', 'messages', 1, 'req-1');
-- A refusal is not remembered: a retry is evaluated again.
SELECT 'ok' AS ok FROM quota.assign_plan('erin', 'FREE');
SELECT allowed, used FROM quota.quota_consume('erin', 'messages', 5);
SELECT * FROM try($$ SELECT quota.quota_consume('erin', 'messages', 1, 'retry-me') $$);
SELECT quota_refund IS NOT NULL AS refunded FROM quota.quota_refund('erin', 'messages', 2);
SELECT allowed, used, reason FROM quota.quota_consume('erin', 'messages', 1, 'retry-me');
SELECT * FROM try($$ SELECT quota.quota_refund('erin', 'messages', 1, 'retry-me') $$);

-- Metadata is stored exactly as given.
SELECT (quota.quota_consume('bob', 'messages', 1, NULL, '{"model": "gpt-4o", "price": 1.00000000000000000001, "big": 123456789012345678901234567890}')).allowed;
SELECT metadata FROM quota.usage_events WHERE subject = 'bob' AND metadata IS NOT NULL;

-- Refund gives usage back, never below zero, and records what was really given back.
SELECT used, remaining FROM quota.quota_refund('alice', 'messages', 2);
SELECT used, remaining FROM quota.quota_refund('alice', 'messages', 100);
SELECT kind, amount FROM quota.usage_events WHERE subject = 'alice' AND kind = 'refund' ORDER BY id;
SELECT used, reason FROM quota.quota_refund('alice', 'tokens', 500, 'refund-1');
SELECT used, reason FROM quota.quota_refund('alice', 'tokens', 500, 'refund-1');

-- Reset empties the current windows (and says how many); bonuses stay.
SELECT quota.quota_reset('dave', 'messages') AS emptied;
SELECT quota.quota_reset('dave') AS emptied;
SELECT quota.quota_reset('dave') AS emptied_again;
SELECT metric, used FROM quota.counters WHERE subject = 'dave' ORDER BY metric;
SELECT kind, metric, amount FROM quota.usage_events WHERE subject = 'dave' AND kind = 'reset' ORDER BY id;

-- Unknown subjects: QT404 without a default plan; with one, consume creates the subject
-- and check/status evaluate it without writing.
SELECT * FROM try($$ SELECT quota.quota_consume('zoe', 'messages') $$);
SELECT * FROM try($$ SELECT quota.quota_status('zoe') $$);
SELECT * FROM try($$ SELECT quota.quota_reset('zoe') $$);
SET quota.default_plan = 'FREE';
SELECT allowed, used, remaining FROM quota.quota_check('zoe', 'messages');
SELECT metric, used, remaining FROM quota.quota_status('zoe') ORDER BY metric;
SELECT quota.quota_reset('zoe') AS emptied;
SELECT count(*) AS zoe_rows FROM quota.subjects WHERE subject = 'zoe';
SELECT allowed, used FROM quota.quota_consume('zoe', 'messages');
SELECT subject, plan, time_zone, cycle_anchor FROM quota.subjects WHERE subject = 'zoe';
SET quota.default_plan = 'NOPE';
SELECT * FROM try($$ SELECT quota.quota_consume('yann', 'messages') $$);
RESET quota.default_plan;

-- Argument errors: unknown metric, bad amounts, NULLs, bad jsonb. Never XX000.
SELECT * FROM try($$ SELECT quota.quota_consume('alice', 'pictures') $$);
SELECT * FROM try($$ SELECT quota.quota_consume('alice', 'messages', 0) $$);
SELECT * FROM try($$ SELECT quota.quota_consume('alice', 'messages', -3) $$);
SELECT * FROM try($$ SELECT quota.quota_check('alice', 'messages', -1) $$);
SELECT * FROM try($$ SELECT quota.quota_consume('bob', 'messages', 9223372036854775807) $$);
SELECT * FROM try($$ SELECT quota.quota_consume(NULL::text, 'messages') $$);
SELECT * FROM try($$ SELECT quota.quota_consume('alice', NULL::text) $$);
SELECT * FROM try($$ SELECT quota.quota_consume('alice', 'messages', NULL::bigint) $$);
SELECT * FROM try($$ SELECT quota.quota_consume('', 'messages') $$);
SELECT * FROM try($$ SELECT quota.quota_consume('alice', 'messages', 1, '') $$);
SELECT * FROM try($$ SELECT quota.quota_consume('alice', '{}'::jsonb) $$);
SELECT * FROM try($$ SELECT quota.quota_consume('alice', '[1, 2]'::jsonb) $$);
SELECT * FROM try($$ SELECT quota.quota_consume('alice', '{"messages": 1.5}'::jsonb) $$);
SELECT * FROM try($$ SELECT quota.quota_consume('alice', '{"messages": "1"}'::jsonb) $$);
SELECT * FROM try($$ SELECT quota.quota_consume('alice', '{"messages": 1e400}'::jsonb) $$);
SELECT * FROM try($$ SELECT quota.quota_check('alice', '{"messages": 99999999999999999999}'::jsonb) $$);
SELECT * FROM try($$ SELECT quota.quota_consume('alice', NULL::jsonb) $$);
SELECT * FROM try($$ SELECT quota.quota_refund('alice', 'messages', 0) $$);
SELECT * FROM try($$ SELECT quota.quota_reset('alice', 'pictures') $$);
SELECT * FROM try($$ SELECT quota.quota_consume('alice', 'messages', 1, NULL, '{bad json') $$);
