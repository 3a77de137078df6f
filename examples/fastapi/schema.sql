-- Run as postgres in a fresh database (test.sh does it). The app connects as
-- example_fastapi_app, a member of quota_app that may only read and insert its own tables.
CREATE EXTENSION IF NOT EXISTS quota_ext;

-- The seed's "daily_message_limit" of the active plan, with the day boundary in UTC
-- (a subject's time zone is UTC unless assign_plan names another).
SELECT quota.set_limit('FREE', 'messages', 'day', 5);

CREATE TABLE conversations (
    id         bigserial PRIMARY KEY,
    user_id    text NOT NULL,
    title      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE messages (
    id              bigserial PRIMARY KEY,
    conversation_id bigint NOT NULL REFERENCES conversations ON DELETE CASCADE,
    user_id         text NOT NULL,
    content         text NOT NULL CHECK (length(content) BETWEEN 1 AND 4000),
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON messages (user_id, created_at);

-- One message = 1 unit of "messages" for its user, in the inserting transaction:
-- an INSERT over the limit fails with QT429 and nothing of the transaction is kept.
SELECT quota.enforce_on_insert('public.messages', subject_column => 'user_id', metric => 'messages');

GRANT SELECT, INSERT ON conversations, messages TO example_fastapi_app;
GRANT USAGE ON SEQUENCE conversations_id_seq, messages_id_seq TO example_fastapi_app;
