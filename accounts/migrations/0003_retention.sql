-- Retention (accounts::retention) deletes counters whose window ended, expired sessions (already
-- indexed by `sessions_expiry`) and tokens expired or revoked long ago. These indexes let each
-- sweep find them without reading the whole table.
CREATE INDEX rate_limits_window_start ON rate_limits (window_start);
CREATE INDEX api_tokens_expiry ON api_tokens (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX api_tokens_revocation ON api_tokens (revoked_at) WHERE revoked_at IS NOT NULL;
