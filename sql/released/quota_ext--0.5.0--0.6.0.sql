-- quota_ext 0.5.0 -> 0.6.0: every driver's natural call resolves.
-- - The multi-metric forms with an idempotency key and metadata get names of their own:
--   quota_consume(text, jsonb, text, jsonb) becomes quota_consume_many, and
--   quota_try_consume(text, jsonb, text, jsonb) quota_try_consume_many (renamed, so grants
--   and anything that depends on them stay). A driver's untyped quota_consume($1, $2, $3)
--   matched both the text and the jsonb form (42725); now it matches one.
-- - The short spellings quota_consume(subject, amounts jsonb) and
--   quota_try_consume(subject, amounts jsonb) stay, with exactly two arguments and no
--   defaults (new C functions; the library keeps the old ones for 0.5.0 databases).
-- - A quota trigger's refusal names the table and the trigger (message and DETAIL keys
--   "table" and "trigger"): library code, no SQL.
-- Every upgrade script ends with statements that fire the hot path's invalidation
-- triggers: other backends then drop what they cached and see the new version (see
-- src/pg/installed.rs).
\echo Use "ALTER EXTENSION quota_ext UPDATE TO '0.6.0'" to load this file. \quit

ALTER FUNCTION quota.quota_consume(text, jsonb, text, jsonb) RENAME TO quota_consume_many;
ALTER FUNCTION quota.quota_try_consume(text, jsonb, text, jsonb) RENAME TO quota_try_consume_many;

CREATE FUNCTION quota."quota_consume"(
	"subject" TEXT, /* Option < & str > */
	"amounts" jsonb /* Option < RawJsonb > */
) RETURNS SETOF quota.decision
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'quota_consume_amounts_wrapper';

CREATE FUNCTION quota."quota_try_consume"(
	"subject" TEXT, /* Option < & str > */
	"amounts" jsonb /* Option < RawJsonb > */
) RETURNS SETOF quota.decision
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'quota_try_consume_amounts_wrapper';

-- Like the other C forms of consume, they switch to the owner in Rust (not SECURITY
-- DEFINER; see sql/security.sql).
REVOKE ALL ON FUNCTION quota.quota_consume(text, jsonb), quota.quota_try_consume(text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quota.quota_consume(text, jsonb), quota.quota_try_consume(text, jsonb) TO quota_app;

-- Drop what every backend cached before this version --------------------------------------
UPDATE quota.subjects SET plan = plan WHERE false;
UPDATE quota.plan_limits SET plan = plan WHERE false;
