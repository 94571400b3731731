"""The analytics store (issue 12): behaviour log, shows, profiles, points,
follows and share attribution, on SQLite (embedded) or PostgreSQL. ``db.py`` is
the connection layer both engines share; each facet's SQL is written once."""
