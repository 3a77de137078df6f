-- Overrides per subject (limits v2): one subject's own limit on one metric and window,
-- replacing the plan's ('max') or adding to it ('add'), with an optional expiry; visible
-- in quota_status with its source; untouched by the plan's later changes.
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET quota.clock_override = '2026-11-23 12:00:00+00';
SELECT quota.set_limit('OV', 'messages', 'day', 10);
SELECT quota.set_limit('OV', 'messages', 'month', 100);
SELECT quota.assign_plan('ov1', 'OV');
SELECT quota.assign_plan('ov2', 'OV');

-- max: the subject's day limit is 50 instead of 10; the month stays the plan's.
SELECT quota.set_override('ov1', 'messages', 'day', 50);
SELECT metric, period, limit_value, source FROM quota.quota_status('ov1') ORDER BY metric, period;
SELECT metric, period, limit_value, source FROM quota.quota_status('ov2') ORDER BY metric, period;
SELECT allowed, period, used, limit_value, remaining FROM quota.quota_consume('ov1', 'messages', 30);
SELECT code, detail::jsonb -> 'limit' AS lim FROM try($$ SELECT quota.quota_consume('ov2', 'messages', 30) $$);
-- The plan's later changes do not undo it.
SELECT quota.set_limit('OV', 'messages', 'day', 12);
SELECT period, limit_value, source FROM quota.quota_status('ov1') WHERE period = 'day';
-- add: on top of the plan's current value; replacing the override.
SELECT quota.set_override('ov1', 'messages', 'day', 5, 'add');
SELECT period, limit_value, source FROM quota.quota_status('ov1') WHERE period = 'day';
SELECT code, detail::jsonb -> 'limit' AS lim FROM try($$ SELECT quota.quota_consume('ov1', 'messages', 1) $$);
-- A bonus goes on top of the overridden limit.
SELECT quota.set_bonus_rule('OV', 'messages', 'promo', 20);
SELECT applied, new_limit FROM quota.apply_bonus('ov1', 'messages', 'promo', 'x1');
SELECT allowed, period, used, limit_value, bonus, remaining FROM quota.quota_check('ov1', 'messages', 1);

-- A window the plan does not limit is added (hard). Its usage counts from now on: the
-- week window starts empty.
SELECT quota.set_override('ov1', 'messages', 'week', 35);
SELECT metric, period, limit_value, enforcement, source FROM quota.quota_status('ov1') ORDER BY metric, period;
SELECT code, detail::jsonb -> 'period' AS named FROM try($$ SELECT quota.quota_consume('ov1', 'messages', 6) $$);
-- A metric the plan does not limit at all becomes limited for this subject only.
SELECT quota.set_override('ov1', 'images', 'day', 2);
SELECT allowed, period, used, remaining FROM quota.quota_consume('ov1', 'images', 2);
SELECT code FROM try($$ SELECT quota.quota_consume('ov1', 'images') $$);
SELECT code FROM try($$ SELECT quota.quota_consume('ov2', 'images') $$);

-- An expiry: counts until that instant, then the plan is back.
SELECT quota.set_override('ov2', 'messages', 'day', 1000, expires_at => '2026-11-23 18:00+00');
SELECT limit_value FROM quota.quota_status('ov2') WHERE period = 'day';
SET quota.clock_override = '2026-11-23 18:00:00+00';
SELECT limit_value, source FROM quota.quota_status('ov2') WHERE period = 'day';
SELECT code, message FROM try($$ SELECT quota.set_override('ov2', 'messages', 'day', 5, expires_at => '2026-11-23 17:00+00') $$);

-- remove_override: one window, or every window of the metric.
SELECT quota.remove_override('ov1', 'messages', 'week');
SELECT quota.remove_override('ov1', 'messages', 'week') AS again;
SELECT quota.remove_override('ov1', 'messages');
SELECT metric, period, limit_value, source FROM quota.quota_status('ov1') ORDER BY metric, period;

-- Bad input: 22023 with the argument named; an unknown subject is QT404.
SELECT code, message, detail FROM try($$ SELECT quota.set_override('ov1', 'messages', 'day', -1) $$);
SELECT code, message, detail FROM try($$ SELECT quota.set_override('ov1', 'messages', 'day', 5, 'double') $$);
SELECT code, message FROM try($$ SELECT quota.set_override('ov1', 'messages', '1 day', 5) $$);
SELECT code, message FROM try($$ SELECT quota.set_override('ov1', 'messages', 'per 1 minute', 5) $$);
SELECT code, message FROM try($$ SELECT quota.set_override('nobody', 'messages', 'day', 5) $$);
SELECT code FROM try($$ SELECT quota.set_override(NULL, 'messages', 'day', 5) $$);

-- Tenant-scoped: a session of another tenant sees no such subject.
SELECT quota.assign_plan('ov_t', 'OV', tenant => 'acme');
SET quota.tenant = 'globex';
SELECT code FROM try($$ SELECT quota.set_override('ov_t', 'messages', 'day', 5) $$);
RESET quota.tenant;
SELECT quota.set_override('ov_t', 'messages', 'day', 5);
-- A reader of another tenant does not see it; one of acme does.
DROP ROLE IF EXISTS regress_ov_reader;
CREATE ROLE regress_ov_reader IN ROLE quota_reader;
SET ROLE regress_ov_reader;
SET quota.tenant = 'globex';
SELECT count(*) AS visible_to_globex FROM quota.subject_overrides WHERE subject = 'ov_t';
SET quota.tenant = 'acme';
SELECT count(*) AS visible_to_acme FROM quota.subject_overrides WHERE subject = 'ov_t';
RESET quota.tenant;
RESET ROLE;
DROP ROLE regress_ov_reader;

-- Only administrators write overrides: an app role gets 42501.
SET ROLE quota_app;
SELECT code FROM try($$ SELECT quota.set_override('ov1', 'messages', 'day', 5) $$);
SELECT code FROM try($$ INSERT INTO quota.subject_overrides VALUES ('ov1', 'messages', 'day', 'max', 5, NULL, now()) $$);
RESET ROLE;

-- A subject's overrides go with it; the ledger still proves every counter.
SELECT quota.delete_subject('ov_t');
SELECT count(*) FROM quota.subject_overrides WHERE subject = 'ov_t';
SELECT count(*) AS mismatches FROM quota.ledger_check;
