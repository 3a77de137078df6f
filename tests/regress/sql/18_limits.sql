-- Several limits per metric (limits v2): "20,000 tokens a day and 300,000 a month".
-- A limit is identified by plan, metric and period; a consume must fit every hard limit
-- of the metric, all or nothing; the decision reports the binding limit; a refusal
-- names the refusing limit that resets last and lists every refusing one.
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET quota.clock_override = '2026-11-23 12:00:00+00';

-- set_limit adds a window; a NOTICE says which windows the metric now has.
SELECT quota.set_limit('LV', 'tokens', 'day', 100);
SELECT quota.set_limit('LV', 'tokens', 'month', 250);
-- The same plan, metric and period: replaced, no NOTICE about windows.
SELECT quota.set_limit('LV', 'tokens', 'month', 200);
SELECT plan, metric, period, limit_value, enforcement, per_request_max
FROM quota.plan_limits WHERE plan = 'LV' ORDER BY 1, 2, 3;
SELECT quota.assign_plan('lv1', 'LV');

-- Both windows count; the day binds (least left after the request).
SELECT allowed, period, used, limit_value, remaining, reset_at FROM quota.quota_consume('lv1', 'tokens', 60);
SELECT metric, period, window_start, window_end, used FROM quota.counters WHERE subject = 'lv1' ORDER BY metric, period;
-- The day refuses 50 more (40 left): nothing is written to either window.
SELECT code, message, detail::jsonb - 'subject' AS detail FROM try($$ SELECT quota.quota_consume('lv1', 'tokens', 50) $$);
SELECT period, used FROM quota.counters WHERE subject = 'lv1' ORDER BY period;

-- Later days: the day is fresh each day; then the month binds, and refuses alone.
SET quota.clock_override = '2026-11-24 12:00:00+00';
SELECT allowed, period, used, remaining FROM quota.quota_consume('lv1', 'tokens', 90);
SET quota.clock_override = '2026-11-25 12:00:00+00';
SELECT allowed, period, used, remaining, reset_at FROM quota.quota_consume('lv1', 'tokens', 40);
SELECT code, detail::jsonb -> 'period' AS named, detail::jsonb -> 'refused' AS refused FROM try($$ SELECT quota.quota_consume('lv1', 'tokens', 20) $$);
-- Both refuse: the month (resets last) is named, so that Retry-After is right; both are listed.
SELECT code, message, detail::jsonb -> 'reset_at' AS reset_at, detail::jsonb -> 'refused' AS refused, hint
FROM try($$ SELECT quota.quota_consume('lv1', 'tokens', 70) $$);
SELECT allowed, reason, period, used, remaining FROM quota.quota_try_consume('lv1', 'tokens', 70);
SELECT allowed, period, used, remaining FROM quota.quota_check('lv1', 'tokens', 5);
SELECT allowed, period, used, remaining FROM quota.quota_check('lv1', 'tokens', 20);

-- quota_status: one row per limit.
SELECT metric, period, limit_value, used, remaining, reset_at FROM quota.quota_status('lv1') ORDER BY metric, period;

-- Soft limits let a request through and record the overage; hard ones still bind.
SELECT quota.set_limit('LV', 'calls', 'day', 3, 'soft');
SELECT quota.set_limit('LV', 'calls', 'week', 10);
SELECT allowed, period, used, remaining, enforcement FROM quota.quota_consume('lv1', 'calls', 5);
SELECT period, kind, amount, overage FROM quota.usage_events WHERE subject = 'lv1' AND metric = 'calls' ORDER BY id;
SELECT code, detail::jsonb -> 'period' AS named FROM try($$ SELECT quota.quota_consume('lv1', 'calls', 6) $$);

