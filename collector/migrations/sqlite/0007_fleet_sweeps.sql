-- Fleet sweeps started by an admin. Each targeted host's state is derived when read, from its
-- delivery time here and the progress and summary its agent reports for the sweep's id.
CREATE TABLE sweeps (
    sweep_id       TEXT PRIMARY KEY NOT NULL,
    created_ms     INTEGER NOT NULL,
    created_by     TEXT NOT NULL,          -- the admin certificate's common name
    full           INTEGER NOT NULL,
    splay_seconds  INTEGER NOT NULL,
    deadline_ms    INTEGER NOT NULL,       -- 0: none
    cancelled_ms   INTEGER,
    cancelled_by   TEXT
);

CREATE TABLE sweep_targets (
    sweep_id       TEXT NOT NULL REFERENCES sweeps(sweep_id),
    host_id        TEXT NOT NULL REFERENCES hosts(host_id),
    delivered_ms   INTEGER,                -- first put on the host's stream
    PRIMARY KEY (sweep_id, host_id)
);
CREATE INDEX sweep_targets_by_host ON sweep_targets (host_id);

-- When the first progress report of a sweep arrived (collector clock): the host's start.
ALTER TABLE sweep_progress ADD COLUMN first_received_ms INTEGER NOT NULL DEFAULT 0;
-- Not empty: the sweep failed on the host, and why.
ALTER TABLE sweep_reports ADD COLUMN failure TEXT NOT NULL DEFAULT '';

-- Every admin action, who (the admin certificate's common name) and when.
CREATE TABLE audit_log (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms          INTEGER NOT NULL,
    actor          TEXT NOT NULL,
    action         TEXT NOT NULL,
    target         TEXT NOT NULL,
    detail         TEXT NOT NULL
);
