-- IP-address subjects (seed 002): the same functions taking inet. The subject id stored
-- is the canonical address, host(inet). A malformed address fails in PostgreSQL's own
-- inet cast (SQLSTATE 22P02) before any quota code runs.

CREATE FUNCTION quota.quota_check(subject inet, metric text, amount bigint DEFAULT 1)
RETURNS quota.decision LANGUAGE sql STABLE PARALLEL RESTRICTED
AS $$ SELECT quota.quota_check(pg_catalog.host($1), $2, $3) $$;

CREATE FUNCTION quota.quota_consume(subject inet, metric text, amount bigint DEFAULT 1,
                                    idempotency_key text DEFAULT NULL, metadata jsonb DEFAULT NULL)
RETURNS quota.decision LANGUAGE sql VOLATILE
AS $$ SELECT quota.quota_consume(pg_catalog.host($1), $2, $3, $4, $5) $$;

CREATE FUNCTION quota.quota_try_consume(subject inet, metric text, amount bigint DEFAULT 1,
                                        idempotency_key text DEFAULT NULL, metadata jsonb DEFAULT NULL)
RETURNS quota.decision LANGUAGE sql VOLATILE
AS $$ SELECT quota.quota_try_consume(pg_catalog.host($1), $2, $3, $4, $5) $$;

CREATE FUNCTION quota.quota_refund(subject inet, metric text, amount bigint, idempotency_key text DEFAULT NULL)
RETURNS quota.decision LANGUAGE sql VOLATILE
AS $$ SELECT quota.quota_refund(pg_catalog.host($1), $2, $3, $4) $$;

CREATE FUNCTION quota.apply_bonus(subject inet, metric text, kind text, reference text DEFAULT NULL)
RETURNS quota.bonus_result LANGUAGE sql VOLATILE
AS $$ SELECT quota.apply_bonus(pg_catalog.host($1), $2, $3, $4) $$;

CREATE FUNCTION quota.quota_status(subject inet)
RETURNS TABLE (metric text, period text, limit_value bigint, bonus bigint, used bigint,
               remaining bigint, reset_at timestamptz, enforcement text, reserved bigint, source text,
               next_plan text, next_plan_at timestamptz, pool text, level integer)
LANGUAGE sql STABLE PARALLEL RESTRICTED
AS $$ SELECT * FROM quota.quota_status(pg_catalog.host($1)) $$;

CREATE FUNCTION quota.assign_plan(subject inet, plan text, tenant text DEFAULT NULL,
                                  cycle_anchor timestamptz DEFAULT NULL, time_zone text DEFAULT NULL,
                                  effective_at timestamptz DEFAULT NULL, carry text DEFAULT 'usage')
RETURNS void LANGUAGE sql VOLATILE
AS $$ SELECT quota.assign_plan(pg_catalog.host($1), $2, $3, $4, $5, $6, $7) $$;
