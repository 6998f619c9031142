-- One index instead of two on submission_events, both keyed on random UUIDs before: event ids
-- are derived from (submission, step), so "each event once" is "one event per step per
-- submission", which also serves the history query (WHERE submission_id = ... ORDER BY seq).
-- step: 0 created, 1 processing started, 2 verdict (so at most one verdict, by construction).

ALTER TABLE submission_events ADD COLUMN step SMALLINT;
UPDATE submission_events SET step = CASE status WHEN 'PENDING' THEN 0 WHEN 'PROCESSING' THEN 1 ELSE 2 END;
ALTER TABLE submission_events ALTER COLUMN step SET NOT NULL;
CREATE UNIQUE INDEX submission_events_one_per_step ON submission_events (submission_id, step);
DROP INDEX submission_events_by_submission;
ALTER TABLE submission_events DROP CONSTRAINT submission_events_event_id_key;
