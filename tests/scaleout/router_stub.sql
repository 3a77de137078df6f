-- A stand-in for helper R's router (branch so-router), for tests/scaleout/test_move.py
-- when the router is not there: the shard map only (cluster.nodes, cluster.node_for,
-- cluster.place_tenant), no PL/Proxy. As R's: node_for returns (node, connstr), and
-- connstr names no user.
CREATE SCHEMA IF NOT EXISTS cluster;
CREATE TABLE IF NOT EXISTS cluster.nodes (node text PRIMARY KEY, connstr text NOT NULL, home boolean NOT NULL DEFAULT false);
CREATE TABLE IF NOT EXISTS cluster.placement (tenant text PRIMARY KEY, node text NOT NULL REFERENCES cluster.nodes);
CREATE OR REPLACE FUNCTION cluster.node_for(tenant text) RETURNS TABLE (node text, connstr text) LANGUAGE sql STABLE AS $$
    SELECT n.node, n.connstr FROM cluster.nodes n
    WHERE n.node = coalesce((SELECT p.node FROM cluster.placement p WHERE p.tenant = $1),
                            (SELECT h.node FROM cluster.nodes h WHERE h.home))
$$;
CREATE OR REPLACE FUNCTION cluster.place_tenant(tenant text, node text) RETURNS void LANGUAGE sql AS $$
    INSERT INTO cluster.placement VALUES ($1, $2) ON CONFLICT (tenant) DO UPDATE SET node = excluded.node
$$;
