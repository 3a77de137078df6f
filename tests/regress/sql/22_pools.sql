-- Pools (0.8.0): a team's shared quota. A member's consume must fit its own limits and
-- every pool's above it, all or nothing; the answer names the level that refused; holds,
-- refunds and checks work across levels; slices keep the pool exact.
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET quota.clock_override = '2026-11-23 12:00:00+00';
SELECT quota.set_limit('PU', 'messages', 'day', 5);        -- each member: 5 a day
SELECT quota.set_limit('PT', 'messages', 'day', 6);        -- the team: 6 a day
SELECT quota.set_limit('PT', 'messages', 'month', 100);
SELECT quota.set_limit('PO', 'messages', 'month', 1000);   -- the organisation
SELECT quota.set_limit('PO', 'tokens', 'day', 10);         -- a metric only the org limits
SELECT quota.assign_plan(s, 'PU') FROM unnest(ARRAY['pu1', 'pu2', 'pu3']) s;
SELECT quota.assign_plan('team1', 'PT');
SELECT quota.assign_plan('team2', 'PT');
SELECT quota.assign_plan('org1', 'PO');
SELECT quota.set_pool('pu1', 'team1'), quota.set_pool('pu2', 'team1'), quota.set_pool('team1', 'org1');

-- Membership rules: a cycle, a chain deeper than four levels, unknown subjects, NULL.
SELECT code, message FROM try($$ SELECT quota.set_pool('org1', 'pu1') $$);
SELECT code, message FROM try($$ SELECT quota.set_pool('pu1', 'pu1') $$);
SELECT quota.assign_plan(s, 'PT') FROM unnest(ARRAY['deep1', 'deep2']) s;
SELECT quota.set_pool('org1', 'deep1');       -- pu1 -> team1 -> org1 -> deep1: 4 levels
SELECT code, message, hint FROM try($$ SELECT quota.set_pool('deep1', 'deep2') $$);
SELECT quota.set_pool('org1', NULL);
SELECT code FROM try($$ SELECT quota.set_pool('nobody', 'team1') $$);
SELECT code FROM try($$ SELECT quota.set_pool('pu3', 'nobody') $$);
SELECT code FROM try($$ SELECT quota.set_pool(NULL, 'team1') $$);
SELECT subject, pool FROM quota.subjects WHERE pool IS NOT NULL ORDER BY subject;

-- One consume, every level: the member, its team (day and month) and the org (month).
SELECT allowed, subject, period, used, remaining, level FROM quota.quota_consume('pu1', 'messages', 3);
SELECT subject, metric, period, used FROM quota.window_usage WHERE subject ~ '^(pu|team|org)[0-9]' AND metric = 'messages' ORDER BY subject, period;
SELECT subject, kind, amount, period, via FROM quota.usage_events WHERE subject ~ '^(pu|team|org)[0-9]' AND metric = 'messages' ORDER BY id;
-- The member's own limit refuses first (level 0)...
SELECT code, detail::jsonb -> 'level' AS level, detail::jsonb ->> 'subject' AS subject FROM try($$ SELECT quota.quota_consume('pu1', 'messages', 3) $$);
-- ...and the team refuses when the members together reach it (level 1): the message says
-- the pool is full, not the personal quota, and the DETAIL names both.
SELECT allowed, used FROM quota.quota_consume('pu2', 'messages', 3);
SELECT code, message, hint FROM try($$ SELECT quota.quota_consume('pu2', 'messages', 1) $$);
SELECT d ->> 'subject' AS subject, d -> 'level' AS level, d ->> 'member' AS member, d -> 'remaining' AS remaining,
       jsonb_path_query_array(d, '$.refused[*].subject') AS refused_by
FROM (SELECT detail::jsonb AS d FROM try($$ SELECT quota.quota_consume('pu2', 'messages', 1) $$)) t;
-- Nothing of a refused consume is written at any level.
SELECT subject, period, used FROM quota.window_usage WHERE subject ~ '^(pu|team|org)[0-9]' AND metric = 'messages' ORDER BY subject, period;
-- quota_try_consume answers instead, with the pool's level.
SELECT allowed, subject, level, reason FROM quota.quota_try_consume('pu2', 'messages', 1);
-- The pool's own consume counts against it like a member's.
SELECT code, detail::jsonb -> 'level' AS level FROM try($$ SELECT quota.quota_consume('team1', 'messages', 1) $$);
-- A check reports the binding level without writing.
SELECT allowed, subject, level, remaining FROM quota.quota_check('pu1', 'messages', 1);

