-- v4: washer cycles, WS 507-2016 compliance, blocked scopes, quality records.

-- A cycle's verdict: pending until the rules ran at storage or use; overridden by a person.
ALTER TABLE rp_cycles ADD COLUMN compliance TEXT NOT NULL DEFAULT 'pending'
    CHECK (compliance IN ('pending', 'compliant', 'non_compliant', 'overridden'));
ALTER TABLE rp_cycles ADD COLUMN completed_at TEXT;
ALTER TABLE rp_cycles ADD COLUMN override_by TEXT;
ALTER TABLE rp_cycles ADD COLUMN override_reason TEXT;
ALTER TABLE rp_cycles ADD COLUMN override_at TEXT;
ALTER TABLE rp_cycles ADD COLUMN previous_use_at TEXT;

-- What a step was done with (manual station config or washer receipt).
ALTER TABLE rp_steps ADD COLUMN source TEXT NOT NULL DEFAULT 'tap' CHECK (source IN ('tap', 'washer'));
ALTER TABLE rp_steps ADD COLUMN disinfectant TEXT;
ALTER TABLE rp_steps ADD COLUMN concentration_pct REAL;
ALTER TABLE rp_steps ADD COLUMN temperature_c REAL;
ALTER TABLE rp_steps ADD COLUMN ratio_number TEXT;

-- Rule violations found in a cycle, once per (cycle, rule, message).
CREATE TABLE rp_violations (
    id        INTEGER PRIMARY KEY,
    clean_id  TEXT NOT NULL,
    rule      TEXT NOT NULL,
    clause    TEXT NOT NULL,
    severity  TEXT NOT NULL CHECK (severity IN ('error', 'warning')),
    message   TEXT NOT NULL,
    at        TEXT NOT NULL,
    event_id  TEXT,
    UNIQUE (clean_id, rule, message)
);
CREATE INDEX rp_violations_cycle ON rp_violations (clean_id);

-- Washer-disinfector cycles from receipts, linked to a scope's cycle when one matched.
CREATE TABLE washer_cycles (
    id            INTEGER PRIMARY KEY,
    washer        TEXT NOT NULL,
    cycle_number  TEXT NOT NULL,
    program       TEXT,
    started_at    TEXT NOT NULL,
    ended_at      TEXT NOT NULL,
    operator      TEXT,
    scope         TEXT,               -- scope number, when linked
    clean_id      TEXT,               -- the reprocessing cycle it belongs to, when linked
    result        TEXT NOT NULL CHECK (result IN ('pass', 'fail')),
    leak_test     TEXT,
    error_code    TEXT,
    failed_channels TEXT,             -- JSON list of channel names that failed
    event_id      TEXT NOT NULL,
    UNIQUE (washer, cycle_number, started_at)
);
CREATE INDEX washer_cycles_clean ON washer_cycles (clean_id);

-- Quality records people enter: disinfectant concentration, rinse water, cleaning effect.
CREATE TABLE quality_tests (
    id         INTEGER PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('disinfectant', 'rinse_water', 'cleaning_effect')),
    subject    TEXT NOT NULL,         -- batch (ratio) number, water device number, scope number
    tested_at  TEXT NOT NULL,         -- ISO UTC
    passed     INTEGER NOT NULL,
    recorded_by TEXT NOT NULL,
    payload    TEXT NOT NULL,         -- the record as entered (JSON)
    event_id   TEXT NOT NULL UNIQUE
);
CREATE INDEX quality_tests_subject ON quality_tests (kind, subject, tested_at);

-- Uplinks every new alert is also queued for (e.g. a hospital MQTT bus); set at each start.
CREATE TABLE alert_routes (
    uplink  TEXT PRIMARY KEY
);
