-- Tallies the admin dashboard reads instead of counting the tables: submissions per status, and
-- events per minute of when they occurred. The projector keeps both in each batch's transaction,
-- so they always agree with the rows, and a rebuild computes them again from the log. Filled
-- here from what a generation created before them already holds.
CREATE TABLE status_counts (
    status      TEXT PRIMARY KEY,
    submissions BIGINT NOT NULL
);
INSERT INTO status_counts (status, submissions) SELECT status, count(*) FROM submissions GROUP BY status;

CREATE TABLE activity_per_minute (
    minute   TIMESTAMPTZ PRIMARY KEY,
    -- events by the status they moved their submission to
    accepted BIGINT NOT NULL,
    started  BIGINT NOT NULL,
    passed   BIGINT NOT NULL,
    failed   BIGINT NOT NULL
);
INSERT INTO activity_per_minute (minute, accepted, started, passed, failed)
SELECT date_trunc('minute', occurred_at, 'UTC'),
       count(*) FILTER (WHERE status = 'PENDING'),
       count(*) FILTER (WHERE status = 'PROCESSING'),
       count(*) FILTER (WHERE status = 'PASSED'),
       count(*) FILTER (WHERE status = 'FAILED')
FROM submission_events GROUP BY 1;
