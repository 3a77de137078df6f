-- quota_ext 0.7.0 -> 0.8.0: pools.
-- - A subject may belong to one pool, itself a subject with its own plan: quota.subjects
--   gains a last column pool (text, the pool's subject id), set with
--   quota.set_pool(subject, pool). Chains are at most four levels deep.
-- - A consume (and check, reserve, refund) of a member counts at every level: the ledger
--   (quota.usage_events) and quota.reservations gain a last column via, the pool's member
--   the call came through; a hold has a row per window and level, so the
--   reservations' primary key becomes (id, period, subject).
-- - quota.pool_slices: a hot pool's allowance handed out in slices (quota.pool_slices
--   setting); the view quota.window_usage counts them in, and ledger_check, usage_overview
--   and top_consumers read it instead of quota.counters.
-- - The view quota.pool_members: each pool's members and their share of its usage.
-- - The composite types quota.decision and quota.reservation gain a last attribute level
--   (0: the subject's own window, 1: its pool's...).
-- - quota.quota_status gains the columns pool and level (one row per limit of the subject
--   and of each of its pools).
--
-- What this means for you: nothing is rewritten (every new column is NULL by default),
-- and the update takes only brief locks. Callers that read decisions or quota_status by
-- position see one or two more columns at the end.
--
-- Every upgrade script ends with statements that fire the hot path's invalidation
-- triggers: other backends then drop what they cached and see the new version (see
-- src/pg/installed.rs).
\echo Use "ALTER EXTENSION quota_ext UPDATE TO '0.8.0'" to load this file. \quit

-- Membership -------------------------------------------------------------------------------
ALTER TABLE quota.subjects ADD COLUMN pool text,
    ADD CONSTRAINT subjects_pool_check CHECK (pool <> subject);
CREATE INDEX subjects_pool_idx ON quota.subjects (pool) WHERE pool IS NOT NULL;
ALTER TABLE quota.usage_events ADD COLUMN via text;
ALTER TABLE quota.reservations ADD COLUMN via text,
    DROP CONSTRAINT reservations_pkey, ADD CONSTRAINT reservations_pkey PRIMARY KEY (id, period, subject);
ALTER TYPE quota.decision ADD ATTRIBUTE level integer;
ALTER TYPE quota.reservation ADD ATTRIBUTE level integer;

-- Slices (as sql/pools.sql creates them) ------------------------------------------------------
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

CREATE OR REPLACE VIEW quota.ledger_check WITH (security_invoker = true) AS
WITH flows AS (
    SELECT subject, metric, period, window_start, kind, amount FROM quota.usage_events
    UNION ALL
    SELECT subject, metric, period, window_start, kind, amount FROM quota.usage_summaries
), proven AS (
    SELECT subject, metric, period, window_start,
           sum(quota.used_change(kind, amount))::bigint AS used,
           sum(CASE kind WHEN 'bonus' THEN amount ELSE 0 END)::bigint AS bonus
    FROM flows GROUP BY subject, metric, period, window_start
)
SELECT coalesce(c.subject, p.subject) AS subject,
       coalesce(c.metric, p.metric) AS metric,
       coalesce(c.period, p.period) AS period,
       coalesce(c.window_start, p.window_start) AS window_start,
       c.used AS counter_used, p.used AS ledger_used,
       c.bonus AS counter_bonus, p.bonus AS ledger_bonus
-- A pool's window counts what its slices hold too (sql/pools.sql).
FROM quota.window_usage c
FULL JOIN proven p ON p.subject = c.subject AND p.metric = c.metric AND p.period = c.period
                    AND p.window_start = c.window_start
WHERE (coalesce(c.used, 0) <> coalesce(p.used, 0) OR coalesce(c.bonus, 0) <> coalesce(p.bonus, 0))
  -- A deleted subject's counters go with it; its ledger stays.
  AND EXISTS (SELECT 1 FROM quota.subjects s WHERE s.subject = coalesce(c.subject, p.subject));

