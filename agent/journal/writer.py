"""The journal's single writer: every write runs on one thread, batched into group commits."""

from __future__ import annotations

import asyncio
import concurrent.futures
import fnmatch
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

import structlog

from agent.errors import JournalClosedError, JournalError, UnstorableEventError
from agent.events import Event
from agent.journal import failures
from agent.journal.checkpointer import Checkpointer
from agent.journal.database import incremental, open_database
from agent.journal.transaction import Handler, Transaction, to_json

log = structlog.get_logger(__name__)
T = TypeVar("T")


@dataclass(slots=True)
class _Job:
    fn: Callable[[sqlite3.Connection], Any] | None
    events: Sequence[Event] | None
    future: asyncio.Future[Any] | concurrent.futures.Future[Any]  # the latter: a thread waits
    result: Any = None
    error: BaseException | None = None


@dataclass(slots=True)
class _Outcome:
    touched: set[str] = field(default_factory=set)
    handler_failures: list[tuple[str, str, str]] = field(default_factory=list)
    alerts: list[tuple[int, str, str, str]] = field(default_factory=list)  # raised, committed


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
        self._queue: queue.SimpleQueue[list[_Job] | None] = queue.SimpleQueue()  # None: stop
        self._pending: list[_Job] = []
        self._closed = False
        self._listeners: list[Callable[[set[str]], None]] = []
        self._thread = threading.Thread(target=self._writer, name="journal-writer", daemon=True)
        self.commits = 0
        self._busy_since: float | None = None  # monotonic start of the commit under way
        # SQLite's auto-checkpoint runs inside COMMIT, before the waiters can be answered, and
        # flushes twice; a thread of its own checkpoints instead, asked after enough commits.
        conn.execute("PRAGMA wal_autocheckpoint=0")
        self._checkpointer = Checkpointer(path)
        self._since_checkpoint = 0
        self._last_alert: int = conn.execute("SELECT COALESCE(MAX(id), 0) FROM alerts").fetchone()[
            0
        ]

    @classmethod
    async def open(
        cls, path: Path, handlers: Iterable[Handler] = (), *, max_batch: int = 1024
    ) -> Journal:
        """Open, check and migrate the database at `path` and start the writer."""
        conn = await asyncio.to_thread(partial(open_database, path, convert_vacuum=True))
        if not incremental(conn):  # too big to convert at start: freed pages are only reused
            log.warning(
                "journal.compact_needed",
                pages=conn.execute("PRAGMA page_count").fetchone()[0],
                command="edge-agent journal compact (with the agent stopped)",
            )
        journal = cls(conn, path, handlers, asyncio.get_running_loop(), max_batch)
        journal._checkpointer.start()
        journal._thread.start()
        return journal

    @property
    def closed(self) -> bool:
        """Whether `close` was called: nothing more is written."""
        return self._closed

    def busy_for(self) -> float:
        """Seconds the writer has been in its current commit (0 when idle): a probe that never
        waits for the writer, so /healthz can say it is stuck without being stuck behind it."""
        since = self._busy_since
        return 0.0 if since is None else time.monotonic() - since

    @property
    def wal_frames(self) -> int:
        """Pages written to the WAL so far, counted at each checkpoint."""
        return self._checkpointer.wal_frames

    def on_commit(self, listener: Callable[[set[str]], None]) -> None:
        """Call `listener(uplinks)` on the loop after each commit that queued messages for them."""
        self._listeners.append(listener)

    async def ingest(self, events: Sequence[Event]) -> list[bool]:
        """Append events, run handlers, queue messages, commit; True for each event that was new."""
        fresh: list[bool] = await self._submit(_Job(None, events, self._loop.create_future()))
        return fresh

    def ingest_from_thread(self, events: Sequence[Event], timeout: float) -> list[bool]:
        """`ingest` for a thread other than the loop's, waiting at most `timeout` s.

        The job goes straight to the writer and is answered from it, without the two hops
        through the loop that `run_coroutine_threadsafe(ingest)` costs (a DICOM image waits
        for its commit before the next is sent). TimeoutError if the commit takes longer.
        """
        future = self.submit_from_thread(events)
        try:
            return future.result(timeout)
        finally:
            future.cancel()  # after a timeout: the writer then leaves it unanswered

    def submit_from_thread(self, events: Sequence[Event]) -> concurrent.futures.Future[list[bool]]:
        """`ingest` for another thread that does not wait: the future is answered after the
        commit (jobs of every thread share it). JournalClosedError if it surely never runs."""
        if self._closed:
            raise JournalClosedError(f"{self.path}: journal is closed")
        future: concurrent.futures.Future[list[bool]] = concurrent.futures.Future()
        self._queue.put([_Job(None, events, future)])
        return future

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` on the writer thread within the next group commit; return its result."""
        result: T = await self._submit(_Job(fn, None, self._loop.create_future()))
        return result

    async def _submit(self, job: _Job) -> Any:
        if self._closed:
            raise JournalClosedError(f"{self.path}: journal is closed")
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(job)
        return await cast("asyncio.Future[Any]", job.future)

    def _flush(self) -> None:
        # Hand everything submitted during one turn of the loop to the writer at once: producers
        # woken together by a commit then share the next commit instead of splitting into
        # alternating cohorts, and the writer thread is woken once per turn, not once per job.
        if self._pending:
            self._queue.put(self._pending)
            self._pending = []

    async def close(self) -> None:
        """Finish every submitted write, stop the writer and close the database."""
        if self._closed:
            return
        self._closed = True
        self._flush()
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)
        await asyncio.to_thread(self._checkpointer.close)
        await asyncio.to_thread(self._conn.close)  # the last connection: checkpoints the rest

    # --- writer thread -------------------------------------------------------------------

    def _writer(self) -> None:
        backlog: deque[_Job] = deque()
        stopping = False
        while True:
            if not backlog:
                if stopping:
                    break
                item = self._queue.get()
                if item is None:
                    break
                backlog.extend(item)
            while not stopping and len(backlog) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                else:
                    backlog.extend(item)
            jobs = [backlog.popleft() for _ in range(min(len(backlog), self._max_batch))]
            outcome = _Outcome()
            self._busy_since = time.monotonic()
            try:
                self._commit(jobs, outcome)
            except BaseException as err:  # task boundary: every waiter must hear about it
                failure = err if isinstance(err, JournalError) else JournalError(str(err))
                failure.__cause__ = err
                for job in jobs:
                    job.error = failure
                outcome = _Outcome()
            self._post(jobs, outcome)
            self._busy_since = None
            self._since_checkpoint += 1
            if self._since_checkpoint >= self._checkpointer.every:
                self._checkpointer.request(self._since_checkpoint)
                self._since_checkpoint = 0
        self._refuse_late_jobs()

    def _refuse_late_jobs(self) -> None:
        # A thread may have queued a job just as the journal closed: answer it, don't let it wait.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            for job in item or ():
                job.error = JournalClosedError(f"{self.path}: journal is closed")
                if isinstance(job.future, concurrent.futures.Future):
                    _answer_thread(job)

    def _commit(self, jobs: list[_Job], outcome: _Outcome) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            start = 0
            while start < len(jobs):
                end = start
                while end < len(jobs) and jobs[end].events is not None:
                    end += 1
                if end > start:
                    self._ingest(jobs[start:end], outcome)
                else:
                    self._isolated(jobs[start], outcome)
                    end += 1
                start = end
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.commits += 1
        # Alerts are logged once, after they are durable, whoever raised them in this commit.
        try:
            outcome.alerts = conn.execute(
                "SELECT id, severity, code, subject FROM alerts WHERE id > ? ORDER BY id",
                (self._last_alert,),
            ).fetchall()
        except sqlite3.Error as err:  # committed all the same: no job may hear otherwise
            log.warning("journal.alerts_unread", error=str(err))  # the next commit reads them
            return
        if outcome.alerts:
            self._last_alert = outcome.alerts[-1][0]

    def _ingest(self, jobs: list[_Job], outcome: _Outcome) -> None:
        # Fast path: one savepoint for a run of ingest jobs instead of one per job and per
        # handler. Handlers are pure and deterministic, so if anything in the run fails it is
        # rolled back and replayed job by job, where a failure costs only its own writes.
        conn = self._conn
        touched: set[str] = set()
        conn.execute("SAVEPOINT ingest")
        try:
            for job in jobs:
                assert job.events is not None
                job.result = self._append(job.events, touched, None)
        except Exception:
            conn.execute("ROLLBACK TO ingest")
            for job in jobs:
                job.result = None
                self._isolated(job, outcome)
        else:
            outcome.touched |= touched
        conn.execute("RELEASE ingest")

    def _isolated(self, job: _Job, outcome: _Outcome) -> None:
        """Run one job in its own savepoint: its failure undoes only its writes."""
        conn = self._conn
        mine = _Outcome()
        conn.execute("SAVEPOINT job")
        try:
            if job.events is not None:
                job.result = self._append(job.events, mine.touched, mine)
            else:
                assert job.fn is not None
                job.result = job.fn(conn)
        except Exception as err:
            conn.execute("ROLLBACK TO job")
            job.error = err
        else:
            outcome.touched |= mine.touched
            outcome.handler_failures += mine.handler_failures
        conn.execute("RELEASE job")

    def _append(
        self, events: Sequence[Event], touched: set[str], outcome: _Outcome | None
    ) -> list[bool]:
        """Insert events and run their handlers; each handler isolated only if `outcome`."""
        conn = self._conn
        fresh = []
        for event in events:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO events (id, kind, source, occurred_at, received_at, payload)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                _event_row(event),
            )
            if not cursor.rowcount:
                fresh.append(False)  # a re-sent event: already journaled with everything derived
                continue
            fresh.append(True)
            for handler in self._handlers_for(event.kind):
                if outcome is None:
                    handler.handle(Transaction(conn, event.id, touched, _at(event)), event)
                else:
                    self._run_handler(handler, event, touched, outcome)
        return fresh

    def _run_handler(
        self, handler: Handler, event: Event, touched: set[str], outcome: _Outcome
    ) -> None:
        # A failing handler must not cost the raw event: roll back only its own writes, record
        # the failure and raise an alert in the same commit, so a person replays it after a fix.
        conn = self._conn
        mine: set[str] = set()
        conn.execute("SAVEPOINT handler")
        try:
            handler.handle(Transaction(conn, event.id, mine, _at(event)), event)
            touched |= mine
        except Exception as err:
            conn.execute("ROLLBACK TO handler")
            alert = failures.record(conn, event, handler.name, err)
            Transaction(conn, event.id, touched).raise_alert(alert)  # failed now
            outcome.handler_failures.append((event.kind, handler.name, type(err).__name__))
        conn.execute("RELEASE handler")

    async def replay_requested(self) -> list[failures.Replayed]:
        """Run each handler an operator asked to replay again on its kept event, in order."""
        touched: set[str] = set()
        replayed = await self.run(partial(self._replay, touched=touched))
        if touched:
            for listener in self._listeners:
                listener(touched)
        return replayed

    def _replay(self, conn: sqlite3.Connection, touched: set[str]) -> list[failures.Replayed]:
        return failures.replay(conn, {h.name: h for h in self._handlers}, touched)

    def _handlers_for(self, kind: str) -> tuple[Handler, ...]:
        found = self._by_kind.get(kind)
        if found is None:
            found = tuple(
                h for h in self._handlers if any(fnmatch.fnmatchcase(kind, p) for p in h.kinds)
            )
            self._by_kind[kind] = found
        return found

    def _post(self, jobs: list[_Job], outcome: _Outcome) -> None:
        on_loop = False
        for job in jobs:
            if isinstance(job.future, concurrent.futures.Future):
                _answer_thread(job)
            else:
                on_loop = True
        if not (on_loop or outcome.touched or outcome.alerts or outcome.handler_failures):
            return  # only threads were waiting (DICOM images): no need to wake the loop
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
        for alert_id, severity, code, subject in outcome.alerts:
            emit = log.warning if severity == "warning" else log.error
            emit("alert.raised", alert_id=alert_id, severity=severity, code=code, subject=subject)
        if outcome.touched:
            for listener in self._listeners:
                listener(outcome.touched)


def _event_row(event: Event) -> tuple[str, str, str, str, str, str]:
    """The `events` row of `event`; UnstorableEventError if a value cannot be stored as it is."""
    try:
        return (
            event.id,
            event.kind,
            event.source,
            event.occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
            event.received_at.astimezone(UTC).isoformat(timespec="microseconds"),
            to_json(event.payload),
        )
    except (ValueError, OverflowError) as err:
        raise UnstorableEventError(f"{event.kind} event from {event.source}: {err}") from err


def _at(event: Event) -> float:
    """When the event happened (device clock), as alerts and published messages carry it."""
    return event.occurred_at.timestamp()


def _answer_thread(job: _Job) -> None:
    """Answer a thread's job from the writer; a job whose waiter gave up stays unanswered."""
    future = job.future
    assert isinstance(future, concurrent.futures.Future)
    try:
        if job.error is not None:
            future.set_exception(job.error)
        else:
            future.set_result(job.result)
    except concurrent.futures.InvalidStateError:
        pass  # cancelled after its timeout
