-- The rest of each host's inventory (times are Unix ms): its OS and build as of the latest
-- report, installed Windows updates and programs, and its sockets.

-- One row per host: the latest inventory's OS facts and which parts of it were partial.
CREATE TABLE host_inventory (
    host_id              TEXT PRIMARY KEY REFERENCES hosts(host_id),
    collected_ms         INTEGER NOT NULL,   -- the agent's clock
    received_ms          INTEGER NOT NULL,   -- the collector's clock
    family               TEXT NOT NULL,      -- linux | windows
    os_id                TEXT NOT NULL,
    version_id           TEXT NOT NULL,
    pretty_name          TEXT NOT NULL,
    kernel               TEXT NOT NULL,
    arch                 TEXT NOT NULL,
    boot_time            INTEGER,            -- seconds
    last_package_change  INTEGER,            -- seconds
    product_name         TEXT NOT NULL,
    edition              TEXT NOT NULL,
    display_version      TEXT NOT NULL,
    build                TEXT NOT NULL,      -- 10.0.19045.3930
    installation_type    TEXT NOT NULL,
    partial              TEXT NOT NULL       -- JSON [{"source", "reason"}]
);

-- Whose version ordering applies to a package: dpkg or rpm ('' for rows from older agents).
ALTER TABLE packages ADD COLUMN manager TEXT NOT NULL DEFAULT '';

CREATE TABLE hotfixes (
    host_id        TEXT NOT NULL REFERENCES hosts(host_id),
    kb             TEXT NOT NULL,            -- KB5034441
    title          TEXT NOT NULL,
    installed_on   TEXT NOT NULL,            -- as the host wrote it; '' unknown
    first_seen_ms  INTEGER NOT NULL,
    PRIMARY KEY (host_id, kb)
);
CREATE INDEX hotfixes_by_kb ON hotfixes(kb);

-- When a KB appeared on or left a host.
CREATE TABLE hotfix_history (
    host_id     TEXT NOT NULL REFERENCES hosts(host_id),
    kb          TEXT NOT NULL,
    installed   INTEGER NOT NULL,            -- 1 appeared, 0 left
    changed_ms  INTEGER NOT NULL
);
CREATE INDEX hotfix_history_by_host ON hotfix_history(host_id, changed_ms);

CREATE TABLE programs (
    host_id        TEXT NOT NULL REFERENCES hosts(host_id),
    name           TEXT NOT NULL,
    version        TEXT NOT NULL,
    publisher      TEXT NOT NULL,
    first_seen_ms  INTEGER NOT NULL,
    PRIMARY KEY (host_id, name, version, publisher)
);

-- The latest socket list per host, replaced whole by each report.
CREATE TABLE connections (
    host_id      TEXT NOT NULL REFERENCES hosts(host_id),
    proto        TEXT NOT NULL,
    local_addr   TEXT NOT NULL,
    local_port   INTEGER NOT NULL,
    remote_addr  TEXT NOT NULL,
    remote_port  INTEGER NOT NULL,
    state        TEXT NOT NULL,
    pid          INTEGER,
    process      TEXT
);
CREATE INDEX connections_by_host ON connections(host_id);
CREATE INDEX connections_by_remote ON connections(remote_addr);

CREATE TABLE connection_reports (
    host_id         TEXT PRIMARY KEY REFERENCES hosts(host_id),
    collected_ms    INTEGER NOT NULL,
    received_ms     INTEGER NOT NULL,
    count           INTEGER NOT NULL,
    partial_reason  TEXT                     -- NULL: complete
);
