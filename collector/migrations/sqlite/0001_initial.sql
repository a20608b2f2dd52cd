-- Hosts, keyed by the host id from the agent certificate. Times are Unix milliseconds.
CREATE TABLE hosts (
    host_id        TEXT PRIMARY KEY NOT NULL,
    hostname       TEXT NOT NULL,
    os_name        TEXT NOT NULL,
    os_version     TEXT NOT NULL,
    kernel_version TEXT NOT NULL,
    arch           TEXT NOT NULL,
    ip_addresses   TEXT NOT NULL,          -- JSON array of strings
    agent_version  TEXT NOT NULL,
    boot_time      INTEGER NOT NULL,       -- Unix seconds
    peer_address   TEXT,                   -- as seen by the collector (NAT egress)
    first_seen_ms  INTEGER NOT NULL,
    last_seen_ms   INTEGER NOT NULL,
    connected      INTEGER NOT NULL DEFAULT 0,
    -- Increases with every Hello, so that a stale stream's disconnect cannot mark a host
    -- offline that has already reconnected on a new stream.
    connection_id  INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE findings (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    host_id        TEXT NOT NULL REFERENCES hosts(host_id),
    kind           TEXT NOT NULL,          -- 'yara' | 'hash_ioc'
    path           TEXT NOT NULL,
    path_raw       BLOB,                   -- exact bytes when the path is not UTF-8
    sha256         TEXT NOT NULL,
    size           INTEGER NOT NULL,
    rule           TEXT NOT NULL DEFAULT '',
    namespace      TEXT NOT NULL DEFAULT '',
    ioc_comment    TEXT NOT NULL DEFAULT '',
    state          TEXT NOT NULL DEFAULT 'open',
    first_seen_ms  INTEGER NOT NULL,
    last_seen_ms   INTEGER NOT NULL,
    observed_at_ms INTEGER NOT NULL,       -- agent clock, when it read the file
    sweep_id       TEXT NOT NULL,          -- the last sweep that saw it
    -- One finding per host, file content and match: re-delivered or re-found matches update it.
    UNIQUE (host_id, kind, path, sha256, namespace, rule)
);
CREATE INDEX findings_by_state ON findings (state, host_id);
CREATE INDEX findings_by_sha256 ON findings (sha256);

-- The summary each agent sends when a sweep ends.
CREATE TABLE sweep_reports (
    host_id        TEXT NOT NULL REFERENCES hosts(host_id),
    sweep_id       TEXT NOT NULL,
    started_at_ms  INTEGER NOT NULL,
    finished_at_ms INTEGER NOT NULL,
    files          INTEGER NOT NULL,
    bytes          INTEGER NOT NULL,
    findings       INTEGER NOT NULL,
    errors         TEXT NOT NULL,          -- JSON object: error kind -> count
    roots          TEXT NOT NULL,          -- JSON array of strings
    received_ms    INTEGER NOT NULL,
    PRIMARY KEY (host_id, sweep_id)
);
