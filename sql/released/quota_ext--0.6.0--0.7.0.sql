-- quota_ext 0.6.0 -> 0.7.0: limits v2.
-- - quota.throttle(key, max_burst, count, period, quantity): GCRA rate limits on keys with
--   no plan, with redis-cell's CL.THROTTLE semantics; state in quota.throttles.
-- - Several limits per metric: a limit is (plan, metric, period), so a plan may limit
--   tokens per day and per month. quota.plan_limits' primary key becomes
--   (plan, metric, period); quota.counters, quota.usage_events, quota.usage_summaries,
--   quota.reservations (one row per hold and window) and quota.row_charges gain a last
--   column period (text NOT NULL, the limit's period name) and keys that include it.
--   The views ledger_check, top_consumers and subject_ledger gain a period column after
--   metric (SELECT * readers see one more column); usage_overview (which showed the plan's
--   period) joins on it, and gains source. usage_overview and top_consumers apply
--   overrides and leave out rate limits.
-- - quota.set_limit(plan, metric, period, ...) adds or replaces the limit of that period
--   (in 0.6.0 it replaced the metric's limit, whatever its period).
-- - quota.remove_limit(plan, metric, period DEFAULT NULL) and
--   quota.set_alerts(plan, metric, thresholds, period DEFAULT NULL): NULL means every
--   period of the metric (the 0.6.0 behaviour).
-- - Windows that open at first use (a period such as '5 hours') and rate limits in plans
--   (quota.set_rate_limit: period 'per 1 minute', GCRA; plan_limits gains burst).
-- - Overrides per subject: quota.subject_overrides, quota.set_override, remove_override.
-- - Scheduled plan changes: subjects gain next_plan, next_plan_at and carry;
--   quota.assign_plan gains effective_at and carry; quota.cancel_plan_change; the ledger
--   kinds carry_up and carry_down (quota.used_change).
-- - quota.quota_status gains source, next_plan and next_plan_at.
-- - Existing rows get the period they were counted under: a counter's is derived from its
--   window (see below); ledger, summary, hold and row-charge rows take their counter's.
--
-- What this means for you: the update REWRITES THE WHOLE LEDGER (quota.usage_events) and
-- the counters, under locks that block every quota call until it commits. On a large
-- ledger, run SELECT quota.compact_ledger('<retention>') before updating (fewer rows to
-- rewrite), and VACUUM (ANALYZE) quota.usage_events, quota.counters afterwards (each
-- rewritten row leaves a dead version behind). For scale: 660,000 counters and 1.3 million
-- ledger rows took 41 s on a development machine (PostgreSQL 15, default settings).
--
-- Every upgrade script ends with statements that fire the hot path's invalidation
-- triggers: other backends then drop what they cached and see the new version (see
-- src/pg/installed.rs).
\echo Use "ALTER EXTENSION quota_ext UPDATE TO '0.7.0'" to load this file. \quit

CREATE TABLE quota.throttles (
    tenant text NOT NULL DEFAULT '',
    key    text NOT NULL CHECK (key <> ''),
    tat    timestamptz NOT NULL,
    PRIMARY KEY (tenant, key)
) WITH (fillfactor = 70);
SELECT pg_catalog.pg_extension_config_dump('quota.throttles', '');
REVOKE ALL ON quota.throttles FROM PUBLIC;
GRANT SELECT ON quota.throttles TO quota_reader, quota_app, quota_admin;
ALTER TABLE quota.throttles ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON quota.throttles USING (quota.tenant_visible(NULLIF(tenant, '')));

CREATE FUNCTION quota."throttle"(
	"key" TEXT, /* Option < & str > */
	"max_burst" bigint, /* Option < i64 > */
	"count" bigint, /* Option < i64 > */
	"period" interval, /* Option < Interval > */
	"quantity" bigint DEFAULT 1 /* Option < i64 > */
) RETURNS TABLE (
	"limited" bool,  /* bool */
	"limit" bigint,  /* i64 */
	"remaining" bigint,  /* i64 */
	"retry_after" interval,  /* Option < Interval > */
	"reset_after" interval  /* Interval */
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'throttle_wrapper';
-- It switches to the owner in Rust, like the C forms of consume (not SECURITY DEFINER).
REVOKE ALL ON FUNCTION quota.throttle(text, bigint, bigint, interval, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota.throttle(text, bigint, bigint, interval, bigint) TO quota_app;

-- Several limits per metric --------------------------------------------------------------

-- Views that gain a period column: CREATE OR REPLACE VIEW cannot insert a column, so they
-- are dropped here and created again at the end (as sql/ledger.sql and sql/views.sql).
-- over_limit_today does not change.
DROP VIEW quota.ledger_check, quota.usage_overview, quota.top_consumers, quota.subject_ledger;

-- Limits: every (plan, metric) has one period in 0.6.0, so the rows are unique already.
ALTER TABLE quota.plan_limits DROP CONSTRAINT plan_limits_pkey,
    ADD CONSTRAINT plan_limits_pkey PRIMARY KEY (plan, metric, period);
-- Periods that open at first use ('5 hours') and rates ('per 1 minute'), and a rate's burst.
ALTER TABLE quota.plan_limits DROP CONSTRAINT plan_limits_period_check,
    ADD CONSTRAINT plan_limits_period_check
        CHECK (period IN ('day', 'week', 'month', 'billing_cycle', 'lifetime')
               OR period ~ '^(per )?[1-9][0-9]* (second|minute|hour)s?$'),
    ADD COLUMN burst bigint CHECK (burst >= 0);

-- Scheduled plan changes: the subject's next plan (the views below read it).
ALTER TABLE quota.subjects ADD COLUMN next_plan text REFERENCES quota.plans ON UPDATE CASCADE,
    ADD COLUMN next_plan_at timestamptz,
    ADD COLUMN carry text CHECK (carry IN ('usage', 'percent')),
    ADD CONSTRAINT subjects_next_plan_check
        CHECK ((next_plan IS NULL) = (next_plan_at IS NULL) AND (next_plan IS NULL) = (carry IS NULL));

-- Overrides per subject (as sql/overrides.sql) ---------------------------------------------
CREATE TABLE quota.subject_overrides (
    subject    text NOT NULL REFERENCES quota.subjects ON DELETE CASCADE ON UPDATE CASCADE,
    metric     text NOT NULL CHECK (metric <> ''),
    period     text NOT NULL CHECK (period IN ('day', 'week', 'month', 'billing_cycle', 'lifetime')
                                    OR period ~ '^[1-9][0-9]* (second|minute|hour)s?$'),
    mode       text NOT NULL CHECK (mode IN ('max', 'add')),
    value      bigint NOT NULL CHECK (value >= 0),
    expires_at timestamptz,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (subject, metric, period)
);
SELECT pg_catalog.pg_extension_config_dump('quota.subject_overrides', '');
CREATE TRIGGER subject_overrides_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON quota.subject_overrides
    FOR EACH STATEMENT EXECUTE FUNCTION quota.config_changed();
ALTER TABLE quota.subject_overrides ENABLE ALWAYS TRIGGER subject_overrides_changed;
REVOKE ALL ON quota.subject_overrides FROM PUBLIC;
GRANT SELECT ON quota.subject_overrides TO quota_reader, quota_app, quota_admin;
ALTER TABLE quota.subject_overrides ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON quota.subject_overrides
    USING (EXISTS (SELECT 1 FROM quota.subjects s WHERE s.subject = subject_overrides.subject));


-- Helpers for the derivation below (PL/pgSQL: a SQL function with subqueries is planned
-- again at every call); dropped before the end of this script. They compute windows as
-- src/domain/period.rs does.

-- A local wall-clock time in zone tz as an instant: an ambiguous time (DST fall-back) is
-- the earlier instant, a time in a DST gap moves forward minute by minute to the first
-- valid wall-clock time. (PostgreSQL's AT TIME ZONE takes the later instant for the first
-- and applies the offset from before the gap for the second.)
CREATE FUNCTION quota.upgrade_070_local(local timestamp, tz text) RETURNS timestamptz
LANGUAGE plpgsql STABLE STRICT AS $$
DECLARE
    t timestamptz := local AT TIME ZONE tz;
    e timestamptz;
    x timestamp := local;
BEGIN
    IF (t AT TIME ZONE tz) <> local THEN
        FOR i IN 1 .. 24 * 60 LOOP
            x := x + interval '1 minute';
            IF ((x AT TIME ZONE tz) AT TIME ZONE tz) = x THEN
                RETURN x AT TIME ZONE tz;
            END IF;
        END LOOP;
        RETURN t;
    END IF;
    -- the same wall-clock time under the offset of a day earlier
    e := (local - ((t - interval '1 day') AT TIME ZONE tz - (t - interval '1 day') AT TIME ZONE 'UTC')) AT TIME ZONE 'UTC';
    IF e < t AND (e AT TIME ZONE tz) = local THEN
        RETURN e;
    END IF;
    RETURN t;
END
$$;

-- Is [ws, we) exactly the window of period that contains ws, for a subject in zone tz
-- (NULL: a zone PostgreSQL does not know, never a match) whose cycle is anchored at anchor?
CREATE FUNCTION quota.upgrade_070_is_window(period text, ws timestamptz, we timestamptz, tz text, anchor timestamptz)
RETURNS boolean LANGUAGE plpgsql STABLE AS $$
DECLARE
    d timestamp;   -- local midnight of ws's day
    a timestamp;   -- the anchor's local time
    k integer;
BEGIN
    IF period = 'lifetime' THEN
        RETURN ws = '-infinity' AND we IS NULL;
    ELSIF NOT isfinite(ws) OR we IS NULL OR tz IS NULL THEN
        RETURN false;
    END IF;
    d := date_trunc('day', ws AT TIME ZONE tz);
    IF period = 'day' THEN
        RETURN ws = quota.upgrade_070_local(d, tz) AND we = quota.upgrade_070_local(d + interval '1 day', tz);
    ELSIF period = 'week' THEN
        d := d - make_interval(days => extract(isodow FROM d)::integer - 1);
        RETURN ws = quota.upgrade_070_local(d, tz) AND we = quota.upgrade_070_local(d + interval '7 days', tz);
    ELSIF period = 'month' THEN
        d := date_trunc('month', d);
        RETURN ws = quota.upgrade_070_local(d, tz) AND we = quota.upgrade_070_local(d + interval '1 month', tz);
    ELSIF period = 'billing_cycle' THEN
        -- cycle k starts k months after the anchor, on its day of month (clamped to the
        -- month's length) at its local time; the estimate from the months between is off
        -- by at most one
        a := anchor AT TIME ZONE tz;
        k := (extract(year FROM d) - extract(year FROM a))::integer * 12 + (extract(month FROM d) - extract(month FROM a))::integer;
        FOR i IN k - 1 .. k + 1 LOOP
            IF ws = quota.upgrade_070_local(date_trunc('day', a) + make_interval(months => i) + a::time, tz)
               AND we = quota.upgrade_070_local(date_trunc('day', a) + make_interval(months => i + 1) + a::time, tz) THEN
                RETURN true;
            END IF;
        END LOOP;
    END IF;
    RETURN false;
END
$$;

-- The period of a 0.6.0 counter row [ws, we) of a subject whose current plan's limit on
-- the metric has period current_period (NULL: none).
CREATE FUNCTION quota.upgrade_070_counter_period(ws timestamptz, we timestamptz, tz text, anchor timestamptz, current_period text)
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
    period text;
BEGIN
    -- the limit it counts for today (ties, such as month and a billing cycle anchored on
    -- the 1st at midnight, go to it)
    IF current_period IS NOT NULL AND quota.upgrade_070_is_window(current_period, ws, we, tz, anchor) THEN
        RETURN current_period;
    ELSIF ws = '-infinity' OR we IS NULL THEN
        RETURN 'lifetime';
    END IF;
    -- a window of another period: the subject changed plans since
    FOREACH period IN ARRAY ARRAY['day', 'week', 'month', 'billing_cycle'] LOOP
        IF quota.upgrade_070_is_window(period, ws, we, tz, anchor) THEN
            RETURN period;
        END IF;
    END LOOP;
    -- no exact match (the zone or the anchor changed since): the current limit's period if
    -- the window is as long as one of its windows, else by the length
    IF we - ws <= interval '25 hours' THEN
        RETURN 'day';
    ELSIF we - ws <= interval '169 hours' THEN
        RETURN 'week';
    ELSIF current_period IN ('month', 'billing_cycle') THEN
        RETURN current_period;
    ELSIF date_trunc('month', ws AT TIME ZONE coalesce(tz, 'UTC')) = ws AT TIME ZONE coalesce(tz, 'UTC') THEN
        RETURN 'month';
    END IF;
    RETURN 'billing_cycle';
END
$$;

-- Counters: the period each window was counted under. Zones PostgreSQL does not know
-- (the library validates zones with its own database) are never an exact match.
ALTER TABLE quota.counters ADD COLUMN period text;
UPDATE quota.counters c
SET period = quota.upgrade_070_counter_period(
        c.window_start, c.window_end, s.tz, s.cycle_anchor,
        (SELECT l.period FROM quota.plan_limits l WHERE l.plan = s.plan AND l.metric = c.metric))
FROM (SELECT s.subject, s.plan, s.cycle_anchor, z.name AS tz
      FROM quota.subjects s
      LEFT JOIN (SELECT DISTINCT name FROM pg_catalog.pg_timezone_names) z ON z.name = s.time_zone) s
WHERE s.subject = c.subject;

-- The ledger: rewritten once (the append-only guard is off for this statement only).
-- Its window index is rebuilt after, not maintained row by row.
ALTER TABLE quota.usage_events ADD COLUMN period text;
DROP INDEX quota.usage_events_window_idx;
ALTER TABLE quota.usage_events DISABLE TRIGGER usage_events_append_only;
-- Rows take their counter's period (same subject, metric and window_start).
UPDATE quota.usage_events t SET period = coalesce(
    (SELECT c.period FROM quota.counters c
     WHERE c.subject = t.subject AND c.metric = t.metric AND c.window_start = t.window_start),
    -- no counter (the subject was deleted): its current limit's period, else by the window
    CASE WHEN t.window_start = '-infinity' THEN 'lifetime' END,
    (SELECT l.period FROM quota.subjects s JOIN quota.plan_limits l ON l.plan = s.plan AND l.metric = t.metric
     WHERE s.subject = t.subject AND l.period <> 'lifetime'),
    'day');
ALTER TABLE quota.usage_events ENABLE TRIGGER usage_events_append_only;
ALTER TABLE quota.usage_events ALTER COLUMN period SET NOT NULL;
CREATE INDEX usage_events_window_idx ON quota.usage_events (subject, metric, period, window_start);

ALTER TABLE quota.usage_summaries ADD COLUMN period text;
UPDATE quota.usage_summaries t SET period = coalesce(
    (SELECT c.period FROM quota.counters c
     WHERE c.subject = t.subject AND c.metric = t.metric AND c.window_start = t.window_start),
    -- no counter (the subject was deleted): its current limit's period, else by the window
    CASE WHEN t.window_start = '-infinity' THEN 'lifetime' END,
    (SELECT l.period FROM quota.subjects s JOIN quota.plan_limits l ON l.plan = s.plan AND l.metric = t.metric
     WHERE s.subject = t.subject AND l.period <> 'lifetime'),
    'day');
ALTER TABLE quota.usage_summaries ALTER COLUMN period SET NOT NULL,
    DROP CONSTRAINT usage_summaries_pkey,
    ADD CONSTRAINT usage_summaries_pkey PRIMARY KEY (subject, metric, period, window_start, kind);

-- A hold lies in every window of its metric: one row per hold and window.
ALTER TABLE quota.reservations ADD COLUMN period text;
UPDATE quota.reservations t SET period = coalesce(
    (SELECT c.period FROM quota.counters c
     WHERE c.subject = t.subject AND c.metric = t.metric AND c.window_start = t.window_start),
    -- no counter (the subject was deleted): its current limit's period, else by the window
    CASE WHEN t.window_start = '-infinity' THEN 'lifetime' END,
    (SELECT l.period FROM quota.subjects s JOIN quota.plan_limits l ON l.plan = s.plan AND l.metric = t.metric
     WHERE s.subject = t.subject AND l.period <> 'lifetime'),
    'day');
DROP INDEX quota.reservations_held_idx;
ALTER TABLE quota.reservations ALTER COLUMN period SET NOT NULL,
    DROP CONSTRAINT reservations_pkey,
    ADD CONSTRAINT reservations_pkey PRIMARY KEY (id, period);
CREATE INDEX reservations_held_idx ON quota.reservations (subject, metric, period, window_start, expires_at)
    WHERE status = 'held';

ALTER TABLE quota.row_charges ADD COLUMN period text;
UPDATE quota.row_charges t SET period = coalesce(
    (SELECT c.period FROM quota.counters c
     WHERE c.subject = t.subject AND c.metric = t.metric AND c.window_start = t.window_start),
    -- no counter (the subject was deleted): its current limit's period, else by the window
    CASE WHEN t.window_start = '-infinity' THEN 'lifetime' END,
    (SELECT l.period FROM quota.subjects s JOIN quota.plan_limits l ON l.plan = s.plan AND l.metric = t.metric
     WHERE s.subject = t.subject AND l.period <> 'lifetime'),
    'day');
ALTER TABLE quota.row_charges ALTER COLUMN period SET NOT NULL,
    DROP CONSTRAINT row_charges_pkey,
    ADD CONSTRAINT row_charges_pkey PRIMARY KEY (table_name, row_key, metric, period);

-- The counters' key last: the lookups above use the old one.
ALTER TABLE quota.counters ALTER COLUMN period SET NOT NULL,
    DROP CONSTRAINT counters_pkey,
    ADD CONSTRAINT counters_pkey PRIMARY KEY (subject, metric, period, window_start);

DROP FUNCTION quota.upgrade_070_counter_period(timestamptz, timestamptz, text, timestamptz, text),
    quota.upgrade_070_is_window(text, timestamptz, timestamptz, text, timestamptz),
    quota.upgrade_070_local(timestamp, text);

-- remove_limit and set_alerts take a period (NULL: every period of the metric) ----------
-- New C symbols: the old ones stay in the library for 0.6.0 databases.
DROP FUNCTION quota.remove_limit(text, text);
CREATE FUNCTION quota."remove_limit"(
	"plan" TEXT, /* Option < & str > */
	"metric" TEXT, /* Option < & str > */
	"period" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS bool /* bool */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'remove_limit_v2_wrapper';

DROP FUNCTION quota.set_alerts(text, text, integer[]);
CREATE FUNCTION quota."set_alerts"(
	"plan" TEXT, /* Option < & str > */
	"metric" TEXT, /* Option < & str > */
	"thresholds" INT[], /* :: std :: option :: Option < Vec < Option < i32 > > > */
	"period" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'set_alerts_v2_wrapper';

-- Privileges (as sql/security.sql gives them at install).
REVOKE ALL ON FUNCTION quota.remove_limit(text, text, text), quota.set_alerts(text, text, integer[], text) FROM PUBLIC;
ALTER FUNCTION quota.remove_limit(text, text, text) SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
ALTER FUNCTION quota.set_alerts(text, text, integer[], text) SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
GRANT EXECUTE ON FUNCTION quota.remove_limit(text, text, text), quota.set_alerts(text, text, integer[], text) TO quota_admin;

-- The views, with period (as sql/ledger.sql and sql/views.sql) ---------------------------

CREATE VIEW quota.ledger_check WITH (security_invoker = true) AS
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
FROM quota.counters c
FULL JOIN proven p ON p.subject = c.subject AND p.metric = c.metric AND p.period = c.period
                    AND p.window_start = c.window_start
WHERE (coalesce(c.used, 0) <> coalesce(p.used, 0) OR coalesce(c.bonus, 0) <> coalesce(p.bonus, 0))
  -- A deleted subject's counters go with it; its ledger stays.
  AND EXISTS (SELECT 1 FROM quota.subjects s WHERE s.subject = coalesce(c.subject, p.subject));

CREATE VIEW quota.usage_overview WITH (security_invoker = true) AS
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
FROM quota.counters c
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

CREATE VIEW quota.top_consumers WITH (security_invoker = true) AS
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
FROM quota.counters c
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

CREATE VIEW quota.subject_ledger WITH (security_invoker = true) AS
SELECT e.id,
       e.created_at,
       e.subject,
       e.tenant,
       e.metric,
       e.period,
       NULLIF(e.window_start, '-infinity') AS window_start,
       e.kind,
       e.amount,
       quota.used_change(e.kind, e.amount) AS used_change,
       coalesce((SELECT sum(quota.used_change(m.kind, m.amount))
                 FROM quota.usage_summaries m
                 WHERE m.subject = e.subject AND m.metric = e.metric AND m.period = e.period
                   AND m.window_start = e.window_start), 0)
       + sum(quota.used_change(e.kind, e.amount))
             OVER (PARTITION BY e.subject, e.metric, e.period, e.window_start ORDER BY e.id) AS used_after,
       e.overage,
       e.idempotency_key,
       e.metadata
FROM quota.usage_events e;

REVOKE ALL ON quota.ledger_check, quota.usage_overview, quota.top_consumers, quota.subject_ledger FROM PUBLIC;
GRANT SELECT ON quota.ledger_check, quota.usage_overview, quota.top_consumers, quota.subject_ledger
    TO quota_reader, quota_app, quota_admin;

-- Rate limits in plans ---------------------------------------------------------------------
CREATE FUNCTION quota."set_rate_limit"(
	"plan" TEXT, /* Option < & str > */
	"metric" TEXT, /* Option < & str > */
	"count" bigint, /* Option < i64 > */
	"per" interval, /* Option < pgrx :: datum :: Interval > */
	"burst" bigint DEFAULT 0 /* Option < i64 > */
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'set_rate_limit_wrapper';

CREATE FUNCTION quota."set_override"(
	"subject" TEXT, /* Option < & str > */
	"metric" TEXT, /* Option < & str > */
	"period" TEXT, /* Option < & str > */
	"value" bigint, /* Option < i64 > */
	"mode" TEXT DEFAULT 'max', /* Option < & str > */
	"expires_at" timestamp with time zone DEFAULT NULL /* Option < TimestampWithTimeZone > */
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'set_override_wrapper';
CREATE FUNCTION quota."remove_override"(
	"subject" TEXT, /* Option < & str > */
	"metric" TEXT, /* Option < & str > */
	"period" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS bool /* bool */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'remove_override_wrapper';

-- quota_status gains source (plan or override) and the scheduled plan change: a new C symbol, the old one stays for
-- 0.6.0 databases. The inet form follows.
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
	"next_plan_at" timestamp with time zone  /* Option < TimestampWithTimeZone > */
)
STABLE PARALLEL RESTRICTED
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'quota_status_v2_wrapper';
CREATE FUNCTION quota.quota_status(subject inet)
RETURNS TABLE (metric text, period text, limit_value bigint, bonus bigint, used bigint,
               remaining bigint, reset_at timestamptz, enforcement text, reserved bigint, source text,
               next_plan text, next_plan_at timestamptz)
LANGUAGE sql STABLE PARALLEL RESTRICTED
AS $$ SELECT * FROM quota.quota_status(pg_catalog.host($1)) $$;

-- Privileges of the new functions (as sql/security.sql gives them at install).
REVOKE ALL ON FUNCTION quota.set_rate_limit(text, text, bigint, interval, bigint),
    quota.set_override(text, text, text, bigint, text, timestamptz), quota.remove_override(text, text, text),
    quota.quota_status(text), quota.quota_status(inet) FROM PUBLIC;
ALTER FUNCTION quota.set_rate_limit(text, text, bigint, interval, bigint) SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
ALTER FUNCTION quota.set_override(text, text, text, bigint, text, timestamptz) SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
ALTER FUNCTION quota.remove_override(text, text, text) SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
ALTER FUNCTION quota.quota_status(text) SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
ALTER FUNCTION quota.quota_status(inet) SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
GRANT EXECUTE ON FUNCTION quota.set_rate_limit(text, text, bigint, interval, bigint),
    quota.set_override(text, text, text, bigint, text, timestamptz), quota.remove_override(text, text, text) TO quota_admin;
GRANT EXECUTE ON FUNCTION quota.quota_status(text), quota.quota_status(inet) TO quota_app;

-- Scheduled plan changes -------------------------------------------------------------------
CREATE OR REPLACE FUNCTION quota.used_change(kind text, amount bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE kind WHEN 'consume' THEN amount WHEN 'commit' THEN amount
                 WHEN 'refund' THEN -amount WHEN 'reset' THEN -amount
                 -- A scheduled plan change that keeps the share used (0.7.0).
                 WHEN 'carry_up' THEN amount WHEN 'carry_down' THEN -amount ELSE 0 END;

-- assign_plan takes effective_at and carry (a new C symbol; the old one stays for 0.6.0
-- databases); cancel_plan_change.
DROP FUNCTION quota.assign_plan(inet, text, text, timestamptz, text);
DROP FUNCTION quota.assign_plan(text, text, text, timestamptz, text);
CREATE FUNCTION quota."assign_plan"(
	"subject" TEXT, /* Option < & str > */
	"plan" TEXT, /* Option < & str > */
	"tenant" TEXT DEFAULT NULL, /* Option < & str > */
	"cycle_anchor" timestamp with time zone DEFAULT NULL, /* Option < TimestampWithTimeZone > */
	"time_zone" TEXT DEFAULT NULL, /* Option < & str > */
	"effective_at" timestamp with time zone DEFAULT NULL, /* Option < TimestampWithTimeZone > */
	"carry" TEXT DEFAULT 'usage' /* Option < & str > */
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'assign_plan_v2_wrapper';
CREATE FUNCTION quota.assign_plan(subject inet, plan text, tenant text DEFAULT NULL,
                                  cycle_anchor timestamptz DEFAULT NULL, time_zone text DEFAULT NULL,
                                  effective_at timestamptz DEFAULT NULL, carry text DEFAULT 'usage')
RETURNS void LANGUAGE sql VOLATILE
AS $$ SELECT quota.assign_plan(pg_catalog.host($1), $2, $3, $4, $5, $6, $7) $$;
CREATE FUNCTION quota."cancel_plan_change"(
	"subject" TEXT /* Option < & str > */
) RETURNS bool /* bool */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cancel_plan_change_wrapper';
REVOKE ALL ON FUNCTION quota.assign_plan(text, text, text, timestamptz, text, timestamptz, text),
    quota.assign_plan(inet, text, text, timestamptz, text, timestamptz, text), quota.cancel_plan_change(text) FROM PUBLIC;
ALTER FUNCTION quota.assign_plan(text, text, text, timestamptz, text, timestamptz, text) SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
ALTER FUNCTION quota.assign_plan(inet, text, text, timestamptz, text, timestamptz, text) SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
ALTER FUNCTION quota.cancel_plan_change(text) SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
GRANT EXECUTE ON FUNCTION quota.assign_plan(text, text, text, timestamptz, text, timestamptz, text),
    quota.assign_plan(inet, text, text, timestamptz, text, timestamptz, text), quota.cancel_plan_change(text) TO quota_admin;

-- Drop what every backend cached before this version --------------------------------------
UPDATE quota.subjects SET plan = plan WHERE false;
UPDATE quota.plan_limits SET plan = plan WHERE false;
