-- The post-live report of each ended show (roomserver/core/report.py), computed once
-- after the show's records are in: the report and the per-user table as JSON.
CREATE TABLE show_reports (
    app TEXT NOT NULL,
    room TEXT NOT NULL,
    show BIGINT NOT NULL,
    ended_at BIGINT NOT NULL,
    generated_at BIGINT NOT NULL,
    report TEXT NOT NULL,
    users TEXT NOT NULL,
    PRIMARY KEY (app, room, show)
);
