"""What the running agent can tell about itself: one snapshot for /metrics and /healthz."""

from __future__ import annotations

import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from agent.journal import outbox


@dataclass(frozen=True, slots=True)
class QueueState:
    """One uplink's outbox and delivery loop, as of the snapshot."""

    uplink: str
    counts: dict[str, int]  # by outbox state: pending, inflight, delivered, dead
    oldest_pending_age: float | None
    breaker: str  # closed, open, half_open
    delivered_total: int  # by this process since it started
    retried_total: int
    dead_total: int


@dataclass(frozen=True, slots=True)
class SourceState:
    """One device-facing source: whether it runs, whether its device is connected, counters."""

    name: str
    type: str
    component: str  # the supervisor's state: running, down, finished
    online: bool | None  # None: the source has no connection of its own
    counters: dict[str, int] = field(default_factory=dict)  # bounded keys: reasons, taps
    detail: str | None = None  # where its link points, and why it is down (Driver.link_detail)


@dataclass(frozen=True, slots=True)
class ListenerState:
    """A platform listener's requests and refusals (by reason) since the agent started."""

    name: str
    requests: int
    refused: dict[str, int]


@dataclass(frozen=True, slots=True)
class DiskState:
    """The spool's filesystem: free space now, and the pressure level the imaging domain set."""

    free_bytes: int | None  # None: it could not be read
    level: str  # ok, warning, critical ("ok" before the first measure)
    warning_free_mb: int
    critical_free_mb: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The whole agent at one moment."""

    database_ok: bool
    database_error: str
    queues: list[QueueState]
    sources: list[SourceState]
    open_alerts: dict[str, int]  # by severity
    commits: int
    listeners: list[ListenerState] = field(default_factory=list)
    disk: DiskState | None = None  # None: no imaging domain measures it
    taken_at: float = field(default_factory=time.time)


def outbox_counts(conn: sqlite3.Connection) -> tuple[dict[str, dict[str, int]], dict[str, float]]:
    """Messages per uplink and state, and each uplink's oldest pending `created_at`."""
    counts = outbox.tally(conn)
    oldest = {
        uplink: first
        for uplink, states in counts.items()
        if "pending" in states
        and (first := outbox.oldest_created(conn, uplink, "pending")) is not None
    }
    return counts, oldest


def alert_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Open (unacknowledged) alerts by severity."""
    rows = conn.execute(
        "SELECT severity, COUNT(*) FROM alerts WHERE acknowledged_at IS NULL GROUP BY severity"
    ).fetchall()
    return dict(rows)


def disk_pressure(conn: sqlite3.Connection) -> tuple[str, int, int] | None:
    """(level, warning_free_mb, critical_free_mb) as last recorded, or None if never measured."""
    row = conn.execute(
        "SELECT level, warning_free_mb, critical_free_mb FROM disk_pressure WHERE id = 1"
    ).fetchone()
    return None if row is None else (str(row[0]), int(row[1]), int(row[2]))


def free_bytes(path: Path) -> int | None:
    """Free space for unprivileged writers on the filesystem of `path` (or its nearest parent)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None
