-- Agent certificates by serial: the host that presented each, when, and whether it is revoked
-- (`hosts revoke`, or superseded by a newer certificate of the same host).
CREATE TABLE host_certs (
    serial        TEXT PRIMARY KEY,   -- lower-case hex
    host_id       TEXT NOT NULL,
    not_before_ms INTEGER NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL,
    revoked_ms    INTEGER,
    revoked_by    TEXT,
    revoke_note   TEXT
);
CREATE INDEX host_certs_by_host ON host_certs (host_id);

-- `hosts revoke`: every certificate of the host issued before this (its validity start, which
-- `pki` backdates by an hour) is refused, seen here before or not.
ALTER TABLE hosts ADD COLUMN certs_revoked_before_ms INTEGER;
