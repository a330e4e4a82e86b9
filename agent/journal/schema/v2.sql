-- v2: endoscope reprocessing state (agent/reprocessing).

-- One row per endoscope: where it is in its reprocessing life.
CREATE TABLE rp_scopes (
    number         TEXT PRIMARY KEY,
    clean_id       TEXT,            -- the open cycle, or the last completed one
    cycle_seq      INTEGER NOT NULL DEFAULT 0,
    cycle_state    TEXT NOT NULL DEFAULT 'none' CHECK (cycle_state IN ('none', 'open', 'used')),
    step_row       INTEGER,         -- rp_steps.id of the open step, if any
    stored_at      TEXT,            -- ISO UTC, while in a storage cabinet
    cabinet        TEXT,
    last_use_at    TEXT
);

CREATE TABLE rp_cycles (
    clean_id     TEXT PRIMARY KEY,
    scope        TEXT NOT NULL,
    opened_at    TEXT NOT NULL,
    used_at      TEXT,
    patient_id   TEXT,
    opened_by    TEXT NOT NULL      -- the event that opened it
);
CREATE INDEX rp_cycles_scope ON rp_cycles (scope, opened_at);

CREATE TABLE rp_steps (
    id          INTEGER PRIMARY KEY,
    clean_id    TEXT NOT NULL,
    station     TEXT NOT NULL,      -- reader id
    step_id     INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    operator    TEXT,
    started_at  TEXT NOT NULL,
    ended_at    TEXT
);
CREATE INDEX rp_steps_cycle ON rp_steps (clean_id, id);

-- Who is working at a reader (last badge tap), and the patient waiting for the next use.
CREATE TABLE rp_readers (
    reader          TEXT PRIMARY KEY,
    operator_id     TEXT,
    operator_name   TEXT,
    operator_at     TEXT,
    patient_id      TEXT,
    patient_name    TEXT,
    patient_at      TEXT,
    ratio_number    TEXT            -- disinfectant batch registered at this station
);
