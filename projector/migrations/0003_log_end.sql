-- Where the submission topic's partitions end, as the projector last read them from Kafka when
-- the query side asked (NOTIFY log_end_wanted). A read waiting for a position compares it with a
-- reading taken after the read began: a position at or past that end was never written, since
-- the command API hands out a position only after the broker acknowledged the record.
--
-- Every request takes a number from log_end_asks before it notifies, and every reading takes
-- one before it asks Kafka: a reading with a greater number than a request's was taken after
-- that request. A sequence, not a clock: a clock can step back, a sequence never does.
CREATE SEQUENCE log_end_asks;

CREATE TABLE log_end (
    only_row      BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
    -- The next offset of each partition, in partition order.
    next_offsets  BIGINT[] NOT NULL,
    -- The number this reading took from log_end_asks before asking Kafka.
    read_after    BIGINT NOT NULL
);
