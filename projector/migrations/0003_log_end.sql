-- Where the submission topic's partitions end, as the projector last read them from Kafka when
-- the query side asked (NOTIFY log_end_wanted). A read waiting for a position compares it with a
-- reading taken after the read began: a position at or past that end was never written, since
-- the command API hands out a position only after the broker acknowledged the record.
CREATE TABLE log_end (
    only_row      BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
    topic         TEXT NOT NULL,
    -- The next offset of partition p at index p + 1 (PostgreSQL arrays count from 1).
    next_offsets  BIGINT[] NOT NULL,
    -- Taken before asking Kafka, on the database's clock: a reading is fresh for a wait that
    -- began at or before it.
    read_from     TIMESTAMPTZ NOT NULL
);
