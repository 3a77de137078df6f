-- The node entry points for the scale-out router (schema quota_node, issue 19): each
-- wrapper sets quota.tenant for its call only and returns what the API function returns;
-- _or_error returns an error as a row; the configuration snapshot and apply. The router
-- itself is tested on a loopback cluster (tests/scaleout/).
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET quota.clock_override = '2026-11-23 12:00:00+00';
DROP ROLE IF EXISTS regress_node_app, regress_node_bound;
CREATE ROLE regress_node_app IN ROLE quota_app;
CREATE ROLE regress_node_bound IN ROLE quota_app;
SELECT quota.bind_tenant('regress_node_bound', 'nd_acme');

-- Every function is SECURITY INVOKER with its search_path pinned, and none is PUBLIC's.
SELECT count(*) AS functions,
       count(*) FILTER (WHERE prosecdef) AS security_definer,
       count(*) FILTER (WHERE proconfig IS DISTINCT FROM ARRAY['search_path=pg_catalog, pg_temp']) AS search_path_not_pinned,
       count(*) FILTER (WHERE has_function_privilege('public', oid, 'EXECUTE')) AS public_may_call
FROM pg_proc WHERE pronamespace = 'quota_node'::regnamespace;

-- A wrapper (and its _or_error) may be called by exactly the roles that may call the
-- function it wraps.
SELECT w.oid::regprocedure AS wrapper, r AS role
FROM pg_proc w
JOIN pg_proc f ON f.pronamespace = 'quota'::regnamespace
              AND f.proname = regexp_replace(w.proname, '_or_error$', '')
              AND pg_get_function_identity_arguments(f.oid) = regexp_replace(
                      regexp_replace(pg_get_function_identity_arguments(w.oid), '^(tenant )?text(, )?', ''),
                      'subject_tenant', 'tenant')
CROSS JOIN unnest(ARRAY['quota_reader', 'quota_app', 'quota_admin']) r
WHERE w.pronamespace = 'quota_node'::regnamespace
  AND has_function_privilege(r, w.oid, 'EXECUTE') <> has_function_privilege(r, f.oid, 'EXECUTE')
ORDER BY 1, 2;
-- Wrappers without an API function of the same arguments: the configuration and the reads.
SELECT w.proname FROM pg_proc w
WHERE w.pronamespace = 'quota_node'::regnamespace
  AND NOT EXISTS (SELECT FROM pg_proc f WHERE f.pronamespace = 'quota'::regnamespace
                  AND f.proname = regexp_replace(w.proname, '_or_error$', ''))
ORDER BY 1;

SELECT 'ok' AS ok FROM quota.set_limit('NODE', 'messages', 'day', 5);
SELECT 'ok' AS ok FROM quota_node.assign_plan('nd_acme', 'nd-acme-1', 'NODE');
SELECT 'ok' AS ok FROM quota.assign_plan('nd-solo', 'NODE');
SELECT subject, tenant FROM quota.subjects WHERE subject LIKE 'nd-%' ORDER BY 1;

SET ROLE regress_node_app;
-- The tenant holds for the call only; the session's own setting comes back after it.
BEGIN;
SET LOCAL quota.tenant = 'someone_else';
SELECT allowed, used FROM quota_node.quota_consume('nd_acme', 'nd-acme-1', 'messages', 2);
SHOW quota.tenant;
ROLLBACK;
SELECT allowed, used FROM quota_node.quota_consume('nd_acme', 'nd-acme-1', 'messages', 2);
SELECT current_setting('quota.tenant', true) AS tenant_after;
-- NULL: as with no tenant set (an app role sees untenanted subjects only).
SELECT allowed, used FROM quota_node.quota_try_consume(NULL, 'nd-solo', 'messages', 1);
SELECT * FROM try($$ SELECT * FROM quota_node.quota_consume(NULL, 'nd-acme-1', 'messages', 1) $$);
SELECT * FROM try($$ SELECT * FROM quota_node.quota_consume('nd_other', 'nd-acme-1', 'messages', 1) $$);
SELECT metric, used, remaining FROM quota_node.quota_status('nd_acme', 'nd-acme-1');
-- _or_error: the result, or the error as a row, never raised.
SELECT error_state, allowed, used FROM quota_node.quota_consume_or_error('nd_acme', 'nd-acme-1', 'messages', 1, NULL, NULL);
SELECT error_state, error_message, error_detail::jsonb ->> 'code' AS code, error_hint IS NOT NULL AS hint, allowed
FROM quota_node.quota_consume_or_error('nd_acme', 'nd-acme-1', 'messages', 5, NULL, NULL);
SELECT metric, used FROM quota_node.quota_status('nd_acme', 'nd-acme-1');
-- Reads name the node (cluster_name; empty on this server) and apply the tenant.
SELECT node, subject, used FROM quota_node.usage_overview('nd_acme');
SELECT subject, used FROM quota_node.usage_overview() WHERE subject LIKE 'nd-%' ORDER BY 1;
-- Configuration is the administrators'.
SELECT * FROM try($$ SELECT * FROM quota_node.config_snapshot() $$);
RESET ROLE;