CREATE OR REPLACE VIEW quota.usage_overview WITH (security_invoker = true) AS
SELECT c.subject,
       s.tenant,
       CASE WHEN s.next_plan_at <= quota.quota_clock() THEN s.next_plan ELSE s.plan END AS plan,
       c.metric,
       c.period,
       c.used,
       c.reserved,
       x.limit_value,
       c.bonus,
       x.limit_value + c.bonus AS effective_limit,
       GREATEST(0, x.limit_value + c.bonus - c.used - c.reserved) AS remaining,
       round(100.0 * (c.used + c.reserved) / NULLIF(x.limit_value + c.bonus, 0), 1) AS percent,
       coalesce(l.enforcement, 'hard') AS enforcement,
       -- A first-use window ('5 hours') is keyed by the close of the one before: it
       -- opened its length before its close.
       CASE WHEN c.period ~ '^[0-9]' THEN c.window_end - c.period::interval
            ELSE NULLIF(c.window_start, '-infinity') END AS window_start,
       c.window_end AS reset_at,
       CASE WHEN o.subject IS NULL THEN 'plan' ELSE 'override' END AS source
FROM quota.window_usage c
JOIN quota.subjects s ON s.subject = c.subject
-- The plan in force: a scheduled change whose instant has come counts before a call
-- stores it (a 'percent' carry shows once a call has written it).
LEFT JOIN quota.plan_limits l ON l.plan = CASE WHEN s.next_plan_at <= quota.quota_clock() THEN s.next_plan ELSE s.plan END
      AND l.metric = c.metric AND l.period = c.period
LEFT JOIN quota.subject_overrides o ON o.subject = c.subject AND o.metric = c.metric AND o.period = c.period
      AND (o.expires_at IS NULL OR o.expires_at > quota.quota_clock())
CROSS JOIN LATERAL (SELECT CASE o.mode WHEN 'max' THEN o.value WHEN 'add' THEN coalesce(l.limit_value, 0) + o.value
                                       ELSE l.limit_value END AS limit_value) x
WHERE (l.plan IS NOT NULL OR o.subject IS NOT NULL)
  -- A rate limit's row holds its pace, not a window's usage: quota_status shows it.
  AND c.period NOT LIKE 'per %'
  AND c.window_start <= quota.quota_clock()
  AND (c.window_end IS NULL OR c.window_end > quota.quota_clock());

CREATE OR REPLACE VIEW quota.top_consumers WITH (security_invoker = true) AS
SELECT c.metric,
       c.period,
       -- A first-use window ('5 hours') opened its length before its close (its key is
       -- the close of the one before).
       CASE WHEN c.period ~ '^[0-9]' THEN c.window_end - c.period::interval
            ELSE NULLIF(c.window_start, '-infinity') END AS window_start,
       c.window_end,
       (c.window_start <= quota.quota_clock() AND (c.window_end IS NULL OR c.window_end > quota.quota_clock())) AS current,
       -- First-use windows are each subject's own: ranked together, the open ones apart.
       rank() OVER (PARTITION BY c.metric, c.period,
                    CASE WHEN c.period ~ '^[0-9]' THEN NULL ELSE c.window_start END,
                    c.period ~ '^[0-9]' AND c.window_end > quota.quota_clock()
                    ORDER BY c.used DESC) AS rank,
       c.subject,
       s.tenant,
       c.used,
       x.limit_value + c.bonus AS effective_limit,
       round(100.0 * c.used / NULLIF(x.limit_value + c.bonus, 0), 1) AS percent
FROM quota.window_usage c
JOIN quota.subjects s ON s.subject = c.subject
-- The plan in force: a scheduled change whose instant has come counts before a call
-- stores it (a 'percent' carry shows once a call has written it).
LEFT JOIN quota.plan_limits l ON l.plan = CASE WHEN s.next_plan_at <= quota.quota_clock() THEN s.next_plan ELSE s.plan END
      AND l.metric = c.metric AND l.period = c.period
LEFT JOIN quota.subject_overrides o ON o.subject = c.subject AND o.metric = c.metric AND o.period = c.period
      AND (o.expires_at IS NULL OR o.expires_at > quota.quota_clock())
CROSS JOIN LATERAL (SELECT CASE o.mode WHEN 'max' THEN o.value WHEN 'add' THEN coalesce(l.limit_value, 0) + o.value
                                       ELSE l.limit_value END AS limit_value) x
-- A rate limit's row holds a pace, not a window's usage.
WHERE c.used > 0 AND c.period NOT LIKE 'per %';

