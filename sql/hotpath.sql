-- The hot path (src/hotpath/) keeps subjects' rows and plan limits in each backend's
-- memory. Any statement that changes them makes every backend forget them: a relcache
-- invalidation of the table, sent at COMMIT. INSERT into quota.subjects needs none (a
-- subject not yet stored is never cached). A change to quota.subjects also advances the
-- shared subject cache's generation at COMMIT (src/hotpath/subject_cache.rs). ENABLE ALWAYS: also
-- under session_replication_role = replica. (Logical replication's apply worker fires
-- no statement triggers: the README says to turn the hot path off on a subscriber.)

CREATE TRIGGER subjects_changed AFTER UPDATE OR DELETE OR TRUNCATE ON quota.subjects
    FOR EACH STATEMENT EXECUTE FUNCTION quota.config_changed();
ALTER TABLE quota.subjects ENABLE ALWAYS TRIGGER subjects_changed;

CREATE TRIGGER plan_limits_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON quota.plan_limits
    FOR EACH STATEMENT EXECUTE FUNCTION quota.config_changed();
ALTER TABLE quota.plan_limits ENABLE ALWAYS TRIGGER plan_limits_changed;

-- The enforcement triggers cache each table's quotas (src/enforce/rules.rs) and every backend
-- caches the tenant bindings (src/pg/roles.rs): a change to either is announced the same way.
CREATE TRIGGER enforcements_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON quota.enforcements
    FOR EACH STATEMENT EXECUTE FUNCTION quota.config_changed();
ALTER TABLE quota.enforcements ENABLE ALWAYS TRIGGER enforcements_changed;
