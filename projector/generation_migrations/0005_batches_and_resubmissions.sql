-- SubmissionCreated version 3: the batch a submission was accepted with (its id, the item's
-- position and the batch's size), and the failed submission it replaces. A batch has no row of
-- its own: it is its items, and item 0 stands for it in a user's list of batches.
ALTER TABLE submissions
    ADD COLUMN batch_id uuid,
    ADD COLUMN batch_index integer,
    ADD COLUMN batch_size integer,
    ADD COLUMN replaces uuid;
CREATE INDEX submissions_batch_items ON submissions (batch_id, batch_index) WHERE batch_id IS NOT NULL;
CREATE INDEX submissions_batches_newest ON submissions (owner_id, created_at, batch_id) WHERE batch_index = 0;
CREATE INDEX submissions_replaced_by ON submissions (replaces) WHERE replaces IS NOT NULL;
