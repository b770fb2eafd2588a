-- Idempotency-Keys outlive their notes: a key is kept for its window (24 h) with the answer its first request got,
-- so a retry after the note was deleted, expired or purged replays that answer instead of creating the note again.
-- The note's fields are copied, not referenced: no foreign key, the note may be gone while its key is kept.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key             text        PRIMARY KEY CHECK (char_length(key) BETWEEN 1 AND 255),
    request_hash    text        NOT NULL,
    note_id         uuid        NOT NULL,
    title           text        NOT NULL,
    body            text        NOT NULL,
    note_created_at timestamptz NOT NULL,
    note_expires_at timestamptz NULL,
    expires_at      timestamptz NOT NULL
);

-- The purge deletes expired keys in expiry order.
CREATE INDEX IF NOT EXISTS idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);

-- Keys recorded on notes by 0001 start a fresh window now. notes.idempotency_key and notes.request_hash stay (code
-- deployed before this file still writes them during a rollout) but are no longer read; a later file drops them.
INSERT INTO idempotency_keys (key, request_hash, note_id, title, body, note_created_at, note_expires_at, expires_at)
SELECT idempotency_key, request_hash, id, title, body, created_at, expires_at, now() + interval '24 hours'
FROM notes
WHERE idempotency_key IS NOT NULL
ON CONFLICT (key) DO NOTHING;
