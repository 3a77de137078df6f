-- The contract between the hot path and the general path (src/storage/schema.rs).
-- 1. quota_check and quota_status are STABLE: on both paths they answer from the calling
--    statement's snapshot, so a check in the same statement as a consume shows the usage
--    from before that statement; the next statement sees the consume.
-- 2. A stored value that cannot be decoded is XX001 data_corrupted on both paths, never a
--    default.
SET TimeZone = 'UTC';
SET quota.clock_override = '2026-11-23 12:00:00+00';
SELECT quota.set_limit('CT', 'messages', 'day', 10);
SELECT quota.assign_plan('ct_hot', 'CT'), quota.assign_plan('ct_general', 'CT');
SELECT quota.quota_consume('ct_hot', 'messages') IS NOT NULL AS window_exists,
       quota.quota_consume('ct_general', 'messages') IS NOT NULL AS window_exists;

-- Same statement: the check sees the usage before the statement's consume.
SELECT c.used AS consumed_to, k.used AS checked
FROM quota.quota_consume('ct_hot', 'messages', 2) c, quota.quota_check('ct_hot', 'messages') k;
SELECT quota.quota_consume('ct_hot', 'messages', 2) IS NOT NULL AS consumed,
       (quota.quota_check('ct_hot', 'messages')).used AS checked;
SELECT used FROM quota.quota_check('ct_hot', 'messages');  -- the next statement sees both
SET quota.hot_path = off;
SELECT c.used AS consumed_to, k.used AS checked
FROM quota.quota_consume('ct_general', 'messages', 2) c, quota.quota_check('ct_general', 'messages') k;
SELECT quota.quota_consume('ct_general', 'messages', 2) IS NOT NULL AS consumed,
       (quota.quota_check('ct_general', 'messages')).used AS checked;
SELECT used FROM quota.quota_check('ct_general', 'messages');
SELECT metric, used FROM quota.quota_status('ct_general');
RESET quota.hot_path;

-- A corrupt period: XX001 on both paths (the CHECK constraint is dropped in a
-- transaction that rolls back). The hot path decodes with the same functions and steps
-- aside on a value it cannot decode, so the general path raises: the hot path serves
-- none of these calls.
CREATE FUNCTION pg_temp.sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;
CREATE TEMP TABLE calls AS SELECT hot_calls, general_calls FROM quota.hot_path_status();
BEGIN;
ALTER TABLE quota.plan_limits DROP CONSTRAINT plan_limits_period_check;
UPDATE quota.plan_limits SET period = 'fortnight' WHERE plan = 'CT';
SELECT pg_temp.sqlstate_of($$SELECT quota.quota_check('ct_hot', 'messages')$$) AS hot_check,
       pg_temp.sqlstate_of($$SELECT quota.quota_consume('ct_hot', 'messages')$$) AS hot_consume;
SELECT s.hot_calls - c.hot_calls AS served_hot, s.general_calls - c.general_calls AS served_general
FROM quota.hot_path_status() s, calls c;
SET LOCAL quota.hot_path = off;
SELECT pg_temp.sqlstate_of($$SELECT quota.quota_check('ct_general', 'messages')$$) AS general_check,
       pg_temp.sqlstate_of($$SELECT quota.quota_consume('ct_general', 'messages')$$) AS general_consume,
       pg_temp.sqlstate_of($$SELECT * FROM quota.quota_status('ct_general')$$) AS general_status;
ROLLBACK;
-- The error names the table, the column and (a prefix of) the value.
BEGIN;
ALTER TABLE quota.plan_limits DROP CONSTRAINT plan_limits_period_check;
UPDATE quota.plan_limits SET period = 'fortnight' WHERE plan = 'CT';
\set VERBOSITY verbose
SELECT quota.quota_check('ct_hot', 'messages');
\set VERBOSITY default
ROLLBACK;
SELECT used FROM quota.quota_check('ct_hot', 'messages');  -- decoded again after the rollback
-- A NULL among the alert thresholds (the CHECK constraint lets one through): XX001, not
-- an internal error.
BEGIN;
UPDATE quota.plan_limits SET alert_thresholds = '{50,NULL}' WHERE plan = 'CT';
SELECT pg_temp.sqlstate_of($$SELECT quota.quota_check('ct_hot', 'messages')$$) AS hot_check,
       pg_temp.sqlstate_of($$SELECT quota.quota_consume('ct_hot', 'messages')$$) AS hot_consume,
       pg_temp.sqlstate_of($$SELECT * FROM quota.quota_status('ct_hot')$$) AS status;
ROLLBACK;

-- Stored answers and rules outside the described tables are decoded the same way: a
-- corrupt idempotency answer or bonus reference scope is XX001, not a panic (XX000) or a
-- rule silently missing.
SELECT quota.quota_consume('ct_hot', 'messages', 1, 'ct-key-1') IS NOT NULL AS keyed;
SELECT quota.set_bonus_rule('CT', 'messages', 'ct_bonus', 1, 'subject');
BEGIN;
UPDATE quota.idempotency_keys SET response = '{"not": "a decision list"}' WHERE idempotency_key = 'ct-key-1';
ALTER TABLE quota.bonus_rules DROP CONSTRAINT bonus_rules_reference_scope_check;
UPDATE quota.bonus_rules SET reference_scope = 'galaxy' WHERE plan = 'CT';
SELECT pg_temp.sqlstate_of($$SELECT quota.quota_consume('ct_hot', 'messages', 1, 'ct-key-1')$$) AS replay,
       pg_temp.sqlstate_of($$SELECT quota.apply_bonus('ct_hot', 'messages', 'ct_bonus', 'r1')$$) AS bonus;
ROLLBACK;

-- In parallel mode (force_parallel_mode, or a parallel plan) the hot path reads with the
-- statement's snapshot, as the general path does: PostgreSQL refuses a latest snapshot
-- there, which filling a cache would take. PostgreSQL 16 renamed force_parallel_mode to
-- debug_parallel_query.
SELECT CASE WHEN current_setting('server_version_num')::int < 160000 THEN 'force_parallel_mode'
            ELSE 'debug_parallel_query' END AS parallel_setting \gset
SELECT quota.assign_plan('ct_parallel', 'CT');
SELECT used FROM quota.quota_consume('ct_parallel', 'messages');
UPDATE quota.plan_limits SET limit_value = limit_value WHERE plan = 'CT';  -- no cached limit
SET :parallel_setting = on;
SELECT used FROM quota.quota_check('ct_parallel', 'messages');
SELECT used FROM quota.quota_check('ct_general', 'messages');
RESET :parallel_setting;
