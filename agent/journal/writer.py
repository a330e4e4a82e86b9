"""The journal's single writer: every write runs on one thread, batched into group commits."""

from __future__ import annotations

import asyncio
import fnmatch
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any, Protocol, TypeVar

import structlog

from agent.errors import JournalClosedError, JournalError
from agent.events import Event
from agent.journal.database import open_database

log = structlog.get_logger(__name__)
T = TypeVar("T")


class Handler(Protocol):
    """A domain handler: pure and synchronous, it reads and writes state only through `tx`."""

    name: str
    kinds: tuple[str, ...]  # fnmatch patterns of the event kinds it handles

    def handle(self, tx: Transaction, event: Event) -> None: ...


class Transaction:
    """What a handler may touch: the open connection and the outbox, inside the ingest commit."""

    __slots__ = ("_touched", "conn", "event_id", "now")

    def __init__(self, conn: sqlite3.Connection, event_id: str | None, touched: set[str]) -> None:
        self.conn = conn
        self.event_id = event_id
        self.now = time.time()
        self._touched = touched

    def enqueue(
        self,
        *,
        uplink: str,
        kind: str,
        order_key: str,
        dedupe_key: str,
        payload: dict[str, Any],
        delay: float = 0.0,
    ) -> bool:
        """Add an outbox message; False if (uplink, dedupe_key) was already queued."""
        cursor = self.conn.execute(
            "INSERT OR IGNORE INTO outbox (uplink, kind, order_key, dedupe_key, payload, event_id,"
            " created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                uplink,
                kind,
                order_key,
                dedupe_key,
                json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
                self.event_id,
                self.now,
                self.now + delay,
            ),
        )
        if cursor.rowcount:
            self._touched.add(uplink)
            return True
        return False


@dataclass(slots=True)
class _Job:
    fn: Callable[[sqlite3.Connection], Any] | None
    events: Sequence[Event] | None
    future: asyncio.Future[Any]
    result: Any = None
    error: BaseException | None = None


@dataclass(slots=True)
class _Outcome:
    touched: set[str] = field(default_factory=set)
    handler_failures: list[tuple[str, str, str]] = field(default_factory=list)


_STOP = object()


class Journal:
    """Durable, ordered storage of events and outbox state; `ingest` returns only after fsync."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        handlers: Iterable[Handler],
        loop: asyncio.AbstractEventLoop,
        max_batch: int,
    ) -> None:
        self.path = path
        self._conn = conn
        self._handlers = tuple(handlers)
        self._by_kind: dict[str, tuple[Handler, ...]] = {}
        self._loop = loop
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._closed = False
        self._listeners: list[Callable[[set[str]], None]] = []
        self._thread = threading.Thread(target=self._writer, name="journal-writer", daemon=True)
        self.commits = 0

    @classmethod
    async def open(
        cls, path: Path, handlers: Iterable[Handler] = (), *, max_batch: int = 1024
    ) -> Journal:
        """Open, check and migrate the database at `path` and start the writer."""
        conn = await asyncio.to_thread(open_database, path)
        journal = cls(conn, path, handlers, asyncio.get_running_loop(), max_batch)
        journal._thread.start()
        return journal

    def on_commit(self, listener: Callable[[set[str]], None]) -> None:
        """Call `listener(uplinks)` on the loop after each commit that queued messages for them."""
        self._listeners.append(listener)

    async def ingest(self, events: Sequence[Event]) -> list[bool]:
        """Append events, run handlers, queue messages, commit; True for each event that was new."""
        fresh: list[bool] = await self._submit(_Job(None, events, self._loop.create_future()))
        return fresh

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` on the writer thread within the next group commit; return its result."""
        result: T = await self._submit(_Job(fn, None, self._loop.create_future()))
        return result

    async def _submit(self, job: _Job) -> Any:
        if self._closed:
            raise JournalClosedError(f"{self.path}: journal is closed")
        self._queue.put(job)
        return await job.future

    async def close(self) -> None:
        """Finish every submitted write, stop the writer and close the database."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        await asyncio.to_thread(self._conn.close)

    # --- writer thread -------------------------------------------------------------------

    def _writer(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is _STOP:
                    stopping = True
                    break
                batch.append(job)
            jobs: list[_Job] = batch  # type: ignore[assignment]
            outcome = _Outcome()
            try:
                self._commit(jobs, outcome)
            except BaseException as err:  # task boundary: every waiter must hear about it
                failure = err if isinstance(err, JournalError) else JournalError(str(err))
                failure.__cause__ = err
                for job in jobs:
                    job.error = failure
                outcome = _Outcome()
            self._post(jobs, outcome)

    def _commit(self, jobs: list[_Job], outcome: _Outcome) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for job in jobs:
                conn.execute("SAVEPOINT job")
                try:
                    if job.events is not None:
                        job.result = self._append(job.events, outcome)
                    else:
                        assert job.fn is not None
                        job.result = job.fn(conn)
                except Exception as err:
                    conn.execute("ROLLBACK TO job")
                    job.error = err
                conn.execute("RELEASE job")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.commits += 1

    def _append(self, events: Sequence[Event], outcome: _Outcome) -> list[bool]:
        conn = self._conn
        fresh = []
        for event in events:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO events (id, kind, source, occurred_at, received_at, payload)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    event.id,
                    event.kind,
                    event.source,
                    event.occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
                    event.received_at.astimezone(UTC).isoformat(timespec="microseconds"),
                    json.dumps(event.payload, ensure_ascii=False, separators=(",", ":")),
                ),
            )
            if not cursor.rowcount:
                fresh.append(False)  # a re-sent event: already journaled with everything derived
                continue
            fresh.append(True)
            for handler in self._handlers_for(event.kind):
                self._run_handler(handler, event, outcome)
        return fresh

    def _run_handler(self, handler: Handler, event: Event, outcome: _Outcome) -> None:
        # A failing handler must not cost the raw event: roll back only its own writes and
        # record the failure so the event can be re-processed after a fix.
        conn = self._conn
        conn.execute("SAVEPOINT handler")
        try:
            handler.handle(Transaction(conn, event.id, outcome.touched), event)
        except Exception as err:
            conn.execute("ROLLBACK TO handler")
            error = f"{type(err).__name__}: {err}"
            conn.execute(
                "INSERT INTO handler_failures (event_id, handler, error, at) VALUES (?, ?, ?, ?)",
                (event.id, handler.name, error, time.time()),
            )
            outcome.handler_failures.append((event.kind, handler.name, type(err).__name__))
        conn.execute("RELEASE handler")

    def _handlers_for(self, kind: str) -> tuple[Handler, ...]:
        found = self._by_kind.get(kind)
        if found is None:
            found = tuple(
                h for h in self._handlers if any(fnmatch.fnmatchcase(kind, p) for p in h.kinds)
            )
            self._by_kind[kind] = found
        return found

    def _post(self, jobs: list[_Job], outcome: _Outcome) -> None:
        try:
            self._loop.call_soon_threadsafe(self._settle, jobs, outcome)
        except RuntimeError:
            pass  # the loop is gone: nobody is waiting any more

    def _settle(self, jobs: list[_Job], outcome: _Outcome) -> None:
        for job in jobs:
            if job.future.done():
                continue
            if job.error is not None:
                job.future.set_exception(job.error)
            else:
                job.future.set_result(job.result)
        for kind, handler, error in outcome.handler_failures:
            log.error("journal.handler_failed", event_kind=kind, handler=handler, error=error)
        if outcome.touched:
            for listener in self._listeners:
                listener(outcome.touched)
