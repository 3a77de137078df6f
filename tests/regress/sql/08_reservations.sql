-- Reservations (reserve, commit, release, expiry) and events (thresholds, outbox).
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET quota.clock_override = '2026-11-23 12:00:00+00';

SELECT 'ok' AS ok FROM quota.set_limit('AI', 'tokens', 'month', 10000);
SELECT 'ok' AS ok FROM quota.set_limit('AI', 'images', 'day', 10, 'soft');
SELECT 'ok' AS ok FROM quota.set_alerts('AI', 'tokens', ARRAY[80, 100]);
SELECT 'ok' AS ok FROM quota.set_alerts('AI', 'images', ARRAY[50]);
SELECT 'ok' AS ok FROM quota.assign_plan('gen', 'AI');

-- Seed 000's flow: check, reserve 4000, the generation fails and is released.
SELECT allowed, remaining FROM quota.quota_check('gen', 'tokens', 4000);
SELECT reservation AS r1 FROM quota.quota_reserve('gen', 'tokens', 4000) \gset
SELECT expires_at, allowed, used, reserved, remaining, requested, reason FROM quota.quota_reserve('gen', 'tokens', 1, idempotency_key => 'hold-1');
SELECT used, reserved, remaining FROM quota.quota_check('gen', 'tokens', 0);
SELECT metric, used, reserved, remaining FROM quota.quota_status('gen') WHERE metric = 'tokens';
SELECT quota.quota_release(:'r1', 'model failed') AS released, quota.quota_release(:'r1') AS released_again;
SELECT used, reserved, remaining FROM quota.quota_check('gen', 'tokens', 0);
-- Reserve again and commit the real 1234 tokens: usage rises by 1234, the rest is freed.
SELECT reservation AS r2 FROM quota.quota_reserve('gen', 'tokens', 4000) \gset
SELECT allowed, used, reserved, remaining, requested, reason FROM quota.quota_commit(:'r2', 1234);
-- Settling twice answers the first settlement again.
SELECT allowed, used, reserved, remaining, requested, reason FROM quota.quota_commit(:'r2', 999);
-- (reservation ids are random: they are shown as R1, R2.)
SELECT code, replace(message, :'r2', 'R2') AS message, replace(detail, :'r2', 'R2') AS detail, hint
FROM try(format('SELECT quota.quota_release(%L)', :'r2'));
SELECT code, replace(message, :'r1', 'R1') AS message, replace(detail, :'r1', 'R1') AS detail, hint
FROM try(format('SELECT quota.quota_commit(%L)', :'r1'));

-- Holds count against the limit: what is held cannot be consumed by others.
SELECT reservation AS r3 FROM quota.quota_reserve('gen', 'tokens', 8000) \gset
SELECT * FROM try($$ SELECT quota.quota_consume('gen', 'tokens', 1000) $$);
SELECT reservation IS NULL AS no_id, allowed, reason FROM quota.quota_try_reserve('gen', 'tokens', 1000);
-- Committing more than held: the extra must fit under a hard limit (QT429, nothing changes) ...
SELECT * FROM try(format('SELECT quota.quota_commit(%L, 9000)', :'r3'));
SELECT used, reserved FROM quota.quota_check('gen', 'tokens', 0);
-- ... and is consumed when it fits.
SELECT used, reserved, remaining FROM quota.quota_commit(:'r3', 8700);
-- The ledger: reserve/release/expire record holds, commit records usage.
SELECT kind, amount FROM quota.usage_events WHERE subject = 'gen' ORDER BY id;

