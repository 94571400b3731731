-- The behaviour log's ingest looks up the erasures newer than its batch's oldest record
-- (records made before an erasure but stored after it are stored anonymous): by time.
CREATE INDEX erasures_by_time ON erasures (erased_at);
