-- Enrollment tokens (`hygienectl enroll create`): stored only as their SHA-256.
CREATE TABLE enroll_tokens (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    label         TEXT NOT NULL,
    token_sha256  TEXT NOT NULL UNIQUE,
    uses_allowed  INTEGER,            -- NULL: any number of hosts
    uses          INTEGER NOT NULL DEFAULT 0,
    expires_ms    INTEGER,            -- NULL: never
    group_name    TEXT,
    created_ms    INTEGER NOT NULL,
    created_by    TEXT NOT NULL,
    revoked_ms    INTEGER,
    revoked_by    TEXT
);
