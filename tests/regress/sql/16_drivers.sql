-- 0.6.0: every call a driver sends with untyped parameters resolves to one function
-- (tests/drivers/ prepares every quota function and arity through psql, asyncpg,
-- node-postgres and tokio-postgres); here, the forms that changed, and the trigger
-- refusal that names its table.
SET quota.clock_override = '2026-11-23 12:00:00+00';
SELECT 'ok' AS ok FROM quota.set_limit('DRV', 'calls', 'day', 3);
SELECT 'ok' AS ok FROM quota.set_limit('DRV', 'tokens', 'day', 100);
SELECT 'ok' AS ok FROM quota.assign_plan('drv-1', 'DRV');

-- The overloads of quota_consume and quota_try_consume: one single-metric form, and the
-- two-argument jsonb spelling with no defaults. The multi-metric forms with a key and
-- metadata have names of their own.
SELECT oid::regprocedure AS function, pronargdefaults AS defaults, proretset AS setof
FROM pg_proc WHERE pronamespace = 'quota'::regnamespace
  AND proname IN ('quota_consume', 'quota_try_consume', 'quota_consume_many', 'quota_try_consume_many')
ORDER BY proname, pronargs, 1::text;

-- Untyped parameters, as asyncpg, node-postgres and tokio-postgres send them: the text
-- form at three and four arguments (0.5.0: 42725 "function ... is not unique").
PREPARE consume3 AS SELECT allowed, used, reason FROM quota.quota_consume($1, $2, $3);
PREPARE try4 AS SELECT allowed, used, reason FROM quota.quota_try_consume($1, $2, $3, $4);
PREPARE many4 AS SELECT metric, used, reason FROM quota.quota_consume_many($1, $2, $3, $4) ORDER BY metric;
SELECT parameter_types::text FROM pg_prepared_statements WHERE name IN ('consume3', 'try4', 'many4') ORDER BY name;
EXECUTE consume3('drv-1', 'calls', '1');
EXECUTE try4('drv-1', 'calls', '1', 'key-1');
EXECUTE try4('drv-1', 'calls', '1', 'key-1');   -- the key's first decision, nothing consumed

-- quota_consume_many: all or nothing, with an idempotency key and metadata.
EXECUTE many4('drv-1', '{"calls": 1, "tokens": 40}', 'job-7', '{"job": 7}');
EXECUTE many4('drv-1', '{"calls": 1, "tokens": 40}', 'job-7', '{"job": 7}');  -- replay
SELECT metric, amount, metadata FROM quota.usage_events WHERE subject = 'drv-1' AND idempotency_key = 'job-7' ORDER BY metric;
SELECT * FROM try($$ SELECT quota.quota_consume_many('drv-1', '{"calls": 1, "tokens": 1}') $$);
SELECT metric, allowed, used, reason FROM quota.quota_try_consume_many('drv-1', '{"calls": 1, "tokens": 1}', 'job-8') ORDER BY metric;
-- The two-argument spelling stays.
SELECT metric, allowed, reason FROM quota.quota_try_consume('drv-1', '{"calls": 1, "tokens": 1}'::jsonb) ORDER BY metric;

-- Amounts passed untyped take the single-metric form: the metric is then a JSON object,
-- and the HINT says to type them jsonb (or to call quota_consume_many).
SELECT * FROM try($$ SELECT quota.quota_consume('drv-1', '{"calls": 1}') $$);

-- The three- and four-argument jsonb spellings are gone (use quota_consume_many).
SELECT * FROM try($$ SELECT quota.quota_consume('drv-1', '{"calls": 1}'::jsonb, 'key-9') $$);
SELECT * FROM try($$ SELECT quota.quota_try_consume('drv-1', '{"calls": 1}'::jsonb, NULL, '{}'::jsonb) $$);

-- An IP address subject: an untyped parameter picks the text form, which stores the
-- string as it is; `$1::inet` takes the inet form, which validates and canonicalises.
SELECT 'ok' AS ok FROM quota.set_limit('ANON', 'uses', 'day', 5);
SET quota.default_plan = 'ANON';
PREPARE ip_untyped AS SELECT subject, used FROM quota.quota_consume($1, $2);
PREPARE ip_typed AS SELECT subject, used FROM quota.quota_consume($1::inet, $2);
SELECT name, parameter_types::text FROM pg_prepared_statements WHERE name LIKE 'ip_%' ORDER BY name;
EXECUTE ip_typed('192.168.1.10/32', 'uses');
SELECT * FROM try($$ EXECUTE ip_typed('192.168.1.999', 'uses') $$);
EXECUTE ip_untyped('192.168.1.999', 'uses');
RESET quota.default_plan;

-- A refusal by a quota's trigger names the table and the trigger, in the message and in
-- DETAIL ("table", "trigger"); the rest of the DETAIL is the consume's.
CREATE TABLE public.drv_messages (id serial PRIMARY KEY, sender text NOT NULL, body text);
SELECT 'ok' AS ok FROM quota.enforce_on_insert('public.drv_messages', subject_column => 'sender', metric => 'calls');
SELECT * FROM try($$ INSERT INTO public.drv_messages (sender, body) VALUES ('drv-1', 'over the limit') $$);
SELECT * FROM try($$ INSERT INTO public.drv_messages (sender, body) VALUES ('nobody', 'unknown subject') $$);
SELECT count(*) AS rows_kept FROM public.drv_messages;
SELECT 'ok' AS ok FROM quota.enforce_off('public.drv_messages', 'calls');
DROP TABLE public.drv_messages;

-- 0.8.0: quota.set_pool(subject, pool) resolves with untyped parameters too (both text;
-- a NULL pool takes the subject out of its pool). tests/drivers/ prepares it with the rest.
SELECT 'ok' AS ok FROM quota.assign_plan('drv-team', 'DRV');
PREPARE pool2 AS SELECT quota.set_pool($1, $2);
SELECT parameter_types::text FROM pg_prepared_statements WHERE name = 'pool2';
EXECUTE pool2('drv-1', 'drv-team');
SELECT subject, pool FROM quota.subjects WHERE subject = 'drv-1';
EXECUTE pool2('drv-1', NULL);
SELECT subject, pool FROM quota.subjects WHERE subject = 'drv-1';
DEALLOCATE ALL;
RESET quota.clock_override;
