-- Microsoft's monthly security update documents (MSRC CVRF), one row per month; a newer
-- revision of a month replaces the row. `body` is the document as the assessment reads it
-- (JSON of collector::vuln::Advisory: products, CVEs, severities, scores, fixes).
CREATE TABLE advisories (
    id               TEXT PRIMARY KEY,        -- 2024-Jan
    title            TEXT NOT NULL,
    revision         TEXT NOT NULL,
    current_release  TEXT NOT NULL,           -- as the document writes it
    file_name        TEXT NOT NULL,
    format           TEXT NOT NULL,           -- xml | json
    sha256           TEXT NOT NULL,           -- of the file imported
    imported_ms      INTEGER NOT NULL,
    imported_by      TEXT NOT NULL,
    cves             INTEGER NOT NULL,
    products         INTEGER NOT NULL,
    fixes            INTEGER NOT NULL,
    body             TEXT NOT NULL
);
