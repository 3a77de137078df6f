-- quota.throttle (0.7.0): one theoretical arrival time per key, for rate limits on keys
-- with no plan (IP addresses, API keys). tenant is '' for keys of sessions without one.
-- A key whose TAT has passed is a full bucket, the same as no row: maintenance() deletes
-- such rows, so that a stream of new keys cannot grow the table without bound.
-- Only the primary key is indexed, and it never changes: a call's update is HOT.
CREATE TABLE quota.throttles (
    tenant text NOT NULL DEFAULT '',
    key    text NOT NULL CHECK (key <> ''),
    tat    timestamptz NOT NULL,
    PRIMARY KEY (tenant, key)
) WITH (fillfactor = 70);
SELECT pg_catalog.pg_extension_config_dump('quota.throttles', '');
