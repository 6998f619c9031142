-- The control plane: which read-model generations exist and which one is live.
--
-- Each generation is a complete read model in its own schema, read_model_<generation>, built
-- from the topic by the migrations in generation_migrations/. The views public.submissions and
-- public.submission_events point at the live generation; switching generations replaces them
-- and flips the states below in one transaction.

CREATE TABLE read_models (
    generation INT PRIMARY KEY,
    state      TEXT NOT NULL CHECK (state IN ('building', 'live', 'retired')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    live_since TIMESTAMPTZ
);

CREATE UNIQUE INDEX read_models_one_live ON read_models (state) WHERE state = 'live';
