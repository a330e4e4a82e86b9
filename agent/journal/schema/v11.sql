-- v11: statistics days and hospitals. Each local date a statistics slot reported, and whether a
-- slot of a later date has sent its final counts (exams after a day's last slot are counted
-- then); the hospital of each exam where one front-end serves several (医共体).

CREATE TABLE im_statistics_days (
    date       TEXT PRIMARY KEY,            -- YYYY-MM-DD, local
    last_slot  TEXT NOT NULL,               -- HH:MM of the latest slot that reported it
    final      INTEGER NOT NULL DEFAULT 0   -- 1 once a later date's slot reported it again
);

ALTER TABLE im_exams ADD COLUMN hospital_code TEXT;  -- the exam's hospitalCode; NULL: the uplink's
CREATE INDEX im_exams_exam_date ON im_exams (exam_date);
