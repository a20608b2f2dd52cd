-- The digest of the complete package, update and program lists the collector holds for a host,
-- as the agent computed it; an inventory delta applies only onto lists with its base digest.
-- NULL: unknown (a partial list came last, or no inventory yet).
ALTER TABLE host_inventory ADD COLUMN lists_digest BLOB;
