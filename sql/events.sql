-- The event outbox: read pending events, then acknowledge them (the session's tenant's).
--   SELECT * FROM quota.pending_events LIMIT 100;
--   SELECT quota.ack_events(<highest id processed>);

CREATE VIEW quota.pending_events AS
SELECT id, type, subject, metric, payload, created_at
FROM quota.events WHERE acknowledged_at IS NULL ORDER BY id;

CREATE FUNCTION quota.ack_events(up_to bigint) RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog AS $$
DECLARE
    t text := NULLIF(current_setting('quota.tenant', true), '');
    paused quota.tenant_pauses;
    acked bigint;
BEGIN
    -- A paused tenant (0.9.0, scale-out) is refused as by every quota call: QT503, worded
    -- as src/domain/pause.rs words it (tests/regress/sql/23_tenant_pause.sql compares).
    -- Only a tenant the session may act for: nothing about another tenant's pause leaks.
    SELECT * INTO paused FROM quota.tenant_pauses p WHERE p.tenant = t AND quota.tenant_visible(t);
    IF FOUND THEN
        t := CASE WHEN octet_length(t) > 512 THEN left(t, 32) || '…' ELSE t END;
        RAISE EXCEPTION USING ERRCODE = 'QT503',
            MESSAGE = CASE paused.state
                WHEN 'moving' THEN format('tenant "%s" is paused: it is being moved to %s', t,
                                          COALESCE(format('node "%s"', paused.node), 'another node'))
                ELSE format('tenant "%s" has moved to %s', t, COALESCE(format('node "%s"', paused.node), 'another node')) END,
            -- As serde_json writes it: keys in order, no spaces.
            DETAIL = format('{"code":"tenant_paused","error":"tenant_paused","node":%s,"state":%s,"tenant":%s}',
                            COALESCE(to_json(paused.node)::text, 'null'), to_json(paused.state)::text, to_json(t)::text),
            HINT = CASE paused.state
                WHEN 'moving' THEN format('Retry in a few seconds, through the router or on the node the router names (cluster.node_for(''%s'')): nothing of this call was counted.', replace(t, '''', ''''''))
                ELSE format('Connect to the tenant''s new node, which the router''s cluster.node_for(''%s'') names, and make the call there: this node no longer holds the tenant''s quota state.', replace(t, '''', '''''')) END;
    END IF;
    WITH done AS (
        UPDATE quota.events SET acknowledged_at = now()
        WHERE id <= up_to AND acknowledged_at IS NULL
          -- Only the session's tenant's events (this function runs as the owner).
          AND quota.tenant_visible((SELECT s.tenant FROM quota.subjects s WHERE s.subject = events.subject))
          -- A paused tenant's events stay pending (a session without quota.tenant acks
          -- every tenant's): a move copies them, and compares their digests before it
          -- deletes them here (docs/scale-out.md, "Pausing a tenant (node side)").
          AND NOT EXISTS (SELECT 1 FROM quota.tenant_pauses p
                          WHERE p.tenant = (SELECT s.tenant FROM quota.subjects s WHERE s.subject = events.subject))
        RETURNING 1
    )
    SELECT count(*) INTO acked FROM done;
    RETURN acked;
END
$$;
COMMENT ON FUNCTION quota.ack_events(bigint) IS 'Acknowledge every pending event up to and including id up_to; returns how many.';
