-- The ledger's guard and retention (see src/api/ledger.rs).
--
-- quota.usage_events is append-only: quota.refuse_ledger_change() refuses every UPDATE,
-- DELETE and TRUNCATE. quota.compact_ledger(older_than) rolls old events up into
-- quota.usage_summaries and removes them; nothing else can.

CREATE TRIGGER usage_events_append_only
    BEFORE UPDATE OR DELETE ON quota.usage_events
    FOR EACH ROW EXECUTE FUNCTION quota.refuse_ledger_change();
CREATE TRIGGER usage_events_no_truncate
    BEFORE TRUNCATE ON quota.usage_events
    FOR EACH STATEMENT EXECUTE FUNCTION quota.refuse_ledger_change();

-- One row per subject, metric, period, window and kind: the sums of the events removed.
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
    period       text NOT NULL,
    PRIMARY KEY (subject, metric, period, window_start, kind)
);
SELECT pg_catalog.pg_extension_config_dump('quota.usage_summaries', '');

-- How a ledger row changes its window's `used` (bonus and holds do not).
CREATE FUNCTION quota.used_change(kind text, amount bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE kind WHEN 'consume' THEN amount WHEN 'commit' THEN amount
                 WHEN 'refund' THEN -amount WHEN 'reset' THEN -amount
                 -- A scheduled plan change that keeps the share used (0.7.0).
                 WHEN 'carry_up' THEN amount WHEN 'carry_down' THEN -amount ELSE 0 END;

-- Every window whose counter differs from what the summaries plus the remaining events
-- prove. Empty when all is well; the reliability suite asserts that.
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
-- A pool's window counts what its slices hold too (sql/pools.sql).
FROM quota.window_usage c
FULL JOIN proven p ON p.subject = c.subject AND p.metric = c.metric AND p.period = c.period
                    AND p.window_start = c.window_start
WHERE (coalesce(c.used, 0) <> coalesce(p.used, 0) OR coalesce(c.bonus, 0) <> coalesce(p.bonus, 0))
  -- A deleted subject's counters go with it; its ledger stays.
  AND EXISTS (SELECT 1 FROM quota.subjects s WHERE s.subject = coalesce(c.subject, p.subject));
