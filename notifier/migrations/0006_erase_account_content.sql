-- Erasing an account (the accounts crate, in the transaction that destroys its data key)
-- deletes what the notifier holds of its submissions that no foreign key cascades from the
-- account: the texts of verdicts still awaited. Everything else of the account's (settings,
-- webhooks, notifications, deliveries, attempts) goes with the account row.
CREATE FUNCTION notifier.erase_account_content(account uuid) RETURNS void LANGUAGE sql AS $$
    DELETE FROM notifier.awaited_verdicts WHERE owner_id = account;
$$;
