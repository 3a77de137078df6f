-- Node entry points for the scale-out router (issue 19, docs/scale-out.md).
--
-- PL/Proxy forwards no session setting: a routed call names its tenant as its first
-- argument, and quota_node.<name>(tenant, <the API function's arguments>) sets
-- quota.tenant for that call only (the previous value comes back afterwards; NULL or ''
-- means unset, as for the session: untenanted subjects for an application role,
-- everything for an administrator). The wrappers are SECURITY INVOKER: the role the
-- router connects as keeps its own grants and tenant bindings on the node, and they have
-- the grants of the function they wrap. They return exactly what it returns.
--
-- quota_node.<name>_or_error(tenant, args), what the router calls, returns the wrapper's
-- result, or its error as a row (SQLSTATE, message, DETAIL, HINT) that the router raises
-- again: PL/Proxy drops its connection to a node after a remote error, so that a refusal
-- would otherwise cost the next call a new connection (a backend start on the node).
--
-- Also here: the configuration snapshot the router compares and applies (drift and
-- repair), and the reads of the cluster-wide views, each row naming the node
-- (cluster_name).
--
-- The wrappers are generated from pg_proc by scaleout/generate.py (the block between its
-- markers); the rest is written by hand. The 0.8.0--0.9.0 upgrade script carries this
-- file as it is (the generator copies it there).

CREATE SCHEMA quota_node;
REVOKE ALL ON SCHEMA quota_node FROM PUBLIC;
GRANT USAGE ON SCHEMA quota_node TO quota_reader, quota_app, quota_admin;

-- The node's configuration, one row per item, in a stable order: plans (bonus cap),
-- limits (rate limits included, alert thresholds with them), bonus rules, tenant
-- bindings. key is a JSON array of the item's identifying values (no separator can clash
-- with a name); value is the rest, as jsonb.
CREATE FUNCTION quota_node.config_snapshot()
RETURNS TABLE(kind text, key text, value jsonb)
LANGUAGE sql STABLE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $$
    SELECT s.kind, s.key, s.value FROM (
        SELECT 1 AS ord, 'plan' AS kind, jsonb_build_array(p.plan)::text AS key,
               jsonb_build_object('bonus_cap_per_day', p.bonus_cap_per_day) AS value
        FROM quota.plans p
        UNION ALL
        SELECT 2, 'limit', jsonb_build_array(l.plan, l.metric, l.period)::text,
               jsonb_build_object('limit_value', l.limit_value, 'enforcement', l.enforcement,
                                  'per_request_max', l.per_request_max, 'burst', l.burst,
                                  'alert_thresholds', to_jsonb(l.alert_thresholds))
        FROM quota.plan_limits l
        UNION ALL
        SELECT 3, 'bonus_rule', jsonb_build_array(b.plan, b.metric, b.kind)::text,
               jsonb_build_object('amount', b.amount, 'reference_scope', b.reference_scope)
        FROM quota.bonus_rules b
        UNION ALL
        SELECT 4, 'tenant_binding', jsonb_build_array(t.role_name, t.tenant)::text, 'true'::jsonb
        FROM quota.tenant_bindings t
    ) s
    ORDER BY s.ord, s.key COLLATE "C"
$$;
REVOKE ALL ON FUNCTION quota_node.config_snapshot() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.config_snapshot() TO quota_admin;

-- Make this node's configuration equal to a snapshot (a jsonb array of {kind, key, value}
-- objects, as config_snapshot returns them), in the caller's transaction: through the API
-- functions, so that their validation applies and their caches are told; plans and bonus
-- rules that the API cannot remove are deleted directly (quota_admin may). A plan that
-- subjects still use cannot be deleted: the call fails (23503) and changes nothing.
-- Returns the number of items added, changed or removed.
CREATE FUNCTION quota_node.config_apply(snapshot jsonb)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    item record;
    k jsonb;
    v jsonb;
    changes integer := 0;
    rate text[];
