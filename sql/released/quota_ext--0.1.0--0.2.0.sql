-- quota_ext 0.1.0 -> 0.2.0: tenant isolation (quota.tenant, row-level security), roles
-- and SECURITY DEFINER functions, admin views, quota.stats in shared memory, ledger
-- retention (quota.compact_ledger, quota.usage_summaries).
-- Released scripts are never edited; a later change gets its own upgrade script.

\echo Use "ALTER EXTENSION quota_ext UPDATE TO '0.2.0'" to load this file. \quit

-- New functions ---------------------------------------------------------------------------
CREATE FUNCTION quota."tenant_visible"(
	"tenant" TEXT /* Option < & str > */
) RETURNS bool /* bool */
STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'tenant_visible_wrapper';

CREATE FUNCTION quota."quota_clock"() RETURNS timestamp with time zone /* TimestampWithTimeZone */
STRICT STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'quota_clock_wrapper';

CREATE FUNCTION quota."stats_totals"() RETURNS TABLE (
	"metric" TEXT,  /* String */
	"consumed_total" bigint,  /* i64 */
	"consumes_total" bigint,  /* i64 */
	"exceeded_total" bigint,  /* i64 */
	"soft_overages_total" bigint,  /* i64 */
	"checks_total" bigint,  /* i64 */
	"refunded_total" bigint,  /* i64 */
	"bonuses_total" bigint  /* i64 */
)
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'stats_totals_wrapper';

CREATE FUNCTION quota."stats_reset"() RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'stats_reset_wrapper';

CREATE FUNCTION quota."recent_refusals"() RETURNS TABLE (
	"refused_at" timestamp with time zone,  /* TimestampWithTimeZone */
	"subject" TEXT,  /* String */
	"tenant" TEXT,  /* Option < String > */
	"metric" TEXT,  /* String */
	"requested" bigint,  /* i64 */
	"used" bigint,  /* i64 */
	"limit_value" bigint,  /* i64 */
	"reason" TEXT  /* & '_ str */
)
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'recent_refusals_wrapper';

CREATE FUNCTION quota."compact_ledger"(
	"older_than" interval DEFAULT '90 days' /* Option < pgrx :: datum :: Interval > */
) RETURNS bigint /* i64 */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'compact_ledger_wrapper';

-- The ledger guard moves from PL/pgSQL to Rust (compaction may delete, nothing else).
-- Same name and signature: the triggers keep pointing at it.
CREATE OR REPLACE FUNCTION quota."refuse_ledger_change"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'refuse_ledger_change_wrapper';

-- Acknowledge only the session's tenant's events.
CREATE OR REPLACE FUNCTION quota.ack_events(up_to bigint) RETURNS bigint
LANGUAGE sql VOLATILE SET search_path = pg_catalog AS $$
    WITH acked AS (
        UPDATE quota.events SET acknowledged_at = now()
        WHERE id <= up_to AND acknowledged_at IS NULL
          -- Only the session's tenant's events (this function runs as the owner).
          AND quota.tenant_visible((SELECT s.tenant FROM quota.subjects s WHERE s.subject = events.subject))
        RETURNING 1
    )
    SELECT count(*) FROM acked
$$;

-- sql/ledger.sql (its triggers exist already) ------------------------------------------
-- The ledger's guard and retention (see src/ledger.rs).
--
-- quota.usage_events is append-only: quota.refuse_ledger_change() refuses every UPDATE,
-- DELETE and TRUNCATE. quota.compact_ledger(older_than) rolls old events up into
-- quota.usage_summaries and removes them; nothing else can.


-- One row per subject, metric, window and kind: the sums of the events removed.
CREATE TABLE quota.usage_summaries (
    subject      text NOT NULL,
    tenant       text,
    metric       text NOT NULL,
    window_start timestamptz NOT NULL,
    kind         text NOT NULL,
    amount       bigint NOT NULL,
    overage      bigint NOT NULL,
    events       bigint NOT NULL,
    first_at     timestamptz NOT NULL,
    last_at      timestamptz NOT NULL,
    PRIMARY KEY (subject, metric, window_start, kind)
);
SELECT pg_catalog.pg_extension_config_dump('quota.usage_summaries', '');

