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

-- A period is found whatever its spelling ('300 min' is the stored '5 hours').
SELECT quota.set_alerts('FU', 'tokens', ARRAY[50], '300 min');
SELECT period, alert_thresholds FROM quota.plan_limits WHERE plan = 'FU' ORDER BY period;

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

-- The hot path takes a metric with a calendar limit and a rate limit, and gives the
-- general path's answers, rows and events.
SELECT quota.set_limit('RH', 'calls', 'day', 9);
SELECT quota.set_rate_limit('RH', 'calls', 1, '10 seconds', 2);
SELECT quota.assign_plan('rh_on', 'RH');
SELECT quota.assign_plan('rh_off', 'RH');
CREATE TEMP TABLE rh_answers (hot boolean, step int, answer text);
CREATE FUNCTION pg_temp.rh(hot boolean) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    s text := CASE WHEN hot THEN 'rh_on' ELSE 'rh_off' END;
    n int := 0;
    a text;
    t text;
BEGIN
    PERFORM set_config('quota.hot_path', hot::text, true);
    FOREACH t IN ARRAY ARRAY['20:00:00', '20:00:00', '20:00:01', '20:00:02', '20:00:02', '20:00:09', '20:00:15', '20:00:40', '20:00:40', '20:00:40', '20:00:41']
    LOOP
        PERFORM set_config('quota.clock_override', '2026-11-23 ' || t || '+00', true);
        BEGIN
            SELECT row(d.*)::text INTO a FROM quota.quota_consume(s, 'calls') d;
            INSERT INTO rh_answers VALUES (hot, n, replace(a, s, 'S'));
        EXCEPTION WHEN OTHERS THEN
            INSERT INTO rh_answers VALUES (hot, n, SQLSTATE || ' ' || replace(SQLERRM, s, 'S'));
        END;
        n := n + 1;
    END LOOP;
END $$;
SELECT hot_calls AS h0 FROM quota.hot_path_status() \gset
SELECT pg_temp.rh(true);
SELECT hot_calls - :h0 > 0 AS hot_path_served_some FROM quota.hot_path_status();
SELECT pg_temp.rh(false);
SELECT step, answer FROM rh_answers WHERE hot ORDER BY step;
SELECT a.step, a.answer AS hot_on, b.answer AS hot_off
FROM rh_answers a JOIN rh_answers b USING (step) WHERE a.hot AND NOT b.hot AND a.answer IS DISTINCT FROM b.answer;
SELECT (SELECT array_agg(row(metric, period, window_start, window_end, used, bonus, reserved, alerted)::text ORDER BY period)
        FROM quota.counters WHERE subject = 'rh_on')
     = (SELECT array_agg(row(metric, period, window_start, window_end, used, bonus, reserved, alerted)::text ORDER BY period)
        FROM quota.counters WHERE subject = 'rh_off') AS counters_equal,
       (SELECT array_agg(row(metric, period, window_start, kind, amount, overage, created_at)::text ORDER BY id) FROM quota.usage_events WHERE subject = 'rh_on')
     = (SELECT array_agg(row(metric, period, window_start, kind, amount, overage, created_at)::text ORDER BY id) FROM quota.usage_events WHERE subject = 'rh_off') AS ledger_equal;
SELECT count(*) AS mismatches FROM quota.ledger_check;

-- Reservations on a rate limit: the hold takes its amount from the rate when made; a
-- commit beyond the hold must fit the rate too (a hold is no way around it).
SELECT quota.set_rate_limit('R2', 'req', 1, '1 hour', 0);
SELECT quota.set_limit('R2', 'req', 'day', 100000);
SELECT quota.assign_plan('r3', 'R2');
SELECT reservation AS r3_hold FROM quota.quota_reserve('r3', 'req', 1, '1 hour') \gset
SELECT code, detail::jsonb ->> 'code' AS why, detail::jsonb -> 'period' AS named FROM try(format('SELECT quota.quota_commit(%L, 5000)', :'r3_hold'));
SELECT allowed, used FROM quota.quota_commit(:'r3_hold', 1);
SELECT code, detail::jsonb ->> 'code' AS why FROM try($$ SELECT quota.quota_reserve('r3', 'req', 1, '1 hour') $$);
-- A metric limited only by a rate can be reserved, committed and released.
SELECT quota.set_rate_limit('R1', 'req', 10, '1 minute', 5);
SELECT quota.assign_plan('r1', 'R1');
SELECT reservation AS r1_hold FROM quota.quota_reserve('r1', 'req', 2, '1 hour') \gset
SELECT allowed, period, used FROM quota.quota_commit(:'r1_hold', 2);
SELECT quota.quota_release((SELECT reservation FROM quota.quota_reserve('r1', 'req', 1, '1 hour'))) AS released;
SELECT period, used, reserved FROM quota.counters WHERE subject = 'r1';
SELECT count(*) AS mismatches FROM quota.ledger_check;

-- A bonus raises open windows only: on a metric whose only window is a first-use one
-- that is not open, it is not applied (and its reference stays unused).
SELECT quota.set_limit('FB', 'tok', '5 hours', 100);
SELECT quota.set_bonus_rule('FB', 'tok', 'payment', 50);
SELECT quota.assign_plan('fb1', 'FB');
SELECT applied, reason, new_limit FROM quota.apply_bonus('fb1', 'tok', 'payment', 'pay_123');
SELECT quota.quota_consume('fb1', 'tok', 1) IS NOT NULL AS opened;
SELECT applied, reason, new_limit FROM quota.apply_bonus('fb1', 'tok', 'payment', 'pay_123');

-- Timestamps out of range are refused, not read as "never".
SELECT code, message FROM try($$ SELECT quota.set_override('fb1', 'tok', '5 hours', 5, expires_at => '-infinity') $$);
SELECT code, message FROM try($$ SELECT quota.assign_plan('fb1', 'FB', effective_at => 'infinity') $$);
-- Messages quote a short prefix of what was given.
SELECT code, length(message) < 200 AS short FROM try(format('SELECT quota.set_limit(%L, %L, %L, 5)', 'FU', 'tokens', repeat('9', 5000) || ' fortnights'));
