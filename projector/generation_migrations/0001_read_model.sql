-- One generation of the read model (created in schema read_model_<generation>): current state per
-- submission, every applied event, and how far into each
-- partition of the topic the projector has read. All three change in one transaction.

CREATE TABLE submissions (
    id                    UUID PRIMARY KEY,
    content               TEXT NOT NULL,
    status                TEXT NOT NULL CHECK (status IN ('PENDING', 'PROCESSING', 'PASSED', 'FAILED')),
    reasons               TEXT[] NOT NULL DEFAULT '{}',
    created_at            TIMESTAMPTZ NOT NULL,
    processing_started_at TIMESTAMPTZ,
    processed_at          TIMESTAMPTZ,
    -- seq of the last event applied to this row
    last_event_seq        BIGINT NOT NULL
);

-- Newest first, with (created_at, id) as the pagination cursor.
CREATE INDEX submissions_newest ON submissions (created_at, id);
CREATE INDEX submissions_status_newest ON submissions (status, created_at, id);

CREATE TABLE submission_events (
    -- Read-model order of application. Assigned under an advisory lock, so commit order is
    -- seq order and a reader that has seen seq N has seen everything before it.
    seq             BIGINT PRIMARY KEY,
    -- Derived from submission and step: a logical event is stored once, however often it was
    -- written to the log.
    event_id        UUID NOT NULL UNIQUE,
    submission_id   UUID NOT NULL,
    event_type      TEXT NOT NULL,
    schema_version  SMALLINT NOT NULL,
    -- the submission's status after this event
    status          TEXT NOT NULL,
    occurred_at     TIMESTAMPTZ NOT NULL,
    correlation_id  UUID NOT NULL,
    payload         JSONB NOT NULL,
    kafka_partition INT NOT NULL,
    kafka_offset    BIGINT NOT NULL
);

CREATE INDEX submission_events_by_submission ON submission_events (submission_id, seq);

CREATE TABLE projector_positions (
    topic       TEXT NOT NULL,
    partition   INT NOT NULL,
    -- the next offset to read
    next_offset BIGINT NOT NULL,
    PRIMARY KEY (topic, partition)
);
