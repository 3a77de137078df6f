-- quota_ext schema: plans and limits, subjects, counters (one row per window), the
-- append-only ledger, idempotency keys, and bonus rules and grants.
-- Everything lives in schema "quota" (the control file pins it; the extension is not
-- relocatable).

-- Plans and their limits ------------------------------------------------------------

CREATE TABLE quota.plans (
    plan              text PRIMARY KEY CHECK (plan <> ''),
    -- At most this many bonuses per subject per local day; NULL means no cap.
    bonus_cap_per_day integer CHECK (bonus_cap_per_day >= 0),
    created_at        timestamptz NOT NULL DEFAULT now()
);

-- Limits: one per plan, metric and period. A metric may have several (tokens per day and
-- per month); a consume must fit every hard one.
CREATE TABLE quota.plan_limits (
    plan            text NOT NULL REFERENCES quota.plans ON DELETE CASCADE,
    metric          text NOT NULL CHECK (metric <> ''),
    -- A calendar period, a first-use window ('5 hours') or a rate ('per 1 minute'),
    -- in the one spelling quota_ext stores (src/domain/period.rs).
    period          text NOT NULL CONSTRAINT plan_limits_period_check
                    CHECK (period IN ('day', 'week', 'month', 'billing_cycle', 'lifetime')
                           OR period ~ '^(per )?[1-9][0-9]* (second|minute|hour)s?$'),
    limit_value     bigint NOT NULL CHECK (limit_value >= 0),
    enforcement     text NOT NULL DEFAULT 'hard' CHECK (enforcement IN ('hard', 'soft')),
    per_request_max bigint CHECK (per_request_max >= 1),
    -- Percentages of the limit at which a threshold event fires, once per window each.
    alert_thresholds integer[] NOT NULL DEFAULT '{}'
                     CHECK (0 < ALL (alert_thresholds) AND 1000 >= ALL (alert_thresholds)),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- A rate limit's burst (period 'per ...'); NULL for every other period.
    burst           bigint CHECK (burst >= 0),
    PRIMARY KEY (plan, metric, period)
);

-- Subjects: a user id, tenant id, API key or IP address ---------------------------------

CREATE TABLE quota.subjects (
    subject      text PRIMARY KEY CHECK (subject <> ''),
    plan         text NOT NULL REFERENCES quota.plans ON UPDATE CASCADE,
    tenant       text,
    -- Billing cycles start on this instant's local day of month and time of day.
    cycle_anchor timestamptz NOT NULL,
    -- IANA name; day, week and month boundaries follow it.
    time_zone    text NOT NULL DEFAULT 'UTC',
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- A scheduled plan change (0.7.0): next_plan takes over at next_plan_at. Until the
    -- first call that writes after that instant stores it, every call computes it; carry
    -- says how the usage of a window the change falls in carries over ('usage' as it
    -- is, 'percent' the same share of the new limit, rounded down).
    next_plan    text REFERENCES quota.plans ON UPDATE CASCADE,
    next_plan_at timestamptz,
    carry        text CHECK (carry IN ('usage', 'percent')),
    CONSTRAINT subjects_next_plan_check
        CHECK ((next_plan IS NULL) = (next_plan_at IS NULL) AND (next_plan IS NULL) = (carry IS NULL)),
    -- The pool this subject draws from too (0.8.0): another subject, whose limits every
    -- consume of this one must also fit (sql/pools.sql). Set with quota.set_pool, which
    -- checks that it exists; no foreign key (pg_dump warns about a table that references
    -- itself). A pool deleted or renamed by hand makes its members' calls fail (XX001).
    pool         text,
    CONSTRAINT subjects_pool_check CHECK (pool <> subject)
);
CREATE INDEX subjects_plan_idx ON quota.subjects (plan);
CREATE INDEX subjects_pool_idx ON quota.subjects (pool) WHERE pool IS NOT NULL;
CREATE INDEX subjects_tenant_idx ON quota.subjects (tenant) WHERE tenant IS NOT NULL;

