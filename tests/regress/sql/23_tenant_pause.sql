-- Tenant pause (0.9.0, scale-out): a paused tenant's quota calls fail with QT503 on both
-- paths, with a DETAIL and a HINT; other tenants and untenanted subjects go on; a hold
-- made before the pause can be neither committed nor released; nothing is written.
SET TimeZone = 'UTC';
SET quota.clock_override = '2026-11-23 12:00:00+00';
SELECT quota.set_limit('TP', 'messages', 'day', 100);
SET quota.tenant = 'tp_acme';
SELECT quota.assign_plan('tp_a1', 'TP');
SELECT allowed, used FROM quota.quota_consume('tp_a1', 'messages', 1);
SELECT reservation AS hold1 FROM quota.quota_reserve('tp_a1', 'messages', 2) \gset
SELECT reservation AS hold2 FROM quota.quota_reserve('tp_a1', 'messages', 3) \gset
SELECT remaining FROM quota.throttle('k_paused', 1, 10, '1 minute');
SET quota.tenant = 'tp_other';
SELECT quota.assign_plan('tp_o1', 'TP');
SELECT allowed, used FROM quota.quota_consume('tp_o1', 'messages', 1);
SELECT remaining FROM quota.throttle('k_swept', 1, 10, '1 minute');
RESET quota.tenant;
SELECT quota.assign_plan('tp_u1', 'TP');
SELECT allowed, used FROM quota.quota_consume('tp_u1', 'messages', 1);

-- Arguments: empty, over-long, NULL; resuming a tenant that is not paused.
SELECT code, message FROM try($$ SELECT quota.pause_tenant('') $$);
SELECT code FROM try($$ SELECT quota.pause_tenant(repeat('t', 129)) $$);
SELECT code FROM try($$ SELECT quota.pause_tenant('tp_acme', repeat('n', 129)) $$);
SELECT code FROM try($$ SELECT quota.pause_tenant(NULL) $$);
SELECT code FROM try($$ SELECT quota.pause_tenant('tp_acme', 'n2', NULL) $$);
SELECT quota.resume_tenant('tp_acme');
-- Not paused: await_tenant_quiet refuses.
SELECT code, message, detail, hint FROM try($$ SELECT quota.await_tenant_quiet('tp_acme') $$);

-- Pause.
SELECT quota.pause_tenant('tp_acme', 'n2');
SELECT tenant, state, node FROM quota.tenant_pauses;
-- The same pause in this transaction is not a committed one: await refuses it too.
BEGIN;
SELECT quota.pause_tenant('tp_new_t', 'n3');
SELECT code FROM try($$ SELECT quota.await_tenant_quiet('tp_new_t') $$);
ROLLBACK;
-- Nor one made under a savepoint of this transaction (its row's xmin is a subtransaction
-- of this one), before or after the savepoint is released.
BEGIN;
SAVEPOINT before_pause;
SELECT quota.pause_tenant('tp_new_t', 'n3');
SELECT code, message FROM try($$ SELECT quota.await_tenant_quiet('tp_new_t', '1 second') $$);
RELEASE SAVEPOINT before_pause;
SELECT code FROM try($$ SELECT quota.await_tenant_quiet('tp_new_t', '1 second') $$);
ROLLBACK;
-- Committed: nothing else is running here, so it waits for nobody.
SELECT quota.await_tenant_quiet('tp_acme', '1 second');
-- A prepared transaction is waited for (it has no start time to compare): 55P03 after the
-- timeout, naming its gid; the tenant stays paused.
BEGIN;
SELECT 1 AS prepared_work;
PREPARE TRANSACTION 'tp_pending';
SELECT code, message, detail::jsonb -> 'prepared' AS prepared, detail::jsonb -> 'running' AS running, hint
FROM try($$ SELECT quota.await_tenant_quiet('tp_acme', '100 milliseconds') $$);
ROLLBACK PREPARED 'tp_pending';
SELECT quota.await_tenant_quiet('tp_acme', '1 second');
SELECT code FROM try($$ SELECT quota.await_tenant_quiet('tp_acme', '-1 second') $$);
SELECT code FROM try($$ SELECT quota.await_tenant_quiet('tp_acme', '2 hours') $$);

