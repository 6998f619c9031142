-- Each erasure is announced on the log: a command API publishes an AccountErased event for the
-- tombstone and then sets announced_at. Tombstones from before this column get announced too.
ALTER TABLE data_keys ADD COLUMN announced_at timestamptz;
CREATE INDEX data_keys_unannounced ON data_keys (erased_at) WHERE erased_at IS NOT NULL AND announced_at IS NULL;