-- Counters: one row per subject, metric, period and window -------------------------------
-- A metric with a day and a month limit has two rows, even when both windows start at
-- the same instant. period is the limit's (plan_limits.period); it is the last column
-- because the 0.6.0 -> 0.7.0 upgrade appended it (the same holds for every table below
-- that has it).
-- A new window starts by itself at its boundary (a new row), so no reset job is needed.
-- Only the primary key is indexed and it never changes, so counter updates are HOT.
-- The hot tables (counters, usage_events) carry no CHECK constraints: PostgreSQL
-- re-reads every CHECK expression on each statement, which cost ~15% of a consume. Their
-- invariants (never negative, known kinds) are the operations', and the reliability suite
-- verifies them.

CREATE TABLE quota.counters (
    subject      text NOT NULL REFERENCES quota.subjects ON DELETE CASCADE ON UPDATE CASCADE,
    metric       text NOT NULL,
    window_start timestamptz NOT NULL,   -- '-infinity' for lifetime limits
    window_end   timestamptz,            -- NULL for lifetime limits
    used         bigint NOT NULL DEFAULT 0,
    bonus        bigint NOT NULL DEFAULT 0,
    -- Held by open reservations: counts against the limit until committed or released.
    reserved     bigint NOT NULL DEFAULT 0,
    -- The highest alert threshold (percent of the limit) already announced in the window.
    alerted      integer NOT NULL DEFAULT 0,
    period       text NOT NULL,
    PRIMARY KEY (subject, metric, period, window_start)
) WITH (fillfactor = 70);

-- The ledger: append-only -------------------------------------------------------------
-- amount is always >= 0; kind gives its direction. For every window (subject, metric,
-- period, window_start):
--   used  = sum(consume) + sum(commit) - sum(refund) - sum(reset)
--   bonus = sum(bonus)
-- reserve / release / expire rows record holds; they do not change used.

CREATE TABLE quota.usage_events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject         text NOT NULL,
    tenant          text,
    metric          text NOT NULL,
    window_start    timestamptz NOT NULL,
    -- consume, refund, reset, bonus, reserve, commit, release or expire
    kind            text NOT NULL,
    amount          bigint NOT NULL,
    -- How much of this consume went past the effective limit (soft limits).
    overage         bigint NOT NULL DEFAULT 0,
    idempotency_key text,
    metadata        jsonb,
    created_at      timestamptz NOT NULL,
    period          text NOT NULL,
    -- At a pool's level (0.8.0): the pool's member the call came through (one level
    -- below); NULL at the subject's own level.
    via             text
);
CREATE INDEX usage_events_window_idx ON quota.usage_events (subject, metric, period, window_start);

-- Its guard (append-only) and retention are in sql/ledger.sql and src/api/ledger.rs.

-- Idempotency keys, scoped per subject ---------------------------------------------------
-- The first successful call's answer is kept and replayed; refusals are not remembered.

CREATE TABLE quota.idempotency_keys (
    subject         text NOT NULL,
    idempotency_key text NOT NULL,
    operation       text NOT NULL,
    response        jsonb NOT NULL,
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (subject, idempotency_key)
);

-- Reservations: holds for long generations (reserve, then commit or release) -----------
-- A hold lies in every window of its metric: one row per hold and window (period), and
-- per level (its pools' windows).

CREATE TABLE quota.reservations (
    id              uuid NOT NULL DEFAULT gen_random_uuid(),
    subject         text NOT NULL,
    metric          text NOT NULL,
    window_start    timestamptz NOT NULL,
    window_end      timestamptz,
    amount          bigint NOT NULL CHECK (amount >= 1),
    status          text NOT NULL DEFAULT 'held' CHECK (status IN ('held', 'committed', 'released', 'expired')),
    expires_at      timestamptz NOT NULL,
    actual_amount   bigint,
    idempotency_key text,
    metadata        jsonb,
    response        jsonb,
    created_at      timestamptz NOT NULL,
    settled_at      timestamptz,
    period          text NOT NULL,
    -- A hold lies in the pools' windows too (0.8.0): their rows name the pool as subject
    -- and the member here.
    via             text,
    PRIMARY KEY (id, period, subject)
);
CREATE INDEX reservations_held_idx ON quota.reservations (subject, metric, period, window_start, expires_at)
    WHERE status = 'held';
CREATE INDEX reservations_expiry_idx ON quota.reservations (expires_at) WHERE status = 'held';

-- Events: an outbox for apps that cannot hold a LISTEN connection -------------------------
-- Every event is also sent with pg_notify on channel quota_events (at COMMIT).

CREATE TABLE quota.events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type            text NOT NULL,
    subject         text NOT NULL,
    metric          text,
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL,
    acknowledged_at timestamptz
);
CREATE INDEX events_pending_idx ON quota.events (id) WHERE acknowledged_at IS NULL;

