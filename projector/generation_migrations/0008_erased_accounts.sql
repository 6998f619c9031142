-- Accounts the log says were erased (AccountErased). Their text is never written here, whatever
-- the key store says: a replay erases them even where a key survived (restored from an old
-- backup, say).
CREATE TABLE erased_accounts (
    account_id uuid PRIMARY KEY,
    erased_at  timestamptz NOT NULL
);
