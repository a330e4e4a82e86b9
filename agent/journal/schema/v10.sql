-- v10: the report store. Each exam keeps, beside the document as posted, its neutral record
-- (agent/vocabulary/exams.py) and the times platforms ask exams by, indexed: exam, registration,
-- report written and audited, latest item refund, cancellation, and when the report last
-- changed. Times are local wall times, ISO 8601 without a zone (as the hospital wrote them).

ALTER TABLE im_exams ADD COLUMN record TEXT;         -- the neutral record (JSON)
ALTER TABLE im_exams ADD COLUMN patient_id TEXT;     -- the hospital's patient id
ALTER TABLE im_exams ADD COLUMN exam_at TEXT;
ALTER TABLE im_exams ADD COLUMN registered_at TEXT;
ALTER TABLE im_exams ADD COLUMN written_at TEXT;     -- report written
ALTER TABLE im_exams ADD COLUMN audited_at TEXT;     -- report audited
ALTER TABLE im_exams ADD COLUMN refunded_at TEXT;    -- the latest refund of one of its items
ALTER TABLE im_exams ADD COLUMN cancelled_at TEXT;
ALTER TABLE im_exams ADD COLUMN modified_at TEXT;    -- the report (or status) last changed
ALTER TABLE im_exams ADD COLUMN report_digest TEXT;  -- what modified_at compares

-- Exams posted before v10: the times their documents carry (the record is made on read).
UPDATE im_exams SET
    patient_id = json_extract(payload, '$.patientInfo.sickId'),
    exam_at = replace(json_extract(payload, '$.examInfo.examTime'), ' ', 'T'),
    written_at = replace(json_extract(payload, '$.reportList.reportTime'), ' ', 'T'),
    audited_at = replace(json_extract(payload, '$.reportList.affirmTime'), ' ', 'T');

CREATE INDEX im_exams_exam_at ON im_exams (exam_at);
CREATE INDEX im_exams_registered_at ON im_exams (registered_at);
CREATE INDEX im_exams_written_at ON im_exams (written_at);
CREATE INDEX im_exams_audited_at ON im_exams (audited_at);
CREATE INDEX im_exams_refunded_at ON im_exams (refunded_at);
CREATE INDEX im_exams_cancelled_at ON im_exams (cancelled_at);
CREATE INDEX im_exams_modified_at ON im_exams (modified_at);
CREATE INDEX im_exams_patient ON im_exams (patient_id);

-- An exam's report files (PDF, report images), stored content-addressed in <state_dir>/exam-files.
-- A file may arrive before its exam's document: nothing refers to im_exams.
CREATE TABLE im_exam_files (
    exam_no     TEXT NOT NULL,
    name        TEXT NOT NULL,         -- <sha256>.<pdf|jpg|png>
    kind        TEXT NOT NULL,         -- report_pdf, report_image
    size        INTEGER NOT NULL,
    attached_at TEXT NOT NULL,         -- UTC, ISO 8601 (the agent's clock)
    event_id    TEXT NOT NULL,
    PRIMARY KEY (exam_no, name)
);

-- Instances PACS deleted (a deletion notice or, later, a rejection note): out of the index (so
-- C-FIND, C-MOVE, image links and report answers no longer see them), kept here for the spool's
-- retention, which may delete their files only once the notices about them are delivered.
CREATE TABLE im_deleted (
    sop_uid     TEXT NOT NULL,
    series_uid  TEXT NOT NULL,
    study_uid   TEXT NOT NULL,
    path        TEXT NOT NULL,         -- the spool file, still there
    deleted_at  TEXT NOT NULL,         -- UTC ISO (the agent's clock)
    event_id    TEXT NOT NULL          -- the deletion event
);
CREATE INDEX im_deleted_study ON im_deleted (study_uid);
