-- Quotas on application tables and token counting.
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET quota.clock_override = '2026-11-23 12:00:00+00';

-- count_tokens: immutable, strict, parallel safe; real BPE counts.
SELECT provolatile, proisstrict, proparallel FROM pg_proc WHERE oid = 'quota.count_tokens(text, text)'::regprocedure;
SELECT quota.count_tokens('Hello, world!') AS cl100k,
       quota.count_tokens('Hello, world!', 'o200k_base') AS o200k,
       quota.count_tokens('你好，世界！今天的配额已经用完了。') AS cjk_cl100k,
       quota.count_tokens('你好，世界！今天的配额已经用完了。', 'o200k_base') AS cjk_o200k,
       quota.count_tokens('héllo 😀', 'chars') AS chars,
       quota.count_tokens(NULL) AS null_in_null_out;
SELECT * FROM try($$ SELECT quota.count_tokens('x', 'gpt2') $$);

-- A FREE plan: 5 messages and 60 tokens a day, at most 20 tokens per message.
SELECT 'ok' AS ok FROM quota.set_limit('CHAT', 'messages', 'day', 5);
SELECT 'ok' AS ok FROM quota.set_limit('CHAT', 'tokens', 'day', 60, 'hard', 20);
SELECT 'ok' AS ok FROM quota.set_limit('CHAT', 'products', 'lifetime', 2);
SET quota.default_plan = 'CHAT';
CREATE TABLE public.messages (id serial PRIMARY KEY, user_id integer, content text);
SELECT 'ok' AS ok FROM quota.enforce_on_insert('public.messages', subject_column => 'user_id', metric => 'messages');
SELECT 'ok' AS ok FROM quota.enforce_on_insert('public.messages', subject_column => 'user_id', metric => 'tokens',
                                               tokens_of => 'content', encoding => 'cl100k_base');
SELECT table_name, metric, subject_column, consumes, refund_on_delete FROM quota.enforced_tables ORDER BY 1, 2;
SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.messages'::regclass ORDER BY 1;

-- Each row consumes one message and its tokens, all or nothing.
INSERT INTO messages (user_id, content) VALUES (7, 'Hello, world!');
INSERT INTO messages (user_id, content) VALUES (7, 'The quick brown fox jumps over the lazy dog.'), (7, 'ok');
SELECT metric, used FROM quota.quota_status('7') ORDER BY metric;
-- A row over the per-request cap: QT413, nothing inserted or counted.
SELECT * FROM try($$ INSERT INTO messages (user_id, content) VALUES (7, repeat('token ', 30)) $$);
-- A multi-row INSERT that would cross the limit inserts nothing.
SELECT * FROM try($$ INSERT INTO messages (user_id, content) VALUES (7, 'a'), (7, 'b'), (7, 'c') $$);
SELECT count(*) AS rows, (SELECT used FROM quota.quota_check('7', 'messages', 0)) AS messages_used FROM messages;
INSERT INTO messages (user_id, content) VALUES (7, 'a'), (7, 'b');
-- The 6th message is refused with QT429 and the table keeps 5 rows.
SELECT * FROM try($$ INSERT INTO messages (user_id, content) VALUES (7, 'six') $$);
SELECT count(*) AS rows FROM messages;
-- A NULL subject is refused; NULL content costs no tokens.
SELECT * FROM try($$ INSERT INTO messages (user_id, content) VALUES (NULL, 'x') $$);
INSERT INTO messages (user_id, content) VALUES (8, NULL);
SELECT metric, used FROM quota.quota_status('8') ORDER BY metric;

-- A numeric column as the amount, and refunds on DELETE for a gauge.
CREATE TABLE public.products (sku text PRIMARY KEY, tenant text NOT NULL, units numeric NOT NULL DEFAULT 1);
SELECT 'ok' AS ok FROM quota.enforce_on_insert('products', subject_column => 'tenant', metric => 'products',
                                               amount_column => 'units', refund_on_delete => true);
