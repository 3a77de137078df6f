-- quota_ext 0.4.0 -> 0.5.0: structure.
-- - quota.hot_path_status(): the calling backend's view of the hot path (the setting,
--   whether checks and consumes may take it, the table and check that make it step
--   aside, and the calls each path served).
-- Every upgrade script ends with statements that fire the hot path's invalidation
-- triggers: other backends then drop what they cached and see the new version (see
-- src/pg/installed.rs).
\echo Use "ALTER EXTENSION quota_ext UPDATE TO '0.5.0'" to load this file. \quit

CREATE FUNCTION quota."hot_path_status"() RETURNS TABLE (
	"enabled" bool,  /* bool */
	"checks" bool,  /* bool */
	"consumes" bool,  /* bool */
	"table_name" TEXT,  /* core::option::Option<alloc::string::String> */
	"failed_check" TEXT,  /* core::option::Option<alloc::string::String> */
	"hot_calls" bigint,  /* i64 */
	"general_calls" bigint  /* i64 */
)
STRICT VOLATILE PARALLEL RESTRICTED
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'hot_path_status_wrapper';

REVOKE ALL ON FUNCTION quota.hot_path_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota.hot_path_status() TO quota_reader, quota_app;

-- Drop what every backend cached before this version --------------------------------------
UPDATE quota.subjects SET plan = plan WHERE false;
UPDATE quota.plan_limits SET plan = plan WHERE false;