-- Every call for the paused tenant, on both paths: QT503, the same answer.
SET quota.tenant = 'tp_acme';
SET quota.default_plan = 'TP';
SELECT set_config('regress.hold1', :'hold1', false) IS NOT NULL AS h1, set_config('regress.hold2', :'hold2', false) IS NOT NULL AS h2;
CREATE TABLE pause_answers (hot boolean, call text, code text, message text, detail text, hint text);
DO $$
DECLARE
    hot boolean;
    call text;
BEGIN
    FOREACH hot IN ARRAY ARRAY[true, false] LOOP
        PERFORM set_config('quota.hot_path', hot::text, false);
        FOREACH call IN ARRAY ARRAY[
            $c$SELECT quota.quota_consume('tp_a1', 'messages', 1)$c$,
            $c$SELECT quota.quota_try_consume('tp_a1', 'messages', 1)$c$,
            $c$SELECT quota.quota_consume_many('tp_a1', '{"messages": 1}')$c$,
            $c$SELECT quota.quota_check('tp_a1', 'messages', 1)$c$,
            $c$SELECT quota.quota_refund('tp_a1', 'messages', 1)$c$,
            $c$SELECT quota.quota_reserve('tp_a1', 'messages', 1)$c$,
            $c$SELECT quota.quota_commit('$c$ || current_setting('regress.hold1') || $c$')$c$,
            $c$SELECT quota.quota_release('$c$ || current_setting('regress.hold2') || $c$')$c$,
            $c$SELECT * FROM quota.quota_status('tp_a1')$c$,
            $c$SELECT quota.throttle('k1', 1, 10, '1 minute')$c$,
            $c$SELECT quota.ack_events(1000000)$c$,
            $c$SELECT quota.quota_consume('tp_a_new', 'messages', 1)$c$,
            $c$SELECT quota.quota_check('tp_a_new', 'messages', 1)$c$,
            $c$SELECT quota.apply_bonus('tp_a1', 'messages', 'survey', 'r1')$c$,
            $c$SELECT quota.quota_reset('tp_a1', 'messages')$c$,
            $c$SELECT quota.assign_plan('tp_a1', 'TP')$c$,
            $c$SELECT quota.set_override('tp_a1', 'messages', 'day', 5)$c$,
            $c$SELECT quota.delete_subject('tp_a1')$c$]
        LOOP
            INSERT INTO pause_answers SELECT hot, call, t.* FROM try(call) t;
        END LOOP;
    END LOOP;
    PERFORM set_config('quota.hot_path', 'on', false);
