-- v18: journal retention (issue 22 item 4). The purge keeps a raw event while a pending,
-- in-flight or dead message or an unresolved handler failure names it: these partial indexes
-- answer that per event without scanning. The reprocessing retention deletes a cycle's washer
-- runs and uses by clean_id (indexed since v4 and v11). auto_vacuum=INCREMENTAL is set by the
-- code (agent/journal/database.py), since it needs a VACUUM outside any transaction.

CREATE INDEX IF NOT EXISTS outbox_open_event ON outbox (event_id)
    WHERE state IN ('pending', 'inflight', 'dead');

CREATE INDEX IF NOT EXISTS handler_failures_event ON handler_failures (event_id) WHERE resolved_at IS NULL;

-- The spool's keeper finds at start the images of the latest purge (whose files a stop between
-- the commit and the deletes left behind) without scanning the index.
CREATE INDEX IF NOT EXISTS im_instances_purged ON im_instances (purged_at) WHERE purged_at IS NOT NULL;

-- Windows spool paths (issue 22 item 8, as v11 did for POSIX ones): C:\...\spool\Y\M\D\x.dcm
-- (or \\server\share\..., or with forward slashes) kept relative to the spool root, with POSIX
-- separators, and undelivered images say so in `spool_path`. A path with more than one
-- \spool\ is left as it is, as v11 does. Every statement can run again (tests do).
UPDATE im_instances SET path = substr(replace(path, '\', '/'), instr(replace(path, '\', '/'), '/spool/') + 7)
    WHERE (path GLOB '[A-Za-z]:[\/]*' OR path GLOB '\\*')
    AND replace(path, '\', '/') GLOB '*/spool/[0-9][0-9][0-9][0-9]/[0-9][0-9]/[0-9][0-9]/*'
    AND instr(substr(replace(path, '\', '/'), instr(replace(path, '\', '/'), '/spool/') + 7), '/spool/') = 0;
UPDATE im_deleted SET path = substr(replace(path, '\', '/'), instr(replace(path, '\', '/'), '/spool/') + 7)
    WHERE (path GLOB '[A-Za-z]:[\/]*' OR path GLOB '\\*')
    AND replace(path, '\', '/') GLOB '*/spool/[0-9][0-9][0-9][0-9]/[0-9][0-9]/[0-9][0-9]/*'
    AND instr(substr(replace(path, '\', '/'), instr(replace(path, '\', '/'), '/spool/') + 7), '/spool/') = 0;
UPDATE outbox SET payload = json_set(payload, '$.spool_path',
        substr(replace(json_extract(payload, '$.path'), '\', '/'),
            instr(replace(json_extract(payload, '$.path'), '\', '/'), '/spool/') + 7))
    WHERE kind = 'dicom.instance' AND state IN ('pending', 'inflight', 'dead')
    AND (json_extract(payload, '$.path') GLOB '[A-Za-z]:[\/]*'
        OR json_extract(payload, '$.path') GLOB '\\*')
    AND replace(json_extract(payload, '$.path'), '\', '/') GLOB '*/spool/[0-9][0-9][0-9][0-9]/[0-9][0-9]/[0-9][0-9]/*'
    AND instr(substr(replace(json_extract(payload, '$.path'), '\', '/'),
        instr(replace(json_extract(payload, '$.path'), '\', '/'), '/spool/') + 7), '/spool/') = 0;