-- Expiry: a lapsed hold stops counting at once (lazily), and maintenance() sweeps it.
SELECT 'ok' AS ok FROM quota.assign_plan('slow', 'AI');
SELECT reservation AS r4 FROM quota.quota_reserve('slow', 'tokens', 6000, '1 minute') \gset
SELECT reservation AS r5 FROM quota.quota_reserve('slow', 'tokens', 1000, '1 hour') \gset
SET quota.clock_override = '2026-11-23 12:01:00+00';
SELECT used, reserved, remaining FROM quota.quota_check('slow', 'tokens', 0);
SELECT status FROM quota.reservations WHERE id = :'r4';
SELECT quota.maintenance() AS expired, quota.maintenance() AS expired_again;
SELECT status FROM quota.reservations WHERE id = :'r4';
SELECT kind, amount FROM quota.usage_events WHERE subject = 'slow' ORDER BY id;
-- A late commit of an expired hold is a plain consume: it must fit on its own.
SELECT used, reserved, remaining, requested FROM quota.quota_commit(:'r4', 500);
SELECT quota.quota_release(:'r5') AS released;

-- Events: thresholds fire once per window each; soft overage; bonus; reset; commits.
SELECT type, subject, metric, payload->>'threshold' AS threshold, payload->>'used' AS used, payload->>'limit' AS lim
FROM quota.pending_events ORDER BY id;
SELECT 'ok' AS ok FROM quota.assign_plan('painter', 'AI');
SELECT used FROM quota.quota_consume('painter', 'images', 4);
SELECT used FROM quota.quota_consume('painter', 'images', 1);
SELECT used FROM quota.quota_consume('painter', 'images', 1);
SELECT used, reason FROM quota.quota_consume('painter', 'images', 6);
SELECT used, reason FROM quota.quota_consume('painter', 'images', 1);
SELECT quota.quota_reset('painter') AS emptied;
SELECT used FROM quota.quota_consume('painter', 'images', 6);
SELECT type, payload->>'threshold' AS threshold, payload->>'used' AS used, payload->>'limit' AS lim
FROM quota.pending_events WHERE subject = 'painter' ORDER BY id;
SET quota.notify_every_consume = on;
SELECT used FROM quota.quota_consume('painter', 'images', 1);
RESET quota.notify_every_consume;
SELECT type, payload->>'amount' AS amount FROM quota.pending_events WHERE subject = 'painter' ORDER BY id DESC LIMIT 1;
SELECT payload - 'reservation' AS payload, payload ? 'reservation' AS has_reservation_id
FROM quota.pending_events WHERE type = 'reservation_committed' ORDER BY id LIMIT 1;
SELECT quota.ack_events((SELECT max(id) FROM quota.events)) > 0 AS acked;
SELECT count(*) AS pending FROM quota.pending_events;
-- A rolled-back transaction leaves no event.
BEGIN;
SELECT used FROM quota.quota_consume('painter', 'images', 20);
ROLLBACK;
SELECT count(*) AS pending FROM quota.pending_events;

-- Bad arguments.
SELECT * FROM try($$ SELECT quota.quota_reserve('gen', 'tokens', 0) $$);
SELECT * FROM try($$ SELECT quota.quota_reserve('gen', 'tokens', 10, '-1 minute') $$);
SELECT * FROM try($$ SELECT quota.quota_reserve('gen', 'tokens', 10, '0 seconds') $$);
SELECT * FROM try($$ SELECT quota.quota_reserve('gen', 'tokens', NULL) $$);
SELECT * FROM try($$ SELECT quota.quota_commit('00000000-0000-0000-0000-000000000000') $$);
SELECT * FROM try($$ SELECT quota.quota_commit(NULL) $$);
SELECT * FROM try($$ SELECT quota.quota_release('not-a-uuid') $$);
SELECT * FROM try(format('SELECT quota.quota_commit(%L, -1)', :'r5'));
SELECT * FROM try($$ SELECT quota.set_alerts('AI', 'tokens', ARRAY[0]) $$);
SELECT * FROM try($$ SELECT quota.set_alerts('AI', 'tokens', ARRAY[NULL]::int[]) $$);
SELECT * FROM try($$ SELECT quota.set_alerts('AI', 'pictures', ARRAY[80]) $$);
