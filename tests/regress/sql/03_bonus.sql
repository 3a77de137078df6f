-- Bonuses: rules, the daily cap, reference uniqueness. Seed 002's defaults on plan ANON:
-- questionnaire +5, payment +5, referral +2, at most 3 bonuses a day.
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET quota.clock_override = '2026-11-23 12:00:00+00';
SELECT 'ok' AS ok FROM quota.set_limit('ANON', 'uses', 'day', 5);
SELECT 'ok' AS ok FROM quota.set_bonus_rule('ANON', 'uses', 'questionnaire', 5);
SELECT 'ok' AS ok FROM quota.set_bonus_rule('ANON', 'uses', 'payment', 5);
SELECT 'ok' AS ok FROM quota.set_bonus_rule('ANON', 'uses', 'referral', 2);
SELECT 'ok' AS ok FROM quota.set_bonus_cap('ANON', 3);
SELECT plan, metric, kind, amount, reference_scope FROM quota.bonus_rules WHERE plan = 'ANON' ORDER BY kind;
SELECT 'ok' AS ok FROM quota.assign_plan('u1', 'ANON');
SELECT 'ok' AS ok FROM quota.assign_plan('u2', 'ANON');

-- Use up the base quota, then a questionnaire raises the current window's limit.
SELECT used, remaining FROM quota.quota_consume('u1', 'uses', 5);
SELECT * FROM quota.apply_bonus('u1', 'uses', 'questionnaire', 'survey-1');
SELECT used, limit_value, bonus, remaining FROM quota.quota_check('u1', 'uses');
-- The same questionnaire is rewarded once per subject; another subject may use it.
SELECT * FROM quota.apply_bonus('u1', 'uses', 'questionnaire', 'survey-1');
SELECT * FROM quota.apply_bonus('u2', 'uses', 'questionnaire', 'survey-1');
-- A payment id is usable once, across all subjects.
SELECT * FROM quota.apply_bonus('u1', 'uses', 'payment', 'pay_123');
SELECT * FROM quota.apply_bonus('u2', 'uses', 'payment', 'pay_123');
-- Referral, then the daily cap of 3 is reached.
SELECT * FROM quota.apply_bonus('u1', 'uses', 'referral', 'friend-9');
SELECT * FROM quota.apply_bonus('u1', 'uses', 'referral', 'friend-10');
-- An unknown kind has no rule: not applied, not an error.
SELECT * FROM quota.apply_bonus('u2', 'uses', 'birthday', 'x');
-- A rule that checks references needs one.
SELECT * FROM try($$ SELECT quota.apply_bonus('u2', 'uses', 'payment') $$);
-- A rule with scope none takes no reference and may repeat.
SELECT 'ok' AS ok FROM quota.set_bonus_rule('ANON', 'uses', 'daily_login', 1, 'none');
SELECT applied, amount, bonuses_today FROM quota.apply_bonus('u2', 'uses', 'daily_login');
SELECT applied, amount, bonuses_today FROM quota.apply_bonus('u2', 'uses', 'daily_login');
SELECT kind, reference, reference_scope, amount, local_day FROM quota.bonus_grants ORDER BY id;
SELECT subject, kind, amount FROM quota.usage_events WHERE kind = 'bonus' AND metric = 'uses' ORDER BY id;

-- The cap counts per local day: the next day the subject may receive bonuses again,
-- and the bonus belongs to its window (yesterday's bonus does not carry over).
SET quota.clock_override = '2026-11-24 00:00:01+00';
SELECT used, limit_value, bonus, remaining FROM quota.quota_check('u1', 'uses');
SELECT * FROM quota.apply_bonus('u1', 'uses', 'referral', 'friend-10');
SET quota.clock_override = '2026-11-23 12:00:00+00';

-- Bad arguments.
SELECT * FROM try($$ SELECT quota.set_bonus_rule('ANON', 'uses', 'payment', 0) $$);
SELECT * FROM try($$ SELECT quota.set_bonus_rule('NOPLAN', 'uses', 'payment', 5) $$);
SELECT * FROM try($$ SELECT quota.set_bonus_rule('ANON', 'uses', 'payment', 5, 'tenant') $$);
SELECT * FROM try($$ SELECT quota.set_bonus_cap('ANON', -1) $$);
SELECT * FROM try($$ SELECT quota.apply_bonus('u1', 'pictures', 'payment', 'p') $$);
SELECT * FROM try($$ SELECT quota.apply_bonus('u1', 'uses', '', 'p') $$);
SELECT * FROM try($$ SELECT quota.apply_bonus('u1', 'uses', NULL, 'p') $$);
SELECT * FROM try($$ SELECT quota.apply_bonus('ghost', 'uses', 'payment', 'p') $$);
