-- Installed packages per host, as of the host's latest inventory (times are Unix ms), and
-- when each package version appeared on or left a host.
CREATE TABLE packages (
    host_id        TEXT NOT NULL REFERENCES hosts(host_id),
    name           TEXT NOT NULL,
    arch           TEXT NOT NULL,
    version        TEXT NOT NULL,
    source         TEXT,
    installed_ms   INTEGER NOT NULL,   -- when the collector first saw this version
    PRIMARY KEY (host_id, name, arch)
);
CREATE INDEX packages_by_name ON packages(name);

CREATE TABLE package_history (
    host_id      TEXT NOT NULL REFERENCES hosts(host_id),
    name         TEXT NOT NULL,
    arch         TEXT NOT NULL,
    old_version  TEXT,                 -- NULL: newly installed
    new_version  TEXT,                 -- NULL: removed
    changed_ms   INTEGER NOT NULL
);
CREATE INDEX package_history_by_host ON package_history(host_id, changed_ms);
