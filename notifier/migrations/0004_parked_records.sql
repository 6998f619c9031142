-- Records the notifier could never store (their notification refused by a constraint, e.g. for
-- an account deleted while its verdict was pending), set aside with the reason so the rest of
-- the log goes on. Before this, one such record was retried every 500 ms for ever and no one
-- after it was told anything.
CREATE TABLE parked_records (
    kafka_partition integer NOT NULL,
    kafka_offset    bigint NOT NULL,
    submission_id   uuid,
    reason          text NOT NULL,
    parked_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kafka_partition, kafka_offset)
);