-- A bound role stays bound through the wrappers (they are SECURITY INVOKER).
SET ROLE regress_node_bound;
SELECT allowed, used FROM quota_node.quota_check('nd_acme', 'nd-acme-1', 'messages', 0);
SELECT * FROM try($$ SELECT * FROM quota_node.quota_try_consume('nd_other', 'x', 'messages', 1) $$);
SELECT error_state FROM quota_node.quota_try_consume_or_error('nd_other', 'x', 'messages', 1, NULL, NULL);
RESET ROLE;

-- The configuration snapshot, and applying another one.
SELECT 'ok' AS ok FROM quota.set_rate_limit('NODE', 'requests', 10, '1 minute', 5);
SELECT 'ok' AS ok FROM quota.set_alerts('NODE', 'messages', '{50,80}', 'day');
SELECT 'ok' AS ok FROM quota.set_bonus_rule('NODE', 'messages', 'gift', 3);
SELECT 'ok' AS ok FROM quota.set_bonus_cap('NODE', 2);
SELECT kind, key, value FROM quota_node.config_snapshot() WHERE key LIKE '%NODE%' OR key LIKE '%nd_acme%';
CREATE TEMP TABLE snap AS SELECT * FROM quota_node.config_snapshot();
-- The same snapshot changes nothing.
SELECT quota_node.config_apply((SELECT jsonb_agg(to_jsonb(s)) FROM snap s)) AS changed;
-- Changes by hand, then the snapshot back: three items differ, and are put back.
SELECT 'ok' AS ok FROM quota.set_limit('NODE', 'messages', 'day', 50);
SELECT 'ok' AS ok FROM quota.remove_limit('NODE', 'requests', 'per 1 minute');
SELECT 'ok' AS ok FROM quota.set_limit('NODE', 'extra', 'week', 1);
SELECT quota_node.config_apply((SELECT jsonb_agg(to_jsonb(s)) FROM snap s)) AS changed;
SELECT (SELECT count(*) FROM (SELECT * FROM quota_node.config_snapshot() EXCEPT SELECT * FROM snap) d) AS extra,
       (SELECT count(*) FROM (SELECT * FROM snap EXCEPT SELECT * FROM quota_node.config_snapshot()) d) AS missing;
SELECT * FROM try($$ SELECT quota_node.config_apply('{}') $$);
SELECT * FROM try($$ SELECT quota_node.config_apply('[{"kind": "nonsense", "key": "[1]", "value": 1}]') $$);
-- Invalid values fail through the API's validation, and nothing is applied (this snapshot
-- would also remove every other item).
SELECT * FROM try($$ SELECT quota_node.config_apply('[{"kind": "limit", "key": "[\"NODE\", \"x\", \"fortnight\"]", "value": {"limit_value": 1, "enforcement": "hard", "alert_thresholds": []}}]') $$);
SELECT count(*) AS node_limits FROM quota.plan_limits WHERE plan = 'NODE';

DROP ROLE regress_node_app;
SELECT quota.unbind_tenant('regress_node_bound');
DROP ROLE regress_node_bound;