-- How a ledger row changes its window's `used` (bonus and holds do not).
CREATE FUNCTION quota.used_change(kind text, amount bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE kind WHEN 'consume' THEN amount WHEN 'commit' THEN amount
                 WHEN 'refund' THEN -amount WHEN 'reset' THEN -amount ELSE 0 END;

-- Every window whose counter differs from what the summaries plus the remaining events
-- prove. Empty when all is well; the reliability suite asserts that.
CREATE VIEW quota.ledger_check WITH (security_invoker = true) AS
WITH flows AS (
    SELECT subject, metric, window_start, kind, amount FROM quota.usage_events
    UNION ALL
    SELECT subject, metric, window_start, kind, amount FROM quota.usage_summaries
), proven AS (
    SELECT subject, metric, window_start,
           sum(quota.used_change(kind, amount))::bigint AS used,
           sum(CASE kind WHEN 'bonus' THEN amount ELSE 0 END)::bigint AS bonus
    FROM flows GROUP BY subject, metric, window_start
)
SELECT coalesce(c.subject, p.subject) AS subject,
       coalesce(c.metric, p.metric) AS metric,
       coalesce(c.window_start, p.window_start) AS window_start,
       c.used AS counter_used, p.used AS ledger_used,
       c.bonus AS counter_bonus, p.bonus AS ledger_bonus
FROM quota.counters c
FULL JOIN proven p ON p.subject = c.subject AND p.metric = c.metric AND p.window_start = c.window_start
WHERE (coalesce(c.used, 0) <> coalesce(p.used, 0) OR coalesce(c.bonus, 0) <> coalesce(p.bonus, 0))
  -- A deleted subject's counters go with it; its ledger stays.
  AND EXISTS (SELECT 1 FROM quota.subjects s WHERE s.subject = coalesce(c.subject, p.subject));

-- sql/views.sql ------------------------------------------------------------------------
-- Views for psql admins and dashboards. Each is security_invoker: it shows what the
-- querying role may see under row-level security (its tenant, see sql/security.sql).
-- Examples are in the README ("Admin views").

-- Current usage of every subject that has used something in its current windows.
CREATE VIEW quota.usage_overview WITH (security_invoker = true) AS
SELECT c.subject,
       s.tenant,
       s.plan,
       c.metric,
       l.period,
       c.used,
       c.reserved,
       l.limit_value,
       c.bonus,
       l.limit_value + c.bonus AS effective_limit,
       GREATEST(0, l.limit_value + c.bonus - c.used - c.reserved) AS remaining,
       round(100.0 * (c.used + c.reserved) / NULLIF(l.limit_value + c.bonus, 0), 1) AS percent,
       l.enforcement,
       NULLIF(c.window_start, '-infinity') AS window_start,
       c.window_end AS reset_at
FROM quota.counters c
JOIN quota.subjects s ON s.subject = c.subject
JOIN quota.plan_limits l ON l.plan = s.plan AND l.metric = c.metric
WHERE c.window_start <= quota.quota_clock()
  AND (c.window_end IS NULL OR c.window_end > quota.quota_clock());

-- Consumers ranked per metric and window (rank 1 = largest use). Past windows too:
--   SELECT * FROM quota.top_consumers WHERE current AND rank <= 10;
CREATE VIEW quota.top_consumers WITH (security_invoker = true) AS
SELECT c.metric,
       NULLIF(c.window_start, '-infinity') AS window_start,
       c.window_end,
       (c.window_start <= quota.quota_clock() AND (c.window_end IS NULL OR c.window_end > quota.quota_clock())) AS current,
       rank() OVER (PARTITION BY c.metric, c.window_start ORDER BY c.used DESC) AS rank,
       c.subject,
       s.tenant,
       c.used,
       l.limit_value + c.bonus AS effective_limit,
       round(100.0 * c.used / NULLIF(l.limit_value + c.bonus, 0), 1) AS percent
FROM quota.counters c
JOIN quota.subjects s ON s.subject = c.subject
LEFT JOIN quota.plan_limits l ON l.plan = s.plan AND l.metric = c.metric
WHERE c.used > 0;

-- Who was refused (QT429/QT413, also in transactions that rolled back; needs
-- shared_preload_libraries) or went past a soft limit, since the start of today in the
-- session's TimeZone.
CREATE VIEW quota.over_limit_today WITH (security_invoker = true) AS
SELECT r.refused_at AS at, r.subject, r.tenant, r.metric, r.reason AS what,
       r.requested AS amount, r.used, r.limit_value, NULL::bigint AS overage
FROM quota.recent_refusals() r
WHERE r.refused_at >= date_trunc('day', quota.quota_clock())
UNION ALL
SELECT e.created_at, e.subject, e.tenant, e.metric, 'soft_limit_exceeded',
       e.amount, NULL, NULL, e.overage
FROM quota.usage_events e
WHERE e.overage > 0 AND e.created_at >= date_trunc('day', quota.quota_clock());

-- The ledger of a subject with the running balance of each window (what `used` was after
-- each event), starting from what compaction summarised:
--   SELECT * FROM quota.subject_ledger WHERE subject = 'u1' ORDER BY id;
CREATE VIEW quota.subject_ledger WITH (security_invoker = true) AS
SELECT e.id,
       e.created_at,
       e.subject,
       e.tenant,
       e.metric,
       NULLIF(e.window_start, '-infinity') AS window_start,
       e.kind,
       e.amount,
       quota.used_change(e.kind, e.amount) AS used_change,
       coalesce((SELECT sum(quota.used_change(m.kind, m.amount))
                 FROM quota.usage_summaries m
                 WHERE m.subject = e.subject AND m.metric = e.metric AND m.window_start = e.window_start), 0)
       + sum(quota.used_change(e.kind, e.amount))
             OVER (PARTITION BY e.subject, e.metric, e.window_start ORDER BY e.id) AS used_after,
       e.overage,
       e.idempotency_key,
       e.metadata
FROM quota.usage_events e;

-- The seeds' quota_consumed_total / quota_exceeded_total and friends, per metric, since
-- the server started (needs shared_preload_libraries). A scraper such as
-- postgres_exporter can read it with a custom query (README, "Metrics").
CREATE VIEW quota.stats AS
SELECT * FROM quota.stats_totals();

-- sql/security.sql ---------------------------------------------------------------------
-- Roles, privileges and row-level security: who may do what, and which tenant they see.
--
--   quota_reader  the admin views and the tables, read-only, scoped by tenant
--   quota_app     check, consume, refund, reserve/commit/release, status, the outbox
--   quota_admin   plans, limits, bonuses, resets, enforced tables, retention, stats reset;
--                 also a member of quota_app and quota_reader
--
-- Roles are cluster-wide: they are created once (if missing) and are not dropped with the
-- extension. Grant them to login roles: GRANT quota_app TO my_service;
-- Nothing is granted to PUBLIC.
--
-- Functions that touch the tables are SECURITY DEFINER with search_path pinned to
-- pg_catalog, quota, pg_temp (PostgreSQL's "Writing SECURITY DEFINER Functions Safely"):
-- objects a caller plants in public or pg_temp are never found by them. Within them the
-- tenant comes from quota.tenant and the session's role (src/tenancy.rs); the tables'
-- policies apply the same rule (quota.tenant_visible) to direct reads.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'quota_reader') THEN
        CREATE ROLE quota_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'quota_app') THEN
        CREATE ROLE quota_app NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'quota_admin') THEN
        CREATE ROLE quota_admin NOLOGIN;
    END IF;
    IF NOT pg_catalog.pg_has_role('quota_admin', 'quota_app', 'MEMBER') THEN
        GRANT quota_app TO quota_admin;
    END IF;
    IF NOT pg_catalog.pg_has_role('quota_admin', 'quota_reader', 'MEMBER') THEN
        GRANT quota_reader TO quota_admin;
    END IF;