BEGIN
    IF snapshot IS NULL OR jsonb_typeof(snapshot) <> 'array' THEN
        RAISE EXCEPTION 'config_apply: the snapshot must be a jsonb array'
            USING ERRCODE = '22023',
                  DETAIL = jsonb_build_object('code', 'invalid_argument', 'argument', 'snapshot')::text,
                  HINT = 'Pass the router''s configuration as jsonb_agg(quota_node.config_snapshot()), as cluster.repair_config does.';
    END IF;
    -- What differs: items of the snapshot that are missing here or have another value,
    -- and items here that the snapshot does not have.
    FOR item IN
        WITH want AS (SELECT e->>'kind' AS kind, e->>'key' AS key, e->'value' AS value
                      FROM jsonb_array_elements(snapshot) e),
             have AS (SELECT * FROM quota_node.config_snapshot())
        SELECT coalesce(w.kind, h.kind) AS kind, coalesce(w.key, h.key) AS key, w.value AS want, h.value AS have
        FROM want w FULL JOIN have h ON h.kind = w.kind AND h.key = w.key
        WHERE w.value IS DISTINCT FROM h.value
        -- plans first (limits and rules need them), their removal last
        ORDER BY CASE WHEN w.kind = 'plan' THEN 0 WHEN w.kind IS NULL AND h.kind = 'plan' THEN 9 ELSE 5 END,
                 w.kind IS NULL, 1, 2
    LOOP
        k := item.key::jsonb;
        v := item.want;
        changes := changes + 1;
        IF item.kind = 'plan' THEN
            IF v IS NULL THEN
                DELETE FROM quota.plans WHERE plan = k->>0;
            ELSE
                INSERT INTO quota.plans (plan) VALUES (k->>0) ON CONFLICT (plan) DO NOTHING;
                PERFORM quota.set_bonus_cap(k->>0, (v->>'bonus_cap_per_day')::integer);
            END IF;
        ELSIF item.kind = 'limit' THEN
            IF v IS NULL THEN
                PERFORM quota.remove_limit(k->>0, k->>1, k->>2);
            ELSE
                rate := regexp_match(k->>2, '^per ([0-9]+ [a-z]+)$');
                IF rate IS NOT NULL THEN
                    PERFORM quota.set_rate_limit(k->>0, k->>1, (v->>'limit_value')::bigint, rate[1]::interval,
                                                 coalesce((v->>'burst')::bigint, 0));
                ELSE
                    PERFORM quota.set_limit(k->>0, k->>1, k->>2, (v->>'limit_value')::bigint, v->>'enforcement',
                                            (v->>'per_request_max')::bigint);
                END IF;
                PERFORM quota.set_alerts(k->>0, k->>1,
                                         ARRAY(SELECT jsonb_array_elements_text(v->'alert_thresholds'))::integer[], k->>2);
            END IF;
        ELSIF item.kind = 'bonus_rule' THEN
            IF v IS NULL THEN
                DELETE FROM quota.bonus_rules WHERE plan = k->>0 AND metric = k->>1 AND kind = k->>2;
            ELSE
                PERFORM quota.set_bonus_rule(k->>0, k->>1, k->>2, (v->>'amount')::bigint, v->>'reference_scope');
            END IF;
        ELSIF item.kind = 'tenant_binding' THEN
            IF v IS NULL THEN
                PERFORM quota.unbind_tenant(k->>0, k->>1);
            ELSE
                PERFORM quota.bind_tenant(k->>0, k->>1);
            END IF;
        ELSE
            RAISE EXCEPTION 'config_apply: unknown kind "%"', left(item.kind, 32)
                USING ERRCODE = '22023',
                      DETAIL = jsonb_build_object('code', 'invalid_argument', 'argument', 'snapshot',
                                                  'value', left(item.kind, 32))::text,
                      HINT = 'Kinds are plan, limit, bonus_rule and tenant_binding (quota_node.config_snapshot).';
        END IF;
    END LOOP;
    RETURN changes;
