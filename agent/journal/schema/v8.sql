-- v8: a handler failure is something an operator acts on, not only a row: how often it failed,
-- whether someone asked to replay it, and when a replay succeeded.

ALTER TABLE handler_failures ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;
ALTER TABLE handler_failures ADD COLUMN replay_requested_at REAL;
ALTER TABLE handler_failures ADD COLUMN resolved_at REAL;

CREATE INDEX handler_failures_open ON handler_failures (replay_requested_at)
    WHERE resolved_at IS NULL;
