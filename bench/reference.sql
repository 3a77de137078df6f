-- The baseline quota_ext is measured against: quota consumption written the obvious way
-- the seed applications describe, in PL/pgSQL, with the same semantics as
-- quota.quota_consume for a day limit (plan lookup, window in the subject's zone, row lock,
-- hard-limit check, counter update, ledger insert). Its own copies of the tables.

CREATE SCHEMA IF NOT EXISTS bench;

CREATE TABLE bench.plan_limits (plan text, metric text, limit_value bigint, enforcement text, PRIMARY KEY (plan, metric));
CREATE TABLE bench.subjects (subject text PRIMARY KEY, plan text NOT NULL, time_zone text NOT NULL DEFAULT 'UTC');
CREATE TABLE bench.counters (
    subject text, metric text, window_start timestamptz, used bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (subject, metric, window_start)
) WITH (fillfactor = 70);
CREATE TABLE bench.usage_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, subject text NOT NULL, metric text NOT NULL,
    window_start timestamptz NOT NULL, kind text NOT NULL, amount bigint NOT NULL, created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON bench.usage_events (subject, metric, window_start);
CREATE INDEX ON bench.usage_events (created_at);

CREATE FUNCTION bench.plpgsql_consume(p_subject text, p_metric text, p_amount bigint DEFAULT 1)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_limit bigint;
    v_enforcement text;
    v_zone text;
    v_window timestamptz;
    v_used bigint;
BEGIN
    SELECT l.limit_value, l.enforcement, s.time_zone INTO v_limit, v_enforcement, v_zone
    FROM bench.subjects s JOIN bench.plan_limits l ON l.plan = s.plan AND l.metric = p_metric
    WHERE s.subject = p_subject;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown subject or metric' USING ERRCODE = 'QT404';
    END IF;
    v_window := date_trunc('day', now() AT TIME ZONE v_zone) AT TIME ZONE v_zone;
    SELECT used INTO v_used FROM bench.counters
    WHERE subject = p_subject AND metric = p_metric AND window_start = v_window FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO bench.counters (subject, metric, window_start) VALUES (p_subject, p_metric, v_window)
        ON CONFLICT DO NOTHING;
        SELECT used INTO v_used FROM bench.counters
        WHERE subject = p_subject AND metric = p_metric AND window_start = v_window FOR UPDATE;
    END IF;
    IF v_enforcement = 'hard' AND v_used + p_amount > v_limit THEN
        RAISE EXCEPTION 'quota exceeded' USING ERRCODE = 'QT429';
    END IF;
    UPDATE bench.counters SET used = used + p_amount
    WHERE subject = p_subject AND metric = p_metric AND window_start = v_window;
    INSERT INTO bench.usage_events (subject, metric, window_start, kind, amount)
    VALUES (p_subject, p_metric, v_window, 'consume', p_amount);
    RETURN v_used + p_amount;
END
$$;

-- The floor: a bare counter upsert, no check and no ledger.
CREATE TABLE bench.bare_counters (subject text PRIMARY KEY, used bigint NOT NULL) WITH (fillfactor = 70);
