-- v9: alert snoozes. A known, accepted condition (a disinfectant batch without its concentration
-- test) keeps being journaled and published, but stops asking a person again until it ends.

CREATE TABLE alert_snoozes (
    id         INTEGER PRIMARY KEY,
    code       TEXT NOT NULL,
    subject    TEXT NOT NULL,
    until      REAL NOT NULL,          -- unix seconds
    by         TEXT NOT NULL,
    reason     TEXT NOT NULL,
    at         REAL NOT NULL
);
CREATE INDEX alert_snoozes_live ON alert_snoozes (code, subject, until);
