-- Tenant bindings: which tenants a role may act for (src/domain/tenancy.rs, src/pg/roles.rs).
-- A session whose role is a member of any bound role (and not a quota_admin) may act only
-- for the union of those roles' tenants: quota.tenant naming another one is refused with
-- 42501 at the call, and with no tenant set the session sees no subject and creates none.
-- Role names, not oids, so that bindings survive pg_dump and restore.
--   SELECT quota.bind_tenant('acme_app', 'acme');

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

-- Deleting a subject (quota.delete_subject, or by hand) removes the state keyed by its
-- id, so that a new subject with the same id starts clean: idempotency keys, holds,
-- events, bonus grants and row charges. Its counters go by the foreign key; the ledger
-- stays, as history.
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
