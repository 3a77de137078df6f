-- Tenant isolation: two tenants side by side and an untenanted subject. The tenant comes
-- from quota.tenant (set per transaction by the app); another tenant's subject looks
-- exactly like one that does not exist, in functions, tables, views and errors.
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET quota.clock_override = '2026-11-23 12:00:00+00';
DROP ROLE IF EXISTS regress_tenant_app, regress_tenant_admin, regress_tenant_reader;
CREATE ROLE regress_tenant_app IN ROLE quota_app;
CREATE ROLE regress_tenant_admin IN ROLE quota_admin;
CREATE ROLE regress_tenant_reader IN ROLE quota_reader;

SELECT 'ok' AS ok FROM quota.set_limit('TEAM', 'messages', 'day', 10);
SELECT 'ok' AS ok FROM quota.set_limit('TEAM', 'tokens', 'month', 1000);
SELECT 'ok' AS ok FROM quota.assign_plan('acme-1', 'TEAM', tenant => 'tn_acme');
SELECT 'ok' AS ok FROM quota.assign_plan('globex-1', 'TEAM', tenant => 'tn_globex');
SELECT 'ok' AS ok FROM quota.assign_plan('solo', 'TEAM');
SELECT used FROM quota.quota_consume('globex-1', 'messages', 7);

SET ROLE regress_tenant_app;
-- Without quota.tenant an app sees only subjects without a tenant.
SELECT subject FROM quota.subjects WHERE subject IN ('acme-1', 'globex-1', 'solo') ORDER BY 1;
SELECT allowed, used FROM quota.quota_consume('solo', 'messages');
SELECT code, detail FROM try($$ SELECT quota.quota_consume('acme-1', 'messages') $$);

BEGIN;
SET LOCAL quota.tenant = 'tn_acme';
SELECT allowed, used, remaining FROM quota.quota_consume('acme-1', 'messages', 2);
SELECT allowed, used FROM quota.quota_consume('acme-1', '{"messages": 1, "tokens": 50}'::jsonb);
-- globex-1 exists, nobody-1 does not: the same answers, with only the name changed.
SELECT code, message, detail FROM try($$ SELECT quota.quota_consume('globex-1', 'messages') $$);
SELECT code, message, detail FROM try($$ SELECT quota.quota_consume('nobody-1', 'messages') $$);
SELECT code, detail FROM try($$ SELECT quota.quota_check('globex-1', 'messages') $$);
SELECT code, detail FROM try($$ SELECT quota.quota_check('globex-1', '{"messages": 1}'::jsonb) $$);
SELECT code, detail FROM try($$ SELECT * FROM quota.quota_status('globex-1') $$);
SELECT code, detail FROM try($$ SELECT quota.quota_refund('globex-1', 'messages', 7) $$);
SELECT code, detail FROM try($$ SELECT quota.quota_try_consume('globex-1', 'messages') $$);
SELECT code, detail FROM try($$ SELECT quota.quota_reserve('globex-1', 'tokens', 10) $$);
SELECT code, detail FROM try($$ SELECT quota.quota_consume('solo', 'messages') $$);
-- Tables and views show this tenant only.
SELECT subject, tenant FROM quota.subjects ORDER BY 1;
SELECT subject, metric, used FROM quota.counters ORDER BY 1, 2;
SELECT subject, tenant, kind, amount FROM quota.usage_events ORDER BY id;
SELECT subject, tenant, metric, used, limit_value, percent FROM quota.usage_overview ORDER BY 1, 3;
SELECT subject, metric, rank FROM quota.top_consumers ORDER BY 2, 3;
SELECT subject, kind, used_after FROM quota.subject_ledger ORDER BY id;
COMMIT;

-- Holds: a reservation of another tenant cannot be settled from here.
BEGIN;
SET LOCAL quota.tenant = 'tn_globex';
SELECT reservation AS globex_hold FROM quota.quota_reserve('globex-1', 'tokens', 100) \gset
SELECT subject, tenant FROM quota.subjects;
COMMIT;
BEGIN;
SET LOCAL quota.tenant = 'tn_acme';
SELECT code, replace(message, :'globex_hold', '<hold id>') AS message FROM try(format('SELECT quota.quota_commit(%L)', :'globex_hold'));
SELECT code, replace(message, :'globex_hold', '<hold id>') AS message FROM try(format('SELECT quota.quota_release(%L)', :'globex_hold'));
SELECT count(*) AS visible_holds FROM quota.reservations;
COMMIT;
BEGIN;
SET LOCAL quota.tenant = 'tn_globex';
SELECT quota.quota_release(:'globex_hold') AS released_by_owner;
COMMIT;

