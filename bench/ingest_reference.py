"""The minimal writer `bench.ingest` compares with: plain sqlite3, the same rows, no agent code."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from shutil import rmtree

from agent.events import uuid7
from agent.journal.database import open_database
from agent.journal.transaction import to_json

CHECKPOINT_EVERY = 16  # commits, as the journal's writer starts out


def written_bytes() -> int:
    """Bytes this process has passed to write(2) and its kin so far (Linux `wchar`; 0 elsewhere)."""
    try:
        with open("/proc/self/io", encoding="ascii") as io:
            for line in io:
                if line.startswith("wchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass(frozen=True, slots=True)
class Reference:
    """Events/s, WAL pages and bytes written per event of the minimal writer."""

    events: int
    seconds: float
    wal_pages_per_event: float
    bytes_per_event: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def minimal_writer(directory: Path, seconds: float, per_commit: int = 64) -> Reference:
    """Insert one `events` row and one `outbox` row per event, `per_commit` events per commit,
    into a fresh journal of the current schema (WAL, synchronous=FULL), for `seconds`."""
    workdir = Path(tempfile.mkdtemp(prefix="ingest-ref-", dir=directory))
    try:
        conn = open_database(workdir / "journal.db")
        conn.execute("PRAGMA wal_autocheckpoint=0")
        frames = events = commits = 0
        wrote = written_bytes()
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            conn.execute("BEGIN IMMEDIATE")
            for n in range(per_commit):
                event_id = str(uuid7())
                now = datetime.now(UTC).isoformat(timespec="microseconds")
                payload = to_json({"tag": f"E2003412{n:016X}", "antenna": 1, "rssi": -40})
                conn.execute(
                    "INSERT INTO events (id, kind, source, occurred_at, received_at, payload)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (event_id, "rfid.read", f"reader-{n % 8}", now, now, payload),
                )
                message = {"id": event_id, "kind": "rfid.read", "source": f"reader-{n % 8}"}
                message |= {"occurred_at": now, "payload": payload}
                conn.execute(
                    "INSERT INTO outbox (uplink, kind, order_key, dedupe_key, payload, event_id,"
                    " created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    ("bench_cloud", "rfid.read", f"reader-{n % 8}", event_id, to_json(message),
                     event_id, time.time(), time.time()),
                )  # fmt: skip
            conn.execute("COMMIT")
            events += per_commit
            commits += 1
            if commits % CHECKPOINT_EVERY == 0:
                frames += conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
        elapsed = time.perf_counter() - start
        frames += conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
        wrote = written_bytes() - wrote
        conn.close()
    finally:
        rmtree(workdir, ignore_errors=True)
    return Reference(events, elapsed, frames / events, wrote / events)
