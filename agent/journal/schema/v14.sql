-- v14: statistics days and hospitals. Each local date a statistics slot reported, and whether a
-- slot of a later date has sent its final counts (exams after a day's last slot are counted
-- then); the hospital of each exam where one front-end serves several (医共体).

CREATE TABLE im_statistics_days (
    date       TEXT PRIMARY KEY,            -- YYYY-MM-DD, local
    last_slot  TEXT NOT NULL,               -- HH:MM of the latest slot that reported it
    final      INTEGER NOT NULL DEFAULT 0   -- 1 once a later date's slot reported it again
);

ALTER TABLE im_exam_files ADD COLUMN path TEXT;      -- where the local API stored it
ALTER TABLE im_exams ADD COLUMN hospital_code TEXT;  -- the exam's hospitalCode; NULL: the uplink's
CREATE INDEX im_exams_exam_date ON im_exams (exam_date);

-- 基卫 apply forms (seed 003 §3.1) looked up through the local API: the source of an exam's
-- applyNo when RIS posts none.
CREATE TABLE im_apply_forms (
    applycode     TEXT PRIMARY KEY,   -- 申请单号码 (examInfo.applyNo)
    fkey          TEXT,               -- HIS patient number (patientInfo.sickId)
    medicarecode  TEXT,               -- card number (patientInfo.cardNo)
    yyid00        TEXT,               -- hospital
    businesstype  TEXT,               -- 1 outpatient, 2 inpatient, 3 physical exam
    type          TEXT,               -- 1 ECG, 2 imaging
    applydate     TEXT,
    form          TEXT NOT NULL,      -- every field as 基卫 answered (JSON)
    received_at   TEXT NOT NULL,
    event_id      TEXT NOT NULL
);
CREATE INDEX im_apply_forms_fkey ON im_apply_forms (fkey);
CREATE INDEX im_apply_forms_card ON im_apply_forms (medicarecode);
