-- The behaviour log (roomserver/core/behaviour.py): one row per record, id unique
-- so a batch delivered twice is stored once.
CREATE TABLE behaviour_events (
    id TEXT PRIMARY KEY,
    app TEXT NOT NULL,
    room TEXT NOT NULL,
    show BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    ts BIGINT NOT NULL,
    show_ms BIGINT NOT NULL,
    data TEXT NOT NULL
);
-- A show's report reads its records in time order; a profile or an export reads one user's.
CREATE INDEX behaviour_events_show ON behaviour_events (app, room, show, ts);
CREATE INDEX behaviour_events_user ON behaviour_events (app, user_id, ts);
-- One row per show (show.start / show.end records keep it current).
CREATE TABLE shows (
    app TEXT NOT NULL,
    room TEXT NOT NULL,
    show BIGINT NOT NULL,
    started_at BIGINT,
    ended_at BIGINT,
    title TEXT NOT NULL DEFAULT '',
    host TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (app, room, show)
);