-- A metric the member's plan does not limit is 22023, even when a pool limits it; one a
-- pool does not limit is not charged there (team1 has no tokens limit, org1 has).
SELECT code FROM try($$ SELECT quota.quota_consume('pu1', 'tokens') $$);
SELECT quota.set_limit('PU', 'tokens', 'day', 100);
SELECT allowed, subject, level, used FROM quota.quota_consume('pu1', 'tokens', 6);
SELECT code, detail::jsonb ->> 'subject' AS subject, detail::jsonb -> 'level' AS level FROM try($$ SELECT quota.quota_consume('pu2', 'tokens', 5) $$);
SELECT subject, used FROM quota.window_usage WHERE subject ~ '^(pu|team|org)[0-9]' AND metric = 'tokens' ORDER BY subject;

-- quota_status: the member's own rows, then its pools' (pool and level tell them apart).
SELECT metric, period, limit_value, used, remaining, pool, level FROM quota.quota_status('pu1') ORDER BY level, metric, period;
-- The pool's members and their share.
SELECT pool, member, metric, period, member_used, pool_used, share_percent FROM quota.pool_members ORDER BY pool, metric, period, member;

-- A refund gives back at every level; a bonus raises only the level it was applied to; a
-- reset empties only the subject's own windows.
SELECT used, subject, level FROM quota.quota_refund('pu2', 'messages', 2);
SELECT subject, period, used FROM quota.window_usage WHERE subject ~ '^(pu|team|org)[0-9]' AND metric = 'messages' ORDER BY subject, period;
SELECT quota.set_bonus_rule('PT', 'messages', 'promo', 10);
SELECT applied, new_limit FROM quota.apply_bonus('team1', 'messages', 'promo', 'b1');
SELECT period, limit_value, bonus, pool, level FROM quota.quota_status('pu3') WHERE metric = 'messages' ORDER BY level, period;
SELECT period, bonus, level FROM quota.quota_status('pu1') WHERE metric = 'messages' ORDER BY level, period;
SELECT quota.quota_reset('pu1', 'messages');
SELECT subject, period, used FROM quota.window_usage WHERE subject ~ '^(pu|team|org)[0-9]' AND metric = 'messages' ORDER BY subject, period;

-- Reservations hold at every level; a release gives back everywhere, a commit counts
-- everywhere.
SELECT allowed, level FROM quota.quota_reserve('pu1', 'messages', 4, '10 minutes');
SELECT subject, period, reserved FROM quota.window_usage WHERE subject ~ '^(pu|team|org)[0-9]' AND metric = 'messages' AND reserved > 0 ORDER BY subject, period;
SELECT subject, period, via, amount FROM quota.reservations WHERE status = 'held' AND subject ~ '^(pu|team|org)[0-9]' ORDER BY subject, period;
-- The hold counts at the pool's level: the team has 16 - 4 used - 4 held left.
SELECT code, detail::jsonb -> 'reserved' AS reserved, detail::jsonb -> 'remaining' AS remaining FROM try($$ SELECT quota.quota_consume('team1', 'messages', 9) $$);
SELECT quota.quota_release((SELECT DISTINCT id FROM quota.reservations WHERE status = 'held' AND subject ~ '^(pu|team|org)[0-9]'));
SELECT subject, period, used, reserved FROM quota.window_usage WHERE subject ~ '^(pu|team|org)[0-9]' AND metric = 'messages' ORDER BY subject, period;
SELECT reservation IS NOT NULL AS held FROM quota.quota_reserve('pu1', 'messages', 2, '10 minutes');
SELECT allowed, used FROM quota.quota_commit((SELECT DISTINCT id FROM quota.reservations WHERE status = 'held' AND subject ~ '^(pu|team|org)[0-9]'), 1);
SELECT subject, period, used, reserved FROM quota.window_usage WHERE subject ~ '^(pu|team|org)[0-9]' AND metric = 'messages' ORDER BY subject, period;

-- Membership changes mid-window: usage counted stays where it was; later consumes charge
-- the new pool.
SELECT quota.set_pool('pu2', 'team2');
SELECT quota.quota_consume('pu2', 'messages', 1);
SELECT subject, period, used FROM quota.window_usage WHERE subject ~ '^(pu|team|org)[0-9]' AND metric = 'messages' AND subject LIKE 'team%' ORDER BY subject, period;
SELECT quota.set_pool('pu2', 'team1');