INSERT INTO products VALUES ('a', 'acme', 1), ('b', 'acme', 1);
SELECT * FROM try($$ INSERT INTO products VALUES ('c', 'acme', 1) $$);
DELETE FROM products WHERE sku = 'a';
INSERT INTO products VALUES ('c', 'acme', 1);
SELECT used FROM quota.quota_check('acme', 'products', 0);
SELECT * FROM try($$ INSERT INTO products VALUES ('d', 'other', 1.5) $$);
SELECT kind, amount FROM quota.usage_events WHERE subject = 'acme' ORDER BY id;

-- Configuration errors.
SELECT * FROM try($$ SELECT quota.enforce_on_insert('public.messages', subject_column => 'nope', metric => 'x') $$);
SELECT * FROM try($$ SELECT quota.enforce_on_insert('public.messages', subject_column => 'id', metric => 'x') $$);
SELECT * FROM try($$ SELECT quota.enforce_on_insert('public.messages', subject_column => 'user_id', metric => 'x', tokens_of => 'id') $$);
SELECT * FROM try($$ SELECT quota.enforce_on_insert('public.messages', subject_column => 'user_id', metric => 'x', amount_column => 'content') $$);
SELECT * FROM try($$ SELECT quota.enforce_on_insert('public.messages', subject_column => 'user_id', metric => 'x', encoding => 'gpt2') $$);
SELECT * FROM try($$ SELECT quota.enforce_on_insert('public.nosuch', subject_column => 'user_id', metric => 'x') $$);
SELECT * FROM try($$ SELECT quota.enforce_on_insert('pg_class', subject_column => 'relname', metric => 'x') $$);
-- A generated column is refused for every role: the BEFORE INSERT trigger would see NULL
-- (PostgreSQL 18's virtual generated columns are never computed for triggers).
CREATE TABLE public.gen_orders (id serial PRIMARY KEY, user_id text, qty int,
    cost int GENERATED ALWAYS AS (qty * 2) STORED, who text GENERATED ALWAYS AS (upper(user_id)) STORED,
    body text GENERATED ALWAYS AS (user_id || ' ordered') STORED);
SELECT * FROM try($$ SELECT quota.enforce_on_insert('public.gen_orders', subject_column => 'user_id', metric => 'x', amount_column => 'cost') $$);
SELECT * FROM try($$ SELECT quota.enforce_on_insert('public.gen_orders', subject_column => 'who', metric => 'x') $$);
SELECT * FROM try($$ SELECT quota.enforce_on_insert('public.gen_orders', subject_column => 'user_id', metric => 'x', tokens_of => 'body') $$);
CREATE TABLE public.gen_keyed (qty int NOT NULL, user_id text, id int GENERATED ALWAYS AS (qty + 1000) STORED PRIMARY KEY);
SELECT * FROM try($$ SELECT quota.enforce_on_insert('public.gen_keyed', subject_column => 'user_id', metric => 'x', refund_on_delete => true) $$);
DROP TABLE public.gen_orders, public.gen_keyed;
CREATE VIEW public.v AS SELECT 1 AS a;
SELECT * FROM try($$ SELECT quota.enforce_on_insert('public.v', subject_column => 'a', metric => 'x') $$);
SELECT count(*) AS rules FROM quota.enforcements;

-- enforce_off removes one quota; the triggers go with the last one.
SELECT quota.enforce_off('public.messages', 'tokens') AS removed, quota.enforce_off('public.messages', 'tokens') AS again;
SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.messages'::regclass ORDER BY 1;
SELECT quota.enforce_off('public.messages', 'messages') AS removed;
SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.messages'::regclass ORDER BY 1;
INSERT INTO messages (user_id, content) VALUES (7, 'free again');

-- quota.enforce_trigger attached by hand FOR EACH STATEMENT has no row to read: 55000,
-- not a crash.
CREATE TABLE public.by_hand (user_id integer);
SELECT 'ok' AS ok FROM quota.enforce_on_insert('public.by_hand', subject_column => 'user_id', metric => 'messages');
CREATE TRIGGER by_hand_statement BEFORE INSERT ON public.by_hand FOR EACH STATEMENT EXECUTE FUNCTION quota.enforce_trigger();
SELECT * FROM try($$ INSERT INTO public.by_hand VALUES (7) $$);
DROP TABLE public.by_hand;

-- Dropping an enforced table forgets its quota.
DROP TABLE products;
SELECT count(*) AS rules FROM quota.enforcements;
DROP VIEW public.v;
RESET quota.default_plan;
