-- Botnet IP lists (src/intel): each import is a list of its own, versioned per source, kept
-- after it is retired so that findings can still name it.
CREATE TABLE ip_lists (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    source         TEXT NOT NULL,          -- who sent it: "vncert", "cert-monthly"
    version        INTEGER NOT NULL,       -- 1, 2, ... per source
    file_name      TEXT NOT NULL,
    format         TEXT NOT NULL,          -- plain | csv
    sha256         TEXT NOT NULL,          -- of the file as imported
    imported_ms    INTEGER NOT NULL,
    imported_by    TEXT NOT NULL,
    entries        INTEGER NOT NULL,
    bad_lines      INTEGER NOT NULL,
    domains        INTEGER NOT NULL,       -- domain lines, counted and not matched
    retired_ms     INTEGER,
    retired_by     TEXT,
    UNIQUE (source, version)
);

CREATE TABLE ip_list_entries (
    list_id        INTEGER NOT NULL REFERENCES ip_lists(id),
    network        TEXT NOT NULL,          -- CIDR; an address is /32 or /128
    note           TEXT NOT NULL,
    line           INTEGER NOT NULL
);
CREATE INDEX ip_list_entries_by_list ON ip_list_entries (list_id);

-- For botnet_ip findings (path: the address, namespace: how it matched, rule: the listed
-- network): the list that listed it and what was seen.
ALTER TABLE findings ADD COLUMN list_id INTEGER;
ALTER TABLE findings ADD COLUMN evidence TEXT NOT NULL DEFAULT '';
CREATE INDEX findings_by_kind ON findings (kind, host_id);
