-- Views for psql admins and dashboards. Each is security_invoker: it shows what the
-- querying role may see under row-level security (its tenant, see sql/security.sql).
-- Examples are in the README ("Admin views").

-- Current usage of every subject that has used something in its current windows.
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

-- Consumers ranked per metric, period and window (rank 1 = largest use). Past windows too:
--   SELECT * FROM quota.top_consumers WHERE current AND rank <= 10;
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

-- The seeds' quota_consumed_total / quota_exceeded_total and friends, per metric, since
-- the server started (needs shared_preload_libraries). A scraper such as
-- postgres_exporter can read it with a custom query (README, "Metrics").
CREATE VIEW quota.stats AS
SELECT * FROM quota.stats_totals();

-- Each pool's members and their share of what the pool counted in its current windows
-- (the ledger rows the member's calls wrote at the pool's level; compaction folds them
-- into summaries, which do not keep the member):
--   SELECT * FROM quota.pool_members WHERE pool = 'team-a' ORDER BY metric, member_used DESC;
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
