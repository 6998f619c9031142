-- Crypto-shredding: a submission created with sealed content (SubmissionCreated version 4)
-- keeps the sealed bytes, which the fold compares a repeated creation with, and the text opened
-- with its owner's data key, NULL once the owner is erased (public.erase_account_content).
ALTER TABLE submissions ALTER COLUMN content DROP NOT NULL;
ALTER TABLE submissions ADD COLUMN sealed_content BYTEA;
