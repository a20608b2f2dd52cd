-- The paths a sweep could not (fully) scan: JSON array of {path, kind, message}, capped by the
-- agent; failures_truncated = 1 when it left some out.
ALTER TABLE sweep_reports ADD COLUMN failures TEXT NOT NULL DEFAULT '[]';
ALTER TABLE sweep_reports ADD COLUMN failures_truncated INTEGER NOT NULL DEFAULT 0;
