-- A stand-in for helper R's router (branch so-router), for tests/scaleout/test_move.py
-- when the router is not there: the shard map only (cluster.nodes, cluster.node_for,
-- cluster.place_tenant), no PL/Proxy. The contract it follows is R's.
CREATE SCHEMA IF NOT EXISTS cluster;
CREATE TABLE IF NOT EXISTS cluster.nodes (node text PRIMARY KEY, connstr text NOT NULL, home boolean NOT NULL DEFAULT false);
CREATE TABLE IF NOT EXISTS cluster.placement (tenant text PRIMARY KEY, node text NOT NULL REFERENCES cluster.nodes);
CREATE OR REPLACE FUNCTION cluster.node_for(tenant text) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT p.node FROM cluster.placement p WHERE p.tenant = $1),
                    (SELECT n.node FROM cluster.nodes n WHERE n.home))
$$;
CREATE OR REPLACE FUNCTION cluster.place_tenant(tenant text, node text) RETURNS void LANGUAGE sql AS $$
    INSERT INTO cluster.placement VALUES ($1, $2) ON CONFLICT (tenant) DO UPDATE SET node = excluded.node
$$;
