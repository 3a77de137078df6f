-- The event outbox: read pending events, then acknowledge them (the session's tenant's).
--   SELECT * FROM quota.pending_events LIMIT 100;
--   SELECT quota.ack_events(<highest id processed>);

CREATE VIEW quota.pending_events AS
SELECT id, type, subject, metric, payload, created_at
FROM quota.events WHERE acknowledged_at IS NULL ORDER BY id;

CREATE FUNCTION quota.ack_events(up_to bigint) RETURNS bigint
LANGUAGE sql VOLATILE SET search_path = pg_catalog AS $$
    WITH acked AS (
        UPDATE quota.events SET acknowledged_at = now()
        WHERE id <= up_to AND acknowledged_at IS NULL
          -- Only the session's tenant's events (this function runs as the owner).
          AND quota.tenant_visible((SELECT s.tenant FROM quota.subjects s WHERE s.subject = events.subject))
        RETURNING 1
    )
    SELECT count(*) FROM acked
$$;
COMMENT ON FUNCTION quota.ack_events(bigint) IS 'Acknowledge every pending event up to and including id up_to; returns how many.';