-- quota.default_plan creates unknown subjects in the session's tenant.
RESET ROLE;
SET quota.default_plan = 'TEAM';
SET ROLE regress_tenant_app;
BEGIN;
SET LOCAL quota.tenant = 'tn_acme';
SELECT allowed, used FROM quota.quota_consume('acme-new', 'messages');
-- A subject of another tenant is not taken over by auto-creation.
SELECT code, detail FROM try($$ SELECT quota.quota_consume('globex-1', 'messages') $$);
COMMIT;
RESET ROLE;
RESET quota.default_plan;
SELECT subject, tenant FROM quota.subjects WHERE subject = 'acme-new';

-- quota_admin without quota.tenant sees and manages everything; with it, one tenant.
SET ROLE regress_tenant_admin;
SELECT subject, tenant FROM quota.subjects WHERE subject IN ('acme-1', 'acme-new', 'globex-1', 'solo', 'bob') ORDER BY 1;
BEGIN;
SET LOCAL quota.tenant = 'tn_acme';
SELECT subject FROM quota.subjects ORDER BY 1;
SELECT code, detail FROM try($$ SELECT quota.quota_reset('globex-1') $$);
SELECT code, detail FROM try($$ SELECT quota.apply_bonus('globex-1', 'messages', 'questionnaire') $$);
-- Cannot take over another tenant's subject, nor assign another tenant.
SELECT code, detail FROM try($$ SELECT quota.assign_plan('globex-1', 'TEAM') $$);
SELECT code, message FROM try($$ SELECT quota.assign_plan('acme-2', 'TEAM', tenant => 'tn_globex') $$);
SELECT 'ok' AS ok FROM quota.assign_plan('acme-2', 'TEAM');
COMMIT;
SELECT subject, tenant FROM quota.subjects WHERE subject IN ('acme-2', 'globex-1') ORDER BY 1;
RESET ROLE;

-- A reader sees the views of its tenant only.
SET ROLE regress_tenant_reader;
BEGIN;
SET LOCAL quota.tenant = 'tn_globex';
SELECT subject, metric, used, reset_at FROM quota.usage_overview ORDER BY 1, 2;
SELECT subject, kind, amount FROM quota.subject_ledger ORDER BY id;
SELECT count(*) AS acme_rows FROM quota.usage_events WHERE tenant = 'tn_acme';
COMMIT;
SELECT code FROM try($$ SELECT quota.quota_consume('solo', 'messages') $$);
RESET ROLE;

-- Counters are as each tenant left them.
SELECT subject, metric, used FROM quota.counters WHERE subject IN ('acme-1', 'acme-new', 'globex-1', 'solo') ORDER BY 1, 2;
-- A role bound to a tenant is refused (42501) when quota.tenant names another, whatever
-- relation of schema quota it reads: a table, a view over tables, and a view over
-- functions alone (quota.stats), which from PostgreSQL 16 on is only a subquery in the plan.
SELECT 'ok' AS ok FROM quota.bind_tenant('regress_tenant_reader', 'tn_globex');
SET ROLE regress_tenant_reader;
BEGIN;
SET LOCAL quota.tenant = 'tn_acme';
SELECT code FROM try($$ SELECT count(*) FROM quota.subjects $$);
SELECT code FROM try($$ SELECT count(*) FROM quota.usage_overview $$);
SELECT code FROM try($$ SELECT count(*) FROM quota.stats $$);
SELECT code FROM try($$ SELECT count(*) FROM quota.stats_totals() $$);
COMMIT;
BEGIN;
SET LOCAL quota.tenant = 'tn_globex';
SELECT count(*) >= 0 AS reads_its_own FROM quota.stats;
COMMIT;
RESET ROLE;
SELECT quota.unbind_tenant('regress_tenant_reader') AS unbound;
DROP ROLE regress_tenant_app, regress_tenant_admin, regress_tenant_reader;