-- Idempotency keys replay across levels (nothing is charged twice).
SELECT used FROM quota.quota_consume('pu3', 'messages', 1, 'k-1');
SELECT quota.set_pool('pu3', 'team1');
SELECT used, reason FROM quota.quota_consume('pu3', 'messages', 1, 'k-1');
SELECT subject, used FROM quota.window_usage WHERE subject ~ '^(pu|team|org)[0-9]' AND metric = 'messages' AND period = 'day' ORDER BY subject;

-- Enforcement triggers charge every level too.
CREATE TABLE pool_msgs (id serial PRIMARY KEY, user_id text NOT NULL);
SELECT quota.enforce_on_insert('pool_msgs', subject_column => 'user_id', metric => 'messages');
INSERT INTO pool_msgs (user_id) VALUES ('pu3');
SELECT subject, used FROM quota.window_usage WHERE subject ~ '^(pu|team|org)[0-9]' AND metric = 'messages' AND period = 'day' ORDER BY subject;
SELECT code, message FROM try($$ INSERT INTO pool_msgs (user_id) VALUES ('pu3'), ('pu3'), ('pu3') $$);
DELETE FROM pool_msgs;
SELECT subject, used FROM quota.window_usage WHERE subject ~ '^(pu|team|org)[0-9]' AND metric = 'messages' AND period = 'day' ORDER BY subject;
SELECT quota.enforce_off('pool_msgs', 'messages');
DROP TABLE pool_msgs;

-- Slices: with slicing on (the default), a member's draw lands in a slice of the pool's
-- window; with it off, in the pool's counter. Either way the totals are the same, and the
-- ledger proves them.
SELECT current_setting('quota.pool_slices') AS slices;
SELECT count(*) > 0 AS sliced FROM quota.pool_slices WHERE subject = 'team1' AND period = 'day';
SELECT bool_and(used <= granted) AS within FROM quota.pool_slices WHERE subject ~ '^(team|org)[0-9]';
SELECT count(*) AS mismatches FROM quota.ledger_check WHERE subject ~ '^(pu|team|org|pp|ps)[0-9]';
SET quota.pool_slices = 0;
SELECT allowed, used FROM quota.quota_consume('pu1', 'messages', 1);
RESET quota.pool_slices;
SELECT allowed, used FROM quota.quota_consume('pu1', 'messages', 1);
SELECT count(*) AS mismatches FROM quota.ledger_check WHERE subject ~ '^(pu|team|org|pp|ps)[0-9]';
-- Allowance stranded in a slice never causes a false refusal: a first draw of 1 is granted
-- a share of the pool (100 / (2 * 8) = 6), and a later draw of 95 finds its slice short
-- and the pool's free part short (100 - 6 = 94) too: the slices are gathered back first,
-- and it fits exactly. One more is then refused at level 1.
SELECT quota.set_limit('PS', 'messages', 'day', 1000);
SELECT quota.set_limit('PP', 'messages', 'day', 100);
SELECT quota.assign_plan('ps1', 'PS'), quota.assign_plan('ps2', 'PS'), quota.assign_plan('pp1', 'PP');
-- Slices are for shared pools: two members or more.
SELECT quota.set_pool('ps1', 'pp1'), quota.set_pool('ps2', 'pp1');
SELECT allowed, used FROM quota.quota_consume('ps1', 'messages', 1);
SELECT granted, used FROM quota.pool_slices WHERE subject = 'pp1';
SELECT used, reserved FROM quota.counters WHERE subject = 'pp1';
SELECT allowed, subject, level, used, remaining FROM quota.quota_consume('ps1', 'messages', 95);
SELECT coalesce(sum(granted - used), 0) AS stranded FROM quota.pool_slices WHERE subject = 'pp1';
SELECT allowed, used FROM quota.quota_consume('ps1', 'messages', 4);
SELECT code, detail::jsonb -> 'level' AS level, detail::jsonb -> 'used' AS used FROM try($$ SELECT quota.quota_consume('ps1', 'messages', 1) $$);
SELECT used, reserved FROM quota.window_usage WHERE subject = 'pp1';
SELECT count(*) AS mismatches FROM quota.ledger_check WHERE subject ~ '^(pu|team|org|pp|ps)[0-9]';
-- The zero-overshoot check (docs/pools.md): no pool window over its limit.
SELECT w.subject, w.period FROM quota.window_usage w JOIN quota.subjects s ON s.subject = w.subject
JOIN quota.plan_limits l ON l.plan = s.plan AND l.metric = w.metric AND l.period = w.period
WHERE w.used > l.limit_value + w.bonus AND l.enforcement = 'hard' AND w.subject ~ '^(pu|team|org|pp|ps)[0-9]';

