-- Overrides per subject (0.7.0): one subject's own limit on one metric and window, without
-- a custom plan (a bigger contract, a promotion). mode 'max' replaces the plan's limit
-- value, 'add' adds to it; a window the plan does not limit is added (hard). An override
-- with expires_at stops counting at that instant. Written through quota.set_override and
-- quota.remove_override; tenant-scoped through its subject (sql/security.sql).
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
-- Cached limits (the hot path's) are dropped when overrides change, as when plans do.
CREATE TRIGGER subject_overrides_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON quota.subject_overrides
    FOR EACH STATEMENT EXECUTE FUNCTION quota.config_changed();
ALTER TABLE quota.subject_overrides ENABLE ALWAYS TRIGGER subject_overrides_changed;
