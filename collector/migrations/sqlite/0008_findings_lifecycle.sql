-- The cleanup lifecycle of findings (see src/findings.rs): when the state last changed, the
-- agent's quarantine entry, why the last quarantine or restore was refused, a pending restore,
-- and when a complete sweep last no longer found a false positive.
ALTER TABLE findings ADD COLUMN state_changed_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE findings ADD COLUMN quarantine_id TEXT;
ALTER TABLE findings ADD COLUMN remediation_error TEXT;
ALTER TABLE findings ADD COLUMN restore_requested_ms INTEGER;
ALTER TABLE findings ADD COLUMN gone_ms INTEGER;
UPDATE findings SET state_changed_ms = first_seen_ms;
CREATE INDEX findings_by_host_state ON findings (host_id, state);

-- Every state change of a finding: who (an admin's certificate name, "agent" or "collector"),
-- when, from what to what, and why.
CREATE TABLE finding_history (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    finding_id     INTEGER NOT NULL REFERENCES findings(id),
    at_ms          INTEGER NOT NULL,
    actor          TEXT NOT NULL,
    from_state     TEXT NOT NULL,          -- '' when the finding was first found
    to_state       TEXT NOT NULL,
    note           TEXT NOT NULL
);
CREATE INDEX finding_history_by_finding ON finding_history (finding_id);

-- Hosts per status at the end of each day (UTC; today's row is updated as the day goes), for
-- the cleanup's timeline.
CREATE TABLE status_snapshots (
    day            TEXT NOT NULL,          -- YYYY-MM-DD
    status         TEXT NOT NULL,
    hosts          INTEGER NOT NULL,
    updated_ms     INTEGER NOT NULL,
    PRIMARY KEY (day, status)
);
