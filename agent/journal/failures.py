"""Handler failures: recorded with an alert beside the kept event, replayed on request."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from agent.events import Event
from agent.journal.alerts import Alert
from agent.journal.transaction import Handler, Transaction

ALERT_CODE = "handler_failed"


@dataclass(frozen=True, slots=True)
class Failure:
    """A handler that failed on a journaled event, and what became of it."""

    id: int
    event_id: str
    handler: str
    error: str
    at: float
    attempts: int
    replay_requested_at: float | None
    resolved_at: float | None


@dataclass(frozen=True, slots=True)
class Replayed:
    """One replay's result: `error` is "" when the handler now succeeded."""

    failure_id: int
    handler: str
    error: str


def describe(err: BaseException) -> str:
    """The stored error text: type and message (kept in the journal only, never logged)."""
    return f"{type(err).__name__}: {err}"


def record(conn: sqlite3.Connection, event: Event, handler: str, err: Exception) -> Alert:
    """Store the failure; return the alert that makes it visible (raise it in the same commit)."""
    failure_id = conn.execute(
        "INSERT INTO handler_failures (event_id, handler, error, at) VALUES (?, ?, ?, ?)",
        (event.id, handler, describe(err), time.time()),
    ).lastrowid
    return Alert(
        code=ALERT_CODE,
        subject=f"{event.kind} from {event.source}",
        message=(
            f"The {handler} handler failed on event {event.id} ({type(err).__name__}): the event"
            f" is kept, but what it should have produced is not. Fix the cause, then run"
            f" `edge-agent handlers replay {failure_id}`."
        ),
        origin=f"handler_failure:{failure_id}",
        severity="error",
    )


_COLUMNS = "id, event_id, handler, error, at, attempts, replay_requested_at, resolved_at"


def listing(conn: sqlite3.Connection, *, include_resolved: bool = False) -> list[Failure]:
    """Failures, oldest first; only the unresolved ones unless `include_resolved`."""
    where = "" if include_resolved else " WHERE resolved_at IS NULL"
    sql = f"SELECT {_COLUMNS} FROM handler_failures{where} ORDER BY id"
    return [Failure(*row) for row in conn.execute(sql)]


def request_replay(
    conn: sqlite3.Connection, failure_ids: Sequence[int] | None, actor: str
) -> list[int]:
    """Mark unresolved failures (all of them if `failure_ids` is None) for replay; audited."""
    now = time.time()
    if failure_ids is None:
        failure_ids = [f.id for f in listing(conn)]
    marked = []
    for failure_id in failure_ids:
        cursor = conn.execute(
            "UPDATE handler_failures SET replay_requested_at = ?"
            " WHERE id = ? AND resolved_at IS NULL",
            (now, failure_id),
        )
        if cursor.rowcount:
            marked.append(failure_id)
            conn.execute(
                "INSERT INTO audit (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                (now, actor, "handler.replay", f"handler_failure:{failure_id}", "{}"),
            )
    return marked


def requested(conn: sqlite3.Connection) -> list[Failure]:
    """Unresolved failures an operator asked to replay, oldest first."""
    sql = (
        f"SELECT {_COLUMNS} FROM handler_failures"
        " WHERE resolved_at IS NULL AND replay_requested_at IS NOT NULL ORDER BY id"
    )
    return [Failure(*row) for row in conn.execute(sql)]


def stored_event(conn: sqlite3.Connection, event_id: str) -> Event | None:
    """The journaled event, as it was ingested; None once retention purged it."""
    row = conn.execute(
        "SELECT kind, source, payload, occurred_at, received_at FROM events WHERE id = ?",
        (event_id,),
    ).fetchone()
    if row is None:
        return None
    kind, source, payload, occurred_at, received_at = row
    return Event(
        kind,
        source,
        json.loads(payload),
        occurred_at=datetime.fromisoformat(occurred_at),
        received_at=datetime.fromisoformat(received_at),
        id=event_id,
    )


def resolved(conn: sqlite3.Connection, failure: Failure) -> None:
    """The replay succeeded: close the failure and its alert."""
    now = time.time()
    conn.execute(
        "UPDATE handler_failures SET resolved_at = ?, attempts = attempts + 1 WHERE id = ?",
        (now, failure.id),
    )
    conn.execute(
        "UPDATE alerts SET acknowledged_at = ?, acknowledged_by = 'edge-agent',"
        " note = 'replayed successfully' WHERE code = ? AND origin = ? AND acknowledged_at IS NULL",
        (now, ALERT_CODE, f"handler_failure:{failure.id}"),
    )


def failed_again(conn: sqlite3.Connection, failure: Failure, error: str) -> None:
    """The replay failed too: keep the failure open with the new error, awaiting a new request."""
    conn.execute(
        "UPDATE handler_failures SET error = ?, attempts = attempts + 1, replay_requested_at = NULL"
        " WHERE id = ?",
        (error, failure.id),
    )


def replay(
    conn: sqlite3.Connection, handlers: Mapping[str, Handler], touched: set[str]
) -> list[Replayed]:
    """Run each requested handler again on its kept event, oldest first, each in a savepoint."""
    replayed = []
    for failure in requested(conn):
        handler = handlers.get(failure.handler)
        event = stored_event(conn, failure.event_id)
        mine: set[str] = set()
        conn.execute("SAVEPOINT replay")
        try:
            if handler is None:
                raise LookupError(f"no handler {failure.handler!r} is configured now")
            if event is None:
                raise LookupError("the event is no longer in the journal (retention)")
            handler.handle(Transaction(conn, event.id, mine, event.occurred_at.timestamp()), event)
        except Exception as err:
            conn.execute("ROLLBACK TO replay")
            error = describe(err)
            failed_again(conn, failure, error)
        else:
            touched |= mine
            resolved(conn, failure)
            error = ""
        conn.execute("RELEASE replay")
        replayed.append(Replayed(failure.id, failure.handler, error))
    return replayed