-- Bonuses ---------------------------------------------------------------------------

CREATE TABLE quota.bonus_rules (
    plan            text NOT NULL REFERENCES quota.plans ON DELETE CASCADE,
    metric          text NOT NULL CHECK (metric <> ''),
    kind            text NOT NULL CHECK (kind <> ''),
    amount          bigint NOT NULL CHECK (amount >= 1),
    -- Where a reference must be unique: global (payment), subject, or none.
    reference_scope text NOT NULL CHECK (reference_scope IN ('global', 'subject', 'none')),
    PRIMARY KEY (plan, metric, kind)
);

CREATE TABLE quota.bonus_grants (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject         text NOT NULL,
    metric          text NOT NULL,
    kind            text NOT NULL,
    reference       text,
    reference_scope text NOT NULL,
    amount          bigint NOT NULL,
    window_start    timestamptz NOT NULL,
    local_day       date NOT NULL,        -- the subject's local day, for the daily cap
    granted_at      timestamptz NOT NULL
);
CREATE UNIQUE INDEX bonus_grants_global_reference ON quota.bonus_grants (kind, reference)
    WHERE reference_scope = 'global';
CREATE UNIQUE INDEX bonus_grants_subject_reference ON quota.bonus_grants (subject, kind, reference)
    WHERE reference_scope = 'subject';
CREATE INDEX bonus_grants_day_idx ON quota.bonus_grants (subject, local_day);

-- Result types ------------------------------------------------------------------------

CREATE TYPE quota.decision AS (
    allowed     boolean,
    subject     text,
    metric      text,
    period      text,
    used        bigint,
    limit_value bigint,
    bonus       bigint,
    remaining   bigint,
    requested   bigint,
    reset_at    timestamptz,
    enforcement text,
    reason      text,
    reserved    bigint,
    -- Whose window this is (0.8.0): 0 the subject's own, 1 its pool's, 2 that pool's pool...
    level       integer
);

CREATE TYPE quota.reservation AS (
    reservation uuid,
    expires_at  timestamptz,
    allowed     boolean,
    subject     text,
    metric      text,
    period      text,
    used        bigint,
    reserved    bigint,
    limit_value bigint,
    bonus       bigint,
    remaining   bigint,
    requested   bigint,
    reset_at    timestamptz,
    enforcement text,
    reason      text,
    level       integer
);

CREATE TYPE quota.bonus_result AS (
    applied       boolean,
    reason        text,
    amount        bigint,
    new_limit     bigint,
    bonuses_today integer
);

-- pg_dump keeps configuration and state -------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('quota.plans', '');
SELECT pg_catalog.pg_extension_config_dump('quota.plan_limits', '');
SELECT pg_catalog.pg_extension_config_dump('quota.subjects', '');
SELECT pg_catalog.pg_extension_config_dump('quota.counters', '');
SELECT pg_catalog.pg_extension_config_dump('quota.usage_events', '');
SELECT pg_catalog.pg_extension_config_dump('quota.idempotency_keys', '');
SELECT pg_catalog.pg_extension_config_dump('quota.bonus_rules', '');
SELECT pg_catalog.pg_extension_config_dump('quota.bonus_grants', '');
SELECT pg_catalog.pg_extension_config_dump('quota.reservations', '');
SELECT pg_catalog.pg_extension_config_dump('quota.events', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('quota.usage_events', 'id'), '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('quota.bonus_grants', 'id'), '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('quota.events', 'id'), '');
