-- Run by test.sh as postgres in database example_django, after `manage.py migrate`.
CREATE EXTENSION IF NOT EXISTS quota_ext;

-- Plan STARTER (seed 004's plan limits): a HARD gauge, a HARD and a SOFT billing-period metric.
SELECT quota.set_limit('STARTER', 'tracked_products', 'lifetime', 50, 'hard');
SELECT quota.set_limit('STARTER', 'api_calls', 'billing_cycle', 100, 'hard');
SELECT quota.set_limit('STARTER', 'emails_sent', 'billing_cycle', 10, 'soft');

-- The subject is the tenant; each subject belongs to its own tenant. Billing cycles start
-- on the 15th at 00:00 UTC (a sign-up service with quota_admin would do this).
SELECT quota.assign_plan(t, 'STARTER', tenant => t, cycle_anchor => '2025-01-15 00:00:00+00')
FROM unnest(ARRAY['acme', 'globex', 'umbrella']) AS t;

-- Every tracked product consumes one tracked_products; deleting it gives the unit back.
SELECT quota.enforce_on_insert('public.tracked_product', subject_column => 'tenant_id',
                               metric => 'tracked_products', refund_on_delete => true);

-- The app's role: quota_app plus DML on its own tables (migrate ran as the owner).
GRANT SELECT, INSERT, UPDATE ON usage_request TO django_meter;
GRANT SELECT, INSERT, DELETE ON tracked_product TO django_meter;
GRANT USAGE ON SEQUENCE usage_request_id_seq, tracked_product_id_seq TO django_meter;
