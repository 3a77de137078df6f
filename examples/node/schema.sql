-- Run by test.sh as the superuser in a fresh database example_node.
CREATE EXTENSION quota_ext;

-- Seed 000: tokens per day, at most 4000 held by one generation (per-request cap).
SELECT quota.set_limit('AI_FREE', 'tokens', 'day', 10000, 'hard', 4000);
SELECT quota.assign_plan(u, 'AI_FREE') FROM unnest(ARRAY['alice', 'bob', 'carol']) AS u;

-- Seed 002: anonymous users by IP, 5 uses a day, three kinds of bonus, at most 3 bonuses a day.
SELECT quota.set_limit('ANON', 'uses', 'day', 5);
SELECT quota.set_bonus_rule('ANON', 'uses', 'questionnaire', 5, 'subject'); -- a questionnaire once per IP
SELECT quota.set_bonus_rule('ANON', 'uses', 'payment', 5, 'global');        -- a payment id once, ever
SELECT quota.set_bonus_rule('ANON', 'uses', 'referral', 2, 'subject');
SELECT quota.set_bonus_cap('ANON', 3);

-- App tables.
CREATE TABLE generations (
  id              bigserial PRIMARY KEY,
  user_id         text NOT NULL,
  conversation_id text,
  prompt          text NOT NULL,
  completion      text,
  tokens_reserved bigint NOT NULL,
  tokens_used     bigint NOT NULL,
  status          text NOT NULL CHECK (status IN ('completed', 'failed')),
  reservation     uuid NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now()
);
-- Transactional outbox: an event row commits with the quota change it reports.
CREATE TABLE domain_events (
  id          bigserial PRIMARY KEY,
  type        text NOT NULL,
  subject     text NOT NULL,
  payload     jsonb NOT NULL,
  occurred_at timestamptz NOT NULL DEFAULT now()
);

-- Roles (cluster-wide, so created only when missing): one per app, and an admin role.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'example_node_gen') THEN
    CREATE ROLE example_node_gen LOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'example_node_anon') THEN
    CREATE ROLE example_node_anon LOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'example_node_admin') THEN
    CREATE ROLE example_node_admin LOGIN;
  END IF;
END $$;
GRANT quota_app TO example_node_gen, example_node_anon;
-- The admin connection only resets windows: EXECUTE on quota_reset, not the whole quota_admin
-- role (revoked in case an older version of this file granted it to the cluster-wide role).
DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_auth_members WHERE roleid = 'quota_admin'::regrole
             AND member = 'example_node_admin'::regrole) THEN
    REVOKE quota_admin FROM example_node_admin;
  END IF;
END $$;
GRANT USAGE ON SCHEMA quota TO example_node_admin;
GRANT EXECUTE ON FUNCTION quota.quota_reset(text, text) TO example_node_admin;
GRANT SELECT, INSERT ON generations TO example_node_gen;
GRANT USAGE ON SEQUENCE generations_id_seq TO example_node_gen;
GRANT SELECT, INSERT ON domain_events TO example_node_gen, example_node_anon;
GRANT USAGE ON SEQUENCE domain_events_id_seq TO example_node_gen, example_node_anon;
-- Anonymous IPs join plan ANON on first use (a superuser-set setting, so set here).
ALTER ROLE example_node_anon IN DATABASE example_node SET quota.default_plan = 'ANON';
-- apply_bonus belongs to quota_admin; the anonymous app gets just that one function.
GRANT EXECUTE ON FUNCTION quota.apply_bonus(inet, text, text, text) TO example_node_anon;
