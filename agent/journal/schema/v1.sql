-- v1: raw events, outbox, per-uplink state, handler failures, operator audit trail.

CREATE TABLE events (
    seq          INTEGER PRIMARY KEY,
    id           TEXT    NOT NULL UNIQUE,   -- UUIDv7, the idempotency key
    kind         TEXT    NOT NULL,
    source       TEXT    NOT NULL,
    occurred_at  TEXT    NOT NULL,          -- device clock, ISO 8601 UTC
    received_at  TEXT    NOT NULL,          -- agent clock, ISO 8601 UTC
    payload      TEXT    NOT NULL           -- JSON
);
CREATE INDEX events_received ON events (received_at);

-- Raw events are evidence: never edited, only removed by the retention purge.
CREATE TRIGGER events_append_only BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;

CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY,
    uplink           TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    order_key        TEXT    NOT NULL,
    dedupe_key       TEXT    NOT NULL,
    payload          TEXT    NOT NULL,      -- JSON
    event_id         TEXT,                  -- the event that produced it, if any
    state            TEXT    NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'inflight', 'delivered', 'dead', 'discarded')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    created_at       REAL    NOT NULL,      -- unix seconds
    next_attempt_at  REAL    NOT NULL,
    leased_at        REAL,
    settled_at       REAL,                  -- delivered, dead or discarded
    last_error       TEXT,
    response         TEXT,                  -- the platform's own answer, verbatim
    UNIQUE (uplink, dedupe_key)
);
CREATE INDEX outbox_queue ON outbox (uplink, state, id);
CREATE INDEX outbox_order ON outbox (uplink, order_key, state, id);
CREATE INDEX outbox_settled ON outbox (state, settled_at);

CREATE TABLE uplink_state (
    uplink                TEXT PRIMARY KEY,
    breaker               TEXT NOT NULL DEFAULT 'closed',
    consecutive_failures  INTEGER NOT NULL DEFAULT 0,
    last_error            TEXT,
    last_success_at       REAL,
    last_failure_at       REAL,
    updated_at            REAL NOT NULL
);

CREATE TABLE handler_failures (
    id        INTEGER PRIMARY KEY,
    event_id  TEXT NOT NULL,
    handler   TEXT NOT NULL,
    error     TEXT NOT NULL,
    at        REAL NOT NULL
);

CREATE TABLE audit (
    id      INTEGER PRIMARY KEY,
    at      REAL NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    detail  TEXT NOT NULL DEFAULT '{}'      -- JSON
);