CREATE VIEW quota.pool_members WITH (security_invoker = true) AS
SELECT s.pool,
       s.subject AS member,
       c.metric,
       c.period,
       NULLIF(c.window_start, '-infinity') AS window_start,
       c.window_end AS reset_at,
       coalesce(m.used, 0) AS member_used,
       c.used AS pool_used,
       round(100.0 * coalesce(m.used, 0) / NULLIF(c.used, 0), 1) AS share_percent
FROM quota.subjects s
JOIN quota.window_usage c ON c.subject = s.pool
LEFT JOIN LATERAL (SELECT sum(quota.used_change(e.kind, e.amount))::bigint AS used FROM quota.usage_events e
                   WHERE e.subject = c.subject AND e.metric = c.metric AND e.period = c.period
                     AND e.window_start = c.window_start AND e.via = s.subject) m ON true
WHERE s.pool IS NOT NULL
  AND c.period NOT LIKE 'per %'
  AND c.window_start <= quota.quota_clock()
  AND (c.window_end IS NULL OR c.window_end > quota.quota_clock());

-- Functions ----------------------------------------------------------------------------------
CREATE FUNCTION quota."set_pool"(
	"subject" TEXT, /* Option < & str > */
	"pool" TEXT /* Option < & str > */
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'set_pool_wrapper';

-- quota_status gains pool and level: a new C symbol, the old one stays for 0.7.0
-- databases. The inet form follows.
DROP FUNCTION quota.quota_status(inet);
DROP FUNCTION quota.quota_status(text);
CREATE FUNCTION quota."quota_status"(
	"subject" TEXT /* Option < & str > */
) RETURNS TABLE (
	"metric" TEXT,  /* String */
	"period" TEXT,  /* String */
	"limit_value" bigint,  /* i64 */
	"bonus" bigint,  /* i64 */
	"used" bigint,  /* i64 */
	"remaining" bigint,  /* i64 */
	"reset_at" timestamp with time zone,  /* Option < TimestampWithTimeZone > */
	"enforcement" TEXT,  /* String */
	"reserved" bigint,  /* i64 */
	"source" TEXT,  /* String */
	"next_plan" TEXT,  /* Option < String > */
	"next_plan_at" timestamp with time zone,  /* Option < TimestampWithTimeZone > */
	"pool" TEXT,  /* Option < String > */
	"level" INT  /* i32 */
)
STABLE PARALLEL RESTRICTED
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'quota_status_v3_wrapper';
CREATE FUNCTION quota.quota_status(subject inet)
RETURNS TABLE (metric text, period text, limit_value bigint, bonus bigint, used bigint,
               remaining bigint, reset_at timestamptz, enforcement text, reserved bigint, source text,
               next_plan text, next_plan_at timestamptz, pool text, level integer)
LANGUAGE sql STABLE PARALLEL RESTRICTED
AS $$ SELECT * FROM quota.quota_status(pg_catalog.host($1)) $$;

-- Privileges (as sql/security.sql gives them at install) --------------------------------------
REVOKE ALL ON FUNCTION quota.set_pool(text, text), quota.quota_status(text), quota.quota_status(inet) FROM PUBLIC;
ALTER FUNCTION quota.set_pool(text, text) SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
ALTER FUNCTION quota.quota_status(text) SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
ALTER FUNCTION quota.quota_status(inet) SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
GRANT EXECUTE ON FUNCTION quota.set_pool(text, text) TO quota_admin;
GRANT EXECUTE ON FUNCTION quota.quota_status(text), quota.quota_status(inet) TO quota_app;
REVOKE ALL ON quota.pool_slices, quota.window_usage, quota.pool_members FROM PUBLIC;
GRANT SELECT ON quota.pool_slices, quota.window_usage, quota.pool_members TO quota_reader, quota_app, quota_admin;
ALTER TABLE quota.pool_slices ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON quota.pool_slices
    USING (EXISTS (SELECT 1 FROM quota.subjects s WHERE s.subject = pool_slices.subject));

-- Drop what every backend cached before this version --------------------------------------
UPDATE quota.subjects SET plan = plan WHERE false;
UPDATE quota.plan_limits SET plan = plan WHERE false;
