-- A key is claimed before its request is admitted (the rate limit spent), and only an admitted
-- key stands for a request that may be published. Before this, a request arriving while the
-- first with its key was still being admitted was taken as a retry: it spent nothing, and if
-- the first was then refused, it was published all the same and the key given up, so a later
-- retry could publish a second submission. Now such a request is told the key is in use (409);
-- a claim left unadmitted by a process that died is taken over after `claimed_at` + 10 s, with a
-- new `claim_id`: only the request holding the current claim may admit or give the key up.
-- Keys recorded before this were admitted (they were recorded only for requests that went on).
ALTER TABLE idempotency_keys
    ADD COLUMN admitted boolean NOT NULL DEFAULT true,
    ADD COLUMN claimed_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN claim_id uuid;
