-- The retention purge (--retention-days) deletes by age across apps.
CREATE INDEX behaviour_events_ts ON behaviour_events (ts);
