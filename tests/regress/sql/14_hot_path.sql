-- The hot path (src/hotpath/: the common check and consume by primary-key probes and
-- direct heap writes) gives exactly the answers, rows and events of the general path.
-- The same operations run for subject hp_on with quota.hot_path on and for hp_off with
-- it off; then everything they wrote is compared.
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET quota.clock_override = '2026-11-23 12:00:00+00';
SELECT quota.set_limit('HP', 'messages', 'day', 20);
SELECT quota.set_alerts('HP', 'messages', ARRAY[50, 90]);
SELECT quota.set_limit('HP', 'tokens', 'month', 10, 'soft');
SELECT quota.set_limit('HP', 'images', 'billing_cycle', 5);
SELECT quota.assign_plan('hp_on', 'HP', tenant => 'acme', time_zone => 'Asia/Tokyo', cycle_anchor => '2026-10-15 08:00+00');
SELECT quota.assign_plan('hp_off', 'HP', tenant => 'acme', time_zone => 'Asia/Tokyo', cycle_anchor => '2026-10-15 08:00+00');

CREATE TEMP TABLE answers (hot boolean, step int, answer text);
CREATE FUNCTION pg_temp.run(hot boolean) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    s text := CASE WHEN hot THEN 'hp_on' ELSE 'hp_off' END;
    n int := 0;
    r record;
BEGIN
    PERFORM set_config('quota.hot_path', hot::text, true);
    PERFORM set_config('quota.tenant', 'acme', true);
    FOR r IN
        SELECT 1 AS k, format('SELECT row(d.*)::text FROM quota.quota_consume(%L, ''messages'') d', s) AS q  -- new window
        UNION ALL SELECT 2, format('SELECT row(d.*)::text FROM quota.quota_consume(%L, ''messages'', 5, ''{"job": 7}'') d', s)
        UNION ALL SELECT 3, format('SELECT row(d.*)::text FROM quota.quota_consume(%L, ''messages'', 5) d', s)  -- crosses 50%%
        UNION ALL SELECT 4, format('SELECT row(d.*)::text FROM quota.quota_check(%L, ''messages'', 3) d', s)
        UNION ALL SELECT 5, format('SELECT string_agg(row(d.*)::text, '' '') FROM generate_series(1, 3) g, LATERAL quota.quota_consume(%L, ''messages'', 1 + 0 * g) d', s)
        UNION ALL SELECT 6, format('SELECT row(d.*)::text FROM quota.quota_try_consume(%L, ''messages'', 10) d', s)  -- refused
        UNION ALL SELECT 7, format('SELECT row(d.*)::text FROM quota.quota_consume(%L, ''messages'', 4) d', s)  -- crosses 90%%
        UNION ALL SELECT 7, format('SELECT row(d.*)::text FROM quota.quota_consume(%L, ''messages'', 5) d', s)  -- refused
        UNION ALL SELECT 8, format('SELECT row(d.*)::text FROM quota.quota_consume(%L, ''tokens'', 8) d', s)
        UNION ALL SELECT 9, format('SELECT row(d.*)::text FROM quota.quota_consume(%L, ''tokens'', 5) d', s)  -- soft overage
        UNION ALL SELECT 10, format('SELECT row(d.*)::text FROM quota.quota_check(%L, ''tokens'') d', s)
        UNION ALL SELECT 11, format('SELECT row(d.*)::text FROM quota.quota_consume(%L, ''images'', 2) d', s)
        UNION ALL SELECT 12, format('SELECT row(d.*)::text FROM quota.quota_consume(%L, ''images'', 2) d', s)
        UNION ALL SELECT 13, format('SELECT row(d.*)::text FROM quota.quota_check(%L, ''images'') d', s)
        UNION ALL SELECT 14, format('SELECT row(d.*)::text FROM quota.quota_check(%L, ''nope'') d', s)  -- unknown metric
        -- several metrics at once: all windows locked, decided, then written
        UNION ALL SELECT 15, format('SELECT string_agg(row(d.*)::text, '' '') FROM quota.quota_consume_many(%L, ''{"images": 1, "tokens": 2}''::jsonb, metadata => ''{"job": 8}'') d', s)
        UNION ALL SELECT 16, format('SELECT string_agg(row(d.*)::text, '' '') FROM quota.quota_consume(%L, ''{"images": 1, "messages": 1}''::jsonb) d', s)  -- images refused
        UNION ALL SELECT 17, format('SELECT string_agg(row(d.*)::text, '' '') FROM quota.quota_try_consume(%L, ''{"images": 1, "messages": 1}''::jsonb) d', s)
        UNION ALL SELECT 18, format('SELECT string_agg(row(d.*)::text, '' '') FROM quota.quota_consume(%L, ''{"messages": 1, "tokens": 1}''::jsonb) d', s)
        UNION ALL SELECT 19, format('SELECT string_agg(row(d.*)::text, '' '') FROM quota.quota_consume(%L, ''{"messages": 1, "nope": 1}''::jsonb) d', s)  -- unknown metric
        ORDER BY 1
    LOOP
        BEGIN
            EXECUTE r.q INTO r;
            INSERT INTO answers VALUES (hot, n, replace(r::text, s, 'S'));
        EXCEPTION WHEN OTHERS THEN
            INSERT INTO answers VALUES (hot, n, SQLSTATE || ' ' || replace(SQLERRM, s, 'S'));
        END;
        n := n + 1;
    END LOOP;
