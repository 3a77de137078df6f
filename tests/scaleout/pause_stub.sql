-- A stand-in for helper P's tenant pause (branch so-pause) for tests/scaleout/test_move.py
-- when the installed quota_ext lacks it: the contract's table and functions, but calls for a
-- paused tenant are NOT refused, so the tests that need QT503 are skipped with it.
CREATE TABLE IF NOT EXISTS quota.tenant_pauses (tenant text PRIMARY KEY, state text NOT NULL, node text, since timestamptz NOT NULL DEFAULT now());
CREATE OR REPLACE FUNCTION quota.pause_tenant(tenant text, node text DEFAULT NULL, moved boolean DEFAULT false) RETURNS void LANGUAGE sql AS $$
 INSERT INTO quota.tenant_pauses VALUES ($1, CASE WHEN $3 THEN 'moved' ELSE 'moving' END, $2, now()) ON CONFLICT (tenant) DO UPDATE SET state = excluded.state, node = excluded.node $$;
CREATE OR REPLACE FUNCTION quota.resume_tenant(tenant text) RETURNS boolean LANGUAGE sql AS $$ WITH d AS (DELETE FROM quota.tenant_pauses p WHERE p.tenant = $1 RETURNING 1) SELECT count(*) > 0 FROM d $$;
CREATE OR REPLACE FUNCTION quota.await_tenant_quiet(tenant text, timeout interval DEFAULT '30 seconds') RETURNS integer LANGUAGE sql AS $$ SELECT 0 $$;
COMMENT ON FUNCTION quota.pause_tenant(text, text, boolean) IS 'stub';
