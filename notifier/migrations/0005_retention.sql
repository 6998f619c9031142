-- What the retention sweep (notifier::retention) needs to find expired rows without reading
-- whole tables.

-- Deliveries finished (delivered or failed) long ago, with their attempts.
CREATE INDEX deliveries_finished ON deliveries (finished_at) WHERE state IN ('delivered', 'failed');
-- A notification goes once no delivery refers to it; this is also what deleting a notification
-- (ON DELETE CASCADE) looks deliveries up by, which read the whole table before.
CREATE INDEX deliveries_of_notification ON deliveries (notification_id);
CREATE INDEX notifications_created_at ON notifications (created_at);
-- Awaited verdicts that never came, and whether a batch still awaits any of its items.
CREATE INDEX awaited_verdicts_created_at ON awaited_verdicts (created_at);
CREATE INDEX awaited_verdicts_of_batch ON awaited_verdicts (batch_id) WHERE batch_id IS NOT NULL;
-- When a verdict of the batch was last counted: its rows may go once re-reading its records can
-- no longer notify anything (see notifier::retention). Batches counted before this column start
-- their retention now.
ALTER TABLE batch_progress ADD COLUMN counted_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX batch_progress_counted_at ON batch_progress (counted_at);
CREATE INDEX parked_records_parked_at ON parked_records (parked_at);
