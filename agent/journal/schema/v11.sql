-- v11: clinical lookback (agent/reprocessing/lookback.py). Every use of a scope gets a row of its
-- own (before, a use without a cycle since the last one, or a second use of the same cycle, left
-- its patient only in the outbox), and the questions infection control asks are indexed: a
-- scope's uses over a period, a patient's uses, a washer's or a disinfectant batch's cycles.

CREATE TABLE rp_uses (
    id            INTEGER PRIMARY KEY,
    scope         TEXT NOT NULL,
    used_at       TEXT NOT NULL,      -- ISO UTC (the device clock)
    patient_id    TEXT,
    patient_name  TEXT,
    clean_id      TEXT,               -- the cycle that preceded it; NULL: used without one
    station       TEXT NOT NULL,      -- reader id
    operator      TEXT,
    event_id      TEXT NOT NULL
);
CREATE INDEX rp_uses_scope ON rp_uses (scope, used_at);
CREATE INDEX rp_uses_patient ON rp_uses (patient_id, used_at);
CREATE INDEX rp_uses_cycle ON rp_uses (clean_id);

-- Uses recorded before v11: those their cycles kept.
INSERT INTO rp_uses (scope, used_at, patient_id, clean_id, station, event_id)
    SELECT scope, used_at, patient_id, clean_id, '', opened_by FROM rp_cycles
    WHERE used_at IS NOT NULL;

CREATE INDEX washer_cycles_period ON washer_cycles (washer, started_at);
CREATE INDEX rp_steps_batch ON rp_steps (ratio_number, started_at) WHERE ratio_number IS NOT NULL;

-- A state folder that can move (issue 22 item 8): the index keeps spool files relative to the
-- spool root (<state_dir>/spool), and undelivered images say where their file is within it
-- (`spool_path`), so that a state directory restored or moved elsewhere finds every image.
-- Paths are taken apart at their last `/spool/Y/M/D/` (the spool's own dated folders).
UPDATE im_instances SET path = substr(path, instr(path, '/spool/') + 7)
    WHERE path GLOB '/*/spool/[0-9][0-9][0-9][0-9]/[0-9][0-9]/[0-9][0-9]/*'
    AND instr(substr(path, instr(path, '/spool/') + 7), '/spool/') = 0;
UPDATE im_deleted SET path = substr(path, instr(path, '/spool/') + 7)
    WHERE path GLOB '/*/spool/[0-9][0-9][0-9][0-9]/[0-9][0-9]/[0-9][0-9]/*'
    AND instr(substr(path, instr(path, '/spool/') + 7), '/spool/') = 0;
UPDATE outbox SET payload = json_set(payload, '$.spool_path',
        substr(json_extract(payload, '$.path'), instr(json_extract(payload, '$.path'), '/spool/') + 7))
    WHERE kind = 'dicom.instance' AND state IN ('pending', 'inflight', 'dead')
    AND json_extract(payload, '$.path') GLOB '/*/spool/[0-9][0-9][0-9][0-9]/[0-9][0-9]/[0-9][0-9]/*'
    AND instr(substr(json_extract(payload, '$.path'), instr(json_extract(payload, '$.path'), '/spool/') + 7), '/spool/') = 0;
