-- Tenant pauses (0.9.0, scale-out; src/ops/pause.rs, docs/scale-out.md): a tenant being
-- moved to another node, or moved, is paused here, and every quota call acting for it
-- fails with QT503. Written only through quota.pause_tenant and quota.resume_tenant.
--   SELECT quota.pause_tenant('acme', 'n2');            -- then, in a new transaction:
--   SELECT quota.await_tenant_quiet('acme');             -- then copy, then:
--   SELECT quota.pause_tenant('acme', 'n2', moved => true);

CREATE TABLE quota.tenant_pauses (
    tenant text PRIMARY KEY CHECK (tenant <> ''),
    state  text NOT NULL CHECK (state IN ('moving', 'moved')),
    -- Where the tenant is going, or went (a node name the router knows).
    node   text NULL,
    since  timestamptz NOT NULL DEFAULT now()
);
SELECT pg_catalog.pg_extension_config_dump('quota.tenant_pauses', '');

-- Every backend keeps a copy of the pauses it looked up (src/storage/pauses.rs): a change
-- makes them forget it at COMMIT, as for the hot path's caches (sql/hotpath.sql).
CREATE TRIGGER tenant_pauses_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON quota.tenant_pauses
    FOR EACH STATEMENT EXECUTE FUNCTION quota.config_changed();
ALTER TABLE quota.tenant_pauses ENABLE ALWAYS TRIGGER tenant_pauses_changed;

-- A session sees the pauses of the tenants it may act for (as quota.subjects).
ALTER TABLE quota.tenant_pauses ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON quota.tenant_pauses USING (quota.tenant_visible(tenant));