END
$$;

REVOKE ALL ON SCHEMA quota FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA quota FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA quota FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA quota FROM PUBLIC;
GRANT USAGE ON SCHEMA quota TO quota_reader, quota_app, quota_admin;

-- Every function runs as the extension's owner, except these, which touch no table.
DO $$
DECLARE
    touches_no_table CONSTANT text[] := ARRAY['count_tokens', 'tenant_visible', 'quota_clock', 'stats_totals',
                                              'stats_reset', 'recent_refusals', 'used_change', 'refuse_ledger_change'];
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_catalog.pg_proc p
             WHERE p.pronamespace = 'quota'::regnamespace AND p.proname <> ALL (touches_no_table)
             ORDER BY p.oid
    LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp', f);
    END LOOP;
END
$$;

-- Who may call what (every overload of each name). Trigger functions are granted to no
-- one: triggers call them without an EXECUTE check.
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN
        SELECT p.oid::regprocedure AS f, r.role
        FROM pg_catalog.pg_proc p
        JOIN (VALUES
            -- what the views and policies call
            ('tenant_visible', 'quota_reader'), ('quota_clock', 'quota_reader'), ('used_change', 'quota_reader'),
            ('stats_totals', 'quota_reader'), ('recent_refusals', 'quota_reader'),
            ('tenant_visible', 'quota_app'), ('quota_clock', 'quota_app'), ('used_change', 'quota_app'),
            ('recent_refusals', 'quota_app'), ('stats_totals', 'quota_app'),
            -- the application
            ('quota_check', 'quota_app'), ('quota_status', 'quota_app'),
            ('quota_consume', 'quota_app'), ('quota_try_consume', 'quota_app'), ('quota_refund', 'quota_app'),
            ('quota_reserve', 'quota_app'), ('quota_try_reserve', 'quota_app'),
            ('quota_commit', 'quota_app'), ('quota_release', 'quota_app'),
            ('count_tokens', 'quota_app'), ('ack_events', 'quota_app'), ('maintenance', 'quota_app'),
            -- administration
            ('quota_reset', 'quota_admin'), ('apply_bonus', 'quota_admin'), ('assign_plan', 'quota_admin'),
            ('set_limit', 'quota_admin'), ('remove_limit', 'quota_admin'), ('set_alerts', 'quota_admin'),
            ('set_bonus_rule', 'quota_admin'), ('set_bonus_cap', 'quota_admin'),
            ('enforce_on_insert', 'quota_admin'), ('enforce_off', 'quota_admin'),
            ('compact_ledger', 'quota_admin'), ('stats_reset', 'quota_admin')
        ) AS r(name, role) ON r.name = p.proname
        WHERE p.pronamespace = 'quota'::regnamespace
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %I', g.f, g.role);
    END LOOP;
