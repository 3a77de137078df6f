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
-- pg_catalog, quota, pg_temp (PostgreSQL's "Writing SECURITY DEFINER Functions Safely"),
-- or do the same switch in Rust (quota_check, quota_consume, quota_try_consume, the
-- _many forms and throttle): objects
-- a caller plants in public or pg_temp are never found by them. Within them the
-- tenant comes from quota.tenant and the session's role (src/domain/tenancy.rs, src/pg/roles.rs); the tables'
-- policies apply the same rule (quota.tenant_visible) to direct reads.

-- The three roles are created by sql/roles.sql (earlier: sql/node.sql grants to them).

REVOKE ALL ON SCHEMA quota FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA quota FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA quota FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA quota FROM PUBLIC;
GRANT USAGE ON SCHEMA quota TO quota_reader, quota_app, quota_admin;

-- Every function runs as the extension's owner, except these, which touch no table, and
-- the C forms of the hot-path functions, which switch to the owner themselves for their
-- general path only (src/pg/privilege.rs), so that the hot path pays no role switch.
DO $$
DECLARE
    touches_no_table CONSTANT text[] := ARRAY['count_tokens', 'tenant_visible', 'quota_clock', 'stats_totals',
                                              'stats_reset', 'recent_refusals', 'used_change', 'refuse_ledger_change',
                                              'config_changed', 'hot_path_status'];
    switch_themselves CONSTANT text[] := ARRAY['quota_check', 'quota_consume', 'quota_try_consume',
                                               'quota_consume_many', 'quota_try_consume_many', 'throttle'];
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_catalog.pg_proc p
             WHERE p.pronamespace = 'quota'::regnamespace AND p.proname <> ALL (touches_no_table)
               AND NOT (p.proname = ANY (switch_themselves) AND p.prolang = (SELECT oid FROM pg_catalog.pg_language WHERE lanname = 'c'))
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
            ('hot_path_status', 'quota_reader'), ('hot_path_status', 'quota_app'),
            -- the application
            ('quota_check', 'quota_app'), ('quota_status', 'quota_app'),
            ('quota_consume', 'quota_app'), ('quota_try_consume', 'quota_app'), ('quota_refund', 'quota_app'),
            ('quota_consume_many', 'quota_app'), ('quota_try_consume_many', 'quota_app'), ('throttle', 'quota_app'),
            ('quota_reserve', 'quota_app'), ('quota_try_reserve', 'quota_app'),
            ('quota_commit', 'quota_app'), ('quota_release', 'quota_app'),
            ('count_tokens', 'quota_app'), ('ack_events', 'quota_app'), ('maintenance', 'quota_app'),
            -- administration
            ('quota_reset', 'quota_admin'), ('apply_bonus', 'quota_admin'), ('assign_plan', 'quota_admin'),
            ('set_limit', 'quota_admin'), ('remove_limit', 'quota_admin'), ('set_alerts', 'quota_admin'),
            ('set_override', 'quota_admin'), ('remove_override', 'quota_admin'), ('set_rate_limit', 'quota_admin'), ('cancel_plan_change', 'quota_admin'),
            ('set_bonus_rule', 'quota_admin'), ('set_bonus_cap', 'quota_admin'),
            ('enforce_on_insert', 'quota_admin'), ('enforce_off', 'quota_admin'),
            ('compact_ledger', 'quota_admin'), ('stats_reset', 'quota_admin'),
            ('delete_subject', 'quota_admin'), ('bind_tenant', 'quota_admin'), ('unbind_tenant', 'quota_admin'),
            ('set_pool', 'quota_admin'),
            ('pause_tenant', 'quota_admin'), ('resume_tenant', 'quota_admin'), ('await_tenant_quiet', 'quota_admin'),
            -- tenant moves (sql/move.sql): quota_admin reads (digest, export, invariants);
            -- the steps that write a tenant's state wholesale (move_check_target,
            -- move_import, move_delete: they forge or erase ledger rows, and read the
            -- caller's staging table as the owner) are a superuser's, granted to no one, as
            -- are the internal move_rows, move_digest_of, move_check_tables and
            -- move_require_pause
            ('move_tables', 'quota_admin'), ('move_digest', 'quota_admin'), ('move_pause_state', 'quota_admin'),
            ('move_export', 'quota_admin'), ('tenant_invariants', 'quota_admin')
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
-- Tenant bindings say which roles may act for which tenants: administrators only.
REVOKE ALL ON quota.tenant_bindings FROM quota_reader, quota_app;
GRANT SELECT ON quota.tenant_bindings TO quota_admin;

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

ALTER TABLE quota.pool_slices ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON quota.pool_slices
    USING (EXISTS (SELECT 1 FROM quota.subjects s WHERE s.subject = pool_slices.subject));

ALTER TABLE quota.reservations ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON quota.reservations
    USING (EXISTS (SELECT 1 FROM quota.subjects s WHERE s.subject = reservations.subject));

ALTER TABLE quota.idempotency_keys ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON quota.idempotency_keys
    USING (EXISTS (SELECT 1 FROM quota.subjects s WHERE s.subject = idempotency_keys.subject));

ALTER TABLE quota.bonus_grants ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON quota.bonus_grants
    USING (EXISTS (SELECT 1 FROM quota.subjects s WHERE s.subject = bonus_grants.subject));

ALTER TABLE quota.row_charges ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON quota.row_charges
    USING (EXISTS (SELECT 1 FROM quota.subjects s WHERE s.subject = row_charges.subject));

ALTER TABLE quota.subject_overrides ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON quota.subject_overrides
    USING (EXISTS (SELECT 1 FROM quota.subjects s WHERE s.subject = subject_overrides.subject));

-- Throttle keys: '' is the keys of sessions without a tenant.
ALTER TABLE quota.throttles ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON quota.throttles USING (quota.tenant_visible(NULLIF(tenant, '')));

ALTER TABLE quota.events ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON quota.events
    USING (EXISTS (SELECT 1 FROM quota.subjects s WHERE s.subject = events.subject));
