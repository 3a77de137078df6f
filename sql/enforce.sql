-- Quotas on application tables: which tables consume which metric per inserted row.
-- Triggers named quota_enforce_insert / quota_enforce_delete / quota_enforce_update call
-- quota.enforce_trigger(), which reads this table (see src/enforce/). A partitioned
-- table's quotas are kept under its root and cover every partition.

CREATE TABLE quota.enforcements (
    table_name       regclass NOT NULL,
    metric           text NOT NULL CHECK (metric <> ''),
    -- Columns are followed by number (a rename keeps the quota); the names are as given.
    subject_column   text NOT NULL,
    -- Per row: a constant, a numeric column, or the token count of a text column.
    amount           bigint NOT NULL DEFAULT 1 CHECK (amount >= 0),
    amount_column    text,
    tokens_of        text,
    encoding         text NOT NULL DEFAULT 'cl100k_base' CHECK (encoding IN ('cl100k_base', 'o200k_base', 'chars')),
    refund_on_delete boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    subject_attnum   smallint,
    amount_attnum    smallint,
    tokens_attnum    smallint,
    PRIMARY KEY (table_name, metric),
    CHECK (amount_column IS NULL OR tokens_of IS NULL)
);
SELECT pg_catalog.pg_extension_config_dump('quota.enforcements', '');

-- What each row's insert was charged, per metric and period (one row per window charged),
-- for quotas with refund_on_delete: a DELETE refunds exactly this (to this subject, in
-- this window if it is still the current one), whatever the row holds by then. Keyed by
-- the partition root and the row's primary key (the SHA-256 of the key columns' stored
-- bytes). A key's first charge is kept: an INSERT that does not insert (ON CONFLICT)
-- never replaces it.
CREATE TABLE quota.row_charges (
    table_name   regclass NOT NULL,
    row_key      text NOT NULL,
    metric       text NOT NULL,
    subject      text NOT NULL,
    window_start timestamptz NOT NULL,   -- '-infinity' for lifetime limits
    amount       bigint NOT NULL,
    charged_at   timestamptz NOT NULL,
    period       text NOT NULL,
    PRIMARY KEY (table_name, row_key, metric, period)
);
CREATE INDEX row_charges_subject_idx ON quota.row_charges (subject);
SELECT pg_catalog.pg_extension_config_dump('quota.row_charges', '');

CREATE VIEW quota.enforced_tables AS
SELECT e.table_name,
       e.metric,
       -- Column names are of type name (collation "C"); the view's columns stay "default".
       coalesce(sa.attname::text, pg_catalog.format('%s (dropped)', e.subject_column)) COLLATE "default" AS subject_column,
       CASE WHEN e.tokens_of IS NOT NULL
                THEN pg_catalog.format('tokens of %s (%s)', coalesce(pg_catalog.quote_ident(ta.attname), pg_catalog.format('%I (dropped)', e.tokens_of)), e.encoding)
            WHEN e.amount_column IS NOT NULL
                THEN pg_catalog.format('column %s', coalesce(pg_catalog.quote_ident(aa.attname), pg_catalog.format('%I (dropped)', e.amount_column)))
            ELSE pg_catalog.format('%s per row', e.amount) END COLLATE "default" AS consumes,
       e.refund_on_delete,
       e.created_at
FROM quota.enforcements e
LEFT JOIN pg_catalog.pg_attribute sa ON sa.attrelid = e.table_name AND sa.attnum = e.subject_attnum AND NOT sa.attisdropped
LEFT JOIN pg_catalog.pg_attribute aa ON aa.attrelid = e.table_name AND aa.attnum = e.amount_attnum AND NOT aa.attisdropped
LEFT JOIN pg_catalog.pg_attribute ta ON ta.attrelid = e.table_name AND ta.attnum = e.tokens_attnum AND NOT ta.attisdropped;

-- Dropping an enforced table drops its triggers with it; this forgets its configuration
-- and its rows' charges.
CREATE FUNCTION quota.forget_dropped_tables() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    DELETE FROM quota.enforcements e
    USING pg_event_trigger_dropped_objects() d
    WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0 AND e.table_name = d.objid;
    DELETE FROM quota.row_charges r
    USING pg_event_trigger_dropped_objects() d
    WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0 AND r.table_name = d.objid;
END
$$;
CREATE EVENT TRIGGER quota_forget_dropped_tables ON sql_drop
    WHEN TAG IN ('DROP TABLE', 'DROP SCHEMA', 'DROP OWNED')
    EXECUTE FUNCTION quota.forget_dropped_tables();
