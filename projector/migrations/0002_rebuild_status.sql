-- The current (or last) rebuild, as GET /admin/rebuild and the operations dashboard show it.
-- Kept here rather than in the memory of the process running it: with two projector replicas
-- behind one route, the dashboard flipped between "running" and "idle" depending on which
-- replica answered. The process running a rebuild writes its progress here every second.
CREATE TABLE rebuild_status (
    only_row   BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
    status     JSONB NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
