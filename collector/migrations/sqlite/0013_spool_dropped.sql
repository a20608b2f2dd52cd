-- What an agent's full spool dropped (its running totals, as the agent last told them).
ALTER TABLE hosts ADD COLUMN spool_dropped_progress INTEGER NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN spool_dropped_connections INTEGER NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN spool_dropped_inventories INTEGER NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN spool_dropped_ms INTEGER;
