-- 0.7.0: quota.throttle, redis-cell's CL.THROTTLE on any key (GCRA).
SET quota.clock_override = '2026-11-23 12:00:00+00';

-- A hostile role's search_path cannot change what throttle's statements mean, even when
-- this backend plans them under it (its first call): they run as the extension's owner,
-- with every operator named with its schema. Evil '+' and '<=' would admit every call.
CREATE ROLE regress_thr_hostile;
GRANT quota_app TO regress_thr_hostile;
CREATE SCHEMA regress_evil AUTHORIZATION regress_thr_hostile;
SET ROLE regress_thr_hostile;
CREATE FUNCTION regress_evil.plus(timestamptz, interval) RETURNS timestamptz LANGUAGE sql AS $$ SELECT '-infinity'::timestamptz $$;
CREATE OPERATOR regress_evil.+ (LEFTARG = timestamptz, RIGHTARG = interval, FUNCTION = regress_evil.plus);
CREATE FUNCTION regress_evil.le(timestamptz, timestamptz) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
CREATE OPERATOR regress_evil.<= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = regress_evil.le);
SET search_path = regress_evil, pg_catalog;
SELECT limited, remaining FROM quota.throttle('hijack', 0, 1, '1 hour');
SELECT limited, remaining FROM quota.throttle('hijack', 0, 1, '1 hour');
RESET search_path;
RESET ROLE;
DROP SCHEMA regress_evil CASCADE;
DROP ROLE regress_thr_hostile;

-- redis-cell's published example: CL.THROTTLE user123 15 30 60 1 -> 0 16 15 -1 2
-- (redis-cell's whole seconds round a partial second up).
SELECT limited::int, "limit", remaining, coalesce(ceil(extract(epoch FROM retry_after))::bigint, -1) AS retry_after,
       ceil(extract(epoch FROM reset_after))::bigint AS reset_after
FROM quota.throttle('user123', 15, 30, '60 seconds', 1);
-- 5 per 7 seconds: 1.4 s, which redis-cell reports as 2.
SELECT reset_after, ceil(extract(epoch FROM reset_after))::bigint AS redis_seconds FROM quota.throttle('partial', 0, 5, '7 seconds');
-- 15 more at the same instant pass; the 17th is refused, retry after one interval (2 s).
SELECT count(*) FILTER (WHERE NOT limited) AS admitted FROM generate_series(1, 15) i, LATERAL quota.throttle('user123', 15, 30, '60 seconds', 1 + 0 * i) t;
SELECT * FROM quota.throttle('user123', 15, 30, '60 seconds');
-- Two seconds later one unit is back, and the call after it is refused again.
SET quota.clock_override = '2026-11-23 12:00:02+00';
SELECT * FROM quota.throttle('user123', 15, 30, '60 seconds');
SELECT * FROM quota.throttle('user123', 15, 30, '60 seconds');
-- quantity 0 reads without taking; a quantity over the limit is refused with no retry.
SELECT * FROM quota.throttle('user123', 15, 30, '60 seconds', 0);
SELECT * FROM quota.throttle('fresh-key', 15, 30, '60 seconds', 17);
SELECT count(*) AS rows_for_refused_new_key FROM quota.throttles WHERE key = 'fresh-key';

-- A rolled-back call is not counted.
BEGIN;
SELECT remaining FROM quota.throttle('rb-key', 0, 1, '1 hour');
ROLLBACK;
SELECT limited, remaining FROM quota.throttle('rb-key', 0, 1, '1 hour');

-- Bad input: 22023 or 22004, never XX000.
SELECT code, message FROM try($$ SELECT * FROM quota.throttle('k', -1, 1, '1 minute') $$);
SELECT code, message FROM try($$ SELECT * FROM quota.throttle('k', 0, 0, '1 minute') $$);
SELECT code, message FROM try($$ SELECT * FROM quota.throttle('k', 0, 1, '1 month') $$);
SELECT code, message FROM try($$ SELECT * FROM quota.throttle('k', 0, 1, '-1 minute') $$);
SELECT code, message, detail FROM try($$ SELECT * FROM quota.throttle('k', 0, 100, '1 microsecond') $$);
SELECT code, message FROM try($$ SELECT * FROM quota.throttle('k', 0, 1, '1 minute', -1) $$);
SELECT code, message FROM try($$ SELECT * FROM quota.throttle('k', 9223372036854775807, 1, '1 minute') $$);
SELECT code, message FROM try($$ SELECT * FROM quota.throttle('k', 0, 1, '1 minute', 9223372036854775807) $$);
SELECT code, message, detail FROM try($$ SELECT * FROM quota.throttle('k', 29000, 1, '3660 days') $$);
SELECT code, message FROM try($$ SELECT * FROM quota.throttle('', 0, 1, '1 minute') $$);
SELECT code, left(message, 60) AS message FROM try($$ SELECT * FROM quota.throttle(repeat('k', 600), 0, 1, '1 minute') $$);
SELECT code, message FROM try($$ SELECT * FROM quota.throttle(NULL, 0, 1, '1 minute') $$);

-- Keys are scoped to the session's tenant.
SET quota.tenant = 'acme';
SELECT remaining FROM quota.throttle('shared-name', 1, 1, '1 hour');
SET quota.tenant = 'globex';
SELECT remaining FROM quota.throttle('shared-name', 1, 1, '1 hour');
RESET quota.tenant;
SELECT tenant, key, tat FROM quota.throttles WHERE key = 'shared-name' ORDER BY tenant;

-- maintenance() deletes keys whose bucket is full again.
SELECT count(*) AS keys_before FROM quota.throttles;
SET quota.clock_override = '2026-11-24 12:00:00+00';
SELECT quota.maintenance() AS holds_expired;
SELECT count(*) AS keys_after FROM quota.throttles;
RESET quota.clock_override;
