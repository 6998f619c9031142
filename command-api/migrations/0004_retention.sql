-- Keys are kept 24 hours; before this, a key was deleted only when its own account claimed a
-- new one, so an account that stopped submitting kept its keys for ever. The retention sweep
-- (command_api::retention) finds expired keys of every account by this index.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
