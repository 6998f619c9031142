-- Crypto-shredding (the keyring crate): one data key per account, wrapped by a key-encryption
-- key from configuration. Erasing an account clears `wrapped` and keeps the row as a tombstone,
-- so readers know its sealed content is gone on purpose. No foreign key: the tombstone outlives
-- whatever is kept of the account.
CREATE TABLE data_keys (
    account_id uuid PRIMARY KEY,
    kek_id     text,
    wrapped    bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    erased_at  timestamptz,
    CHECK ((wrapped IS NULL) = (erased_at IS NOT NULL) AND (wrapped IS NULL) = (kek_id IS NULL))
);
