-- The ledger is append-only, and it accounts for every counter exactly.
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET quota.clock_override = '2026-11-23 12:00:00+00';
SELECT * FROM try($$ UPDATE quota.usage_events SET amount = 0 $$);
SELECT * FROM try($$ DELETE FROM quota.usage_events $$);
SELECT * FROM try($$ TRUNCATE quota.usage_events $$);

-- For every window: used = consume - refund - reset, bonus = sum of bonuses.
SELECT count(*) AS windows,
       count(*) FILTER (WHERE c.used <> coalesce(l.used, 0) OR c.bonus <> coalesce(l.bonus, 0)) AS mismatches
FROM quota.counters c
LEFT JOIN (
    SELECT subject, metric, window_start,
           sum(CASE kind WHEN 'consume' THEN amount WHEN 'commit' THEN amount WHEN 'refund' THEN -amount WHEN 'reset' THEN -amount ELSE 0 END) AS used,
           sum(amount) FILTER (WHERE kind = 'bonus') AS bonus
    FROM quota.usage_events GROUP BY 1, 2, 3
) l USING (subject, metric, window_start);

-- A rolled-back consume leaves no trace.
SELECT count(*) AS before FROM quota.usage_events \gset
BEGIN;
SELECT used FROM quota.quota_consume('bob', 'messages', 1);
ROLLBACK;
SELECT count(*) - :before AS new_rows FROM quota.usage_events;

-- Every table that holds state is kept by pg_dump.
SELECT c.relname FROM pg_extension e, unnest(e.extconfig) AS t(oid) JOIN pg_class c ON c.oid = t.oid
WHERE e.extname = 'quota_ext' ORDER BY 1;
