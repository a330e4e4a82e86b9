-- v16: (1) the platform's unreadable answers in a row per outbox message, so a restart does not
-- reset the count the dispatcher gives up after (unreadable_answer_attempts); an operator's
-- retry starts it again. (2) Report files kept relative to the state folder. (3) Seed 003 §3.4
-- (scenario 3), below.
ALTER TABLE outbox ADD COLUMN unreadable INTEGER NOT NULL DEFAULT 0;

-- (2) A state folder that can move, as v11 did for the spool: report files the local API stored
-- in <state_dir>/exam-files are kept as `exam-files/<name>`, and undelivered report images say
-- so (`state_path`), so a state directory restored or moved elsewhere still sends them. A path
-- is taken apart at its `/exam-files/` followed by the file's name alone.
UPDATE im_exam_files SET path = substr(path, instr(path, '/exam-files/') + 1)
    WHERE path GLOB '/*/exam-files/*'
    AND instr(substr(path, instr(path, '/exam-files/') + 12), '/') = 0;
UPDATE outbox SET payload = json_set(payload, '$.state_path',
        substr(json_extract(payload, '$.path'), instr(json_extract(payload, '$.path'), '/exam-files/') + 1))
    WHERE kind = 'report.image' AND state IN ('pending', 'inflight', 'dead')
    AND json_extract(payload, '$.path') GLOB '/*/exam-files/*'
    AND instr(substr(json_extract(payload, '$.path'), instr(json_extract(payload, '$.path'), '/exam-files/') + 12), '/') = 0;

-- (3) Seed 003 §3.4 (scenario 3). Each apply form HIS posted for the provincial imaging
-- platform (SynApplyInfo), and the exam status the platform last reported for it
-- (SynStatusInfo): one row per uplink and ApplyNo (as the platform knows it, prefixed).
CREATE TABLE pi_orders (
    uplink            TEXT NOT NULL,
    apply_no          TEXT NOT NULL,
    action            TEXT,             -- INSERT/UPDATE/DELETE last posted; NULL: only the platform named it
    event_id          TEXT,             -- that action's event (its outbox message: the delivery)
    posted_at         REAL,             -- unix seconds
    exam_status       TEXT,             -- 00 检查取消, 20 检查确认, 50 收到影像, 70 确认报告
    exam_status_name  TEXT,
    exam_no           TEXT,
    image_url         TEXT,
    operated_at       TEXT,             -- OperateDate OperateTime as the platform sent them (local)
    status_event_id   TEXT,
    status_at         REAL,             -- unix seconds, when it was journaled
    PRIMARY KEY (uplink, apply_no)
);
CREATE INDEX pi_orders_recent ON pi_orders (uplink, posted_at);
