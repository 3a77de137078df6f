-- Quotas on application tables: which tables consume which metric per inserted row.
-- Triggers named quota_enforce_insert / quota_enforce_delete call quota.enforce_trigger(),
-- which reads this table (see src/enforce.rs).

CREATE TABLE quota.enforcements (
    table_name       regclass NOT NULL,
    metric           text NOT NULL CHECK (metric <> ''),
    subject_column   text NOT NULL,
    -- Per row: a constant, a numeric column, or the token count of a text column.
    amount           bigint NOT NULL DEFAULT 1 CHECK (amount >= 0),
    amount_column    text,
    tokens_of        text,
    encoding         text NOT NULL DEFAULT 'cl100k_base' CHECK (encoding IN ('cl100k_base', 'o200k_base', 'chars')),
    refund_on_delete boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_name, metric),
    CHECK (amount_column IS NULL OR tokens_of IS NULL)
);
SELECT pg_catalog.pg_extension_config_dump('quota.enforcements', '');

CREATE VIEW quota.enforced_tables AS
SELECT e.table_name,
       e.metric,
       e.subject_column,
       CASE WHEN e.tokens_of IS NOT NULL THEN pg_catalog.format('tokens of %I (%s)', e.tokens_of, e.encoding)
            WHEN e.amount_column IS NOT NULL THEN pg_catalog.format('column %I', e.amount_column)
            ELSE pg_catalog.format('%s per row', e.amount) END AS consumes,
       e.refund_on_delete,
       e.created_at
FROM quota.enforcements e;

-- Dropping an enforced table drops its triggers with it; this forgets its configuration.
CREATE FUNCTION quota.forget_dropped_tables() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    DELETE FROM quota.enforcements e
    USING pg_event_trigger_dropped_objects() d
    WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0 AND e.table_name = d.objid;
END
$$;
CREATE EVENT TRIGGER quota_forget_dropped_tables ON sql_drop
    WHEN TAG IN ('DROP TABLE', 'DROP SCHEMA', 'DROP OWNED')
    EXECUTE FUNCTION quota.forget_dropped_tables();
