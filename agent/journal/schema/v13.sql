-- v13: fewer index pages written per ingested event (issue 21, bench/ingest.py). Every event
-- inserts one raw row and usually one outbox message; each index they touch dirties at least a
-- page per commit, written to the WAL and again at the checkpoint.
-- The retention purge walks events oldest first by seq (insertion order, which follows the
-- agent's clock): no index on received_at needed.
DROP INDEX events_received;
-- Only settled messages are ever purged: a new (pending) message no longer enters this index.
DROP INDEX outbox_settled;
CREATE INDEX outbox_settled ON outbox (state, settled_at)
    WHERE state IN ('delivered', 'discarded');
