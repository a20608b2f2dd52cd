-- Each host's findings counted as its status needs them (open malware, open botnet matches,
-- quarantines asked for, quarantined), kept by triggers in the same transaction as every
-- change to findings: listing 10,000 hosts reads these instead of counting a million
-- findings (docs/benchmarks.md). `hygiene-collector db migrate` never copies them: the
-- target's triggers count the findings as they arrive.
ALTER TABLE hosts ADD COLUMN open_findings INTEGER NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN botnet_matches INTEGER NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN requested_findings INTEGER NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN quarantined_findings INTEGER NOT NULL DEFAULT 0;

UPDATE hosts SET
    open_findings = (SELECT COUNT(*) FROM findings f WHERE f.host_id = hosts.host_id
        AND f.state IN ('open', 'reopened') AND f.kind <> 'botnet_ip'),
    botnet_matches = (SELECT COUNT(*) FROM findings f WHERE f.host_id = hosts.host_id
        AND f.state IN ('open', 'reopened') AND f.kind = 'botnet_ip'),
    requested_findings = (SELECT COUNT(*) FROM findings f WHERE f.host_id = hosts.host_id
        AND f.state = 'quarantine_requested'),
    quarantined_findings = (SELECT COUNT(*) FROM findings f WHERE f.host_id = hosts.host_id
        AND f.state = 'quarantined');

CREATE TRIGGER findings_counted_insert AFTER INSERT ON findings
BEGIN
    UPDATE hosts SET
        open_findings = open_findings + (NEW.state IN ('open', 'reopened') AND NEW.kind <> 'botnet_ip'),
        botnet_matches = botnet_matches + (NEW.state IN ('open', 'reopened') AND NEW.kind = 'botnet_ip'),
        requested_findings = requested_findings + (NEW.state = 'quarantine_requested'),
        quarantined_findings = quarantined_findings + (NEW.state = 'quarantined')
    WHERE host_id = NEW.host_id;
END;

CREATE TRIGGER findings_counted_update AFTER UPDATE OF host_id, kind, state ON findings
WHEN OLD.host_id IS NOT NEW.host_id OR OLD.kind IS NOT NEW.kind OR OLD.state IS NOT NEW.state
BEGIN
    UPDATE hosts SET
        open_findings = open_findings - (OLD.state IN ('open', 'reopened') AND OLD.kind <> 'botnet_ip'),
        botnet_matches = botnet_matches - (OLD.state IN ('open', 'reopened') AND OLD.kind = 'botnet_ip'),
        requested_findings = requested_findings - (OLD.state = 'quarantine_requested'),
        quarantined_findings = quarantined_findings - (OLD.state = 'quarantined')
    WHERE host_id = OLD.host_id;
    UPDATE hosts SET
        open_findings = open_findings + (NEW.state IN ('open', 'reopened') AND NEW.kind <> 'botnet_ip'),
        botnet_matches = botnet_matches + (NEW.state IN ('open', 'reopened') AND NEW.kind = 'botnet_ip'),
        requested_findings = requested_findings + (NEW.state = 'quarantine_requested'),
        quarantined_findings = quarantined_findings + (NEW.state = 'quarantined')
    WHERE host_id = NEW.host_id;
END;

CREATE TRIGGER findings_counted_delete AFTER DELETE ON findings
BEGIN
    UPDATE hosts SET
        open_findings = open_findings - (OLD.state IN ('open', 'reopened') AND OLD.kind <> 'botnet_ip'),
        botnet_matches = botnet_matches - (OLD.state IN ('open', 'reopened') AND OLD.kind = 'botnet_ip'),
        requested_findings = requested_findings - (OLD.state = 'quarantine_requested'),
        quarantined_findings = quarantined_findings - (OLD.state = 'quarantined')
    WHERE host_id = OLD.host_id;
END;