-- A pool with members cannot be deleted until they leave.
SELECT code, message FROM try($$ SELECT quota.delete_subject('team1') $$);

-- Tenants: a pool belongs to its members' tenant; another tenant's pool looks unknown.
SELECT quota.assign_plan('ta_user', 'PU', tenant => 'acme');
SELECT quota.assign_plan('ta_team', 'PT', tenant => 'acme');
SELECT quota.assign_plan('tg_team', 'PT', tenant => 'globex');
SELECT code, message FROM try($$ SELECT quota.set_pool('ta_user', 'tg_team') $$);
SELECT code, message FROM try($$ SELECT quota.set_pool('ta_user', 'team1') $$);
SET quota.tenant = 'globex';
SELECT code FROM try($$ SELECT quota.set_pool('ta_user', 'ta_team') $$);
RESET quota.tenant;
SELECT quota.set_pool('ta_user', 'ta_team');

-- Only administrators set pools: an app role gets 42501.
DROP ROLE IF EXISTS regress_pool_app;
CREATE ROLE regress_pool_app IN ROLE quota_app;
SET ROLE regress_pool_app;
SELECT code FROM try($$ SELECT quota.set_pool('pu3', NULL) $$);
SELECT count(*) AS slices_visible FROM quota.pool_slices WHERE subject = 'team1';
SET quota.tenant = 'acme';
SELECT count(*) AS slices_visible_to_acme FROM quota.pool_slices WHERE subject = 'team1';
RESET quota.tenant;
RESET ROLE;
DROP ROLE regress_pool_app;

-- Two paths, one truth: the same consumes of members, with the hot path on and off, give
-- the same answers and the same state (counters, slices and ledger) at every level. The
-- hot path serves a member whose windows and slice exist; the general path creates them
-- and refills a slice that runs short.
CREATE TABLE pool_answers (hot boolean, step int, answer text);
CREATE TABLE pool_state (hot boolean, what text);
DO $$
DECLARE
    hot boolean;
    amounts int[] := ARRAY[1, 2, 1, 3, 1, 1, 5, 2, 1, 1, 4, 1];
    i int;
    member text;
BEGIN
    FOREACH hot IN ARRAY ARRAY[true, false] LOOP
        PERFORM set_config('quota.hot_path', hot::text, false);
        PERFORM quota.assign_plan(p || hot, 'PS') FROM unnest(ARRAY['hm1_', 'hm2_']) p;
        PERFORM quota.assign_plan('hpool_' || hot, 'PP');
        PERFORM quota.set_pool('hm1_' || hot, 'hpool_' || hot), quota.set_pool('hm2_' || hot, 'hpool_' || hot);
        FOR i IN 1 .. array_length(amounts, 1) LOOP
            member := CASE WHEN i % 3 = 0 THEN 'hm2_' ELSE 'hm1_' END || hot;
            INSERT INTO pool_answers
            SELECT hot, i, (SELECT format('%s %s %s %s %s %s', allowed, replace(subject, hot::text, ''), level, used, remaining, reason)
                            FROM quota.quota_try_consume(member, 'messages', amounts[i] * 10));
        END LOOP;
        INSERT INTO pool_state
        SELECT hot, format('%s %s %s %s', replace(subject, hot::text, ''), period, used, reserved) FROM quota.window_usage WHERE subject LIKE '%\_' || hot
        UNION ALL
        SELECT hot, format('ledger %s %s %s %s', replace(subject, hot::text, ''), kind, sum(amount), replace(coalesce(via, ''), hot::text, ''))
        FROM quota.usage_events WHERE subject LIKE '%\_' || hot GROUP BY subject, kind, via;
    END LOOP;
    PERFORM set_config('quota.hot_path', 'on', false);
