-- `hosts remove`: a decommissioned host is left out of every list, count and sweep; its
-- findings and history stay for the report. A host that connects again (a new certificate)
-- is back.
ALTER TABLE hosts ADD COLUMN removed_ms INTEGER;
ALTER TABLE hosts ADD COLUMN removed_by TEXT;
ALTER TABLE hosts ADD COLUMN remove_note TEXT;
