-- Pools (0.8.0): a team's shared quota. A subject belongs to at most one pool
-- (quota.subjects.pool), which is itself a subject with its own plan; chains are at most
-- four levels deep (a user, its team, the team's organisation, one more). A consume of a
-- member must fit the member's limits and every pool's above it, all or nothing, in the
-- caller's transaction. The design is in docs/pools.md.
--
-- Slices: a pool's window that members draw from is split into slices, so that members
-- in separate sessions do not all wait for the pool's one counter row. A slice holds
-- allowance the pool granted it (`granted`, counted in the pool counter's `reserved`, so
-- nothing else can take it) and what members drew from it (`used`). For every pool window:
--   used (what the pool counted)  = counters.used + sum(pool_slices.used)
--   held by reservations          = counters.reserved - sum(pool_slices.granted)
--   counters.used + counters.reserved <= the pool's limit + bonus
-- A draw (used + amount <= granted) commits or rolls back with the caller's transaction.
-- The view quota.pool_members is in sql/views.sql.
CREATE TABLE quota.pool_slices (
    subject      text NOT NULL,
    metric       text NOT NULL,
    period       text NOT NULL,
    window_start timestamptz NOT NULL,
    slice        integer NOT NULL,
    granted      bigint NOT NULL DEFAULT 0,
    used         bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (subject, metric, period, window_start, slice),
    FOREIGN KEY (subject, metric, period, window_start) REFERENCES quota.counters ON DELETE CASCADE ON UPDATE CASCADE
) WITH (fillfactor = 70);
SELECT pg_catalog.pg_extension_config_dump('quota.pool_slices', '');

-- Every window's usage as the quota functions count it: a pool's slices included (the
-- other views read this instead of quota.counters).
CREATE VIEW quota.window_usage WITH (security_invoker = true) AS
SELECT c.subject, c.metric, c.period, c.window_start, c.window_end,
       c.used + coalesce(sl.used, 0) AS used,
       c.bonus,
       c.reserved - coalesce(sl.granted, 0) AS reserved,
       c.alerted
FROM quota.counters c
LEFT JOIN LATERAL (SELECT sum(p.used)::bigint AS used, sum(p.granted)::bigint AS granted FROM quota.pool_slices p
                   WHERE p.subject = c.subject AND p.metric = c.metric AND p.period = c.period
                     AND p.window_start = c.window_start) sl ON true;