END $$;
SELECT pg_temp.run(true);
SELECT pg_temp.run(false);

-- The answers, step by step (hot path on), and any step where the two differ.
SELECT step, answer FROM answers WHERE hot ORDER BY step;
SELECT a.step, a.answer AS hot_on, b.answer AS hot_off
FROM answers a JOIN answers b USING (step) WHERE a.hot AND NOT b.hot AND a.answer IS DISTINCT FROM b.answer;

-- Counters, ledger rows and events: equal column for column.
SELECT metric, window_start, used, bonus, reserved, alerted FROM quota.counters WHERE subject = 'hp_on' ORDER BY metric;
SELECT (SELECT array_agg(row(metric, window_start, window_end, used, bonus, reserved, alerted)::text ORDER BY metric)
        FROM quota.counters WHERE subject = 'hp_on')
     = (SELECT array_agg(row(metric, window_start, window_end, used, bonus, reserved, alerted)::text ORDER BY metric)
        FROM quota.counters WHERE subject = 'hp_off') AS counters_equal,
       (SELECT array_agg(row(tenant, metric, window_start, kind, amount, overage, idempotency_key, metadata, created_at)::text ORDER BY id)
        FROM quota.usage_events WHERE subject = 'hp_on')
     = (SELECT array_agg(row(tenant, metric, window_start, kind, amount, overage, idempotency_key, metadata, created_at)::text ORDER BY id)
        FROM quota.usage_events WHERE subject = 'hp_off') AS ledger_equal,
       (SELECT array_agg(row(type, metric, payload - 'subject', created_at)::text ORDER BY id) FROM quota.events WHERE subject = 'hp_on')
     = (SELECT array_agg(row(type, metric, payload - 'subject', created_at)::text ORDER BY id) FROM quota.events WHERE subject = 'hp_off') AS events_equal;
SELECT type, metric, payload - 'subject' - 'occurred_at' AS payload FROM quota.events WHERE subject = 'hp_on' ORDER BY id;
SELECT count(*) AS mismatches FROM quota.ledger_check;

-- Which calls the hot path serves: a consume or check of an existing window,
-- not the first use of a window, not with quota.hot_path off.
SELECT quota.assign_plan('hp_dbg', 'HP');
SELECT quota.set_limit('HP', 'calls', 'day', 9000000000000000000);  -- "unlimited"
-- quota.hot_path_status() counts the calls each path served in this backend; served()
-- shows which path served the statements since it was last called.
CREATE FUNCTION served() RETURNS text LANGUAGE plpgsql AS $f$
DECLARE
    h bigint; g bigint;
    h0 bigint := coalesce(nullif(current_setting('test.hot', true), ''), '0')::bigint;
    g0 bigint := coalesce(nullif(current_setting('test.general', true), ''), '0')::bigint;
BEGIN
    SELECT hot_calls, general_calls INTO h, g FROM quota.hot_path_status();
    PERFORM set_config('test.hot', h::text, false), set_config('test.general', g::text, false);
    RETURN pg_catalog.format('hot %s, general %s', h - h0, g - g0);
