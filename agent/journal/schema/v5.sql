-- v5: imaging — the study index over the DICOM spool, exams/reports, forwarding state.

CREATE TABLE im_patients (
    patient_id   TEXT PRIMARY KEY,     -- (0010,0020)
    name         TEXT,                 -- (0010,0010), DICOM PN as received
    birth_date   TEXT,                 -- (0010,0030) YYYYMMDD
    sex          TEXT                  -- (0010,0040)
);

CREATE TABLE im_studies (
    study_uid       TEXT PRIMARY KEY,  -- (0020,000D)
    patient_id      TEXT NOT NULL,
    accession       TEXT,              -- (0008,0050)
    study_id        TEXT,              -- (0020,0010)
    study_date      TEXT,              -- (0008,0020) YYYYMMDD
    study_time      TEXT,              -- (0008,0030)
    description     TEXT,              -- (0008,1030)
    referring       TEXT,              -- (0008,0090)
    modalities      TEXT,              -- distinct modalities, backslash-separated (ModalitiesInStudy)
    instance_count  INTEGER NOT NULL DEFAULT 0,
    first_received  TEXT NOT NULL,     -- ISO UTC
    last_received   TEXT NOT NULL,     -- ISO UTC: stability counts from here
    state           TEXT NOT NULL DEFAULT 'receiving' CHECK (state IN ('receiving', 'stable')),
    stable_at       TEXT,
    generation      INTEGER NOT NULL DEFAULT 0  -- bumped each time the study becomes stable
);
CREATE INDEX im_studies_patient ON im_studies (patient_id);
CREATE INDEX im_studies_accession ON im_studies (accession);
CREATE INDEX im_studies_due ON im_studies (state, last_received);
CREATE INDEX im_studies_recent ON im_studies (last_received);

CREATE TABLE im_series (
    series_uid   TEXT PRIMARY KEY,     -- (0020,000E)
    study_uid    TEXT NOT NULL,
    modality     TEXT,                 -- (0008,0060)
    number       INTEGER,              -- (0020,0011)
    description  TEXT,                 -- (0008,103E)
    body_part    TEXT                  -- (0018,0015)
);
CREATE INDEX im_series_study ON im_series (study_uid);

CREATE TABLE im_instances (
    sop_uid          TEXT PRIMARY KEY, -- (0008,0018)
    series_uid       TEXT NOT NULL,
    study_uid        TEXT NOT NULL,
    sop_class        TEXT NOT NULL,    -- (0008,0016)
    transfer_syntax  TEXT NOT NULL,    -- (0002,0010)
    number           INTEGER,          -- (0020,0013)
    path             TEXT NOT NULL,    -- absolute path of the file in <state_dir>/spool
    size             INTEGER NOT NULL,
    received_at      TEXT NOT NULL,    -- ISO UTC
    calling_ae       TEXT,
    event_id         TEXT NOT NULL
);
CREATE INDEX im_instances_series ON im_instances (series_uid, number);
CREATE INDEX im_instances_study ON im_instances (study_uid);

-- Orders and reports posted by RIS/PACS (the local API), joined to a study when one matches.
CREATE TABLE im_exams (
    exam_no      TEXT PRIMARY KEY,     -- the hospital's unique exam number (examNo)
    apply_no     TEXT,                 -- 申请单号
    accession    TEXT,
    study_uid    TEXT,                 -- set when known (given, or matched by accession)
    exam_status  TEXT NOT NULL,        -- 50 images received, 60 preliminary, 65 returned, 70 final
    exam_class   TEXT,                 -- CT, MR, US, ES …
    exam_date    TEXT,                 -- YYYY-MM-DD (local)
    payload      TEXT NOT NULL,        -- the exam as posted (JSON)
    updated_at   TEXT NOT NULL,
    event_id     TEXT NOT NULL
);
CREATE INDEX im_exams_accession ON im_exams (accession);
CREATE INDEX im_exams_study ON im_exams (study_uid);

-- Which instances were queued for which uplink (so a re-opened study sends only what is new).
CREATE TABLE im_forwarded (
    uplink    TEXT NOT NULL,
    sop_uid   TEXT NOT NULL,
    queued_at TEXT NOT NULL,
    PRIMARY KEY (uplink, sop_uid)
);
