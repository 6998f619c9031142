-- One row per batch counting its items' verdicts. Counting `batch_verdicts` instead, in READ
-- COMMITTED, let two notifier replicas committing a batch's last two verdicts together each see
-- the other's row missing: neither saw the batch complete, and it never got `batch.completed`.
-- An upsert on this row takes its lock, so the second waits for the first and counts after it.
CREATE TABLE batch_progress (
    batch_id uuid PRIMARY KEY,
    judged   integer NOT NULL,
    passed   integer NOT NULL
);

-- Batches in progress when this ran go on from what was counted so far.
INSERT INTO batch_progress (batch_id, judged, passed)
SELECT batch_id, count(*), count(*) FILTER (WHERE passed) FROM batch_verdicts GROUP BY batch_id;