END
$f$;
SELECT served() IS NOT NULL AS started;
SELECT used FROM quota.quota_check('hp_dbg', 'messages');
SELECT served();
SELECT used FROM quota.quota_consume('hp_dbg', 'messages');
SELECT served();
SELECT used FROM quota.quota_consume('hp_dbg', 'messages');
SELECT served();
SELECT used FROM quota.quota_check('hp_dbg', 'messages');
SELECT served();
SELECT quota.quota_consume('hp_dbg', 'tokens');  -- a new window: the general path
SELECT served();
SELECT metric, used FROM quota.quota_consume('hp_dbg', '{"messages": 1, "tokens": 2}'::jsonb);  -- both exist: hot
SELECT served();
SELECT used FROM quota.quota_consume('hp_dbg', 'calls', 5);  -- a new window: the general path
SELECT served();
SELECT used FROM quota.quota_consume('hp_dbg', 'calls', 4000000000000000000);  -- a huge limit: hot
SELECT served();
SELECT code FROM try($$ SELECT quota.quota_consume('hp_dbg', 'calls', 9223372036854775000) $$);  -- overflow: 22023
SELECT served();
SET quota.hot_path = off;
SELECT used FROM quota.quota_check('hp_dbg', 'messages');
SELECT served();
SELECT used FROM quota.quota_consume('hp_dbg', 'messages');
SELECT served();
RESET quota.hot_path;

-- Subjects' rows and plan limits are cached per backend; any change is seen by the next
-- call: a direct UPDATE of a limit, a plan change, an uncommitted change in this
-- transaction (and no longer after its ROLLBACK).
SELECT quota.set_limit('HP2', 'messages', 'day', 3);
SELECT used, limit_value FROM quota.quota_check('hp_dbg', 'messages');
UPDATE quota.plan_limits SET limit_value = 25 WHERE plan = 'HP' AND metric = 'messages';
SELECT used, limit_value FROM quota.quota_check('hp_dbg', 'messages');
SELECT quota.assign_plan('hp_dbg', 'HP2');
SELECT used, limit_value, remaining FROM quota.quota_check('hp_dbg', 'messages');
BEGIN;
SELECT quota.assign_plan('hp_dbg', 'HP');
SELECT used, limit_value FROM quota.quota_consume('hp_dbg', 'messages');
UPDATE quota.plan_limits SET limit_value = 30 WHERE plan = 'HP' AND metric = 'messages';
SELECT used, limit_value FROM quota.quota_consume('hp_dbg', 'messages');
ROLLBACK;
SELECT used, limit_value FROM quota.quota_check('hp_dbg', 'messages');
SELECT code FROM try($$ SELECT quota.quota_consume('hp_dbg', 'messages') $$);
DELETE FROM quota.counters WHERE subject = 'hp_dbg';
DELETE FROM quota.subjects WHERE subject = 'hp_dbg';
SELECT code FROM try($$ SELECT quota.quota_check('hp_dbg', 'messages') $$);

-- Another tenant's subject looks unknown on the hot path too.
BEGIN;
SET LOCAL quota.tenant = 'globex';
SELECT code, message FROM try($$ SELECT quota.quota_consume('hp_on', 'messages') $$);
SELECT code, message FROM try($$ SELECT quota.quota_check('hp_on', 'messages') $$);
ROLLBACK;

-- A read-only transaction cannot consume (the general path's error), and can check.
BEGIN READ ONLY;
SELECT code, message FROM try($$ SELECT quota.quota_consume('hp_on', 'messages') $$);
SELECT used, remaining FROM quota.quota_check('hp_on', 'messages');
ROLLBACK;

-- A trigger added to the ledger or the counters (an audit, say) is never bypassed: the
-- hot path steps aside for tables that have one.
CREATE TABLE hp_audit (tbl text, n int);
CREATE FUNCTION hp_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.hp_audit VALUES (TG_TABLE_NAME, 1); RETURN NEW; END $$;
CREATE TRIGGER hp_audit AFTER INSERT ON quota.usage_events FOR EACH ROW EXECUTE FUNCTION hp_audit();
SELECT used FROM quota.quota_consume('hp_on', 'messages');
DROP TRIGGER hp_audit ON quota.usage_events;
CREATE TRIGGER hp_audit BEFORE UPDATE ON quota.counters FOR EACH ROW EXECUTE FUNCTION hp_audit();
SELECT used FROM quota.quota_consume('hp_on', 'tokens');
DROP TRIGGER hp_audit ON quota.counters;
SELECT used FROM quota.quota_consume('hp_on', 'tokens');
SELECT tbl, count(*) FROM hp_audit GROUP BY tbl ORDER BY tbl;

-- The same session after DROP EXTENSION and CREATE EXTENSION (new tables, new OIDs).
DROP EXTENSION quota_ext CASCADE;
CREATE EXTENSION quota_ext;
SELECT quota.set_limit('HP', 'messages', 'day', 20);
SELECT quota.assign_plan('hp_new', 'HP');
SELECT used FROM quota.quota_consume('hp_new', 'messages');
SELECT used FROM quota.quota_consume('hp_new', 'messages');
SELECT used, remaining FROM quota.quota_check('hp_new', 'messages');
SELECT kind, amount FROM quota.usage_events ORDER BY id;
