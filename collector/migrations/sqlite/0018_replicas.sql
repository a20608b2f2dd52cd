-- Several collector replicas on one database (PostgreSQL; an SQLite site has one).

-- What one replica tells the others (see collector/src/site.rs); pruned after an hour.
CREATE TABLE site_events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms    INTEGER NOT NULL,
    origin   TEXT NOT NULL,          -- the replica that made it
    body     TEXT NOT NULL           -- JSON
);

-- Replicas alive: each notes itself every few seconds.
CREATE TABLE replicas (
    id          TEXT PRIMARY KEY,
    listen      TEXT NOT NULL,
    started_ms  INTEGER NOT NULL,
    seen_ms     INTEGER NOT NULL
);

-- Jobs that run once across replicas (the daily status snapshot): who holds each, until when.
CREATE TABLE leases (
    name      TEXT PRIMARY KEY,
    holder    TEXT NOT NULL,
    until_ms  INTEGER NOT NULL
);

-- The replica holding the host's stream.
ALTER TABLE hosts ADD COLUMN replica TEXT;
