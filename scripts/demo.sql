-- The seeds' chat app: a FREE plan with 5 messages a day.
\set ON_ERROR_STOP 1
\pset footer off
CREATE EXTENSION quota_ext;
-- A fixed clock keeps the demo's output the same every day.
SET quota.clock_override = '2026-11-23 09:00:00+00';

SELECT quota.set_limit('FREE', 'messages', 'day', 5);
SELECT quota.set_bonus_rule('FREE', 'messages', 'questionnaire', 5);
SELECT quota.set_bonus_rule('FREE', 'messages', 'payment', 5);
SELECT quota.set_bonus_rule('FREE', 'messages', 'referral', 2);
SELECT quota.set_bonus_cap('FREE', 3);
SET quota.default_plan = 'FREE';   -- unknown users join FREE on first use

\echo '-- five messages go through'
SELECT allowed, used, remaining, reset_at FROM quota.quota_consume('alice', 'messages') ORDER BY 1;
SELECT allowed, used, remaining FROM quota.quota_consume('alice', 'messages');
SELECT allowed, used, remaining FROM quota.quota_consume('alice', 'messages');
SELECT allowed, used, remaining FROM quota.quota_consume('alice', 'messages');
SELECT allowed, used, remaining FROM quota.quota_consume('alice', 'messages');

\echo '-- the sixth is refused (SQLSTATE QT429, JSON DETAIL, HINT):'
\set ON_ERROR_STOP 0
\set VERBOSITY verbose
SELECT * FROM quota.quota_consume('alice', 'messages');
\set VERBOSITY default
\set ON_ERROR_STOP 1

\echo '-- alice answers the questionnaire: +5'
SELECT * FROM quota.apply_bonus('alice', 'messages', 'questionnaire', 'survey-2026-11');
\echo '-- the next message goes through'
SELECT allowed, used, limit_value, bonus, remaining FROM quota.quota_consume('alice', 'messages');

\echo '-- quota_status'
SELECT * FROM quota.quota_status('alice');
\echo '-- the ledger'
SELECT id, kind, metric, amount, created_at FROM quota.usage_events WHERE subject = 'alice' ORDER BY id;
\echo '-- quota.stats (shared memory: the refused sixth message is counted although its transaction rolled back)'
SELECT metric, consumed_total, exceeded_total, bonuses_total FROM quota.stats;