-- The per-request cap belongs to the metric: the last set_limit sets it on every window.
SELECT quota.set_limit('LV', 'calls', 'week', 10, per_request_max => 4);
SELECT period, per_request_max FROM quota.plan_limits WHERE plan = 'LV' AND metric = 'calls' ORDER BY period;
SELECT code, detail::jsonb -> 'per_request_max' AS cap FROM try($$ SELECT quota.quota_consume('lv1', 'calls', 5) $$);

-- Alerts per limit: set_alerts with a period sets that window's; without, every window's.
SELECT quota.set_alerts('LV', 'tokens', ARRAY[50], 'day');
SELECT period, alert_thresholds FROM quota.plan_limits WHERE plan = 'LV' AND metric = 'tokens' ORDER BY period;
SELECT quota.set_alerts('LV', 'tokens', ARRAY[90]);
SELECT period, alert_thresholds FROM quota.plan_limits WHERE plan = 'LV' AND metric = 'tokens' ORDER BY period;
SELECT code, message FROM try($$ SELECT quota.set_alerts('LV', 'tokens', ARRAY[90], 'week') $$);
SELECT code, message FROM try($$ SELECT quota.set_alerts('LV', 'tokens', ARRAY[90], '1 day') $$);

-- Refunds give back in every window the usage was counted in, never below zero.
SET quota.clock_override = '2026-11-26 12:00:00+00';
SELECT period, used FROM quota.quota_consume('lv1', 'tokens', 5);
SELECT period, used, remaining FROM quota.quota_refund('lv1', 'tokens', 30);
SELECT period, used FROM quota.counters WHERE subject = 'lv1' AND metric = 'tokens' ORDER BY period, window_start;
-- A reset empties every window of the metric (two windows had usage).
SELECT quota.quota_consume('lv1', 'tokens', 1) IS NOT NULL AS consumed;
SELECT quota.quota_reset('lv1', 'tokens') AS emptied;
SELECT period, window_start, used FROM quota.counters WHERE subject = 'lv1' AND metric = 'tokens' ORDER BY period, window_start;

-- A bonus raises every current window of the metric.
SELECT quota.set_bonus_rule('LV', 'tokens', 'promo', 40);
SELECT applied, amount, new_limit FROM quota.apply_bonus('lv1', 'tokens', 'promo', 'p-1');
SELECT period, bonus FROM quota.counters WHERE subject = 'lv1' AND metric = 'tokens' AND used >= 0 AND bonus > 0 ORDER BY period;

-- Reservations hold against every limit: refused by the month, then held in both windows.
SELECT quota.assign_plan('lv2', 'LV');
SELECT quota.quota_consume('lv2', 'tokens', 80) IS NOT NULL AS consumed;
SELECT code, detail::jsonb -> 'period' AS named FROM try($$ SELECT quota.quota_reserve('lv2', 'tokens', 30) $$);
SELECT allowed, period, reserved, remaining FROM quota.quota_reserve('lv2', 'tokens', 15) \gset r_
SELECT :'r_allowed' AS allowed, :'r_period' AS period, :'r_reserved' AS reserved, :'r_remaining' AS remaining;
SELECT reservation AS hold FROM quota.quota_reserve('lv2', 'tokens', 5) \gset
SELECT period, count(*) FROM quota.reservations WHERE subject = 'lv2' GROUP BY period ORDER BY period;
SELECT period, used, reserved FROM quota.counters WHERE subject = 'lv2' AND metric = 'tokens' ORDER BY period;
SELECT period, used, reserved FROM quota.quota_commit(:'hold', 3);
SELECT period, used, reserved FROM quota.counters WHERE subject = 'lv2' AND metric = 'tokens' ORDER BY period;
SELECT (SELECT reservation FROM quota.quota_reserve('lv2', 'tokens', 2)) AS hold2 \gset
SELECT quota.quota_release(:'hold2');
SELECT period, used, reserved FROM quota.counters WHERE subject = 'lv2' AND metric = 'tokens' ORDER BY period;
SELECT status, count(*) FROM quota.reservations WHERE subject = 'lv2' GROUP BY status ORDER BY status;

