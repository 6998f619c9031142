-- The account that made each submission (SubmissionCreated version 2); NULL for submissions
-- from before accounts. Users list their own, newest first.
ALTER TABLE submissions ADD COLUMN owner_id uuid;
CREATE INDEX submissions_owner_newest ON submissions (owner_id, created_at, id);