END
$$;
REVOKE ALL ON FUNCTION quota_node.config_apply(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.config_apply(jsonb) TO quota_admin;

-- BEGIN GENERATED by scaleout/generate.py: do not edit by hand
CREATE FUNCTION quota_node.ack_events(tenant text, up_to bigint) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result bigint;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.ack_events($2);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.ack_events(text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.ack_events(text, bigint) TO quota_app;

CREATE FUNCTION quota_node.ack_events_or_error(text, bigint) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, result bigint)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.ack_events($1, $2) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.ack_events_or_error(text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.ack_events_or_error(text, bigint) TO quota_app;

CREATE FUNCTION quota_node.apply_bonus(tenant text, subject inet, metric text, kind text, reference text DEFAULT NULL::text) RETURNS quota.bonus_result
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result quota.bonus_result;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.apply_bonus($2, $3, $4, $5);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.apply_bonus(text, inet, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.apply_bonus(text, inet, text, text, text) TO quota_admin;

CREATE FUNCTION quota_node.apply_bonus_or_error(text, inet, text, text, text) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, applied boolean, reason text, amount bigint, new_limit bigint, bonuses_today integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.apply_bonus($1, $2, $3, $4, $5) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.apply_bonus_or_error(text, inet, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.apply_bonus_or_error(text, inet, text, text, text) TO quota_admin;

CREATE FUNCTION quota_node.apply_bonus(tenant text, subject text, metric text, kind text, reference text DEFAULT NULL::text) RETURNS quota.bonus_result
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result quota.bonus_result;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.apply_bonus($2, $3, $4, $5);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.apply_bonus(text, text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.apply_bonus(text, text, text, text, text) TO quota_admin;

CREATE FUNCTION quota_node.apply_bonus_or_error(text, text, text, text, text) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, applied boolean, reason text, amount bigint, new_limit bigint, bonuses_today integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.apply_bonus($1, $2, $3, $4, $5) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.apply_bonus_or_error(text, text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.apply_bonus_or_error(text, text, text, text, text) TO quota_admin;

CREATE FUNCTION quota_node.assign_plan(tenant text, subject inet, plan text, subject_tenant text DEFAULT NULL::text, cycle_anchor timestamp with time zone DEFAULT NULL::timestamp with time zone, time_zone text DEFAULT NULL::text, effective_at timestamp with time zone DEFAULT NULL::timestamp with time zone, carry text DEFAULT 'usage'::text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    PERFORM quota.assign_plan($2, $3, $4, $5, $6, $7, $8);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.assign_plan(text, inet, text, text, timestamp with time zone, text, timestamp with time zone, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.assign_plan(text, inet, text, text, timestamp with time zone, text, timestamp with time zone, text) TO quota_admin;

CREATE FUNCTION quota_node.assign_plan_or_error(text, inet, text, text, timestamp with time zone, text, timestamp with time zone, text) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    PERFORM quota_node.assign_plan($1, $2, $3, $4, $5, $6, $7, $8);
    RETURN NEXT;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.assign_plan_or_error(text, inet, text, text, timestamp with time zone, text, timestamp with time zone, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.assign_plan_or_error(text, inet, text, text, timestamp with time zone, text, timestamp with time zone, text) TO quota_admin;

CREATE FUNCTION quota_node.assign_plan(tenant text, subject text, plan text, subject_tenant text DEFAULT NULL::text, cycle_anchor timestamp with time zone DEFAULT NULL::timestamp with time zone, time_zone text DEFAULT NULL::text, effective_at timestamp with time zone DEFAULT NULL::timestamp with time zone, carry text DEFAULT 'usage'::text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    PERFORM quota.assign_plan($2, $3, $4, $5, $6, $7, $8);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.assign_plan(text, text, text, text, timestamp with time zone, text, timestamp with time zone, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.assign_plan(text, text, text, text, timestamp with time zone, text, timestamp with time zone, text) TO quota_admin;

CREATE FUNCTION quota_node.assign_plan_or_error(text, text, text, text, timestamp with time zone, text, timestamp with time zone, text) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    PERFORM quota_node.assign_plan($1, $2, $3, $4, $5, $6, $7, $8);
    RETURN NEXT;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.assign_plan_or_error(text, text, text, text, timestamp with time zone, text, timestamp with time zone, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.assign_plan_or_error(text, text, text, text, timestamp with time zone, text, timestamp with time zone, text) TO quota_admin;

CREATE FUNCTION quota_node.cancel_plan_change(tenant text, subject text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result boolean;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.cancel_plan_change($2);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.cancel_plan_change(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.cancel_plan_change(text, text) TO quota_admin;

CREATE FUNCTION quota_node.cancel_plan_change_or_error(text, text) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, result boolean)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.cancel_plan_change($1, $2) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.cancel_plan_change_or_error(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.cancel_plan_change_or_error(text, text) TO quota_admin;

CREATE FUNCTION quota_node.delete_subject(tenant text, subject text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result boolean;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.delete_subject($2);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.delete_subject(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.delete_subject(text, text) TO quota_admin;

CREATE FUNCTION quota_node.delete_subject_or_error(text, text) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, result boolean)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.delete_subject($1, $2) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.delete_subject_or_error(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.delete_subject_or_error(text, text) TO quota_admin;

CREATE FUNCTION quota_node.quota_check(tenant text, subject inet, metric text, amount bigint DEFAULT 1) RETURNS quota.decision
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result quota.decision;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.quota_check($2, $3, $4);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_check(text, inet, text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_check(text, inet, text, bigint) TO quota_app;

CREATE FUNCTION quota_node.quota_check_or_error(text, inet, text, bigint) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, allowed boolean, subject text, metric text, period text, used bigint, limit_value bigint, bonus bigint, remaining bigint, requested bigint, reset_at timestamp with time zone, enforcement text, reason text, reserved bigint, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_check($1, $2, $3, $4) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_check_or_error(text, inet, text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_check_or_error(text, inet, text, bigint) TO quota_app;

CREATE FUNCTION quota_node.quota_check(tenant text, subject text, amounts jsonb) RETURNS SETOF quota.decision
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    RETURN QUERY SELECT * FROM quota.quota_check($2, $3);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_check(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_check(text, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_check_or_error(text, text, jsonb) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, allowed boolean, subject text, metric text, period text, used bigint, limit_value bigint, bonus bigint, remaining bigint, requested bigint, reset_at timestamp with time zone, enforcement text, reason text, reserved bigint, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_check($1, $2, $3) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_check_or_error(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_check_or_error(text, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_check(tenant text, subject text, metric text, amount bigint DEFAULT 1) RETURNS quota.decision
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result quota.decision;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.quota_check($2, $3, $4);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_check(text, text, text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_check(text, text, text, bigint) TO quota_app;

CREATE FUNCTION quota_node.quota_check_or_error(text, text, text, bigint) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, allowed boolean, subject text, metric text, period text, used bigint, limit_value bigint, bonus bigint, remaining bigint, requested bigint, reset_at timestamp with time zone, enforcement text, reason text, reserved bigint, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_check($1, $2, $3, $4) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_check_or_error(text, text, text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_check_or_error(text, text, text, bigint) TO quota_app;

CREATE FUNCTION quota_node.quota_commit(tenant text, reservation uuid, actual_amount bigint DEFAULT NULL::bigint, metadata jsonb DEFAULT NULL::jsonb) RETURNS quota.decision
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result quota.decision;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.quota_commit($2, $3, $4);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_commit(text, uuid, bigint, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_commit(text, uuid, bigint, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_commit_or_error(text, uuid, bigint, jsonb) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, allowed boolean, subject text, metric text, period text, used bigint, limit_value bigint, bonus bigint, remaining bigint, requested bigint, reset_at timestamp with time zone, enforcement text, reason text, reserved bigint, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_commit($1, $2, $3, $4) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_commit_or_error(text, uuid, bigint, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_commit_or_error(text, uuid, bigint, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_consume(tenant text, subject inet, metric text, amount bigint DEFAULT 1, idempotency_key text DEFAULT NULL::text, metadata jsonb DEFAULT NULL::jsonb) RETURNS quota.decision
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result quota.decision;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.quota_consume($2, $3, $4, $5, $6);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_consume(text, inet, text, bigint, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_consume(text, inet, text, bigint, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_consume_or_error(text, inet, text, bigint, text, jsonb) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, allowed boolean, subject text, metric text, period text, used bigint, limit_value bigint, bonus bigint, remaining bigint, requested bigint, reset_at timestamp with time zone, enforcement text, reason text, reserved bigint, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_consume($1, $2, $3, $4, $5, $6) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_consume_or_error(text, inet, text, bigint, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_consume_or_error(text, inet, text, bigint, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_consume(tenant text, subject text, amounts jsonb) RETURNS SETOF quota.decision
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    RETURN QUERY SELECT * FROM quota.quota_consume($2, $3);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_consume(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_consume(text, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_consume_or_error(text, text, jsonb) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, allowed boolean, subject text, metric text, period text, used bigint, limit_value bigint, bonus bigint, remaining bigint, requested bigint, reset_at timestamp with time zone, enforcement text, reason text, reserved bigint, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_consume($1, $2, $3) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_consume_or_error(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_consume_or_error(text, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_consume(tenant text, subject text, metric text, amount bigint DEFAULT 1, idempotency_key text DEFAULT NULL::text, metadata jsonb DEFAULT NULL::jsonb) RETURNS quota.decision
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result quota.decision;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.quota_consume($2, $3, $4, $5, $6);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_consume(text, text, text, bigint, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_consume(text, text, text, bigint, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_consume_or_error(text, text, text, bigint, text, jsonb) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, allowed boolean, subject text, metric text, period text, used bigint, limit_value bigint, bonus bigint, remaining bigint, requested bigint, reset_at timestamp with time zone, enforcement text, reason text, reserved bigint, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_consume($1, $2, $3, $4, $5, $6) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_consume_or_error(text, text, text, bigint, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_consume_or_error(text, text, text, bigint, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_consume_many(tenant text, subject text, amounts jsonb, idempotency_key text DEFAULT NULL::text, metadata jsonb DEFAULT NULL::jsonb) RETURNS SETOF quota.decision
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    RETURN QUERY SELECT * FROM quota.quota_consume_many($2, $3, $4, $5);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_consume_many(text, text, jsonb, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_consume_many(text, text, jsonb, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_consume_many_or_error(text, text, jsonb, text, jsonb) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, allowed boolean, subject text, metric text, period text, used bigint, limit_value bigint, bonus bigint, remaining bigint, requested bigint, reset_at timestamp with time zone, enforcement text, reason text, reserved bigint, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_consume_many($1, $2, $3, $4, $5) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_consume_many_or_error(text, text, jsonb, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_consume_many_or_error(text, text, jsonb, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_refund(tenant text, subject inet, metric text, amount bigint, idempotency_key text DEFAULT NULL::text) RETURNS quota.decision
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result quota.decision;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.quota_refund($2, $3, $4, $5);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_refund(text, inet, text, bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_refund(text, inet, text, bigint, text) TO quota_app;

CREATE FUNCTION quota_node.quota_refund_or_error(text, inet, text, bigint, text) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, allowed boolean, subject text, metric text, period text, used bigint, limit_value bigint, bonus bigint, remaining bigint, requested bigint, reset_at timestamp with time zone, enforcement text, reason text, reserved bigint, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_refund($1, $2, $3, $4, $5) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_refund_or_error(text, inet, text, bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_refund_or_error(text, inet, text, bigint, text) TO quota_app;

CREATE FUNCTION quota_node.quota_refund(tenant text, subject text, metric text, amount bigint, idempotency_key text DEFAULT NULL::text) RETURNS quota.decision
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result quota.decision;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.quota_refund($2, $3, $4, $5);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_refund(text, text, text, bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_refund(text, text, text, bigint, text) TO quota_app;

CREATE FUNCTION quota_node.quota_refund_or_error(text, text, text, bigint, text) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, allowed boolean, subject text, metric text, period text, used bigint, limit_value bigint, bonus bigint, remaining bigint, requested bigint, reset_at timestamp with time zone, enforcement text, reason text, reserved bigint, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_refund($1, $2, $3, $4, $5) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_refund_or_error(text, text, text, bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_refund_or_error(text, text, text, bigint, text) TO quota_app;

CREATE FUNCTION quota_node.quota_release(tenant text, reservation uuid, reason text DEFAULT NULL::text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result boolean;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.quota_release($2, $3);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_release(text, uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_release(text, uuid, text) TO quota_app;

CREATE FUNCTION quota_node.quota_release_or_error(text, uuid, text) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, result boolean)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_release($1, $2, $3) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_release_or_error(text, uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_release_or_error(text, uuid, text) TO quota_app;

CREATE FUNCTION quota_node.quota_reserve(tenant text, subject text, metric text, amount bigint, ttl interval DEFAULT '00:15:00'::interval, idempotency_key text DEFAULT NULL::text, metadata jsonb DEFAULT NULL::jsonb) RETURNS quota.reservation
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result quota.reservation;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.quota_reserve($2, $3, $4, $5, $6, $7);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_reserve(text, text, text, bigint, interval, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_reserve(text, text, text, bigint, interval, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_reserve_or_error(text, text, text, bigint, interval, text, jsonb) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, reservation uuid, expires_at timestamp with time zone, allowed boolean, subject text, metric text, period text, used bigint, reserved bigint, limit_value bigint, bonus bigint, remaining bigint, requested bigint, reset_at timestamp with time zone, enforcement text, reason text, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_reserve($1, $2, $3, $4, $5, $6, $7) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_reserve_or_error(text, text, text, bigint, interval, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_reserve_or_error(text, text, text, bigint, interval, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_reset(tenant text, subject text, metric text DEFAULT NULL::text) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result integer;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.quota_reset($2, $3);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_reset(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_reset(text, text, text) TO quota_admin;

CREATE FUNCTION quota_node.quota_reset_or_error(text, text, text) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, result integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_reset($1, $2, $3) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_reset_or_error(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_reset_or_error(text, text, text) TO quota_admin;

CREATE FUNCTION quota_node.quota_status(tenant text, subject inet) RETURNS TABLE(metric text, period text, limit_value bigint, bonus bigint, used bigint, remaining bigint, reset_at timestamp with time zone, enforcement text, reserved bigint, source text, next_plan text, next_plan_at timestamp with time zone, pool text, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    RETURN QUERY SELECT * FROM quota.quota_status($2);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_status(text, inet) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_status(text, inet) TO quota_app;

CREATE FUNCTION quota_node.quota_status_or_error(text, inet) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, metric text, period text, limit_value bigint, bonus bigint, used bigint, remaining bigint, reset_at timestamp with time zone, enforcement text, reserved bigint, source text, next_plan text, next_plan_at timestamp with time zone, pool text, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_status($1, $2) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_status_or_error(text, inet) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_status_or_error(text, inet) TO quota_app;

CREATE FUNCTION quota_node.quota_status(tenant text, subject text) RETURNS TABLE(metric text, period text, limit_value bigint, bonus bigint, used bigint, remaining bigint, reset_at timestamp with time zone, enforcement text, reserved bigint, source text, next_plan text, next_plan_at timestamp with time zone, pool text, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    RETURN QUERY SELECT * FROM quota.quota_status($2);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_status(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_status(text, text) TO quota_app;

CREATE FUNCTION quota_node.quota_status_or_error(text, text) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, metric text, period text, limit_value bigint, bonus bigint, used bigint, remaining bigint, reset_at timestamp with time zone, enforcement text, reserved bigint, source text, next_plan text, next_plan_at timestamp with time zone, pool text, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_status($1, $2) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_status_or_error(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_status_or_error(text, text) TO quota_app;

CREATE FUNCTION quota_node.quota_try_consume(tenant text, subject inet, metric text, amount bigint DEFAULT 1, idempotency_key text DEFAULT NULL::text, metadata jsonb DEFAULT NULL::jsonb) RETURNS quota.decision
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result quota.decision;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.quota_try_consume($2, $3, $4, $5, $6);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_try_consume(text, inet, text, bigint, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_try_consume(text, inet, text, bigint, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_try_consume_or_error(text, inet, text, bigint, text, jsonb) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, allowed boolean, subject text, metric text, period text, used bigint, limit_value bigint, bonus bigint, remaining bigint, requested bigint, reset_at timestamp with time zone, enforcement text, reason text, reserved bigint, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_try_consume($1, $2, $3, $4, $5, $6) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_try_consume_or_error(text, inet, text, bigint, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_try_consume_or_error(text, inet, text, bigint, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_try_consume(tenant text, subject text, amounts jsonb) RETURNS SETOF quota.decision
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    RETURN QUERY SELECT * FROM quota.quota_try_consume($2, $3);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_try_consume(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_try_consume(text, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_try_consume_or_error(text, text, jsonb) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, allowed boolean, subject text, metric text, period text, used bigint, limit_value bigint, bonus bigint, remaining bigint, requested bigint, reset_at timestamp with time zone, enforcement text, reason text, reserved bigint, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_try_consume($1, $2, $3) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_try_consume_or_error(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_try_consume_or_error(text, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_try_consume(tenant text, subject text, metric text, amount bigint DEFAULT 1, idempotency_key text DEFAULT NULL::text, metadata jsonb DEFAULT NULL::jsonb) RETURNS quota.decision
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result quota.decision;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.quota_try_consume($2, $3, $4, $5, $6);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_try_consume(text, text, text, bigint, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_try_consume(text, text, text, bigint, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_try_consume_or_error(text, text, text, bigint, text, jsonb) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, allowed boolean, subject text, metric text, period text, used bigint, limit_value bigint, bonus bigint, remaining bigint, requested bigint, reset_at timestamp with time zone, enforcement text, reason text, reserved bigint, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_try_consume($1, $2, $3, $4, $5, $6) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_try_consume_or_error(text, text, text, bigint, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_try_consume_or_error(text, text, text, bigint, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_try_consume_many(tenant text, subject text, amounts jsonb, idempotency_key text DEFAULT NULL::text, metadata jsonb DEFAULT NULL::jsonb) RETURNS SETOF quota.decision
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    RETURN QUERY SELECT * FROM quota.quota_try_consume_many($2, $3, $4, $5);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_try_consume_many(text, text, jsonb, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_try_consume_many(text, text, jsonb, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_try_consume_many_or_error(text, text, jsonb, text, jsonb) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, allowed boolean, subject text, metric text, period text, used bigint, limit_value bigint, bonus bigint, remaining bigint, requested bigint, reset_at timestamp with time zone, enforcement text, reason text, reserved bigint, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_try_consume_many($1, $2, $3, $4, $5) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_try_consume_many_or_error(text, text, jsonb, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_try_consume_many_or_error(text, text, jsonb, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_try_reserve(tenant text, subject text, metric text, amount bigint, ttl interval DEFAULT '00:15:00'::interval, idempotency_key text DEFAULT NULL::text, metadata jsonb DEFAULT NULL::jsonb) RETURNS quota.reservation
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result quota.reservation;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.quota_try_reserve($2, $3, $4, $5, $6, $7);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_try_reserve(text, text, text, bigint, interval, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_try_reserve(text, text, text, bigint, interval, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.quota_try_reserve_or_error(text, text, text, bigint, interval, text, jsonb) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, reservation uuid, expires_at timestamp with time zone, allowed boolean, subject text, metric text, period text, used bigint, reserved bigint, limit_value bigint, bonus bigint, remaining bigint, requested bigint, reset_at timestamp with time zone, enforcement text, reason text, level integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.quota_try_reserve($1, $2, $3, $4, $5, $6, $7) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.quota_try_reserve_or_error(text, text, text, bigint, interval, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.quota_try_reserve_or_error(text, text, text, bigint, interval, text, jsonb) TO quota_app;

CREATE FUNCTION quota_node.remove_override(tenant text, subject text, metric text, period text DEFAULT NULL::text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
    result boolean;
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    result := quota.remove_override($2, $3, $4);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN result;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.remove_override(text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.remove_override(text, text, text, text) TO quota_admin;

CREATE FUNCTION quota_node.remove_override_or_error(text, text, text, text) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, result boolean)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.remove_override($1, $2, $3, $4) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.remove_override_or_error(text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.remove_override_or_error(text, text, text, text) TO quota_admin;

CREATE FUNCTION quota_node.set_override(tenant text, subject text, metric text, period text, value bigint, mode text DEFAULT 'max'::text, expires_at timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    PERFORM quota.set_override($2, $3, $4, $5, $6, $7);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.set_override(text, text, text, text, bigint, text, timestamp with time zone) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.set_override(text, text, text, text, bigint, text, timestamp with time zone) TO quota_admin;

CREATE FUNCTION quota_node.set_override_or_error(text, text, text, text, bigint, text, timestamp with time zone) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    PERFORM quota_node.set_override($1, $2, $3, $4, $5, $6, $7);
    RETURN NEXT;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.set_override_or_error(text, text, text, text, bigint, text, timestamp with time zone) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.set_override_or_error(text, text, text, text, bigint, text, timestamp with time zone) TO quota_admin;

CREATE FUNCTION quota_node.set_pool(tenant text, subject text, pool text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    PERFORM quota.set_pool($2, $3);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.set_pool(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.set_pool(text, text, text) TO quota_admin;

CREATE FUNCTION quota_node.set_pool_or_error(text, text, text) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    PERFORM quota_node.set_pool($1, $2, $3);
    RETURN NEXT;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.set_pool_or_error(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.set_pool_or_error(text, text, text) TO quota_admin;

CREATE FUNCTION quota_node.throttle(tenant text, key text, max_burst bigint, count bigint, period interval, quantity bigint DEFAULT 1) RETURNS TABLE(limited boolean, "limit" bigint, remaining bigint, retry_after interval, reset_after interval)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    RETURN QUERY SELECT * FROM quota.throttle($2, $3, $4, $5, $6);
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.throttle(text, text, bigint, bigint, interval, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.throttle(text, text, bigint, bigint, interval, bigint) TO quota_app;

CREATE FUNCTION quota_node.throttle_or_error(text, text, bigint, bigint, interval, bigint) RETURNS TABLE(error_state text, error_message text, error_detail text, error_hint text, limited boolean, "limit" bigint, remaining bigint, retry_after interval, reset_after interval)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, r.* FROM quota_node.throttle($1, $2, $3, $4, $5, $6) r;
    RETURN;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.throttle_or_error(text, text, bigint, bigint, interval, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.throttle_or_error(text, text, bigint, bigint, interval, bigint) TO quota_app;

CREATE FUNCTION quota_node.usage_overview(for_tenant text DEFAULT NULL) RETURNS TABLE(node text, subject text, tenant text, plan text, metric text, period text, used bigint, reserved bigint, limit_value bigint, bonus bigint, effective_limit bigint, remaining bigint, percent numeric, enforcement text, window_start timestamp with time zone, reset_at timestamp with time zone, source text)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    RETURN QUERY SELECT pg_catalog.current_setting('cluster_name')::text, s.* FROM quota.usage_overview s;
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.usage_overview(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.usage_overview(text) TO quota_reader, quota_app;

CREATE FUNCTION quota_node.top_consumers(for_tenant text DEFAULT NULL) RETURNS TABLE(node text, metric text, period text, window_start timestamp with time zone, window_end timestamp with time zone, current boolean, rank bigint, subject text, tenant text, used bigint, effective_limit bigint, percent numeric)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    RETURN QUERY SELECT pg_catalog.current_setting('cluster_name')::text, s.* FROM quota.top_consumers s;
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.top_consumers(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.top_consumers(text) TO quota_reader, quota_app;

CREATE FUNCTION quota_node.stats_totals(for_tenant text DEFAULT NULL) RETURNS TABLE(node text, metric text, consumed_total bigint, consumes_total bigint, exceeded_total bigint, soft_overages_total bigint, checks_total bigint, refunded_total bigint, bonuses_total bigint)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    RETURN QUERY SELECT pg_catalog.current_setting('cluster_name')::text, s.* FROM quota.stats_totals() s;
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.stats_totals(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.stats_totals(text) TO quota_app, quota_reader;

CREATE FUNCTION quota_node.recent_refusals(for_tenant text DEFAULT NULL) RETURNS TABLE(node text, refused_at timestamp with time zone, subject text, tenant text, metric text, requested bigint, used bigint, limit_value bigint, reason text)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    previous text := pg_catalog.current_setting('quota.tenant', true);
BEGIN
    PERFORM pg_catalog.set_config('quota.tenant', coalesce($1, ''), true);
    RETURN QUERY SELECT pg_catalog.current_setting('cluster_name')::text, s.* FROM quota.recent_refusals() s;
    PERFORM pg_catalog.set_config('quota.tenant', coalesce(previous, ''), true);
    RETURN;
END
$f$;
REVOKE ALL ON FUNCTION quota_node.recent_refusals(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota_node.recent_refusals(text) TO quota_app, quota_reader;
-- END GENERATED