-- Triggers: a row's charge is recorded per window, and a DELETE refunds each.
CREATE TABLE lv_messages (id bigint PRIMARY KEY, user_id text NOT NULL, tokens bigint NOT NULL);
SELECT quota.enforce_on_insert('lv_messages', subject_column => 'user_id', metric => 'tokens', amount_column => 'tokens', refund_on_delete => true);
SELECT quota.assign_plan('lv3', 'LV');
INSERT INTO lv_messages VALUES (1, 'lv3', 30), (2, 'lv3', 5);
SELECT metric, period, amount FROM quota.row_charges WHERE subject = 'lv3' ORDER BY row_key, period;
DELETE FROM lv_messages WHERE id = 1;
SELECT period, used FROM quota.counters WHERE subject = 'lv3' ORDER BY period;
SELECT code, detail::jsonb -> 'period' AS named, detail::jsonb ->> 'table' AS tab FROM try($$ INSERT INTO lv_messages VALUES (3, 'lv3', 99) $$);

-- remove_limit removes one window, or every window of the metric (period NULL).
SELECT quota.remove_limit('LV', 'calls', 'day');
SELECT period FROM quota.plan_limits WHERE plan = 'LV' AND metric = 'calls';
SELECT quota.remove_limit('LV', 'calls', 'day') AS again;
SELECT quota.set_limit('LV', 'calls', 'day', 3);
SELECT quota.remove_limit('LV', 'calls');
SELECT count(*) FROM quota.plan_limits WHERE plan = 'LV' AND metric = 'calls';
SELECT code, message FROM try($$ SELECT quota.remove_limit('LV', 'tokens', 'fortnight') $$);

-- The hot path gives the general path's answers, rows and events on a two-limit metric.
SELECT quota.set_limit('LH', 'tokens', 'day', 50);
SELECT quota.set_limit('LH', 'tokens', 'month', 120);
SELECT quota.set_limit('LH', 'tokens', 'week', 500, 'soft');
SELECT quota.set_alerts('LH', 'tokens', ARRAY[80]);
SELECT quota.set_limit('LH', 'images', 'day', 9);
SELECT quota.assign_plan('lh_on', 'LH', time_zone => 'America/New_York');
SELECT quota.assign_plan('lh_off', 'LH', time_zone => 'America/New_York');
CREATE TEMP TABLE lv_answers (hot boolean, step int, answer text);
CREATE FUNCTION pg_temp.run(hot boolean) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    s text := CASE WHEN hot THEN 'lh_on' ELSE 'lh_off' END;
    n int := 0;
    q text;
    a text;
BEGIN
    PERFORM set_config('quota.hot_path', hot::text, true);
    FOREACH q IN ARRAY ARRAY[
        'SELECT row(d.*)::text FROM quota.quota_consume(%L, ''tokens'', 10) d',   -- first use: general
        'SELECT row(d.*)::text FROM quota.quota_consume(%L, ''tokens'', 20) d',
        'SELECT row(d.*)::text FROM quota.quota_check(%L, ''tokens'', 25) d',
        'SELECT row(d.*)::text FROM quota.quota_consume(%L, ''tokens'', 15) d',   -- crosses 80% of the day
        'SELECT row(d.*)::text FROM quota.quota_try_consume(%L, ''tokens'', 10) d',  -- the day refuses
        'SELECT string_agg(row(d.*)::text, '' '') FROM quota.quota_consume(%L, ''{"images": 1, "tokens": 5}''::jsonb) d',
        'SELECT string_agg(row(d.*)::text, '' '') FROM quota.quota_consume(%L, ''{"images": 2, "tokens": 1}''::jsonb) d',
        'SELECT row(d.*)::text FROM quota.quota_consume(%L, ''tokens'', 1) d']
    LOOP
        BEGIN
            EXECUTE format(q, s) INTO a;
            INSERT INTO lv_answers VALUES (hot, n, replace(a, s, 'S'));
        EXCEPTION WHEN OTHERS THEN
            INSERT INTO lv_answers VALUES (hot, n, SQLSTATE || ' ' || replace(SQLERRM, s, 'S'));
        END;
        n := n + 1;
    END LOOP;
    -- The next day: the month binds, and refuses.
    PERFORM set_config('quota.clock_override', '2026-11-27 12:00:00+00', true);
    FOREACH q IN ARRAY ARRAY[
        'SELECT row(d.*)::text FROM quota.quota_consume(%L, ''tokens'', 40) d',   -- a new day window: general
        'SELECT row(d.*)::text FROM quota.quota_consume(%L, ''tokens'', 5) d',
        'SELECT row(d.*)::text FROM quota.quota_consume(%L, ''tokens'', 30) d']   -- the month refuses
    LOOP
        BEGIN
            EXECUTE format(q, s) INTO a;
            INSERT INTO lv_answers VALUES (hot, n, replace(a, s, 'S'));
        EXCEPTION WHEN OTHERS THEN
            INSERT INTO lv_answers VALUES (hot, n, SQLSTATE || ' ' || replace(SQLERRM, s, 'S'));
        END;
        n := n + 1;
    END LOOP;