END
$$;
SELECT step, answer FROM pool_answers WHERE hot ORDER BY step;
SELECT h.step, h.answer AS hot, g.answer AS general FROM pool_answers h JOIN pool_answers g USING (step)
WHERE h.hot AND NOT g.hot AND h.answer IS DISTINCT FROM g.answer;
SELECT what FROM pool_state WHERE hot ORDER BY what;
(SELECT what FROM pool_state WHERE hot EXCEPT SELECT what FROM pool_state WHERE NOT hot)
UNION ALL (SELECT what FROM pool_state WHERE NOT hot EXCEPT SELECT what FROM pool_state WHERE hot);
-- Which path served: the first consume creates the windows and grants the slice
-- (general path); the next draws from the slice (hot path).
SELECT quota.assign_plan('hs_m', 'PS'), quota.assign_plan('hs_m2', 'PS'), quota.assign_plan('hs_p', 'PP');
SELECT quota.set_pool('hs_m', 'hs_p'), quota.set_pool('hs_m2', 'hs_p');
SELECT (SELECT general_calls FROM quota.hot_path_status()) AS g0, (SELECT hot_calls FROM quota.hot_path_status()) AS h0 \gset
SELECT allowed, used FROM quota.quota_consume('hs_m', 'messages', 1);
SELECT hot_calls - :h0 AS hot, general_calls - :g0 AS general FROM quota.hot_path_status();
SELECT allowed, subject, level, used, remaining FROM quota.quota_consume('hs_m', 'messages', 1);
SELECT hot_calls - :h0 AS hot, general_calls - :g0 AS general FROM quota.hot_path_status();
SELECT granted, used FROM quota.pool_slices WHERE subject = 'hs_p';
-- A pool of one member is that member's second limit: no slices, and the hot path locks
-- both counter rows.
SELECT quota.assign_plan('solo_m', 'PS'), quota.assign_plan('solo_p', 'PP');
SELECT quota.set_pool('solo_m', 'solo_p');
SELECT allowed, used FROM quota.quota_consume('solo_m', 'messages', 1);
SELECT (SELECT hot_calls FROM quota.hot_path_status()) AS h1 \gset
SELECT allowed, subject, level, used FROM quota.quota_consume('solo_m', 'messages', 1);
SELECT hot_calls - :h1 AS hot FROM quota.hot_path_status();
SELECT count(*) AS slices FROM quota.pool_slices WHERE subject = 'solo_p';
SELECT count(*) AS mismatches FROM quota.ledger_check WHERE subject ~ '^(hm|hpool|hs_|solo)';
DROP TABLE pool_answers, pool_state;

-- The zero-overshoot check of docs/pools.md (the same query): empty.
SELECT w.subject AS pool, w.metric, w.period, w.window_start, w.used,
       x.limit_value + w.bonus AS effective_limit, coalesce(g.used, 0) AS ledger_used
FROM quota.window_usage w
JOIN quota.subjects s ON s.subject = w.subject
LEFT JOIN quota.plan_limits l ON l.plan = s.plan AND l.metric = w.metric AND l.period = w.period
LEFT JOIN quota.subject_overrides o ON o.subject = w.subject AND o.metric = w.metric AND o.period = w.period
CROSS JOIN LATERAL (SELECT CASE o.mode WHEN 'max' THEN o.value WHEN 'add' THEN coalesce(l.limit_value, 0) + o.value
                                       ELSE l.limit_value END AS limit_value) x
LEFT JOIN LATERAL (SELECT sum(quota.used_change(f.kind, f.amount))::bigint AS used
                   FROM (SELECT kind, amount FROM quota.usage_events e
                         WHERE e.subject = w.subject AND e.metric = w.metric AND e.period = w.period
                           AND e.window_start = w.window_start
                         UNION ALL
                         SELECT kind, amount FROM quota.usage_summaries m
                         WHERE m.subject = w.subject AND m.metric = w.metric AND m.period = w.period
                           AND m.window_start = w.window_start) f) g ON true
WHERE EXISTS (SELECT 1 FROM quota.subjects m WHERE m.pool = w.subject)
  AND w.period NOT LIKE 'per %'
  AND ((coalesce(l.enforcement, 'hard') = 'hard' AND w.used > x.limit_value + w.bonus)
       OR w.used <> coalesce(g.used, 0));

