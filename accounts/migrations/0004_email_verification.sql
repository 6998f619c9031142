-- An address is verified when its owner followed a link mailed to it (or a password reset
-- link: receiving it proves the same). Accounts made before verification existed keep getting
-- what they got: they count as verified from when they were made.
ALTER TABLE accounts ADD COLUMN email_verified_at timestamptz;
UPDATE accounts SET email_verified_at = created_at;

-- Single-use links mailed to an account: only their SHA-256 is stored, each expires.
CREATE TABLE email_tokens (
    token_digest bytea PRIMARY KEY,
    account_id   uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    purpose      text NOT NULL CHECK (purpose IN ('verify', 'reset')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX email_tokens_expiry ON email_tokens (expires_at);
CREATE INDEX email_tokens_of_account ON email_tokens (account_id);
