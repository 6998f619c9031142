-- An Idempotency-Key of POST /api/batches stands for a batch: its id is kept here, and
-- `submission_id` holds the id of its first item (the ids of the others derive from the batch's).
ALTER TABLE idempotency_keys ADD COLUMN batch_id uuid;
