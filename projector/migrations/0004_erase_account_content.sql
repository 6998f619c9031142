-- Erasing an account (the accounts crate, in the transaction that destroys its data key)
-- scrubs the text its submissions have in every read-model generation that exists: the opened
-- text, and the text events written before content was sealed still carry in their payload.
-- The sealed bytes stay: without the key they are noise, and the fold needs them.
CREATE FUNCTION public.erase_account_content(account uuid) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    generation_schema text;
BEGIN
    FOR generation_schema IN
        SELECT 'read_model_' || generation FROM public.read_models
        -- A generation being created may not have its tables yet: nothing to scrub there.
        WHERE to_regclass(quote_ident('read_model_' || generation) || '.submission_events') IS NOT NULL
    LOOP
        EXECUTE format('UPDATE %I.submissions SET content = NULL WHERE owner_id = $1 AND content IS NOT NULL', generation_schema) USING account;
        EXECUTE format(
            'UPDATE %I.submission_events e SET payload = e.payload - ''content''
             FROM %I.submissions s WHERE s.id = e.submission_id AND s.owner_id = $1 AND e.payload ? ''content''',
            generation_schema, generation_schema) USING account;
    END LOOP;
END
$$;
