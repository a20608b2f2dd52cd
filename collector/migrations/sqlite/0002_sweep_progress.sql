-- The latest progress report of each running (or last) sweep per host. Times are Unix ms.
CREATE TABLE sweep_progress (
    host_id        TEXT NOT NULL REFERENCES hosts(host_id),
    sweep_id       TEXT NOT NULL,
    started_at_ms  INTEGER NOT NULL,
    files_done     INTEGER NOT NULL,
    bytes_done     INTEGER NOT NULL,
    files_estimate INTEGER NOT NULL,       -- 0: unknown
    bytes_estimate INTEGER NOT NULL,
    findings       INTEGER NOT NULL,
    errors         TEXT NOT NULL,          -- JSON object: error kind -> count
    updated_ms     INTEGER NOT NULL,
    PRIMARY KEY (host_id, sweep_id)
);
