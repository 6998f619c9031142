-- The notifier's own state, in schema `notifier` (the search path when this runs).

-- Per account and channel: notify or not. No row means both channels on.
CREATE TABLE channel_settings (
    account_id       uuid PRIMARY KEY REFERENCES accounts.accounts (id) ON DELETE CASCADE,
    email_enabled    boolean NOT NULL DEFAULT true,
    webhooks_enabled boolean NOT NULL DEFAULT true
);

-- URLs an account registered, with the secret deliveries to it are signed with.
CREATE TABLE webhook_endpoints (
    id          uuid PRIMARY KEY,
    account_id  uuid NOT NULL REFERENCES accounts.accounts (id) ON DELETE CASCADE,
    url         text NOT NULL,
    secret      text NOT NULL,
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- Deleted endpoints stay while deliveries to them are listed, but get no new ones.
    deleted_at  timestamptz
);
CREATE INDEX webhook_endpoints_of_account ON webhook_endpoints (account_id) WHERE deleted_at IS NULL;

-- Submissions read from the log whose verdict has not been read yet: who to tell, and for a
-- submission on its own what it said.
CREATE TABLE awaited_verdicts (
    submission_id uuid PRIMARY KEY,
    owner_id      uuid NOT NULL,
    content       text,
    batch_id      uuid,
    batch_size    integer,
    created_at    timestamptz NOT NULL
);

-- The verdicts of a batch's items read so far; the batch is complete when it has all of them.
-- Kept after completion, so a verdict read again after a crash is recognised, not counted anew.
CREATE TABLE batch_verdicts (
    batch_id      uuid NOT NULL,
    submission_id uuid NOT NULL,
    passed        boolean NOT NULL,
    PRIMARY KEY (batch_id, submission_id)
);

-- One row per thing to tell an account, whatever the channels. Its id derives from what it is
-- about, so reading the same verdict twice never makes two.
CREATE TABLE notifications (
    id         uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts.accounts (id) ON DELETE CASCADE,
    event_type text NOT NULL,
    payload    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One notification sent over one channel (to one endpoint), with its retries. `id` is the
-- `webhook-id` (and the email's Message-ID): the same on every attempt.
CREATE TABLE deliveries (
    id              text PRIMARY KEY,
    notification_id uuid NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    account_id      uuid NOT NULL REFERENCES accounts.accounts (id) ON DELETE CASCADE,
    channel         text NOT NULL CHECK (channel IN ('email', 'webhook')),
    endpoint_id     uuid REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_of_account ON deliveries (account_id, created_at);

CREATE TABLE delivery_attempts (
    delivery_id  text NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt      integer NOT NULL,
    attempted_at timestamptz NOT NULL,
    status_code  integer,
    error        text,
    duration_ms  integer NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);
