-- Scheduled plan changes: assign_plan(..., effective_at => ...) keeps the old plan until
-- then; the plan in force is computed at read time and stored by the first call that
-- writes after the instant; a pending change shows in quota_status and can be cancelled.
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET quota.clock_override = '2026-11-23 12:00:00+00';
SELECT quota.set_limit('PRO', 'messages', 'month', 100);
SELECT quota.set_limit('FREE', 'messages', 'month', 10);
SELECT quota.assign_plan('sc1', 'PRO');
SELECT used FROM quota.quota_consume('sc1', 'messages', 8);

-- A downgrade at the end of the cycle: PRO until then.
SELECT quota.assign_plan('sc1', 'FREE', effective_at => '2026-12-01 00:00+00');
SELECT plan, next_plan, next_plan_at, carry FROM quota.subjects WHERE subject = 'sc1';
SELECT metric, period, limit_value, used, next_plan, next_plan_at FROM quota.quota_status('sc1');
SELECT allowed, limit_value, used FROM quota.quota_consume('sc1', 'messages', 50);
-- Exact at the boundary: the new plan is in force from that instant, on every path,
-- before anything stores it (a check and a status read it; nothing is written).
SET quota.clock_override = '2026-11-30 23:59:59.999999+00';
SELECT limit_value FROM quota.quota_check('sc1', 'messages');
SET quota.clock_override = '2026-12-01 00:00:00+00';
SELECT limit_value, used, remaining FROM quota.quota_check('sc1', 'messages');
SELECT metric, limit_value, next_plan FROM quota.quota_status('sc1');
SELECT plan, next_plan FROM quota.subjects WHERE subject = 'sc1';
-- The first write stores it.
SELECT allowed, limit_value, used FROM quota.quota_consume('sc1', 'messages', 3);
SELECT plan, next_plan, next_plan_at, carry FROM quota.subjects WHERE subject = 'sc1';
SELECT code FROM try($$ SELECT quota.quota_consume('sc1', 'messages', 8) $$);

-- Cancelled before it takes effect: nothing changes.
SELECT quota.assign_plan('sc1', 'PRO', effective_at => '2026-12-15 00:00+00');
SELECT quota.cancel_plan_change('sc1') AS cancelled, quota.cancel_plan_change('sc1') AS again;
SET quota.clock_override = '2026-12-16 00:00:00+00';
SELECT limit_value FROM quota.quota_check('sc1', 'messages');
-- An assignment in force now replaces a pending one.
SELECT quota.assign_plan('sc1', 'PRO', effective_at => '2026-12-20 00:00+00');
SELECT quota.assign_plan('sc1', 'FREE');
SELECT plan, next_plan FROM quota.subjects WHERE subject = 'sc1';

-- carry => 'percent': the window the change falls in keeps its share used, rounded down.
SET quota.clock_override = '2026-11-23 12:00:00+00';
SELECT quota.assign_plan('sc2', 'PRO');
SELECT used FROM quota.quota_consume('sc2', 'messages', 73);
SELECT quota.assign_plan('sc2', 'FREE', effective_at => '2026-11-25 00:00+00', carry => 'percent');
SET quota.clock_override = '2026-11-26 00:00:00+00';
-- Read before it is stored: 73 of 100 is 7 of 10 (7.3 rounded down).
SELECT limit_value, used, remaining FROM quota.quota_check('sc2', 'messages');
SELECT used FROM quota.counters WHERE subject = 'sc2';
-- Stored by the first write, with a carry_down ledger row; the ledger still proves it.
SELECT allowed, used, remaining FROM quota.quota_consume('sc2', 'messages', 2);
SELECT kind, amount FROM quota.usage_events WHERE subject = 'sc2' ORDER BY id;
SELECT count(*) AS mismatches FROM quota.ledger_check;
-- Right away with percent: an upgrade keeps the share (9 of 10 is 90 of 100).
SELECT quota.assign_plan('sc2', 'PRO', carry => 'percent');
SELECT used, limit_value FROM quota.quota_check('sc2', 'messages');
SELECT count(*) AS mismatches FROM quota.ledger_check;

-- The hot path steps aside for a change that is due, and takes the call again after.
SET quota.clock_override = '2026-11-23 12:00:00+00';
SELECT quota.assign_plan('sc3', 'PRO');
SELECT used FROM quota.quota_consume('sc3', 'messages');
SELECT quota.assign_plan('sc3', 'FREE', effective_at => '2026-11-23 13:00+00');
SELECT hot_calls AS h0, general_calls AS g0 FROM quota.hot_path_status() \gset
SELECT used, limit_value FROM quota.quota_consume('sc3', 'messages');
SET quota.clock_override = '2026-11-23 13:00:00+00';
SELECT used, limit_value FROM quota.quota_consume('sc3', 'messages');
SELECT used, limit_value FROM quota.quota_consume('sc3', 'messages');
SELECT hot_calls - :h0 AS hot, general_calls - :g0 AS general FROM quota.hot_path_status();

-- Bad input.
SELECT code, message FROM try($$ SELECT quota.assign_plan('sc1', 'PRO', effective_at => '2027-01-01', carry => 'all') $$);
SELECT code, message FROM try($$ SELECT quota.assign_plan('sc1', 'PRO', time_zone => 'UTC', effective_at => '2027-01-01') $$);
SELECT code, message FROM try($$ SELECT quota.assign_plan('nobody', 'PRO', effective_at => '2027-01-01') $$);
SELECT code, message FROM try($$ SELECT quota.assign_plan('sc1', 'NOPE', effective_at => '2027-01-01') $$);
SELECT code FROM try($$ SELECT quota.cancel_plan_change('nobody') $$);
SET ROLE quota_app;
SELECT code FROM try($$ SELECT quota.cancel_plan_change('sc1') $$);
RESET ROLE;

-- An assignment in force now, after a 'percent' change came due but was not stored yet,
-- starts from the carried usage (8 of 10 became 800 of 1000, then 8 of 10 again).
SET quota.clock_override = '2026-11-23 12:00:00+00';
SELECT quota.set_limit('PA', 'm', 'month', 10);
SELECT quota.set_limit('PB', 'm', 'month', 1000);
SELECT quota.assign_plan('s5', 'PA');
SELECT used FROM quota.quota_consume('s5', 'm', 8);
SELECT quota.assign_plan('s5', 'PB', effective_at => '2026-11-23 13:00+00', carry => 'percent');
SET quota.clock_override = '2026-11-23 14:00:00+00';
SELECT used, limit_value FROM quota.quota_check('s5', 'm');
SELECT quota.assign_plan('s5', 'PA', carry => 'percent');
SELECT used, limit_value FROM quota.quota_check('s5', 'm');
SELECT kind, amount FROM quota.usage_events WHERE subject = 's5' ORDER BY id;
SELECT count(*) AS mismatches FROM quota.ledger_check;
-- The admin views read the plan in force too.
SELECT quota.assign_plan('s5', 'PB', effective_at => '2026-11-23 15:00+00');
SET quota.clock_override = '2026-11-23 16:00:00+00';
SELECT plan, limit_value FROM quota.usage_overview WHERE subject = 's5';
