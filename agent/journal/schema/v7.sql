-- v7: settled (delivered, discarded) messages per uplink, kept by triggers, so /metrics, /healthz,
-- the dashboard and `edge-agent status` need not count the years of delivered messages the
-- outbox retains (a GROUP BY over it took the writer thread ~0.3 s per million messages,
-- stalling every commit meanwhile). Open messages are counted through the outbox_queue index.
-- No trigger on INSERT: messages are always inserted pending, and an insert trigger costs the
-- ingest path ~20 % (bench/outbox_counts.py, docs/benchmarks.md).

CREATE TABLE outbox_settled_counts (
    uplink  TEXT    NOT NULL,
    state   TEXT    NOT NULL,
    n       INTEGER NOT NULL,
    PRIMARY KEY (uplink, state)
) WITHOUT ROWID;

INSERT INTO outbox_settled_counts (uplink, state, n)
    SELECT uplink, state, COUNT(*) FROM outbox WHERE state IN ('delivered', 'discarded')
    GROUP BY uplink, state;

CREATE TRIGGER outbox_settle AFTER UPDATE OF state ON outbox
WHEN NEW.state IN ('delivered', 'discarded') AND NEW.state != OLD.state
BEGIN
    INSERT INTO outbox_settled_counts (uplink, state, n) VALUES (NEW.uplink, NEW.state, 1)
        ON CONFLICT (uplink, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER outbox_unsettle AFTER UPDATE OF state ON outbox
WHEN OLD.state IN ('delivered', 'discarded') AND NEW.state != OLD.state
BEGIN
    UPDATE outbox_settled_counts SET n = n - 1 WHERE uplink = OLD.uplink AND state = OLD.state;
END;

CREATE TRIGGER outbox_settled_delete AFTER DELETE ON outbox
WHEN OLD.state IN ('delivered', 'discarded')
BEGIN
    UPDATE outbox_settled_counts SET n = n - 1 WHERE uplink = OLD.uplink AND state = OLD.state;
END;
