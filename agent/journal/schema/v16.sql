-- v16: journal retention (issue 22 item 4). The purge keeps a raw event while a pending,
-- in-flight or dead message or an unresolved handler failure names it: these partial indexes
-- answer that per event without scanning. The reprocessing retention deletes a cycle's washer
-- runs and uses by clean_id (indexed since v4 and v11). auto_vacuum=INCREMENTAL is set by the
-- code (agent/journal/database.py), since it needs a VACUUM outside any transaction.

CREATE INDEX outbox_open_event ON outbox (event_id)
    WHERE state IN ('pending', 'inflight', 'dead');

CREATE INDEX handler_failures_event ON handler_failures (event_id) WHERE resolved_at IS NULL;

-- The spool's keeper finds at start the images of the latest purge (whose files a stop between
-- the commit and the deletes left behind) without scanning the index.
CREATE INDEX im_instances_purged ON im_instances (purged_at) WHERE purged_at IS NOT NULL;
