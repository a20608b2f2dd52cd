-- Each host's findings counted as its status needs them (open malware, open botnet matches,
-- quarantines asked for, quarantined), kept by a trigger in the same transaction as every
-- change to findings: listing 10,000 hosts reads these instead of counting a million
-- findings (docs/benchmarks.md). `hygiene-collector db migrate` never copies them: the
-- target's trigger counts the findings as they arrive.
ALTER TABLE hosts
    ADD COLUMN open_findings BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN botnet_matches BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN requested_findings BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN quarantined_findings BIGINT NOT NULL DEFAULT 0;

UPDATE hosts SET
    open_findings = (SELECT COUNT(*) FROM findings f WHERE f.host_id = hosts.host_id
        AND f.state IN ('open', 'reopened') AND f.kind <> 'botnet_ip'),
    botnet_matches = (SELECT COUNT(*) FROM findings f WHERE f.host_id = hosts.host_id
        AND f.state IN ('open', 'reopened') AND f.kind = 'botnet_ip'),
    requested_findings = (SELECT COUNT(*) FROM findings f WHERE f.host_id = hosts.host_id
        AND f.state = 'quarantine_requested'),
    quarantined_findings = (SELECT COUNT(*) FROM findings f WHERE f.host_id = hosts.host_id
        AND f.state = 'quarantined');

CREATE FUNCTION hygiene_count_findings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE hosts SET
            open_findings = open_findings - (OLD.state IN ('open', 'reopened') AND OLD.kind <> 'botnet_ip')::int,
            botnet_matches = botnet_matches - (OLD.state IN ('open', 'reopened') AND OLD.kind = 'botnet_ip')::int,
            requested_findings = requested_findings - (OLD.state = 'quarantine_requested')::int,
            quarantined_findings = quarantined_findings - (OLD.state = 'quarantined')::int
        WHERE host_id = OLD.host_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        UPDATE hosts SET
            open_findings = open_findings + (NEW.state IN ('open', 'reopened') AND NEW.kind <> 'botnet_ip')::int,
            botnet_matches = botnet_matches + (NEW.state IN ('open', 'reopened') AND NEW.kind = 'botnet_ip')::int,
            requested_findings = requested_findings + (NEW.state = 'quarantine_requested')::int,
            quarantined_findings = quarantined_findings + (NEW.state = 'quarantined')::int
        WHERE host_id = NEW.host_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER findings_counted AFTER INSERT OR DELETE ON findings
    FOR EACH ROW EXECUTE FUNCTION hygiene_count_findings();

CREATE TRIGGER findings_counted_update AFTER UPDATE OF host_id, kind, state ON findings
    FOR EACH ROW
    WHEN (OLD.host_id IS DISTINCT FROM NEW.host_id OR OLD.kind IS DISTINCT FROM NEW.kind
          OR OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION hygiene_count_findings();
