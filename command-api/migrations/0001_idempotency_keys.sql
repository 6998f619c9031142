-- The command API's own state, in schema `commands` (the search path when this runs).

-- Idempotency-Key of each POST /api/submissions, per account, for 24 hours: a retry with the
-- same key gets the same submission. `acknowledged_at` is set once Kafka acknowledged it; a
-- retry of a request that never got that far publishes the same event again (same id).
CREATE TABLE idempotency_keys (
    account_id      uuid NOT NULL REFERENCES accounts.accounts (id) ON DELETE CASCADE,
    key             text NOT NULL,
    request_digest  bytea NOT NULL,
    submission_id   uuid NOT NULL,
    created_at      timestamptz NOT NULL,
    acknowledged_at timestamptz,
    kafka_partition integer,
    kafka_offset    bigint,
    PRIMARY KEY (account_id, key)
);
