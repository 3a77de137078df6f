-- quota_ext 0.3.0 -> 0.4.0: hardening.
-- - Tenant bindings (quota.tenant_bindings, bind_tenant, unbind_tenant): roles bound to
--   tenants may act only for them (src/tenancy.rs, src/roles.rs).
-- - quota.delete_subject, and a trigger that removes a deleted subject's state.
-- - Quotas on tables follow columns by number, cover partitions through their root, and
--   refund on delete exactly what each row's insert was charged (quota.row_charges).
-- - The enforcement triggers' and the bindings' caches are invalidated like the hot path's.
-- Every upgrade script ends with statements that fire the hot path's invalidation
-- triggers: other backends then drop what they cached and see the new version (see
-- src/installed.rs).
\echo Use "ALTER EXTENSION quota_ext UPDATE TO '0.4.0'" to load this file. \quit

-- New functions ---------------------------------------------------------------------------

CREATE FUNCTION quota."delete_subject"(
	"subject" TEXT /* Option < & str > */
) RETURNS bool /* bool */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'delete_subject_wrapper';

CREATE FUNCTION quota."bind_tenant"(
	"role_name" TEXT, /* Option < & str > */
	"tenant" TEXT /* Option < & str > */
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'bind_tenant_wrapper';

CREATE FUNCTION quota."unbind_tenant"(
	"role_name" TEXT, /* Option < & str > */
	"tenant" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS INT /* i32 */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'unbind_tenant_wrapper';

-- Quotas on tables ------------------------------------------------------------------------

ALTER TABLE quota.enforcements
    ADD COLUMN subject_attnum smallint,
    ADD COLUMN amount_attnum  smallint,
    ADD COLUMN tokens_attnum  smallint;
UPDATE quota.enforcements e SET
    subject_attnum = (SELECT a.attnum FROM pg_catalog.pg_attribute a
                      WHERE a.attrelid = e.table_name AND a.attname = e.subject_column AND NOT a.attisdropped),
    amount_attnum  = (SELECT a.attnum FROM pg_catalog.pg_attribute a
                      WHERE a.attrelid = e.table_name AND a.attname = e.amount_column AND NOT a.attisdropped),
    tokens_attnum  = (SELECT a.attnum FROM pg_catalog.pg_attribute a
                      WHERE a.attrelid = e.table_name AND a.attname = e.tokens_of AND NOT a.attisdropped);

CREATE TABLE quota.row_charges (
    table_name   regclass NOT NULL,
    row_key      text NOT NULL,
    metric       text NOT NULL,
    subject      text NOT NULL,
    window_start timestamptz NOT NULL,   -- '-infinity' for lifetime limits
    amount       bigint NOT NULL,
    charged_at   timestamptz NOT NULL,
    PRIMARY KEY (table_name, row_key, metric)
);
CREATE INDEX row_charges_subject_idx ON quota.row_charges (subject);
SELECT pg_catalog.pg_extension_config_dump('quota.row_charges', '');

CREATE OR REPLACE VIEW quota.enforced_tables WITH (security_invoker = true) AS
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

CREATE OR REPLACE FUNCTION quota.forget_dropped_tables() RETURNS event_trigger
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

-- CREATE OR REPLACE resets what sql/security.sql set on every function.
ALTER FUNCTION quota.forget_dropped_tables() SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;

CREATE TRIGGER enforcements_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON quota.enforcements
    FOR EACH STATEMENT EXECUTE FUNCTION quota.config_changed();
ALTER TABLE quota.enforcements ENABLE ALWAYS TRIGGER enforcements_changed;

-- Enforced tables that need the new BEFORE UPDATE trigger: partitioned ones (rows moved
-- between partitions keep their charge) and those that refund on delete (a changed
-- primary key keeps its row's charge).
DO $$
DECLARE
    t regclass;
BEGIN
    FOR t IN SELECT DISTINCT e.table_name FROM quota.enforcements e JOIN pg_catalog.pg_class c ON c.oid = e.table_name
             WHERE c.relkind = 'p' OR e.refund_on_delete
    LOOP
        EXECUTE pg_catalog.format('CREATE OR REPLACE TRIGGER quota_enforce_update BEFORE UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION quota.enforce_trigger()', t);
    END LOOP;
    FOR t IN SELECT DISTINCT e.table_name FROM quota.enforcements e WHERE e.refund_on_delete
    LOOP
        EXECUTE pg_catalog.format('CREATE OR REPLACE TRIGGER quota_enforce_truncate AFTER TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION quota.enforce_trigger()', t);
    END LOOP;
END
$$;

-- Tenant bindings -------------------------------------------------------------------------

CREATE TABLE quota.tenant_bindings (
    role_name  text NOT NULL CHECK (role_name <> ''),
    tenant     text NOT NULL CHECK (tenant <> ''),
    created_at timestamptz NOT NULL DEFAULT now(),
    -- The role's oid and the cluster's system identifier when bound: in that cluster a
    -- binding also binds the role of that oid (it follows a rename); elsewhere (a
    -- restore) only the role of that name.
    role_oid     oid,
    role_cluster text,
    PRIMARY KEY (role_name, tenant)
);
SELECT pg_catalog.pg_extension_config_dump('quota.tenant_bindings', '');

CREATE TRIGGER tenant_bindings_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON quota.tenant_bindings
    FOR EACH STATEMENT EXECUTE FUNCTION quota.config_changed();
ALTER TABLE quota.tenant_bindings ENABLE ALWAYS TRIGGER tenant_bindings_changed;

-- Deleting a subject removes its state ----------------------------------------------------

CREATE FUNCTION quota.forget_subject() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    DELETE FROM quota.idempotency_keys WHERE subject = OLD.subject;
    DELETE FROM quota.reservations WHERE subject = OLD.subject;
    DELETE FROM quota.events WHERE subject = OLD.subject;
    DELETE FROM quota.bonus_grants WHERE subject = OLD.subject;
    DELETE FROM quota.row_charges WHERE subject = OLD.subject;
    RETURN NULL;
END
$$;
CREATE TRIGGER subjects_forget AFTER DELETE ON quota.subjects
    FOR EACH ROW EXECUTE FUNCTION quota.forget_subject();

-- Privileges (as sql/security.sql) --------------------------------------------------------

REVOKE ALL ON FUNCTION quota.delete_subject(text), quota.bind_tenant(text, text), quota.unbind_tenant(text, text),
    quota.forget_subject() FROM PUBLIC;
ALTER FUNCTION quota.delete_subject(text) SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
ALTER FUNCTION quota.bind_tenant(text, text) SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
ALTER FUNCTION quota.unbind_tenant(text, text) SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
ALTER FUNCTION quota.forget_subject() SECURITY DEFINER SET search_path = pg_catalog, quota, pg_temp;
GRANT EXECUTE ON FUNCTION quota.delete_subject(text), quota.bind_tenant(text, text), quota.unbind_tenant(text, text)
    TO quota_admin;

REVOKE ALL ON quota.row_charges, quota.tenant_bindings FROM PUBLIC;
GRANT SELECT ON quota.row_charges TO quota_reader, quota_app, quota_admin;
GRANT SELECT ON quota.tenant_bindings TO quota_admin;

ALTER TABLE quota.row_charges ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON quota.row_charges
    USING (EXISTS (SELECT 1 FROM quota.subjects s WHERE s.subject = row_charges.subject));

-- Drop what every backend cached before this version --------------------------------------
-- The statement triggers of sql/hotpath.sql send relcache invalidations at COMMIT and
-- advance the shared subject cache's generation: no backend keeps a subject, a limit or
-- the installed version as it was before the update.
UPDATE quota.subjects SET plan = plan WHERE false;
UPDATE quota.plan_limits SET plan = plan WHERE false;
