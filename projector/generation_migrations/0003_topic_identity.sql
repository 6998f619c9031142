-- Which topic the positions were read from: Kafka's topic id (NULL where the broker reports
-- none) and how many partitions it had. A topic recreated under the same name has another id,
-- and positions from the old one must never be resumed in it.
CREATE TABLE projector_topic (
    topic TEXT PRIMARY KEY,
    topic_id TEXT,
    partitions INT NOT NULL
);
