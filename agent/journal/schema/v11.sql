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