END $$;
SELECT quota.hot_path_status() IS NOT NULL AS started;
SELECT hot_calls AS hot0 FROM quota.hot_path_status() \gset
SELECT pg_temp.run(true);
SELECT hot_calls - :hot0 > 0 AS hot_path_served_some FROM quota.hot_path_status();
SELECT pg_temp.run(false);
-- A consume on a metric whose three windows exist is the hot path's.
SET quota.clock_override = '2026-11-27 12:00:00+00';
SELECT hot_calls AS hot0 FROM quota.hot_path_status() \gset
SELECT metric, period, used FROM quota.quota_consume('lh_on', 'tokens', 1);
SELECT hot_calls - :hot0 AS hot_calls FROM quota.hot_path_status();
SELECT step, answer FROM lv_answers WHERE hot ORDER BY step;
SELECT a.step, a.answer AS hot_on, b.answer AS hot_off
FROM lv_answers a JOIN lv_answers b USING (step) WHERE a.hot AND NOT b.hot AND a.answer IS DISTINCT FROM b.answer;
SELECT (SELECT array_agg(row(metric, period, window_start, window_end, used, bonus, reserved, alerted)::text ORDER BY metric, period, window_start)
        FROM quota.counters WHERE subject = 'lh_on')
     = (SELECT array_agg(row(metric, period, window_start, window_end, used, bonus, reserved, alerted)::text ORDER BY metric, period, window_start)
        FROM quota.counters WHERE subject = 'lh_off') AS counters_equal,
       (SELECT array_agg(row(metric, period, window_start, kind, amount, overage, created_at)::text ORDER BY id)
        FROM quota.usage_events WHERE subject = 'lh_on')
     = (SELECT array_agg(row(metric, period, window_start, kind, amount, overage, created_at)::text ORDER BY id)
        FROM quota.usage_events WHERE subject = 'lh_off') AS ledger_equal,
       (SELECT array_agg(row(type, metric, payload - 'subject', created_at)::text ORDER BY id) FROM quota.events WHERE subject = 'lh_on')
     = (SELECT array_agg(row(type, metric, payload - 'subject', created_at)::text ORDER BY id) FROM quota.events WHERE subject = 'lh_off') AS events_equal;
SELECT metric, period, window_start, used, alerted FROM quota.counters WHERE subject = 'lh_on' ORDER BY metric, period, window_start;

-- The ledger proves every window of every limit.
SELECT count(*) AS mismatches FROM quota.ledger_check;
SET quota.clock_override = '2026-11-26 12:00:00+00';
SELECT subject, metric, period, window_start, used, limit_value FROM quota.usage_overview WHERE subject = 'lv1' ORDER BY metric, period;