END
$$;
SELECT regexp_replace(call, '[0-9a-f-]{36}', '<hold>') AS call, code FROM pause_answers WHERE hot ORDER BY 1;
-- Hot and general paths answer alike.
SELECT regexp_replace(h.call, '[0-9a-f-]{36}', '<hold>') AS call, h.code, g.code FROM pause_answers h JOIN pause_answers g ON g.call = h.call AND NOT g.hot
WHERE h.hot AND (h.code, h.message, h.detail, h.hint) IS DISTINCT FROM (g.code, g.message, g.detail, g.hint);
-- One message, DETAIL and HINT for all (ack_events, written in SQL, words it the same).
SELECT DISTINCT message, detail, hint FROM pause_answers WHERE code = 'QT503';
-- The hot path stepped aside for the consume (its note) and wrote nothing.
SET client_min_messages = debug2;
SELECT code FROM try($$ SELECT quota.quota_consume('tp_a1', 'messages', 1) $$);
RESET client_min_messages;
RESET quota.default_plan;
-- Nothing was written: usage, holds, subjects, keys.
RESET quota.tenant;
SELECT subject, period, used, reserved FROM quota.counters WHERE subject LIKE 'tp\_%' ORDER BY subject;
SELECT count(*) AS holds FROM quota.reservations WHERE subject = 'tp_a1';
SELECT subject FROM quota.subjects WHERE subject LIKE 'tp\_%' ORDER BY subject;
SELECT count(*) AS throttle_keys FROM quota.throttles WHERE tenant = 'tp_acme';
-- An admin without quota.tenant acting on the paused tenant's subject is refused too.
SELECT code FROM try($$ SELECT quota.quota_consume('tp_a1', 'messages', 1) $$);
-- Maintenance leaves a paused tenant's holds alone, with a WARNING, and goes on.
SET quota.clock_override = '2026-11-23 13:00:00+00';
SELECT quota.maintenance() >= 0 AS swept;
-- Its throttle keys stay too (a full bucket's key is deleted for other tenants): a move
-- copies them and compares their digests before it deletes them here.
SELECT tenant, key FROM quota.throttles WHERE key IN ('k_paused', 'k_swept') ORDER BY tenant;
-- compact_ledger leaves a paused tenant's events (and sums up the others').
BEGIN;
SELECT count(*) FILTER (WHERE tenant = 'tp_acme') AS paused_events, count(*) FILTER (WHERE tenant IS DISTINCT FROM 'tp_acme') > 0 AS other_events
FROM quota.usage_events WHERE created_at < '2026-11-23 12:30:00+00';
SELECT quota.compact_ledger('30 minutes') > 0 AS compacted;
SELECT count(*) FILTER (WHERE tenant = 'tp_acme') AS paused_events, count(*) FILTER (WHERE tenant IS DISTINCT FROM 'tp_acme') AS other_events
FROM quota.usage_events WHERE created_at < '2026-11-23 12:30:00+00';
SELECT count(*) AS paused_summaries FROM quota.usage_summaries WHERE tenant = 'tp_acme';
ROLLBACK;
-- ack_events from a session without quota.tenant (which acknowledges every tenant's) leaves
-- a paused tenant's events pending.
BEGIN;
INSERT INTO quota.events (type, subject, metric, payload, created_at)
VALUES ('regress', 'tp_a1', 'messages', '{}', now()), ('regress', 'tp_u1', 'messages', '{}', now());
SELECT quota.ack_events((SELECT max(id) FROM quota.events)) >= 1 AS acked;
SELECT subject, acknowledged_at IS NOT NULL AS acknowledged FROM quota.events WHERE type = 'regress' ORDER BY subject;
ROLLBACK;
SET quota.clock_override = '2026-11-23 12:00:00+00';

-- A pool of the paused tenant refuses as its member would (QT503), on both paths, and is
-- not charged: an untenanted member whose pool's row was given the tenant by hand
-- (quota.set_pool keeps a pool and its members in one tenant).
SELECT quota.assign_plan('tpp_pool', 'TP');
SELECT quota.assign_plan('tpp_member', 'TP');
SELECT quota.set_pool('tpp_member', 'tpp_pool');
SELECT allowed, used FROM quota.quota_consume('tpp_member', 'messages', 1);
UPDATE quota.subjects SET tenant = 'tp_acme' WHERE subject = 'tpp_pool';
SELECT code, message FROM try($$ SELECT quota.quota_consume('tpp_member', 'messages', 1) $$);
SET quota.hot_path = off;
SELECT code FROM try($$ SELECT quota.quota_consume('tpp_member', 'messages', 1) $$);
SELECT code FROM try($$ SELECT quota.quota_check('tpp_member', 'messages', 1) $$);
SELECT code FROM try($$ SELECT quota.quota_reserve('tpp_member', 'messages', 1) $$);
RESET quota.hot_path;
SELECT subject, used FROM quota.counters WHERE subject LIKE 'tpp\_%' ORDER BY subject;
DELETE FROM quota.subjects WHERE subject IN ('tpp_member', 'tpp_pool');

-- Other tenants and untenanted subjects go on, on both paths.
SET quota.tenant = 'tp_other';
SELECT allowed, used FROM quota.quota_consume('tp_o1', 'messages', 1);
SET quota.hot_path = off;
SELECT allowed, used FROM quota.quota_consume('tp_o1', 'messages', 1);
RESET quota.hot_path;
SELECT remaining FROM quota.throttle('k1', 1, 10, '1 minute');
RESET quota.tenant;
SELECT allowed, used FROM quota.quota_consume('tp_u1', 'messages', 1);
-- Monitoring stays readable.
SELECT subject, used FROM quota.window_usage WHERE subject = 'tp_a1';

-- Moved: the message and HINT send the caller to the new node.
SELECT quota.pause_tenant('tp_acme', 'n2', moved => true);
SELECT tenant, state, node FROM quota.tenant_pauses;
SET quota.tenant = 'tp_acme';
SELECT code, message, detail, hint FROM try($$ SELECT quota.quota_consume('tp_a1', 'messages', 1) $$);
SELECT code, message, detail, hint FROM try($$ SELECT quota.ack_events(1) $$);
RESET quota.tenant;
-- Without a node.
SELECT quota.pause_tenant('tp_acme');
SET quota.tenant = 'tp_acme';
SELECT code, message, detail FROM try($$ SELECT quota.quota_check('tp_a1', 'messages', 1) $$);
RESET quota.tenant;

-- On the old node after a move (the tenant's subjects deleted with their holds and
-- overrides, its pause 'moved'), a call naming a subject or hold that is not there answers
-- QT503 for the session's paused tenant, never "unknown" (QT404, false, 0, 22023): the
-- caller must be sent to the new node. Here the move's deletion is made by hand, keeping
-- a hold and an app row's charge (which a move deletes too) to reach those answers.
CREATE TABLE tp_rows (id int PRIMARY KEY, user_id text);
SELECT 'ok' AS ok FROM quota.enforce_on_insert('tp_rows', subject_column => 'user_id', metric => 'messages', refund_on_delete => true);
SET quota.tenant = 'tp_gone';
SELECT quota.assign_plan('tp_g1', 'TP');
INSERT INTO tp_rows VALUES (1, 'tp_g1');
SELECT reservation AS hold_gone FROM quota.quota_reserve('tp_g1', 'messages', 1) \gset
SELECT set_config('regress.hold_gone', :'hold_gone', false) IS NOT NULL AS h;
RESET quota.tenant;
SELECT quota.pause_tenant('tp_gone', 'n2', moved => true);
ALTER TABLE quota.subjects DISABLE TRIGGER subjects_forget;
DELETE FROM quota.subjects WHERE subject = 'tp_g1';
ALTER TABLE quota.subjects ENABLE TRIGGER subjects_forget;
SET quota.tenant = 'tp_gone';
SELECT regexp_replace(call, '[0-9a-f-]{36}', '<hold>') AS call, t.code
FROM unnest(ARRAY[
    $c$SELECT quota.delete_subject('tp_g1')$c$,
    $c$DELETE FROM tp_rows WHERE id = 1$c$,
    $c$SELECT quota.set_override('tp_g1', 'messages', 'day', 5)$c$,
    $c$SELECT quota.remove_override('tp_g1', 'messages')$c$,
    $c$SELECT quota.cancel_plan_change('tp_g1')$c$,
    $c$SELECT quota.assign_plan('tp_g1', 'TP', effective_at => '2026-12-01')$c$,
    $c$SELECT quota.set_pool('tp_g1', NULL)$c$,
    $c$SELECT quota.quota_commit('$c$ || current_setting('regress.hold_gone') || $c$')$c$,
    $c$SELECT quota.quota_release('$c$ || current_setting('regress.hold_gone') || $c$')$c$,
    $c$SELECT quota.quota_commit('00000000-0000-4000-8000-000000000001')$c$,
    $c$SELECT quota.quota_release('00000000-0000-4000-8000-000000000001')$c$,
    $c$SELECT quota.quota_status('tp_g1')$c$]) AS call, LATERAL try(call) t;
-- The same calls from a session of another tenant (or none) still answer "unknown".
SET quota.tenant = 'tp_other';
SELECT t.code, t.message FROM try($$ SELECT quota.cancel_plan_change('tp_g1') $$) t;
SELECT quota.delete_subject('tp_g1');
RESET quota.tenant;
SELECT t.code FROM try($$ SELECT quota.quota_release('00000000-0000-4000-8000-000000000001') $$) t;
DELETE FROM quota.reservations WHERE subject = 'tp_g1';
DELETE FROM quota.row_charges WHERE subject = 'tp_g1';
DROP TABLE tp_rows;
SELECT quota.resume_tenant('tp_gone');

-- Who may pause: not quota_app (42501); an admin scoped to one tenant only that one.
DROP ROLE IF EXISTS regress_pause_app;
CREATE ROLE regress_pause_app IN ROLE quota_app;
SET ROLE regress_pause_app;
SELECT code FROM try($$ SELECT quota.pause_tenant('tp_other') $$);
SELECT code FROM try($$ SELECT quota.resume_tenant('tp_acme') $$);
SELECT code FROM try($$ SELECT quota.await_tenant_quiet('tp_acme') $$);
SELECT code FROM try($$ INSERT INTO quota.tenant_pauses (tenant, state) VALUES ('tp_other', 'moving') $$);
SELECT code FROM try($$ DELETE FROM quota.tenant_pauses $$);
-- It reads only its tenant's pause (row-level security).
SELECT count(*) AS visible_pauses FROM quota.tenant_pauses;
SET quota.tenant = 'tp_acme';
SELECT tenant, state FROM quota.tenant_pauses;
RESET quota.tenant;
RESET ROLE;
-- Bound to another tenant, naming the paused one: 42501 as ever, never QT503 (which would
-- tell it that tenant is paused).
SELECT quota.bind_tenant('regress_pause_app', 'tp_other');
SET ROLE regress_pause_app;
SET quota.tenant = 'tp_acme';
SELECT code FROM try($$ SELECT quota.ack_events(1) $$);
SELECT code FROM try($$ SELECT quota.quota_consume('tp_a1', 'messages', 1) $$);
SELECT code FROM try($$ SELECT quota.throttle('k1', 1, 10, '1 minute') $$);
RESET quota.tenant;
RESET ROLE;
SELECT quota.unbind_tenant('regress_pause_app');
DROP ROLE regress_pause_app;
SET quota.tenant = 'tp_other';
SELECT code, message, hint FROM try($$ SELECT quota.pause_tenant('tp_acme2') $$);
SELECT code FROM try($$ SELECT quota.resume_tenant('tp_acme') $$);
SELECT quota.pause_tenant('tp_other');   -- its own tenant
SELECT quota.resume_tenant('tp_other');
RESET quota.tenant;
SELECT tenant FROM quota.tenant_pauses ORDER BY tenant;

-- Resume: the tenant's calls work again, on both paths, and the holds settle.
SELECT quota.resume_tenant('tp_acme');
SELECT quota.resume_tenant('tp_acme');
SET quota.tenant = 'tp_acme';
SELECT allowed, used FROM quota.quota_consume('tp_a1', 'messages', 1);
SET quota.hot_path = off;
SELECT allowed, used FROM quota.quota_consume('tp_a1', 'messages', 1);
RESET quota.hot_path;
SELECT used FROM quota.quota_commit(:'hold1');
SELECT quota.quota_release(:'hold2');
-- With nothing paused (and no holds left) the hot path serves the tenant again: the first call after the
-- change reads the pause (general path), the next ones find it in this backend's copy.
SELECT allowed FROM quota.quota_consume('tp_a1', 'messages', 1);
SELECT hot_calls AS hot_before FROM quota.hot_path_status() \gset
SELECT allowed FROM quota.quota_consume('tp_a1', 'messages', 1);
SELECT allowed FROM quota.quota_check('tp_a1', 'messages', 1);
SELECT hot_calls - :hot_before AS served_hot FROM quota.hot_path_status();
RESET quota.tenant;
DROP TABLE pause_answers;
