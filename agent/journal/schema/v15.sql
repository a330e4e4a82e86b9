-- v15: spool retention (issue 22 item 2). An image whose file the retention policy deleted keeps
-- its index row, marked purged (ISO UTC), so Q/R, WADO and C-MOVE can say "purged" rather than
-- "unknown". The partial index lets the background purger walk the unpurged images by age.

ALTER TABLE im_instances ADD COLUMN purged_at TEXT;
CREATE INDEX im_instances_unpurged ON im_instances (received_at, sop_uid) WHERE purged_at IS NULL;

-- Disk pressure on the spool's filesystem as the imaging domain last measured it (one row):
-- /metrics, /healthz and the dashboard read it; alerts are raised and cleared as it changes.
CREATE TABLE disk_pressure (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    level             TEXT    NOT NULL CHECK (level IN ('ok', 'warning', 'critical')),
    free_mb           INTEGER NOT NULL,
    warning_free_mb   INTEGER NOT NULL,
    critical_free_mb  INTEGER NOT NULL,
    changed_at        REAL    NOT NULL   -- unix seconds
);

-- The keeper asks, per image, which uplinks it was queued for: by SOP Instance UID alone, which
-- the (uplink, sop_uid) key cannot answer without scanning every row.
CREATE INDEX im_forwarded_sop ON im_forwarded (sop_uid);
