-- Processes cache who API tokens belong to (accounts::token_cache). Any change that can end a
-- token's validity, made through the API or by hand, tells every one of them to forget.
CREATE FUNCTION notify_credentials_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('accounts_credentials_changed', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER api_tokens_changed
    AFTER UPDATE OF revoked_at, expires_at, account_id, token_digest OR DELETE OR TRUNCATE ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION notify_credentials_changed();

CREATE TRIGGER accounts_changed
    AFTER UPDATE OF role OR DELETE OR TRUNCATE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION notify_credentials_changed();
