-- Rule and IOC bundles as published (src/intel/bundles.rs): the signed bytes agents get, and
-- what each host reports it runs.
CREATE TABLE bundles (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    kind           TEXT NOT NULL,          -- rules | iocs
    name           TEXT NOT NULL,
    version        TEXT NOT NULL,          -- hex SHA-256 of the files
    created_ms     INTEGER NOT NULL,
    created_by     TEXT NOT NULL,
    files          INTEGER NOT NULL,
    items          INTEGER NOT NULL,       -- rules compiled or hashes listed
    bytes          INTEGER NOT NULL,
    payload        BLOB NOT NULL,          -- encoded BundlePayload
    signature      BLOB NOT NULL           -- Ed25519 over payload
);
CREATE INDEX bundles_by_kind ON bundles (kind, id);

CREATE TABLE host_bundles (
    host_id          TEXT NOT NULL REFERENCES hosts(host_id),
    kind             TEXT NOT NULL,        -- rules | iocs
    version          TEXT NOT NULL,        -- '' : the agent's own files
    since_ms         INTEGER NOT NULL,     -- agent clock
    refused_version  TEXT NOT NULL DEFAULT '',
    error            TEXT NOT NULL DEFAULT '',
    updated_ms       INTEGER NOT NULL,
    PRIMARY KEY (host_id, kind)
);
