-- The open, botnet, requested and quarantined counts per host (hosts list, progress) are
-- answered from this index alone, without reading a table row per finding.
DROP INDEX findings_by_host_state;
CREATE INDEX findings_by_host_state_kind ON findings (host_id, state, kind);