-- A refund gives back at a pool at most what came through the member: a member cannot
-- erase its teammates' usage (a hostile quota_app caller would free the pool that way).
SELECT quota.set_limit('RU', 'm', 'day', 100), quota.set_limit('RT', 'm', 'day', 10);
SELECT quota.assign_plan('rf_a', 'RU'), quota.assign_plan('rf_b', 'RU'), quota.assign_plan('rf_team', 'RT');
SELECT quota.set_pool('rf_a', 'rf_team'), quota.set_pool('rf_b', 'rf_team');
SELECT used FROM quota.quota_consume('rf_a', 'm', 6);
SELECT used FROM quota.quota_consume('rf_b', 'm', 1);
SELECT used, subject, level FROM quota.quota_refund('rf_b', 'm', 100);
SELECT subject, used FROM quota.window_usage WHERE subject LIKE 'rf\_%' ORDER BY subject;
SELECT code, detail::jsonb -> 'level' AS level FROM try($$ SELECT quota.quota_consume('rf_a', 'm', 5) $$);
SELECT count(*) AS mismatches FROM quota.ledger_check WHERE subject LIKE 'rf\_%';

-- A pool whose override limits a metric its plan does not: both paths charge it.
SELECT quota.set_limit('OU2', 'x', 'day', 100), quota.set_limit('OT2', 'other', 'day', 100);
SELECT quota.assign_plan('ov_m', 'OU2'), quota.assign_plan('ov_m2', 'OU2'), quota.assign_plan('ov_team', 'OT2');
SELECT quota.set_pool('ov_m', 'ov_team'), quota.set_pool('ov_m2', 'ov_team');
SELECT quota.set_override('ov_team', 'x', 'day', 5);
SELECT allowed, used FROM quota.quota_consume('ov_m', 'x', 3);
SELECT allowed, used FROM quota.quota_consume('ov_m', 'x', 1);
SELECT code, detail::jsonb ->> 'subject' AS subject, detail::jsonb -> 'level' AS level FROM try($$ SELECT quota.quota_consume('ov_m', 'x', 3) $$);
SELECT subject, used FROM quota.window_usage WHERE subject LIKE 'ov\_%' AND metric = 'x' ORDER BY subject;

-- A member or a pool keeps its tenant while it is in a pool or has members.
SELECT code, message FROM try($$ SELECT quota.assign_plan('ta_user', 'PU', tenant => 'globex') $$);
SELECT code, message FROM try($$ SELECT quota.assign_plan('ta_team', 'PT', tenant => 'globex') $$);
-- set_pool reads other subjects' rows: READ COMMITTED only.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT code, message FROM try($$ SELECT quota.set_pool('rf_a', NULL) $$);
ROLLBACK;

-- quota.notify_every_consume announces a member's consume even when a pool's slice
-- binds (the draw itself announces nothing).
SET quota.notify_every_consume = on;
SELECT count(*) AS before FROM quota.events WHERE type = 'consumed' AND subject LIKE 'rf\_%' \gset
SELECT allowed FROM quota.quota_consume('rf_a', 'm', 1);
SELECT count(*) - :before AS consumed_events FROM quota.events WHERE type = 'consumed' AND subject LIKE 'rf\_%';
RESET quota.notify_every_consume;

-- A pool's scheduled plan change applies to its members' consumes from its instant on.
SELECT quota.set_limit('SCH_BIG', 'm', 'day', 100), quota.set_limit('SCH_SMALL', 'm', 'day', 3);
SELECT quota.assign_plan('sch_m', 'RU'), quota.assign_plan('sch_pool', 'SCH_BIG');
SELECT quota.set_pool('sch_m', 'sch_pool');
SELECT quota.assign_plan('sch_pool', 'SCH_SMALL', effective_at => '2026-11-23 13:00:00+00');
SELECT allowed, used FROM quota.quota_consume('sch_m', 'm', 5);
SET quota.clock_override = '2026-11-23 13:30:00+00';
SELECT period, limit_value, used, pool, level, next_plan FROM quota.quota_status('sch_m') WHERE level = 1;
SELECT code, detail::jsonb ->> 'subject' AS subject, detail::jsonb -> 'limit' AS lim FROM try($$ SELECT quota.quota_consume('sch_m', 'm', 1) $$);
SELECT plan FROM quota.subjects WHERE subject = 'sch_pool';
SET quota.clock_override = '2026-11-23 12:00:00+00';
