-- The extension's roles (sql/security.sql says what each may do). Roles are cluster-wide:
-- created once (if missing) and not dropped with the extension. Created before the files
-- that grant to them (sql/node.sql); sql/security.sql (finalize) grants the rest.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'quota_reader') THEN
        CREATE ROLE quota_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'quota_app') THEN
        CREATE ROLE quota_app NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'quota_admin') THEN
        CREATE ROLE quota_admin NOLOGIN;
    END IF;
    IF NOT pg_catalog.pg_has_role('quota_admin', 'quota_app', 'MEMBER') THEN
        GRANT quota_app TO quota_admin;
    END IF;
    IF NOT pg_catalog.pg_has_role('quota_admin', 'quota_reader', 'MEMBER') THEN
        GRANT quota_reader TO quota_admin;
    END IF;
END
$$;