END
$$;

-- Reading: every table and view, under the tenant policies below. Writing state goes
-- through the functions only; a direct INSERT/UPDATE/DELETE fails with 42501.
GRANT SELECT ON ALL TABLES IN SCHEMA quota TO quota_reader, quota_app, quota_admin;
-- Configuration is not tenant-scoped; administrators may edit it directly.
GRANT INSERT, UPDATE, DELETE ON quota.plans, quota.plan_limits, quota.bonus_rules TO quota_admin;

-- Views show what the querying role may see.
ALTER VIEW quota.pending_events SET (security_invoker = true);
ALTER VIEW quota.enforced_tables SET (security_invoker = true);

-- Row-level security: FORCE, so that no role but a superuser (or one with BYPASSRLS)
-- reads around it.
ALTER TABLE quota.subjects ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON quota.subjects USING (quota.tenant_visible(tenant));

ALTER TABLE quota.usage_events ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON quota.usage_events USING (quota.tenant_visible(tenant));

ALTER TABLE quota.usage_summaries ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON quota.usage_summaries USING (quota.tenant_visible(tenant));

-- Tables keyed by subject: visible when the subject is (the subquery is itself scoped).
ALTER TABLE quota.counters ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON quota.counters
    USING (EXISTS (SELECT 1 FROM quota.subjects s WHERE s.subject = counters.subject));

ALTER TABLE quota.reservations ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON quota.reservations
    USING (EXISTS (SELECT 1 FROM quota.subjects s WHERE s.subject = reservations.subject));

ALTER TABLE quota.idempotency_keys ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON quota.idempotency_keys
    USING (EXISTS (SELECT 1 FROM quota.subjects s WHERE s.subject = idempotency_keys.subject));

ALTER TABLE quota.bonus_grants ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON quota.bonus_grants
    USING (EXISTS (SELECT 1 FROM quota.subjects s WHERE s.subject = bonus_grants.subject));

ALTER TABLE quota.events ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON quota.events
    USING (EXISTS (SELECT 1 FROM quota.subjects s WHERE s.subject = events.subject));
