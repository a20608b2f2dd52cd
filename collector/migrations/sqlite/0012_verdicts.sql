-- What a host's "clean" rests on (src/findings.rs): the rule and IOC sets each sweep and each
-- finding was made with, and each host's latest sweep carried out whole.
ALTER TABLE sweep_reports ADD COLUMN rules_version TEXT NOT NULL DEFAULT '';
ALTER TABLE sweep_reports ADD COLUMN iocs_version TEXT NOT NULL DEFAULT '';
-- NULL: an agent older than these fields did not say.
ALTER TABLE sweep_reports ADD COLUMN rule_count INTEGER;
ALTER TABLE sweep_reports ADD COLUMN ioc_count INTEGER;
-- The sweep's start on the collector's clock (its first progress report; else the agent's).
ALTER TABLE sweep_reports ADD COLUMN started_ms INTEGER NOT NULL DEFAULT 0;
UPDATE sweep_reports SET started_ms = COALESCE(
    (SELECT NULLIF(p.first_received_ms, 0) FROM sweep_progress p
      WHERE p.host_id = sweep_reports.host_id AND p.sweep_id = sweep_reports.sweep_id),
    started_at_ms);

ALTER TABLE findings ADD COLUMN rules_version TEXT NOT NULL DEFAULT '';
ALTER TABLE findings ADD COLUMN iocs_version TEXT NOT NULL DEFAULT '';

-- The host's latest sweep carried out whole (no failure, every failed path listed).
ALTER TABLE hosts ADD COLUMN complete_sweep_id TEXT;
ALTER TABLE hosts ADD COLUMN complete_started_ms INTEGER;
UPDATE hosts SET (complete_sweep_id, complete_started_ms) = (
    SELECT r.sweep_id, r.started_ms FROM sweep_reports r
     WHERE r.host_id = hosts.host_id AND r.failure = '' AND r.failures_truncated = 0
     ORDER BY r.started_ms DESC LIMIT 1);

-- Fleet sweeps a new bundle sets off: agents start them once the bundle is applied, so the
-- collector sends no order for them.
ALTER TABLE sweeps ADD COLUMN origin TEXT NOT NULL DEFAULT 'admin';

-- What each published bundle holds: its rules as `namespace:identifier`, or its hashes in
-- hex (JSON array), to tell whether a later set still holds a finding's rule or hash.
ALTER TABLE bundles ADD COLUMN members TEXT NOT NULL DEFAULT '[]';

-- The bundle last put on each host's stream, and when: a rollout's `sent` state.
ALTER TABLE host_bundles ADD COLUMN offered_version TEXT NOT NULL DEFAULT '';
ALTER TABLE host_bundles ADD COLUMN offered_ms INTEGER;

-- The fleet-wide allowlist (src/allowlist.rs): files judged harmless by content, rule or path.
CREATE TABLE allowlist (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT NOT NULL,          -- sha256 | rule | path
    value        TEXT NOT NULL,
    host_id      TEXT,                   -- NULL: every host
    note         TEXT NOT NULL,
    created_ms   INTEGER NOT NULL,
    created_by   TEXT NOT NULL,
    expires_ms   INTEGER,
    removed_ms   INTEGER,
    removed_by   TEXT
);
