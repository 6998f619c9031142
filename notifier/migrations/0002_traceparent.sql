-- The W3C traceparent of the record a notification came from: its deliveries, however much
-- later they are sent, log under the trace of the submission they tell about. NULL for test
-- events and for notifications recorded before this column.
ALTER TABLE notifier.notifications ADD COLUMN traceparent text;
