-- v3: alerts — compliance and operational events a person must see and acknowledge.

CREATE TABLE alerts (
    id               INTEGER PRIMARY KEY,
    at               REAL NOT NULL,
    severity         TEXT NOT NULL CHECK (severity IN ('critical', 'error', 'warning')),
    code             TEXT NOT NULL,     -- stable, machine-readable, e.g. scope_used_without_cleaning
    subject          TEXT NOT NULL,     -- what it is about, e.g. scope:GIF-001
    message          TEXT NOT NULL,
    origin           TEXT NOT NULL,     -- what raised it, e.g. outbox:123
    acknowledged_at  REAL,
    acknowledged_by  TEXT,
    note             TEXT,
    UNIQUE (code, origin)
);
CREATE INDEX alerts_open ON alerts (acknowledged_at, at);
