-- Scrubbing one generation, apart: the projector of a generation, reading AccountErased, scrubs
-- its own (a rebuild replaying old erasures must not scan the live generation for each), while
-- the erasure itself scrubs them all.
CREATE FUNCTION public.erase_generation_content(generation_schema text, account uuid) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('UPDATE %I.submissions SET content = NULL WHERE owner_id = $1 AND content IS NOT NULL', generation_schema) USING account;
    EXECUTE format(
        'UPDATE %I.submission_events e SET payload = e.payload - ''content''
         FROM %I.submissions s WHERE s.id = e.submission_id AND s.owner_id = $1 AND e.payload ? ''content''',
        generation_schema, generation_schema) USING account;
END
$$;

CREATE OR REPLACE FUNCTION public.erase_account_content(account uuid) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    generation_schema text;
BEGIN
    FOR generation_schema IN
        SELECT 'read_model_' || generation FROM public.read_models
        -- A generation being created may not have its tables yet: nothing to scrub there.
        WHERE to_regclass(quote_ident('read_model_' || generation) || '.submission_events') IS NOT NULL
    LOOP
        PERFORM public.erase_generation_content(generation_schema, account);
    END LOOP;
END
$$;
