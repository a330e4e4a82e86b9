-- v11: the lab domain (agent/lab/): lab reports with their results, their PDFs, lab devices,
-- QC runs, mutual-recognition and reminder/viewing records, and the item catalogue with the
-- platform's codes. Each row keeps the record as posted (JSON) and a digest of it, so that a
-- record posted again unchanged is not uploaded again. Times are local wall times, ISO 8601.

CREATE TABLE lab_reports (
    report_no   TEXT PRIMARY KEY,
    patient_id  TEXT NOT NULL,
    reported_at TEXT NOT NULL,
    audited_at  TEXT,                  -- NULL: not audited yet, nothing uploaded
    record      TEXT NOT NULL,         -- the report with its results (JSON)
    digest      TEXT NOT NULL,
    updated_at  TEXT NOT NULL,         -- UTC, the agent's clock
    event_id    TEXT NOT NULL
);
CREATE INDEX lab_reports_audited_at ON lab_reports (audited_at);
CREATE INDEX lab_reports_patient ON lab_reports (patient_id);

-- A lab report's PDFs, stored content-addressed beside the exams' (<state_dir>/exam-files).
CREATE TABLE lab_files (
    report_no   TEXT NOT NULL,
    name        TEXT NOT NULL,         -- <sha256>.pdf
    size        INTEGER NOT NULL,
    attached_at TEXT NOT NULL,         -- UTC
    event_id    TEXT NOT NULL,
    PRIMARY KEY (report_no, name)
);

-- Devices, QC runs, recognition and viewing records: one row per (kind, id), the last posted.
CREATE TABLE lab_records (
    kind        TEXT NOT NULL,         -- device, qc, recognition, viewing
    record_id   TEXT NOT NULL,
    at          TEXT,                  -- the record's own time, when it has one
    record      TEXT NOT NULL,
    digest      TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    PRIMARY KEY (kind, record_id)
);

-- The exam and lab item catalogue: local codes and the platform's standard codes (CSV import).
CREATE TABLE lab_catalogue (
    domain        TEXT NOT NULL,       -- exam, lab
    local_code    TEXT NOT NULL,
    local_name    TEXT NOT NULL,
    platform_code TEXT NOT NULL,
    platform_name TEXT NOT NULL,
    PRIMARY KEY (domain, local_code)
);

-- The results-sharing uplink's daily reconciliation (agent/uplinks/results_sharing/daily.py):
-- per uplink and day, how far the daily report and the platform's completeness check got.
CREATE TABLE rs_daily (
    uplink      TEXT NOT NULL,
    day         TEXT NOT NULL,         -- YYYY-MM-DD, local: the day the records were delivered
    state       TEXT NOT NULL,         -- reported, resent, complete, unreconciled
    records     INTEGER NOT NULL,      -- records delivered that day
    checks      INTEGER NOT NULL DEFAULT 0,  -- completeness answers received
    missing     INTEGER NOT NULL DEFAULT 0,  -- records the last answer said the platform lacks
    updated_at  TEXT NOT NULL,         -- UTC
    PRIMARY KEY (uplink, day)
);
